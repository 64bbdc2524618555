"""``fcn-eval``: score label PNGs against ground truth, or a model on a VOC split.

Two forms::

    fcn-eval --gt DIR --pred DIR [--classes FILE | --num-classes N] [--void N] [--json]
    fcn-eval WEIGHTS DATA [--split val] [--device auto] [--json]

The first pairs ``gt/<stem>.png`` with ``pred/<stem>.png`` (palette or grayscale
class-id PNGs); the second runs a model over a VOC dataset's split. Both
accumulate one confusion matrix over the whole set and report the reference
FCN scores (see ``training.metrics``). ``--json`` prints exactly one JSON object
on stdout; errors print ``error: <message>`` on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, FCNError, LabelError
from .images import read_label_image
from .metrics import ConfusionMatrix, Scores
from .palette import VOID

MAX_CLASSES = 255
"""Class ids are 0..254 in a uint8 label map; 255 is void."""


@dataclass
class EvalResult:
    """What an evaluation found: the scores and how they were obtained."""

    scores: Scores
    hist: np.ndarray
    num_images: int
    num_classes: int
    class_names: list[str] | None
    classes_from: str
    """Where the class count came from, for people: a file, an option, a model or inferred."""
    inferred: bool = False
    unmatched_predictions: list[Path] = field(default_factory=list)
    void_ids: tuple[int, ...] = (VOID,)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: scores (fractions, null for NaN) and their context."""
        out = self.scores.to_dict(self.class_names)
        out["num_images"] = self.num_images
        out["num_classes"] = self.num_classes
        out["num_classes_inferred"] = self.inferred
        return out


# -- form 1: folders of PNGs ---------------------------------------------------------------


def read_class_file(path: str | Path) -> list[str]:
    """Class names from a file with one name per line (line i is class i)."""
    from .voc import parse_class_names  # same rules as a dataset's class_names.txt

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read class names ({exc.strerror or exc})") from None
    return parse_class_names(text, path)


def _png_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(folder, f"{what} folder not found")
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file())


def _ids_text(ids: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in ids[:20]) + (" ..." if ids.size > 20 else "")


def _check_ids(path: Path, present: np.ndarray, num_classes: int, what: str,
               void_ok: bool) -> None:
    """LabelError naming ``path`` when ids in ``present`` (sorted unique ids) exceed the classes."""
    bad = present[(present >= num_classes) & ~((present == VOID) & void_ok)]
    if bad.size:
        allowed = f"0..{num_classes - 1}" + (f" and {VOID} (void)" if void_ok else "")
        hint = "" if void_ok else "; a prediction holds class ids only, never void"
        raise LabelError(path, f"{what} class ids {_ids_text(bad)} out of range: "
                               f"{num_classes} classes allow {allowed}{hint}")


def _check_void(void: int | None, num_classes: int, why: str) -> None:
    if void is not None and void != VOID and void < num_classes:
        raise DataError(None, f"--void {void} is a class id: {num_classes} classes ({why}) "
                              f"use ids 0..{num_classes - 1}")


def evaluate_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    void: int | None = None,
    classes_from: str | None = None,
) -> EvalResult:
    """Score every ``pred_dir/<stem>.png`` against ``gt_dir/<stem>.png``.

    The class count is ``len(class_names)``, else ``num_classes``, else inferred
    as the largest id seen in either folder (void excluded) + 1. ``void`` is an
    extra ground-truth id that counts as void besides 255 (CamVid's 11).
    Predictions must hold class ids only (no void). Every ground-truth file
    needs its prediction; predictions without ground truth are ignored and
    listed in ``unmatched_predictions``.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if class_names is not None:
        class_names = list(class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise DataError(None, f"--num-classes {num_classes} but {len(class_names)} class "
                                  "names were given")
        num_classes = len(class_names)
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise DataError(None, f"the number of classes must be 1..{MAX_CLASSES}, not {num_classes}")
    if void is not None and not 0 <= void <= VOID:
        raise DataError(None, f"--void must be a label value 0..{VOID}, not {void}")
    if num_classes is not None:
        _check_void(void, num_classes, classes_from or "given")

    gt_files = _png_files(gt_dir, "ground-truth")
    if not gt_files:
        raise DataError(gt_dir, "no ground-truth PNG files in this folder")
    pred_files = {p.stem: p for p in reversed(_png_files(pred_dir, "prediction"))}
    missing = [g for g in gt_files if g.stem not in pred_files]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(pred_dir / f"{missing[0].stem}.png",
                        f"missing: no prediction for ground truth {missing[0]}{more}")
    gt_stems = {g.stem for g in gt_files}
    unmatched = sorted(p for stem, p in pred_files.items() if stem not in gt_stems)

    void_ids = (VOID,) if void is None or void == VOID else (void, VOID)
    # Accumulate over all 256 label values so the class count may be inferred at the
    # end from one read of each file; rows >= C stay empty once the ids are checked.
    full = ConfusionMatrix(VOID + 1, void=VOID)
    pred_ids: list[tuple[Path, np.ndarray]] = []
    max_gt = max_pred = -1
    for gt_path in gt_files:
        pred_path = pred_files[gt_path.stem]
        gt, _ = read_label_image(gt_path)
        pred, _ = read_label_image(pred_path)
        if gt.shape != pred.shape:
            (gh, gw), (ph, pw) = gt.shape, pred.shape
            raise LabelError(pred_path, f"prediction is {pw}x{ph} (WxH) but ground truth "
                                        f"{gt_path} is {gw}x{gh}")
        if void is not None and void != VOID:
            gt = np.where(gt == void, np.uint8(VOID), gt)
        gt_present = np.flatnonzero(np.bincount(gt.reshape(-1), minlength=256))
        pred_present = np.flatnonzero(np.bincount(pred.reshape(-1), minlength=256))
        if num_classes is not None:  # fail on the first bad file, before reading the rest
            _check_ids(gt_path, gt_present, num_classes, "ground-truth", void_ok=True)
            _check_ids(pred_path, pred_present, num_classes, "predicted", void_ok=False)
        else:
            pred_ids.append((pred_path, pred_present))
            max_gt = max(max_gt, int(gt_present[gt_present != VOID].max(initial=-1)))
            # A void value in a prediction is an error reported below, not a class.
            classes = pred_present[~np.isin(pred_present, void_ids)]
            max_pred = max(max_pred, int(classes.max(initial=-1)))
        full.update(gt, pred)

    inferred = num_classes is None
    if num_classes is None:
        num_classes = max(max_gt, max_pred, 0) + 1
        classes_from = ("inferred as the largest class id seen + 1; "
                        "pass --classes or --num-classes to fix it")
        _check_void(void, num_classes, "inferred")
        for pred_path, present in pred_ids:  # only void values can be out of range now
            _check_ids(pred_path, present, num_classes, "predicted", void_ok=False)
    cm = ConfusionMatrix(num_classes)
    cm.hist = full.hist[:num_classes, :num_classes].copy()
    return EvalResult(
        scores=cm.scores(), hist=cm.hist, num_images=len(gt_files), num_classes=num_classes,
        class_names=class_names, classes_from=classes_from or "given", inferred=inferred,
        unmatched_predictions=unmatched, void_ids=void_ids,
    )


# -- form 2: a model on a VOC split --------------------------------------------------------


def evaluate_model(
    weights: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Run the model at ``weights`` over split ``split`` of the VOC dataset at ``data``.

    The model's class names must equal the dataset's (``class_names.txt``). An
    imported state dict, which carries no names, takes the dataset's.
    ``progress(done, total)`` is called after each image.
    """
    # Imported here: torch and the dataset reader are only needed by this form.
    from . import voc
    from .images import read_image
    from .predict import Predictor

    root = Path(data)
    class_names = voc.read_class_names(root)
    ids = voc.read_split(root, split)
    if not ids:
        raise DataError(voc.split_path(root, split), f"split {split!r} lists no images")
    predictor = Predictor.load(weights, device=device, classes=class_names)
    model_names = list(predictor.class_names)
    if model_names != class_names:
        raise DataError(None, f"the model {weights} has classes {model_names} but the dataset "
                              f"{root} has {class_names}")
    cm = ConfusionMatrix(len(class_names))
    for done, image_id in enumerate(ids, 1):
        image = read_image(voc.image_path(root, image_id))
        h, w = image.shape[:2]
        label = voc.read_label(voc.label_path(root, image_id), len(class_names), (w, h))
        cm.update(label, predictor.predict(image).label)
        if progress is not None:
            progress(done, len(ids))
    return EvalResult(
        scores=cm.scores(), hist=cm.hist, num_images=len(ids), num_classes=len(class_names),
        class_names=class_names, classes_from="the model's, equal to the dataset's",
    )


# -- command line ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``fcn-eval`` argument parser (both forms)."""
    p = argparse.ArgumentParser(
        prog="fcn-eval",
        description="Score segmentation predictions: pixel accuracy, mean accuracy, mean IoU "
                    "and frequency-weighted IoU over one confusion matrix for the whole set.",
        usage="fcn-eval --gt DIR --pred DIR [--classes FILE | --num-classes N] [--void N] "
              "[--json]\n       fcn-eval WEIGHTS DATA [--split SPLIT] [--device DEVICE] [--json]",
    )
    p.add_argument("weights", nargs="?", type=Path,
                   help="model checkpoint or state dict (second form)")
    p.add_argument("data", nargs="?", type=Path, help="VOC dataset folder (second form)")
    files = p.add_argument_group("scoring label PNGs (first form)")
    files.add_argument("--gt", type=Path, help="folder of ground-truth label PNGs")
    files.add_argument("--pred", type=Path,
                       help="folder of predicted label PNGs, paired with --gt by file name")
    files.add_argument("--classes", type=Path,
                       help="class names file, one per line (line i is class i)")
    files.add_argument("--num-classes", type=int,
                       help="number of classes when there is no names file (default: the "
                            "largest id seen + 1)")
    files.add_argument("--void", type=int,
                       help="ground-truth value that is void besides 255 (CamVid: 11)")
    model = p.add_argument_group("scoring a model on a dataset (second form)")
    model.add_argument("--split", help="split list to evaluate (default: val)")
    model.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (fractions in [0, 1], null where undefined)")
    return p


def _check_form(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """True for the folders form; parser.error (exit 2) on a mixture of the two."""
    folders = args.gt is not None or args.pred is not None
    if folders:
        if args.gt is None or args.pred is None:
            parser.error("--gt and --pred go together")
        if args.weights is not None:
            parser.error("give either --gt/--pred or WEIGHTS DATA, not both")
        if args.split is not None or args.device is not None:
            parser.error("--split and --device are for WEIGHTS DATA, not --gt/--pred")
        return True
    if args.weights is None or args.data is None:
        parser.error("give --gt DIR --pred DIR, or WEIGHTS DATA")
    for option, value in (("--classes", args.classes), ("--num-classes", args.num_classes),
                          ("--void", args.void)):
        if value is not None:
            parser.error(f"{option} is for --gt/--pred; a model brings its own classes")
    return False


def _percent(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{100 * value:6.2f}%"


def format_report(result: EvalResult) -> str:
    """The readable table: the four scores as percentages, then IoU per class."""
    s = result.scores
    total = int(result.hist.sum())
    voids = " and ".join(str(v) for v in result.void_ids)
    lines = [
        f"{result.num_images} image(s), {result.num_classes} classes ({result.classes_from})",
        f"{total} pixels scored; void ({voids} in the ground truth) left out",
        "",
        f"pixel accuracy  {_percent(s.pixel_acc)}",
        f"mean accuracy   {_percent(s.mean_acc)}",
        f"mean IoU        {_percent(s.mean_iou)}",
        f"fw IoU          {_percent(s.fw_iou)}",
        "",
    ]
    names = result.class_names or [f"class {i}" for i in range(result.num_classes)]
    width = max(len("class"), *(len(n) for n in names))
    lines.append(f" id  {'class':<{width}}  IoU")
    for i, (name, iou) in enumerate(zip(names, s.per_class_iou, strict=True)):
        shown = "   n/a  (absent from ground truth and prediction)" if iou is None \
            else _percent(iou)
        lines.append(f"{i:3d}  {name:<{width}}  {shown}")
    if total == 0:
        lines.append("\nno pixel was scored: every ground-truth pixel is void")
    return "\n".join(lines)


def _progress(done: int, total: int) -> None:
    print(f"\revaluated {done}/{total} images", end="\n" if done == total else "",
          file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fcn-eval``. 0 on success, 2 on a usage or data error (``error: ...`` on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    folders = _check_form(parser, args)
    try:
        if folders:
            names = read_class_file(args.classes) if args.classes is not None else None
            source = (f"from {args.classes}" if names is not None
                      else "from --num-classes" if args.num_classes is not None else None)
            result = evaluate_folders(args.gt, args.pred, class_names=names,
                                      num_classes=args.num_classes, void=args.void,
                                      classes_from=source)
        else:
            result = evaluate_model(args.weights, args.data, split=args.split or "val",
                                    device=args.device or "auto",
                                    progress=_progress if sys.stderr.isatty() else None)
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.unmatched_predictions:
        n = len(result.unmatched_predictions)
        print(f"note: {n} prediction(s) without ground truth ignored, e.g. "
              f"{result.unmatched_predictions[0]}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), allow_nan=False))
    else:
        print(format_report(result))
    return 0
