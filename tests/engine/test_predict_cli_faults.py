"""fcn-predict under faults (issue 11, item 16): an unwritable --out or a full disk is
reported with the labels already written, and a dataset's ground truth is not
overwritten unless asked."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.synthetic import write_voc
from training import predict_cli, preprocess
from training.checkpoint import make_checkpoint, save_checkpoint
from training.model import ModelConfig, build_model
from training.predict_cli import main as predict_main


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, arch="fcn8s", fc_channels=64))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, make_checkpoint(model, ["background", "box", "disc"],
                                          preprocess.TORCHVISION))
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def _run(weights: Path, inputs: Path, out: Path, *extra: str) -> int:
    return predict_main([str(weights), str(inputs), "--out", str(out), "--device", "cpu",
                         "--batch-size", "1", "--json", *extra])


def test_an_unwritable_out_is_reported_without_a_traceback(weights: Path, photos: Path,
                                                           tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = _run(weights, photos, blocker / "labels")  # cannot be created: a file is in the way
    err = capsys.readouterr().err
    assert rc == 4
    assert f"{blocker / 'labels'}: cannot create the output folder" in err
    assert "no labels were written" in err and "Traceback" not in err


def test_a_full_disk_stops_and_names_the_labels_written(weights: Path, photos: Path,
                                                        tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    real = predict_cli.atomic_save
    calls = {"n": 0}

    def save(path, writer):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path) + ".123.tmp")
        return real(path, writer)

    monkeypatch.setattr(predict_cli, "atomic_save", save)
    out = tmp_path / "labels"
    rc = _run(weights, photos, out)
    captured = capsys.readouterr()
    assert rc == 4 and "Traceback" not in captured.err
    error = next(json.loads(line) for line in captured.out.splitlines()
                 if json.loads(line)["event"] == "error")
    assert error["message"].startswith(f"{out / 'p2.png'}: cannot write: the disk is full")
    assert "2 label(s) were written before it stopped: p0, p1" in error["message"]
    assert error["written"] == ["p0", "p1"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]


def test_the_datasets_own_label_folder_is_refused_unless_asked(weights: Path, tmp_path: Path,
                                                               capsys) -> None:
    root = tmp_path / "voc"
    write_voc(root, n=2, n_val=1, h=48, w=64)
    labels = root / "SegmentationClass"
    truth = {p.name: p.read_bytes() for p in labels.iterdir()}
    rc = _run(weights, root / "JPEGImages", labels)
    err = capsys.readouterr().err
    assert rc == 2 and "ground-truth label folder" in err and "--overwrite-labels" in err
    assert {p.name: p.read_bytes() for p in labels.iterdir()} == truth
    assert _run(weights, root / "JPEGImages", labels, "--overwrite-labels") == 0
    assert {p.name: p.read_bytes() for p in labels.iterdir()} != truth
