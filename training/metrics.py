"""Segmentation metrics from a confusion matrix, as the FCN reference ``score.py`` computes them.

numpy only (no torch), so the desktop app can import it cheaply.

The confusion matrix is accumulated over a whole set, never averaged per image:
rows are the true class, columns the predicted class, and void pixels (255, or
any truth outside ``0..C-1``) are dropped. From it (ARCHITECTURE.md, "Metrics")::

    pixel acc = diag.sum / hist.sum
    mean acc  = nanmean(diag / hist.sum(1))
    IoU       = diag / (hist.sum(1) + hist.sum(0) - diag)
    mean IoU  = nanmean(IoU)
    fw IoU    = sum(freq * IoU) over classes with freq > 0,  freq = hist.sum(1) / hist.sum

NaN conventions: a class absent from the truth has no accuracy; a class absent
from both truth and prediction has no IoU (``None`` in ``per_class_iou``), and
the means skip them. A class that is only predicted has IoU 0 and counts. An
empty matrix (no valid pixel at all) gives NaN for every score, without numpy
warnings; ``Scores.to_dict`` turns NaN into ``None`` (JSON ``null``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

VOID: int = 255
"""Default void label (kept here so this module needs nothing but numpy)."""


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN, without numpy's empty-slice warning, if none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class Scores:
    """Scores of one confusion matrix. Fractions in [0, 1]; NaN where undefined.

    ``per_class_iou[i]`` is ``None`` where class i is absent from both truth and
    prediction (its IoU would be 0/0).
    """

    pixel_acc: float
    mean_acc: float
    mean_iou: float
    fw_iou: float
    per_class_iou: list[float | None]

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready dict: ``pixel_acc``, ``mean_acc``, ``mean_iou``, ``fw_iou`` (NaN -> None),
        ``per_class_iou`` (a list, ``None`` for absent classes), and ``class_names`` when given.
        """
        out: dict[str, Any] = {
            "pixel_acc": _none_if_nan(self.pixel_acc),
            "mean_acc": _none_if_nan(self.mean_acc),
            "mean_iou": _none_if_nan(self.mean_iou),
            "fw_iou": _none_if_nan(self.fw_iou),
            "per_class_iou": list(self.per_class_iou),
        }
        if class_names is not None:
            if len(class_names) != len(self.per_class_iou):
                raise ValueError(f"{len(class_names)} class names for "
                                 f"{len(self.per_class_iou)} classes")
            out["class_names"] = list(class_names)
        return out


def scores_from_hist(hist: np.ndarray) -> Scores:
    """Scores of a ``C x C`` confusion matrix (rows truth, columns prediction)."""
    hist = np.asarray(hist)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1] or hist.shape[0] == 0:
        raise ValueError(f"a confusion matrix must be square and non-empty, got shape {hist.shape}")
    hist = hist.astype(np.float64)
    diag = np.diag(hist)
    truth = hist.sum(1)
    predicted = hist.sum(0)
    total = hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_per_class = diag / truth
        iou = diag / (truth + predicted - diag)
    if total > 0:
        pixel_acc = float(diag.sum() / total)
        freq = truth / total
        present = freq > 0
        fw_iou = float((freq[present] * iou[present]).sum())
    else:  # no valid pixel: nothing to score
        pixel_acc = fw_iou = math.nan
    return Scores(
        pixel_acc=pixel_acc,
        mean_acc=_nanmean(acc_per_class),
        mean_iou=_nanmean(iou),
        fw_iou=fw_iou,
        per_class_iou=[_none_if_nan(float(v)) for v in iou],
    )


class ConfusionMatrix:
    """A ``num_classes x num_classes`` int64 confusion matrix accumulated over many images.

    ``hist[t, p]`` counts pixels of true class t predicted as p. ``hist`` is a
    plain attribute: a caller that reduced a matrix elsewhere (on a GPU, across
    processes) may assign it directly.
    """

    def __init__(self, num_classes: int, void: int = VOID) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.void = int(void)
        self.hist: np.ndarray = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Forget every pixel counted so far."""
        self.hist[...] = 0

    @property
    def total(self) -> int:
        """Number of (non-void) pixels counted."""
        return int(self.hist.sum())

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Count a pair of equally shaped integer label arrays (H x W, N x H x W, any shape).

        Pixels whose truth is ``void`` or outside ``0..C-1`` are dropped. A
        prediction outside ``0..C-1`` anywhere (void pixels included) is a
        ValueError naming the ids: it means the class count is wrong.
        """
        truth = np.asarray(truth)
        pred = np.asarray(pred)
        if truth.shape != pred.shape:
            raise ValueError(f"truth has shape {truth.shape} but prediction {pred.shape}")
        for name, arr in (("truth", truth), ("prediction", pred)):
            if arr.dtype.kind not in "iub":
                raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
        n = self.num_classes
        if pred.size and (int(pred.min()) < 0 or int(pred.max()) >= n):
            bad = np.unique(pred[(pred < 0) | (pred >= n)])
            shown = ", ".join(str(int(v)) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
            raise ValueError(f"predicted class ids {shown} out of range: {n} classes allow "
                             f"0..{n - 1}")
        t = truth.reshape(-1)
        keep = (t >= 0) & (t < n) & (t != self.void)
        t = t[keep].astype(np.int64)
        p = pred.reshape(-1)[keep].astype(np.int64)
        self.hist += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix | np.ndarray) -> None:
        """Add another matrix's counts (e.g. from another worker or process) to this one."""
        hist = other.hist if isinstance(other, ConfusionMatrix) else np.asarray(other)
        if hist.shape != self.hist.shape:
            raise ValueError(f"cannot merge a {hist.shape} confusion matrix into "
                             f"{self.hist.shape}")
        self.hist += hist.astype(np.int64, copy=False)

    def scores(self) -> Scores:
        """Pixel acc, mean acc, mean IoU, fw IoU and per-class IoU of the counts so far."""
        return scores_from_hist(self.hist)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, void={self.void}, "
                f"pixels={self.total})")


def correction_effort(prediction: np.ndarray, label: np.ndarray, void: int = VOID) -> float:
    """Share of pixels whose final (corrected) label differs from the model's prediction.

    Every pixel counts, void included: the denominator is the whole image, and a
    pixel is changed when ``label != prediction``. So a pixel painted ``void``
    over a prediction counts as changed (someone had to paint it), and a pixel
    void in both (a pre-label that already carried void) counts as unchanged.
    ``void`` only names the void id for that rule; since void is compared like
    any other id, it does not change the result. An empty image gives 0.0.
    """
    prediction = np.asarray(prediction)
    label = np.asarray(label)
    if prediction.shape != label.shape:
        raise ValueError(f"prediction has shape {prediction.shape} but label {label.shape}")
    if label.size == 0:
        return 0.0
    return float(np.count_nonzero(prediction != label)) / label.size
