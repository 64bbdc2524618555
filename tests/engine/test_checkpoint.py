from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training import preprocess
from training.checkpoint import (
    adapt_classes,
    load_model,
    make_checkpoint,
    read_metadata,
    save_checkpoint,
)
from training.errors import CheckpointError
from training.model import ModelConfig, build_model


@pytest.fixture(scope="module")
def model32():
    torch.manual_seed(0)
    m = build_model(ModelConfig(num_classes=3, arch="fcn32s", fc_channels=64))
    with torch.no_grad():  # non-zero scores so outputs differ between models
        m.score_fr.weight.normal_(0, 0.01)
    return m


def test_round_trip_is_self_describing(tmp_path: Path, model32) -> None:
    path = tmp_path / "m.pt"
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (1, 2, 3)
    ckpt = make_checkpoint(model32, ["bg", "a", "b"], preprocess.TORCHVISION, palette=palette,
                           training={"lr": 0.1}, metrics={"mean_iou": 0.5}, parent="v1")
    save_checkpoint(path, ckpt)
    # weights_only=True must be able to read everything we write.
    raw = torch.load(path, weights_only=True)
    assert raw["model"]["arch"] == "fcn32s" and raw["parent"] == "v1"
    loaded = load_model(path)
    assert loaded.class_names == ["bg", "a", "b"]
    assert loaded.normalization == preprocess.TORCHVISION
    assert tuple(loaded.palette[1]) == (1, 2, 3)
    assert loaded.meta["metrics"]["mean_iou"] == 0.5
    x = torch.rand(1, 3, 40, 50)
    with torch.no_grad():
        assert torch.equal(model32.eval()(x), loaded.model.eval()(x))
    meta = read_metadata(path)
    assert "state_dict" not in meta and meta["training"]["lr"] == 0.1


def test_class_count_must_match(model32) -> None:
    with pytest.raises(CheckpointError, match="2 class names"):
        make_checkpoint(model32, ["a", "b"], preprocess.TORCHVISION)


@pytest.mark.parametrize("content", [b"", b"not a torch file at all"])
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_model(path)


def test_truncated_checkpoint(tmp_path: Path, model32) -> None:
    path = tmp_path / "t.pt"
    save_checkpoint(path, make_checkpoint(model32, ["bg", "a", "b"], preprocess.TORCHVISION))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="t.pt"):
        load_model(path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_arbitrary_objects_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*refused"):
        load_model(path)


def test_unknown_dict_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="neither"):
        load_model(path)


def test_adapt_classes(tmp_path: Path, model32) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, make_checkpoint(model32, ["bg", "a", "b"], preprocess.TORCHVISION))
    loaded = load_model(path)
    with pytest.raises(CheckpointError, match=r"\['bg', 'a', 'b'\].*\['bg', 'c'\].*--reinit-classes"):
        adapt_classes(loaded, ["bg", "c"], reinit=False, path=str(path))
    new = adapt_classes(loaded, ["bg", "c"], reinit=True, path=str(path))
    assert new.config.num_classes == 2 and new.class_names == ["bg", "c"]
    with torch.no_grad():
        assert new.model(torch.rand(1, 3, 33, 33)).shape == (1, 2, 33, 33)
    # The backbone keeps its weights.
    assert torch.equal(new.model.conv1_1.weight, loaded.model.conv1_1.weight)


def test_float16_storage_halves_the_file_and_keeps_the_predictions(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model(ModelConfig(num_classes=5, arch="fcn8s", backbone="vgg16_bn",
                                    fc_channels=64))
    with torch.no_grad():  # scores that depend on the input, as a trained head's do
        for name in ("score_fr", "score_pool4", "score_pool3"):
            getattr(model, name).weight.normal_(0, 0.05)
        model.bn1_1.running_var.fill_(3e-6)  # small statistics must survive the rounding
    paths = {}
    for dtype in ("float32", "float16"):
        paths[dtype] = tmp_path / f"{dtype}.pt"
        save_checkpoint(paths[dtype], make_checkpoint(model, list("abcde"), preprocess.TORCHVISION,
                                                      weights_dtype=dtype))
    raw = torch.load(paths["float16"], weights_only=True)
    assert raw["weights_dtype"] == "float16"
    assert raw["state_dict"]["conv1_1.weight"].dtype == torch.float16
    assert raw["state_dict"]["bn1_1.running_var"].dtype == torch.float32
    assert paths["float16"].stat().st_size < 0.55 * paths["float32"].stat().st_size
    loaded = load_model(paths["float16"]).model.eval()
    assert next(loaded.parameters()).dtype == torch.float32  # computes as before
    x = torch.rand(4, 3, 75, 101)
    with torch.no_grad():
        ref = model.eval()(x).argmax(1)
        got = loaded(x).argmax(1)
    assert (ref == got).float().mean().item() >= 0.995
    with pytest.raises(ValueError, match="float32 or float16"):
        make_checkpoint(model, list("abcde"), preprocess.TORCHVISION, weights_dtype="int8")
