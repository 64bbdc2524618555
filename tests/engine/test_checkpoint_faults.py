"""What a checkpoint that cannot be loaded is reported as (issue 11, item 15): the real
cause, and never PyTorch's advice to turn weights_only off."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_model, read_checkpoint_file
from training.errors import CheckpointError


def _message(path: Path) -> str:
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint_file(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: ")
    assert "weights_only" not in text and "arbitrary code execution" not in text
    return text


def test_random_bytes_are_corrupt_not_unsafe(tmp_path: Path) -> None:
    # Many seeded samples: the unpickler fails differently depending on the bytes
    # (about one in sixteen ended in an IndexError once), and every way must read the same.
    path = tmp_path / "random.pt"
    for seed in range(400):
        path.write_bytes(random.Random(seed).randbytes(4096))
        text = _message(path)
        assert "not a PyTorch weights file" in text, (seed, text)
        assert "refused" not in text and "Python objects" not in text


def test_a_permission_error_says_so(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "locked.pt"
    torch.save({"a": torch.zeros(1)}, path)

    def denied(f, *args, **kwargs):  # chmod 000 means nothing to root, so fake the refusal
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr(torch, "load", denied)
    text = _message(path)
    assert "cannot read the file (Permission denied)" in text
    assert "refused" not in text


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_malicious_pickle_is_refused_naming_the_object(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    text = _message(path)
    assert "refused" in text and "system" in text and "could run code" in text


def test_a_truncated_checkpoint_is_short_and_named(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save({"a": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    text = _message(path)
    assert "truncated or corrupt" in text and "internal miniz error" not in text


def test_load_model_passes_the_message_on(tmp_path: Path) -> None:
    path = tmp_path / "random.pt"
    path.write_bytes(b"\x80\x02garbage" * 50)
    with pytest.raises(CheckpointError, match="random.pt: not a PyTorch weights file"):
        load_model(path)
