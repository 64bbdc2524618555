"""``fcn-simulate DATA``: replay a labelling session and measure how much the model does.

The simulated person opens the dataset's labelled images one by one in the
image list's order (sorted ids), gets the model's prediction, corrects it to
the saved label, and saves; the model then learns as asked:

- ``off``: never (the baseline: the starting model alone);
- ``instant``: the head learns on cached features after every save
  (:mod:`training.instant`, the same code as the app's worker);
- ``finetune``: the whole network is fine-tuned for ``--finetune-budget``
  seconds after every ``--finetune-every`` saves (the app's Fine-tune);
- ``both``: instant learning, plus the periodic fine-tune, after which instant
  learning continues on the new backbone.

Correction effort of an image = the share of its non-void pixels where the
prediction differs from the saved label (what the app's Correction Effort dock
plots). DATA is a VOC folder (``class_names.txt``, ``JPEGImages``,
``SegmentationClass``) or a CamVid-style folder (``classes.txt``, ``train/`` +
``trainannot/``, ``val/`` + ``valannot/``, void 11).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import voc
from .errors import DataError, FCNError
from .palette import VOID

LEARN_MODES = ("off", "instant", "finetune", "both")


@dataclass
class SimConfig:
    data: str
    learn: str = "instant"
    init: str = "scratch"  # imagenet | scratch | PATH
    arch: str = "fcn8s"
    backbone: str = "vgg16"
    fc_channels: int = 4096
    block: int = 10
    finetune_every: int = 10
    finetune_budget: float = 180.0
    # A fixed step count instead of the budget: the replay no longer depends on how fast
    # the machine is (a 3-minute fine-tune is 300 steps on one CPU and 900 on another).
    finetune_iters: int | None = None
    finetune_lr: float | None = None  # None: fcn-train's default for the backbone's start
    learn_budget: float = 1.5
    learn_lr: float = 1e-3
    images: int | None = None
    max_side: int | None = None
    device: str = "auto"
    seed: int = 0
    json: bool = False

    def check(self) -> None:
        """argparse-style problems, each naming its option."""
        if self.learn not in LEARN_MODES:
            raise ValueError(f"--learn must be one of {', '.join(LEARN_MODES)}, not {self.learn!r}")
        for name in ("block", "finetune_every", "fc_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("finetune_budget", "learn_budget", "finetune_lr", "learn_lr"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number, not {v}")
        if self.images is not None and self.images < 1:
            raise ValueError("--images must be at least 1")
        if self.finetune_iters is not None and self.finetune_iters < 1:
            raise ValueError("--finetune-iters must be at least 1")
        if self.max_side is not None and self.max_side < 32:
            raise ValueError("--max-side must be at least 32 pixels")
        from .backbones import get_backbone

        if self.fc_channels != 4096 and not get_backbone(self.backbone).has_fc:
            raise ValueError(f"--fc-channels: --backbone {self.backbone} has no fc6/fc7 "
                             "(only vgg16, vgg16_bn and alexnet have)")


@dataclass
class SimResult:
    ids: list[str] = field(default_factory=list)
    effort: list[float] = field(default_factory=list)
    predict_s: list[float] = field(default_factory=list)
    learn_s: list[float | None] = field(default_factory=list)
    finetunes: list[dict[str, Any]] = field(default_factory=list)

    def per_block(self, block: int) -> list[float]:
        return [float(np.mean(self.effort[i : i + block])) for i in range(0, len(self.effort), block)]


# -- the dataset -----------------------------------------------------------------------------


def _is_camvid(root: Path) -> bool:
    return (root / "classes.txt").is_file() and any(
        (root / f"{s}annot").is_dir() for s in ("train", "val"))


def prepare_workspace(data: str | Path, work: Path, max_side: int | None,
                      limit: int | None) -> tuple[list[str], list[str]]:
    """A VOC copy of DATA's labelled images in ``work`` (scaled to ``max_side``).

    Returns the class names and the labelled ids in the image list's order. The
    copy keeps the source untouched (fine-tuning writes its run folders there).
    """
    root = Path(data)
    if not root.is_dir():
        raise DataError(root, "not a folder")
    if _is_camvid(root):
        from .id_masks import import_camvid

        src = work / "imported"
        import_camvid(root, src)
    else:
        src = root
    names = voc.read_class_names(src)
    ids = voc.labelled_ids(src)
    if not ids:
        raise DataError(src, "no labelled images: the simulator replays saved labels "
                             f"({voc.label_path(src, '<id>').parent} is empty or missing)")
    ids = sorted(ids)[:limit] if limit else sorted(ids)
    voc.write_class_names(work, names)
    from .images import read_image

    for image_id in ids:
        image = read_image(voc.image_path(src, image_id))
        h, w = image.shape[:2]
        label = voc.read_label(voc.label_path(src, image_id), len(names), image_size=(w, h))
        image, label = _scaled(image, label, max_side)
        _write_pair(work, image_id, image, label)
    return names, ids


def _scaled(image: np.ndarray, label: np.ndarray, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    h, w = label.shape
    if max_side is None or max(h, w) <= max_side:
        return image, label
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    lab = np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))
    return img, lab


def _write_pair(work: Path, image_id: str, image: np.ndarray, label: np.ndarray) -> None:
    from PIL import Image

    (work / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (work / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    # PNG, not JPEG: the replayed image must be exactly the one the label fits.
    Image.fromarray(image).save(work / "JPEGImages" / f"{image_id}.png")
    voc.write_label(voc.label_path(work, image_id), label)


def correction_effort(prediction: np.ndarray, label: np.ndarray) -> float:
    """Share of non-void pixels of ``label`` that the prediction gets wrong (0 when all void)."""
    valid = label != VOID
    n = int(valid.sum())
    return float((prediction[valid] != label[valid]).sum()) / n if n else 0.0


# -- the session -------------------------------------------------------------------------------


class Simulator:
    """Runs one replay; ``emit`` gets one dict per image, fine-tune and the summary."""

    def __init__(self, cfg: SimConfig, work: Path, names: list[str], out: TextIO) -> None:
        self.cfg = cfg
        self.work = work
        self.names = names
        self.out = out
        self.result = SimResult()

    def emit(self, record: dict[str, Any]) -> None:
        if self.cfg.json:
            self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        else:
            self.out.write(_human(record) + "\n")
        self.out.flush()

    def _start_model(self):  # -> LoadedModel
        from .checkpoint import adapt_classes, load_model
        from .model_init import fresh_model

        cfg = self.cfg
        if cfg.init in ("imagenet", "scratch"):
            import torch

            torch.manual_seed(cfg.seed)
            return fresh_model(self.names, cfg.init, arch=cfg.arch, backbone=cfg.backbone,
                               fc_channels=cfg.fc_channels, progress=not cfg.json)
        loaded = load_model(cfg.init)
        return adapt_classes(loaded, self.names, False, cfg.init)

    def run(self, ids: list[str]) -> SimResult:
        from .feature_cache import FeatureCache
        from .images import read_image
        from .instant import InstantLearner
        from .predict import Predictor

        cfg = self.cfg
        loaded = self._start_model()
        predictor = Predictor(loaded, cfg.device)
        instant = cfg.learn in ("instant", "both")
        learner = InstantLearner(predictor, FeatureCache(), time_budget=cfg.learn_budget,
                                 lr=cfg.learn_lr, seed=cfg.seed)
        self.emit({"event": "start", "images": len(ids), "learn": cfg.learn, "init": cfg.init,
                   "classes": len(self.names), "device": str(predictor.device),
                   "finetune_iters": cfg.finetune_iters,
                   "finetune_budget": None if cfg.finetune_iters else cfg.finetune_budget,
                   "model": loaded.config.to_dict()})

        def image_of(key: str) -> np.ndarray:
            return read_image(voc.image_path(self.work, key))

        saved: list[str] = []
        for i, key in enumerate(ids):
            image = image_of(key)
            h, w = image.shape[:2]
            label = voc.read_label(voc.label_path(self.work, key), len(self.names), image_size=(w, h))
            t0 = time.perf_counter()
            pred = learner.predict(key, image, uncertainty=None) if instant else \
                learner.predictor.predict(image)
            predict_s = time.perf_counter() - t0
            effort = correction_effort(pred.label, label)
            saved.append(key)
            learn_s = None
            report = None
            if instant:
                learner.add_label(key, label)
                report = learner.learn(reload=image_of)
                learn_s = report.seconds
            r = self.result
            r.ids.append(key)
            r.effort.append(effort)
            r.predict_s.append(predict_s)
            r.learn_s.append(learn_s)
            self.emit({"event": "image", "index": i + 1, "id": key, "effort": round(effort, 4),
                       "predict_s": round(predict_s, 3),
                       "learn_s": None if learn_s is None else round(learn_s, 3),
                       "learned_from": report.images if report else None,
                       "learn_steps": report.steps if report else None})
            if cfg.learn in ("finetune", "both") and len(saved) % cfg.finetune_every == 0 \
                    and i + 1 < len(ids):
                predictor = self._finetune(learner, saved, image_of if instant else None)
        summary = {"event": "summary", "learn": cfg.learn, "images": len(r.effort),
                   "block": cfg.block, "effort": [round(e, 4) for e in r.effort],
                   "effort_per_block": [round(e, 4) for e in r.per_block(cfg.block)],
                   "mean_effort": round(float(np.mean(r.effort)), 4) if r.effort else None,
                   "predict_s": [round(s, 3) for s in r.predict_s],
                   "learn_s": [None if s is None else round(s, 3) for s in r.learn_s],
                   "finetune_s": [f["seconds"] for f in r.finetunes],
                   "finetunes": r.finetunes}
        self.emit(summary)
        return r

    def _finetune(self, learner, saved: list[str], reload):  # -> Predictor
        """The whole network on the saved images for the time budget, in this process."""
        from .checkpoint import load_model, make_checkpoint, save_checkpoint
        from .model_init import BACKBONE_INIT
        from .predict import Predictor
        from .progress import Reporter
        from .train import run_training
        from .train_config import TrainConfig

        cfg = self.cfg
        k = len(self.result.finetunes) + 1
        run = self.work / "runs" / f"finetune-{k:02d}"
        run.mkdir(parents=True)
        t0 = time.perf_counter()
        loaded = learner.predictor.loaded
        start = run.parent / f"start-{k:02d}.pt"
        lineage = loaded.meta.get(BACKBONE_INIT)  # picks the fine-tune's default rate
        save_checkpoint(start, make_checkpoint(learner.model, loaded.class_names, loaded.normalization,
                                               palette=loaded.palette,
                                               extra={BACKBONE_INIT: lineage} if lineage else None))
        ids_file = run.parent / f"train-{k:02d}.txt"
        ids_file.write_text("\n".join(saved) + "\n", encoding="utf-8")
        by_steps = cfg.finetune_iters is not None
        tcfg = TrainConfig(data=str(self.work), out=str(run), init=str(start), train_list=str(ids_file),
                           epochs=100_000, iters=cfg.finetune_iters,
                           time_limit=None if by_steps else cfg.finetune_budget, lr=cfg.finetune_lr,
                           device=cfg.device, workers=0, seed=cfg.seed + k, json=True)
        sink = io.StringIO()  # the run's own events stay out of the simulator's output
        code = run_training(tcfg, Reporter(True, out=sink, err=sink))
        if code != 0 or not (run / "last.pt").is_file():
            raise FCNError(f"fine-tune {k} failed (exit {code}): {sink.getvalue()[-2000:]}")
        train_s = time.perf_counter() - t0
        new = Predictor(load_model(run / "last.pt"), cfg.device)
        learner.set_backbone(new)
        if reload is not None:  # instant learning goes on: features of the saved images, anew
            learner.learn(reload=reload)
        history = json.loads((run / "history.json").read_text(encoding="utf-8"))
        iters = history[-1]["iteration"] if history else 0
        record = {"event": "finetune", "index": k, "after_images": len(saved),
                  "seconds": round(time.perf_counter() - t0, 2), "train_s": round(train_s, 2),
                  "iterations": iters}
        self.result.finetunes.append(record)
        self.emit(record)
        return new


def _human(record: dict[str, Any]) -> str:
    ev = record["event"]
    if ev == "start":
        m = record["model"]
        return (f"replaying {record['images']} labelled images, learning: {record['learn']}, "
                f"model {m['arch']}/{m['backbone']} from {record['init']} on {record['device']}")
    if ev == "image":
        learn = (f"  learn {record['learn_s']:.2f} s ({record['learned_from']} images)"
                 if record["learn_s"] is not None else "")
        return (f"{record['index']:4d} {record['id']:<24} effort {record['effort']:.3f}  "
                f"predict {record['predict_s']:.2f} s{learn}")
    if ev == "finetune":
        return (f"     fine-tune {record['index']} on {record['after_images']} images: "
                f"{record['iterations']} iterations, {record['seconds']:.0f} s")
    blocks = "  ".join(f"{e:.3f}" for e in record["effort_per_block"])
    return (f"effort per block of {record['block']}: {blocks}\n"
            f"mean effort {record['mean_effort']:.3f} over {record['images']} images")


def build_parser() -> argparse.ArgumentParser:
    from .backbones import BACKBONES
    from .train_config import PRETRAINED_LR, SCRATCH_LR

    d = SimConfig(data="")
    p = argparse.ArgumentParser(
        prog="fcn-simulate",
        description="Replay a labelling session over a dataset's labelled images and measure the "
                    "correction effort per image as the model learns.")
    p.add_argument("data", help="VOC dataset folder, or a CamVid-style folder (train/, trainannot/, "
                                "classes.txt)")
    p.add_argument("--learn", choices=LEARN_MODES, default=d.learn,
                   help="how the model learns after each saved label (default %(default)s)")
    p.add_argument("--init", default=d.init,
                   help="starting model: imagenet, scratch (untrained), or a checkpoint PATH")
    p.add_argument("--arch", default=d.arch, help="architecture of a new model (default %(default)s)")
    p.add_argument("--backbone", choices=BACKBONES, default=d.backbone,
                   help="backbone of a new model (default %(default)s)")
    p.add_argument("--fc-channels", type=int, default=d.fc_channels,
                   help="width of fc6/fc7 of a new model (default %(default)s)")
    p.add_argument("--block", type=int, default=d.block, help="images per block in the summary")
    p.add_argument("--finetune-every", type=int, default=d.finetune_every, metavar="K",
                   help="fine-tune after every K saved images (finetune, both)")
    p.add_argument("--finetune-budget", type=float, default=d.finetune_budget, metavar="S",
                   help="seconds of training per fine-tune (default %(default)s)")
    p.add_argument("--finetune-iters", type=int, default=d.finetune_iters, metavar="N",
                   help="train N iterations per fine-tune instead of --finetune-budget seconds "
                        "(the same replay on a fast and a slow machine)")
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr,
                   help="base learning rate of the fine-tunes (default: fcn-train's, "
                        f"{SCRATCH_LR:g} for a backbone that started from random weights, "
                        f"else {PRETRAINED_LR:g})")
    p.add_argument("--learn-budget", type=float, default=d.learn_budget, metavar="S",
                   help="seconds of instant learning per save (default %(default)s, as the app)")
    p.add_argument("--learn-lr", type=float, default=d.learn_lr,
                   help="learning rate of instant learning (Adam; default %(default)s)")
    p.add_argument("--images", type=int, help="replay only the first N labelled images")
    p.add_argument("--max-side", type=int, help="scale images down to this longer side first")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", action="store_true",
                   help="stdout carries only JSON objects, one per line; the last is the summary")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = SimConfig(**{k: v for k, v in vars(args).items()})
    try:
        cfg.check()
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with tempfile.TemporaryDirectory(prefix="fcn-simulate-") as tmp:
            work = Path(tmp)
            names, ids = prepare_workspace(cfg.data, work, cfg.max_side, cfg.images)
            Simulator(cfg, work, names, sys.stdout).run(ids)
    except FCNError as exc:
        if cfg.json:
            sys.stdout.write(json.dumps({"event": "error", "message": str(exc)}) + "\n")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
