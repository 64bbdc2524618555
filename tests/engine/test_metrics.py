"""training.metrics against confusion matrices worked out by hand, and the reference score.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest

from training.metrics import ConfusionMatrix, Scores, correction_effort, scores_from_hist

# The hand-worked 3-class example. (truth, prediction) pairs and how often each occurs:
#
#                 pred 0  pred 1  pred 2 | row sum (truth)
#     truth 0        3       1       0   |   4
#     truth 1        1       2       1   |   4
#     truth 2        0       0       2   |   2
#     col sum        4       3       3   |  10 pixels, diagonal 3 + 2 + 2 = 7
#
# pixel acc = 7/10
# acc per class = 3/4, 2/4, 2/2           -> mean acc = (3/4 + 1/2 + 1) / 3 = 3/4
# IoU 0 = 3 / (4 + 4 - 3) = 3/5
# IoU 1 = 2 / (4 + 3 - 2) = 2/5
# IoU 2 = 2 / (2 + 3 - 2) = 2/3           -> mean IoU = (3/5 + 2/5 + 2/3) / 3 = 5/9
# freq = 4/10, 4/10, 2/10                 -> fw IoU = 2/5*3/5 + 2/5*2/5 + 1/5*2/3
#                                                   = 6/25 + 4/25 + 2/15 = 8/15
PAIRS = [(0, 0)] * 3 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 2 + [(1, 2)] + [(2, 2)] * 2
HIST = np.array([[3, 1, 0], [1, 2, 1], [0, 0, 2]])
EXPECTED = {
    "pixel_acc": F(7, 10),
    "mean_acc": F(3, 4),
    "mean_iou": F(5, 9),
    "fw_iou": F(8, 15),
    "per_class_iou": [F(3, 5), F(2, 5), F(2, 3)],
}


def _example(void_pixels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The example as a 2-row image, with optional void pixels (predicted as anything)."""
    truth = [t for t, _ in PAIRS] + [255] * void_pixels
    pred = [p for _, p in PAIRS] + [i % 3 for i in range(void_pixels)]
    n = len(truth)
    shape = (2, n // 2) if n % 2 == 0 else (1, n)
    return (np.array(truth, np.uint8).reshape(shape), np.array(pred, np.uint8).reshape(shape))


def _assert_scores(scores: Scores, expected: dict) -> None:
    for key in ("pixel_acc", "mean_acc", "mean_iou", "fw_iou"):
        assert getattr(scores, key) == pytest.approx(float(expected[key]), abs=1e-12), key
    assert len(scores.per_class_iou) == len(expected["per_class_iou"])
    for got, want in zip(scores.per_class_iou, expected["per_class_iou"], strict=True):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(float(want), abs=1e-12)


def _reference_scores(hist: np.ndarray) -> tuple[float, float, float, float]:
    """The FCN reference (score.py / pytorch-fcn label_accuracy_score), verbatim formulas."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
        mean_iu = np.nanmean(iu)
        freq = hist.sum(axis=1) / hist.sum()
        fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return float(acc), float(acc_cls), float(mean_iu), float(fwavacc)


def test_hand_computed_three_class_example() -> None:
    truth, pred = _example()
    cm = ConfusionMatrix(3)
    cm.update(truth, pred)
    np.testing.assert_array_equal(cm.hist, HIST)
    assert cm.hist.dtype == np.int64
    _assert_scores(cm.scores(), EXPECTED)
    _assert_scores(scores_from_hist(HIST), EXPECTED)


def test_void_pixels_are_dropped() -> None:
    truth, pred = _example(void_pixels=6)
    cm = ConfusionMatrix(3)
    cm.update(truth, pred)
    np.testing.assert_array_equal(cm.hist, HIST)
    assert cm.total == 10
    _assert_scores(cm.scores(), EXPECTED)


def test_custom_void_and_out_of_range_truth_are_dropped() -> None:
    truth, pred = _example()
    # CamVid style: 11 is void; 7 is outside 0..C-1 and dropped too; 255 is then a plain
    # out-of-range truth value, also dropped.
    truth = np.concatenate([truth.ravel(), [11, 7, 255]])
    pred = np.concatenate([pred.ravel(), [0, 1, 2]])
    cm = ConfusionMatrix(3, void=11)
    cm.update(truth, pred)
    np.testing.assert_array_equal(cm.hist, HIST)
    # Negative truth in a signed array is dropped as well.
    cm.update(np.array([-1, -5], np.int32), np.array([0, 1], np.int32))
    np.testing.assert_array_equal(cm.hist, HIST)


def test_any_shape_and_integer_dtype() -> None:
    truth, pred = _example()
    for t, p in ((truth.ravel(), pred.ravel()), (truth[None], pred[None]),
                 (truth.astype(np.int64), pred.astype(np.int16))):
        cm = ConfusionMatrix(3)
        cm.update(t, p)
        np.testing.assert_array_equal(cm.hist, HIST)


def test_class_absent_from_truth_and_prediction_is_none_and_skipped() -> None:
    # Class 3 never occurs: its IoU and accuracy are 0/0 and the means ignore it,
    # so every score equals the 3-class example's.
    truth, pred = _example()
    cm = ConfusionMatrix(4)
    cm.update(truth, pred)
    scores = cm.scores()
    _assert_scores(scores, {**EXPECTED, "per_class_iou": [*EXPECTED["per_class_iou"], None]})
    assert scores.to_dict()["per_class_iou"][3] is None


def test_class_only_predicted_counts_zero_iou_but_no_accuracy() -> None:
    # One extra pixel of truth 0 predicted as class 3 (never in the truth):
    #             p0 p1 p2 p3 | row
    #   t0         3  1  0  1 |  5
    #   t1         1  2  1  0 |  4
    #   t2         0  0  2  0 |  2
    #   t3         0  0  0  0 |  0        11 pixels, diagonal 7
    # pixel acc = 7/11; acc = 3/5, 2/4, 2/2, NaN -> mean acc = (3/5 + 1/2 + 1) / 3 = 7/10
    # IoU = 3/(5+4-3) = 1/2, 2/5, 2/3, 0/(0+1-0) = 0 -> mean IoU = (1/2 + 2/5 + 2/3 + 0) / 4
    #     = (15 + 12 + 20) / 30 / 4 = 47/120
    # freq = 5/11, 4/11, 2/11 (class 3 has none) -> fw IoU = 5/11*1/2 + 4/11*2/5 + 2/11*2/3
    #     = (75 + 48 + 40) / 330 = 163/330
    hist = np.array([[3, 1, 0, 1], [1, 2, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]])
    _assert_scores(scores_from_hist(hist), {
        "pixel_acc": F(7, 11), "mean_acc": F(7, 10), "mean_iou": F(47, 120),
        "fw_iou": F(163, 330), "per_class_iou": [F(1, 2), F(2, 5), F(2, 3), F(0)],
    })


def test_matches_the_reference_formulas_on_random_data() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 6, (4, 30, 40)).astype(np.uint8)
    truth[truth == 5] = 255  # some void
    pred = rng.integers(0, 5, (4, 30, 40)).astype(np.uint8)
    pred[pred == 3] = 0  # class 3 never predicted
    cm = ConfusionMatrix(7)  # classes 5 and 6 absent from both
    cm.update(truth, pred)
    s = cm.scores()
    ref = _reference_scores(cm.hist)
    assert (s.pixel_acc, s.mean_acc, s.mean_iou, s.fw_iou) == pytest.approx(ref, abs=1e-12)
    assert s.per_class_iou[5] is None and s.per_class_iou[6] is None


def test_merge_equals_one_big_update() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 5, (6, 20, 20)).astype(np.uint8)
    truth[truth == 4] = 255
    pred = rng.integers(0, 4, (6, 20, 20)).astype(np.uint8)
    whole = ConfusionMatrix(4)
    whole.update(truth, pred)
    parts = [ConfusionMatrix(4) for _ in range(3)]
    for i in range(6):
        parts[i % 3].update(truth[i], pred[i])
    merged = ConfusionMatrix(4)
    for part in parts:
        merged.merge(part)
    np.testing.assert_array_equal(merged.hist, whole.hist)
    merged.merge(np.zeros((4, 4), np.int64))  # a reduced array merges too
    np.testing.assert_array_equal(merged.hist, whole.hist)
    assert merged.scores() == whole.scores()
    with pytest.raises(ValueError, match="merge"):
        merged.merge(ConfusionMatrix(3))


def test_prediction_out_of_range_is_an_error() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"predicted class ids 3, 255 out of range.*0\.\.2"):
        cm.update(np.zeros((2, 2), np.uint8), np.array([[0, 3], [255, 1]], np.uint8))
    with pytest.raises(ValueError, match="-1"):
        cm.update(np.zeros(2, np.int32), np.array([0, -1], np.int32))
    # Even where the truth is void: a prediction holds class ids only.
    with pytest.raises(ValueError, match="out of range"):
        cm.update(np.array([255], np.uint8), np.array([255], np.uint8))
    assert cm.total == 0  # nothing was counted by the failed updates


def test_bad_arguments() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        cm.update(np.zeros(3, np.float32), np.zeros(3, np.uint8))
    with pytest.raises(ValueError):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="square"):
        scores_from_hist(np.zeros((2, 3)))


def test_empty_matrix_gives_nan_without_warnings() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = cm.scores()
    assert all(math.isnan(v) for v in (s.pixel_acc, s.mean_acc, s.mean_iou, s.fw_iou))
    assert s.per_class_iou == [None, None, None]
    d = s.to_dict()
    assert d == {"pixel_acc": None, "mean_acc": None, "mean_iou": None, "fw_iou": None,
                 "per_class_iou": [None, None, None]}
    json.dumps(d, allow_nan=False)  # valid JSON: no NaN literal


def test_scores_do_not_warn_with_absent_classes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            scores_from_hist(np.array([[5, 0, 0], [0, 0, 0], [2, 0, 0]]))


def test_to_dict_keys_fractions_and_class_names() -> None:
    s = scores_from_hist(HIST)
    d = s.to_dict(["bg", "a", "b"])
    assert set(d) == {"pixel_acc", "mean_acc", "mean_iou", "fw_iou", "per_class_iou",
                      "class_names"}
    assert d["class_names"] == ["bg", "a", "b"]
    assert d["mean_iou"] == pytest.approx(5 / 9)
    assert all(0.0 <= v <= 1.0 for v in d["per_class_iou"])
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert "class_names" not in s.to_dict()
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        s.to_dict(["bg", "a"])


def test_hist_may_be_assigned_after_an_external_reduction() -> None:
    cm = ConfusionMatrix(3)
    cm.hist = HIST.astype(np.int64)
    _assert_scores(cm.scores(), EXPECTED)


def test_correction_effort() -> None:
    prediction = np.array([[0, 0, 1, 1, 2], [2, 2, 0, 0, 1]], np.uint8)
    label = prediction.copy()
    assert correction_effort(prediction, label) == 0.0
    label[0, 0] = 1  # a class changed
    label[1, 4] = 0  # another
    label[0, 2] = 255  # painted void: counts as changed
    assert correction_effort(prediction, label) == pytest.approx(3 / 10)
    # A pixel void in both (a pre-label that carried void) is unchanged.
    both = prediction.copy()
    both[0, 0] = 255
    assert correction_effort(both, both) == 0.0
    assert correction_effort(np.zeros((0, 3), np.uint8), np.zeros((0, 3), np.uint8)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        correction_effort(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_metrics_module_imports_numpy_only() -> None:
    code = ("import sys, training.metrics; "
            "bad = [m for m in ('torch', 'PySide6', 'fcn_studio') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
