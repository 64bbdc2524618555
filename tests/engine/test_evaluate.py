"""``fcn-eval`` end to end: PNG folders written here, main(argv) run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.synthetic import CLASS_NAMES, save_palette_png, write_voc
from training.evaluate import build_parser, main
from training.metrics import ConfusionMatrix

NUM_CLASSES = 4
SIZES = {"a": (24, 32), "b": (20, 20), "c": (17, 41)}  # stem -> (H, W)


def _pair(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth with 255 and CamVid-style 11 void, and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, NUM_CLASSES, shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 11
    gt[0, :] = 255
    pred = np.where(gt < NUM_CLASSES, gt, 0).astype(np.uint8)
    noise = rng.random(shape) < 0.3
    pred[noise] = rng.integers(0, NUM_CLASSES, int(noise.sum()))
    return gt, pred


def _save_gray(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label, mode="L").save(path)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """gt/ as palette PNGs, pred/ as grayscale PNGs, and the arrays written."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    arrays = {}
    for i, (stem, shape) in enumerate(SIZES.items()):
        gt, pred = _pair(i, shape)
        save_palette_png(gt_dir / f"{stem}.png", gt)
        _save_gray(pred_dir / f"{stem}.png", pred)
        arrays[stem] = (gt, pred)
    assert Image.open(gt_dir / "a.png").mode == "P" and Image.open(pred_dir / "a.png").mode == "L"
    return gt_dir, pred_dir, arrays


def _expected(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    cm = ConfusionMatrix(NUM_CLASSES)
    for gt, pred in arrays.values():
        cm.update(np.where(gt == 11, 255, gt), pred)
    return cm.scores().to_dict()


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_matches_confusion_matrix(folders, capsys) -> None:
    gt_dir, pred_dir, arrays = folders
    rc, out, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11, "--json"])
    assert rc == 0, err
    result = json.loads(out)  # exactly one JSON object on stdout
    expected = _expected(arrays)
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
        assert 0.0 <= result[key] <= 1.0
    assert result["per_class_iou"] == pytest.approx(expected["per_class_iou"], abs=1e-12)
    assert result["num_images"] == 3
    assert result["num_classes"] == NUM_CLASSES and result["num_classes_inferred"] is True
    assert "class_names" not in result


def test_json_with_class_names(folders, capsys, tmp_path) -> None:
    gt_dir, pred_dir, arrays = folders
    names = ["background", "road", "car", "tree"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    rc, out, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11,
                                 "--classes", tmp_path / "classes.txt", "--json"])
    assert rc == 0, err
    result = json.loads(out)
    assert result["class_names"] == names
    assert result["num_classes_inferred"] is False
    assert result["mean_iou"] == pytest.approx(_expected(arrays)["mean_iou"], abs=1e-12)


def test_readable_table(folders, capsys, tmp_path) -> None:
    gt_dir, pred_dir, arrays = folders
    names = ["background", "road", "car", "tree"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    rc, out, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11,
                                 "--classes", tmp_path / "classes.txt"])
    assert rc == 0, err
    expected = _expected(arrays)
    assert "mean IoU" in out and "pixel accuracy" in out and "fw IoU" in out
    assert f"{100 * expected['mean_iou']:.2f}%" in out
    assert f"{100 * expected['pixel_acc']:.2f}%" in out
    for name, iou in zip(names, expected["per_class_iou"], strict=True):
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert f"{100 * iou:.2f}%" in line
    assert "3 image(s), 4 classes" in out


def test_inferred_class_count_is_said(folders, capsys) -> None:
    gt_dir, pred_dir, _ = folders
    rc, out, _ = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11])
    assert rc == 0
    assert "4 classes (inferred" in out
    # Without --void, CamVid's 11 is taken for a class: 12 classes, 4..10 absent, 11 missed.
    rc, out, _ = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--json"])
    result = json.loads(out)
    assert rc == 0 and result["num_classes"] == 12
    assert result["per_class_iou"][4:] == [None] * 7 + [0.0]


def test_num_classes_adds_absent_classes(folders, capsys) -> None:
    gt_dir, pred_dir, arrays = folders
    rc, out, _ = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11,
                               "--num-classes", 6, "--json"])
    assert rc == 0
    result = json.loads(out)
    assert result["per_class_iou"][4:] == [None, None]  # absent: null, skipped by the means
    assert result["mean_iou"] == pytest.approx(_expected(arrays)["mean_iou"], abs=1e-12)


def test_missing_prediction_names_the_file(folders, capsys) -> None:
    gt_dir, pred_dir, _ = folders
    (pred_dir / "b.png").unlink()
    rc, out, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11])
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(pred_dir / "b.png") in err and str(gt_dir / "b.png") in err


def test_size_mismatch_names_both_files_and_sizes(folders, capsys) -> None:
    gt_dir, pred_dir, _ = folders
    _save_gray(pred_dir / "c.png", np.zeros((17, 40), np.uint8))
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11, "--json"])
    assert rc == 2 and err.startswith("error: ")
    assert str(pred_dir / "c.png") in err and str(gt_dir / "c.png") in err
    assert "40x17" in err and "41x17" in err


def test_prediction_out_of_range_names_file_and_ids(folders, capsys) -> None:
    gt_dir, pred_dir, arrays = folders
    pred = arrays["a"][1].copy()
    pred[1, 1], pred[2, 2] = 7, 9
    _save_gray(pred_dir / "a.png", pred)
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11,
                               "--num-classes", NUM_CLASSES])
    assert rc == 2
    assert str(pred_dir / "a.png") in err and "7, 9" in err and "0..3" in err


def test_void_in_prediction_is_an_error_even_when_inferred(folders, capsys) -> None:
    gt_dir, pred_dir, arrays = folders
    pred = arrays["b"][1].copy()
    pred[0, 0] = 255
    _save_gray(pred_dir / "b.png", pred)
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11])
    assert rc == 2 and str(pred_dir / "b.png") in err and "255" in err and "void" in err


def test_ground_truth_out_of_range_names_the_file(folders, capsys) -> None:
    gt_dir, pred_dir, _ = folders
    # Without --void, CamVid's 11 is a class id beyond a 4-class list.
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--num-classes", 4])
    assert rc == 2 and str(gt_dir / "a.png") in err and "11" in err


def test_void_id_inside_the_class_range_is_refused(folders, capsys) -> None:
    gt_dir, pred_dir, _ = folders
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 2,
                               "--num-classes", 4])
    assert rc == 2 and "--void 2" in err


def test_unreadable_and_empty_inputs(folders, capsys, tmp_path) -> None:
    gt_dir, pred_dir, _ = folders
    Image.new("RGB", (32, 24)).save(pred_dir / "a.png")  # a colour PNG is not a label
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11])
    assert rc == 2 and str(pred_dir / "a.png") in err and "'RGB'" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = _run(capsys, ["--gt", tmp_path / "empty", "--pred", pred_dir])
    assert rc == 2 and "no ground-truth PNG" in err
    rc, _, err = _run(capsys, ["--gt", tmp_path / "nowhere", "--pred", pred_dir])
    assert rc == 2 and "not found" in err
    rc, _, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir,
                               "--classes", tmp_path / "nope.txt"])
    assert rc == 2 and "nope.txt" in err


def test_extra_predictions_are_ignored_with_a_note(folders, capsys) -> None:
    gt_dir, pred_dir, arrays = folders
    _save_gray(pred_dir / "extra.png", np.zeros((5, 5), np.uint8))
    rc, out, err = _run(capsys, ["--gt", gt_dir, "--pred", pred_dir, "--void", 11, "--json"])
    assert rc == 0 and "1 prediction(s) without ground truth" in err
    assert json.loads(out)["num_images"] == 3


def test_all_void_ground_truth_gives_nulls(tmp_path, capsys) -> None:
    save_palette_png(tmp_path / "gt" / "x.png", np.full((8, 8), 255, np.uint8))
    _save_gray(tmp_path / "pred" / "x.png", np.zeros((8, 8), np.uint8))
    rc, out, err = _run(capsys, ["--gt", tmp_path / "gt", "--pred", tmp_path / "pred",
                                 "--num-classes", 2, "--json"])
    assert rc == 0, err
    result = json.loads(out)
    assert result["mean_iou"] is None and result["per_class_iou"] == [None, None]
    rc, out, _ = _run(capsys, ["--gt", tmp_path / "gt", "--pred", tmp_path / "pred",
                               "--num-classes", 2])
    assert rc == 0 and "n/a" in out and "every ground-truth pixel is void" in out


@pytest.mark.parametrize("argv", [
    ["--gt", "g"],
    ["--gt", "g", "--pred", "p", "w.pt", "data"],
    ["--gt", "g", "--pred", "p", "--split", "val"],
    ["w.pt"],
    ["w.pt", "data", "--void", "11"],
    [],
])
def test_mixed_or_incomplete_forms_are_usage_errors(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_parser_knows_both_forms() -> None:
    help_text = build_parser().format_help()
    for option in ("--gt", "--pred", "--classes", "--num-classes", "--void", "--json",
                   "--split", "--device", "WEIGHTS DATA"):
        assert option in help_text


# -- form 2: a model on a VOC split -----------------------------------------------------


class _FakePrediction:
    def __init__(self, label: np.ndarray) -> None:
        self.label = label


class _FakePredictor:
    """Predicts class 1 over the left half and the background elsewhere."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names

    def predict(self, image: np.ndarray) -> _FakePrediction:
        label = np.zeros(image.shape[:2], np.uint8)
        label[:, : image.shape[1] // 2] = 1
        return _FakePrediction(label)


def _fake_load(names: list[str]):
    def load(path, device="auto", **kwargs):
        return _FakePredictor(list(names))
    return load


def test_model_on_voc_split(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("torch")
    from training import predict, voc

    root = tmp_path / "voc"
    ids = write_voc(root, n=5, n_val=2)
    monkeypatch.setattr(predict.Predictor, "load", staticmethod(_fake_load(CLASS_NAMES)))
    rc, out, err = _run(capsys, ["model.pt", root, "--json", "--device", "cpu"])
    assert rc == 0, err
    result = json.loads(out)
    cm = ConfusionMatrix(len(CLASS_NAMES))
    for image_id in ids[-2:]:
        label = voc.read_label(voc.label_path(root, image_id))
        cm.update(label, _FakePredictor(CLASS_NAMES).predict(label[..., None]).label)
    expected = cm.scores().to_dict(CLASS_NAMES)
    assert result["num_images"] == 2 and result["class_names"] == CLASS_NAMES
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-12)
    assert result["per_class_iou"] == pytest.approx(expected["per_class_iou"], abs=1e-12)

    rc, out, _ = _run(capsys, ["model.pt", root, "--split", "train"])
    assert rc == 0 and "3 image(s), 3 classes" in out and "disc" in out


def test_model_classes_must_match_the_dataset(tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("torch")
    from training import predict

    root = tmp_path / "voc"
    write_voc(root, n=3, n_val=1)
    monkeypatch.setattr(predict.Predictor, "load",
                        staticmethod(_fake_load(["background", "cat", "dog"])))
    rc, out, err = _run(capsys, ["model.pt", root])
    assert rc == 2 and out == ""
    assert "'cat', 'dog'" in err and "'box', 'disc'" in err


@pytest.mark.slow
def test_real_checkpoint_on_voc_split(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    # checkpoint.load_model needs training.weights (state-dict import), written separately.
    pytest.importorskip("training.weights")
    from training import preprocess, voc
    from training.checkpoint import make_checkpoint, save_checkpoint
    from training.images import read_image
    from training.model import ModelConfig, build_model
    from training.predict import Predictor

    root = tmp_path / "voc"
    ids = write_voc(root, n=3, n_val=1, h=40, w=48)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, arch="fcn32s", fc_channels=64))
    with torch.no_grad():
        model.score_fr.weight.normal_(0, 0.05)
    weights = tmp_path / "model.pt"
    save_checkpoint(weights, make_checkpoint(model, CLASS_NAMES, preprocess.TORCHVISION))
    rc, out, err = _run(capsys, [weights, root, "--json", "--device", "cpu"])
    assert rc == 0, err
    predictor = Predictor.load(weights, device="cpu")
    cm = ConfusionMatrix(3)
    image = read_image(voc.image_path(root, ids[-1]))
    cm.update(voc.read_label(voc.label_path(root, ids[-1])), predictor.predict(image).label)
    assert json.loads(out) == {**cm.scores().to_dict(CLASS_NAMES), "num_images": 1,
                               "num_classes": 3, "num_classes_inferred": False}
