from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import preprocess
from training.checkpoint import LoadedModel, make_checkpoint, palette_table, save_checkpoint
from training.model import ModelConfig, build_model
from training.predict import Predictor, uncertainty_from_probs
from training.predict_cli import main as predict_main


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, arch="fcn8s", fc_channels=64))
    with torch.no_grad():
        for name in ("score_fr", "score_pool4", "score_pool3"):
            getattr(model, name).weight.normal_(0, 0.05)
    return LoadedModel(model=model, class_names=["bg", "a", "b"],
                       normalization=preprocess.TORCHVISION, palette=palette_table(None, 3))


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory, loaded) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, make_checkpoint(loaded.model, loaded.class_names, loaded.normalization))
    return path


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_predict_api_shapes_and_ranges(loaded) -> None:
    p = Predictor(loaded, "cpu")
    out = p.predict(_image(37, 53), probabilities=True, uncertainty="entropy")
    assert out.label.shape == (37, 53) and out.label.dtype == np.uint8
    assert out.label.max() < 3
    assert out.probabilities.shape == (3, 37, 53)
    np.testing.assert_allclose(out.probabilities.sum(0), 1.0, atol=1e-5)
    assert out.uncertainty.shape == (37, 53)
    assert 0.0 <= out.uncertainty.min() and out.uncertainty.max() <= 1.0
    np.testing.assert_array_equal(out.label, out.probabilities.argmax(0))


def test_batch_equals_single(loaded) -> None:
    p = Predictor(loaded, "cpu")
    imgs = [_image(40, 48, 1), _image(40, 48, 2), _image(30, 20, 3)]
    batch = p.predict_batch(imgs)
    for img, res in zip(imgs, batch, strict=True):
        np.testing.assert_array_equal(res.label, p.predict(img).label)


def test_tiling_covers_the_whole_image(loaded) -> None:
    img = _image(150, 230, 4)
    whole = Predictor(loaded, "cpu", tile_size=1024).predict(img, probabilities=True)
    tiled = Predictor(loaded, "cpu", tile_size=96, tile_overlap=32).predict(img, probabilities=True)
    assert tiled.label.shape == (150, 230)
    np.testing.assert_allclose(tiled.probabilities.sum(0), 1.0, atol=1e-5)
    # Tiles see less context, so results may differ near seams, but mostly agree.
    assert (tiled.label == whole.label).mean() > 0.5
    small = Predictor(loaded, "cpu", tile_size=64, huge="downscale").predict(img, uncertainty="margin")
    assert small.label.shape == (150, 230) and small.uncertainty.shape == (150, 230)


def test_uncertainty_definitions() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).T.reshape(1, 2, 1, 2)
    ent = uncertainty_from_probs(probs, "entropy")
    assert ent[0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert ent[0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    mar = uncertainty_from_probs(probs, "margin")
    assert mar[0, 0, 0] == pytest.approx(0.0) and mar[0, 0, 1] == pytest.approx(1.0)


def test_predict_cli_end_to_end(tmp_path: Path, ckpt_path: Path, loaded, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    imgs = {f"f{i}": _image(36, 44 + i, i) for i in range(3)}
    for stem, arr in imgs.items():
        Image.fromarray(arr).save(src / f"{stem}.jpg", quality=95)
    (src / "notes.txt").write_text("not an image")
    (src / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "out"
    rc = predict_main([str(ckpt_path), str(src), "--out", str(out), "--uncertainty", "entropy",
                       "--device", "cpu", "--json"])
    assert rc == 1  # one image failed, the others were written
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["event"] for e in events} >= {"start", "progress", "done", "error"}
    assert all("event" in e for e in events)
    err = [e for e in events if e["event"] == "error"]
    assert "broken.jpg" in err[0]["message"]
    start = next(e for e in events if e["event"] == "start")
    assert any("notes.txt" in s for s in start["skipped"])
    p = Predictor(loaded, "cpu")
    for stem in imgs:
        saved = Image.open(out / f"{stem}.png")
        assert saved.mode == "P" and saved.size == (imgs[stem].shape[1], imgs[stem].shape[0])
        # The file holds what the API predicts for the decoded JPEG.
        from training.images import read_image

        expected = p.predict(read_image(src / f"{stem}.jpg")).label
        np.testing.assert_array_equal(np.asarray(saved), expected)
        unc = Image.open(out / "uncertainty" / f"{stem}.png")
        assert unc.mode == "L" and unc.size == saved.size


def test_predict_cli_missing_input(tmp_path: Path, ckpt_path: Path, capsys) -> None:
    rc = predict_main([str(ckpt_path), str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_read_only_images_predict_without_a_warning() -> None:
    # The app's image cache hands out read-only arrays; torch.from_numpy warned on each.
    import warnings

    from training.model_init import fresh_model
    from training.predict import Predictor

    p = Predictor(fresh_model(["a", "b"], "scratch", backbone="mobilenet_v3_large",
                              progress=False), "cpu", tile_size=64)
    small, big = np.zeros((40, 60, 3), np.uint8), np.zeros((90, 120, 3), np.uint8)
    for image in (small, big):
        image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prediction, feats = p.predict_with_features(small, "bb")
        tiled = p.predict(big)  # beyond tile_size: predicted in tiles
    assert prediction.label.shape == (40, 60) and tiled.label.shape == (90, 120)
    assert feats.size == (40, 60)
