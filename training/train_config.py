"""``fcn-train`` options, with defaults that learn on a few dozen images."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .backbones import VGG_BACKBONES, get_backbone
from .device import DEVICE_CHOICES  # noqa: F401  (documented choices)
from .errors import FCNError
from .model import ALIGNMENTS, ARCHS, BACKBONES

SAVE_DTYPES: tuple[str, ...] = ("float32", "float16")

MAX_LR = 10.0  # far above any useful rate; larger ones overflow float32 in the optimizer
MAX_FC_CHANNELS = 8192  # the model's own limit
PRETRAINED_LR = 1e-4  # fine-tuning ImageNet features: small steps keep what they know
# Random features have nothing to keep: on camvid-mini's replayed session (fcn-simulate,
# MobileNetV3 from random weights, 3-minute CPU fine-tunes) 1e-3 left 0.31 of the third
# block's pixels to correct against 0.42 at 1e-4.
SCRATCH_LR = 1e-3


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "fcn8s"
    backbone: str = "vgg16"
    alignment: str = "same"
    fc_channels: int = 4096
    init: str = "imagenet"  # imagenet | scratch | PATH to a checkpoint or state dict
    reinit_classes: bool = False
    classes: str | None = None  # class names for an imported state dict
    at_once: bool = False
    epochs: int = 20
    iters: int | None = None  # overrides epochs when given
    time_limit: float | None = None  # seconds; stop cleanly when reached
    batch_size: int = 4
    crop: int = 320
    scale_min: float = 0.5
    scale_max: float = 2.0
    optimizer: str = "adamw"
    # None: by the backbone's start (:func:`default_lr`): a backbone that began as
    # random weights learns at SCRATCH_LR, a pretrained one is fine-tuned at PRETRAINED_LR.
    lr: float | None = None
    head_lr_mult: float = 10.0  # score layers start at zero and learn faster
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_iters: int = 10
    device: str = "auto"
    amp: str = "none"
    workers: int = 2
    seed: int = 0
    val_split: str = "val"
    train_split: str = "train"
    train_list: str | None = None  # an id list file instead of the train split
    val_list: str | None = None
    val_before: bool = False  # validate the starting model first (epoch 0: the "before")
    val_fraction: float = 0.2
    resume: bool = False
    # No resume.pt (optimizer state, about twice the model): for runs that are never
    # resumed, like the app's fine-tunes; saves (and so Cancel) are seconds shorter.
    no_resume_state: bool = False
    # Precision of the weights in best.pt / last.pt: "float16" halves them (training runs
    # in full precision either way; a resume goes on from the rounded weights).
    save_dtype: str = "float32"
    # Seconds between checkpoint writes at most: an epoch that ends sooner after the last
    # write writes nothing (a better score is held in memory for best.pt). The first
    # epoch, the end of the run and a stop always write; 0 writes after every epoch.
    # On small datasets epochs take seconds, and writing VGG16 twice an epoch took a
    # tenth of a fine-tune's time.
    save_interval: float = 60.0
    overwrite: bool = False  # start afresh in an --out that already holds a run
    json: bool = False
    parent: str | None = None  # recorded in the checkpoint (the app's version id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- option values -------------------------------------------------------------------------
# argparse turns an ArgumentTypeError into "argument --lr: <message>" and exit code 2,
# so a bad value is refused before anything is loaded, naming the option.


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``lo`` (to ``hi``)."""
    def parse(text: str) -> int:
        value = _integer(text)
        if value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
            raise argparse.ArgumentTypeError(f"must be a whole number {bound}, not {text}")
        return value
    return parse


def float_range(lo: float, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval from ``lo`` to ``hi``."""
    def parse(text: str) -> float:
        value = _number(text)
        below = value <= lo if lo_open else value < lo
        above = hi is not None and (value >= hi if hi_open else value > hi)
        if below or above:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            interval = f"{left}{lo:g}, {hi:g}{right}" if hi is not None else f"{left}{lo:g}, inf)"
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, not {text}")
        return value
    return parse


positive_int = int_range(1)
positive_float = float_range(0.0, lo_open=True)
non_negative_float = float_range(0.0)


def time_limit_seconds(text: str) -> float | None:
    """Seconds (0 or more), or ``none`` for no limit (to lift a resumed run's limit)."""
    if text.strip().lower() in ("none", "off"):
        return None
    return non_negative_float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="", out="")
    p.add_argument("data", type=Path,
                   help="VOC dataset folder (JPEGImages, SegmentationClass, class_names.txt)")
    p.add_argument("--out", type=Path, required=True, help="run folder: config, log, checkpoints")
    p.add_argument("--arch", choices=ARCHS, default=None,
                   help=f"network (default {d.arch}, or the --init model's)")
    p.add_argument("--backbone", choices=BACKBONES, default=d.backbone,
                   help="backbone of a new model: vgg16 (the paper's, most accurate), vgg16_bn "
                        "(better for --init scratch), alexnet and googlenet (the paper's "
                        "others), mobilenet_v3_large (fastest, for a CPU), resnet50")
    p.add_argument("--alignment", choices=ALIGNMENTS, default=d.alignment,
                   help="'same' (faster, default) or 'reference' (pad 100 + crops, the original net)")
    p.add_argument("--fc-channels", type=int_range(1, MAX_FC_CHANNELS), default=d.fc_channels,
                   help="width of fc6/fc7 for a new vgg16(_bn) or alexnet model (4096 = the "
                        "paper; ImageNet fc weights only fit 4096; narrower trains faster from "
                        "scratch)")
    p.add_argument("--init", default=d.init,
                   help="imagenet, scratch, or PATH to an FCN Studio checkpoint or pytorch-fcn state dict")
    p.add_argument("--reinit-classes", action="store_true",
                   help="when the --init model's classes differ from the dataset's, start new score layers")
    p.add_argument("--classes", help="class names file for an imported state dict in --init")
    p.add_argument("--at-once", action="store_true", help="the imported state dict is an at-once FCN-8s")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help="passes over the training images")
    g.add_argument("--iters", type=positive_int, help="total iterations (instead of --epochs)")
    p.add_argument("--time-limit", type=time_limit_seconds, metavar="SECONDS",
                   help="stop cleanly after this many seconds of training in this process "
                        "('none': no limit, e.g. to lift it on --resume)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="images per step (per process under torchrun)")
    p.add_argument("--crop", type=positive_int, default=d.crop,
                   help="square training crop size in pixels")
    p.add_argument("--scale", type=positive_float, nargs=2, default=(d.scale_min, d.scale_max),
                   metavar=("MIN", "MAX"), help="random scale range")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default=d.optimizer)
    p.add_argument("--lr", type=float_range(0.0, MAX_LR, lo_open=True), default=d.lr,
                   help="base learning rate (score layers x --head-lr-mult); default "
                        f"{SCRATCH_LR:g} for a backbone that started from random weights "
                        f"(--init scratch and the models trained from it), else {PRETRAINED_LR:g}")
    p.add_argument("--head-lr-mult", type=float_range(0.0, 1000.0), default=d.head_lr_mult)
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    p.add_argument("--momentum", type=float_range(0.0, 1.0, hi_open=True), default=d.momentum,
                   help="SGD momentum")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), default=d.amp,
                   help="mixed precision (CUDA only)")
    p.add_argument("--workers", type=int_range(0, 256), default=d.workers,
                   help="data loader processes (0: load in the training process)")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=d.seed)
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split)
    p.add_argument("--train-list", help="file of image ids to train on (instead of --train-split)")
    p.add_argument("--val-list", help="file of image ids to validate on (instead of --val-split)")
    p.add_argument("--val-before", action="store_true",
                   help="validate the starting model before training (reported as epoch 0)")
    p.add_argument("--val-fraction", type=float_range(0.0, 1.0, hi_open=True),
                   default=d.val_fraction,
                   help="share of images for validation when the dataset has no split lists yet")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own config.json; options given "
                        f"as well must match it, except {', '.join(_opt(n) for n in RESUME_CHANGEABLE)}")
    p.add_argument("--no-resume-state", action="store_true",
                   help="write no resume.pt (the optimizer state): the run cannot be resumed "
                        "exactly, but each save is faster and the run folder half the size")
    p.add_argument("--save-dtype", choices=SAVE_DTYPES, default=d.save_dtype,
                   help="precision of the saved weights: float16 halves every checkpoint "
                        "(predictions stay the same to within rounding); training is float32")
    p.add_argument("--save-interval", type=non_negative_float, default=d.save_interval,
                   metavar="SECONDS",
                   help="write checkpoints at most this often (default %(default)s; 0: after "
                        "every epoch); the first epoch, the end and a stop always write")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that already holds one, deleting its "
                        "checkpoints, history and log")
    p.add_argument("--json", action="store_true", help="JSON events on stdout, one per line")
    p.add_argument("--parent", help=argparse.SUPPRESS)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that involve more than one value; argparse-style errors (exit code 2)."""
    lo, hi = args.scale
    if lo > hi:
        parser.error(f"argument --scale: MIN must not be larger than MAX, not {lo:g} {hi:g}")
    check_backbone_args(parser, args.backbone, getattr(args, "alignment", "same"),
                        args.fc_channels)
    if args.resume and args.overwrite:
        parser.error("argument --overwrite: not allowed with --resume (one continues the run, "
                     "the other deletes it)")


def check_backbone_args(parser: argparse.ArgumentParser, backbone: str, alignment: str,
                        fc_channels: int) -> None:
    """Refuse the combinations a backbone does not have (argparse-style, exit code 2)."""
    if alignment == "reference" and backbone not in VGG_BACKBONES:
        parser.error(f"argument --alignment: 'reference' is the original VGG16 network "
                     f"({' or '.join(VGG_BACKBONES)}); use 'same' with --backbone {backbone}")
    if fc_channels != TrainConfig.fc_channels and not get_backbone(backbone).has_fc:
        parser.error(f"argument --fc-channels: --backbone {backbone} has no fc6/fc7 "
                     "(only vgg16, vgg16_bn and alexnet have)")


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                     args: argparse.Namespace) -> set[str]:
    """The destinations the command line gave, whether or not equal to the defaults.

    argparse only fills in a default where the namespace lacks the attribute, so a
    namespace pre-filled with a marker keeps the marker for every option not given.
    """
    marker = object()
    probe = argparse.Namespace(**{name: marker for name in vars(args)})
    parser.parse_args(argv, namespace=probe)
    return {name for name, value in vars(probe).items() if value is not marker}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=str(args.data), out=str(args.out), arch=args.arch or "", backbone=args.backbone,
        alignment=args.alignment, fc_channels=args.fc_channels, init=args.init,
        reinit_classes=args.reinit_classes,
        classes=args.classes, at_once=args.at_once, epochs=args.epochs, iters=args.iters,
        time_limit=args.time_limit, batch_size=args.batch_size, crop=args.crop,
        scale_min=args.scale[0], scale_max=args.scale[1], optimizer=args.optimizer, lr=args.lr,
        head_lr_mult=args.head_lr_mult, weight_decay=args.weight_decay, momentum=args.momentum,
        device=args.device, amp=args.amp, workers=args.workers, seed=args.seed,
        val_split=args.val_split, train_split=args.train_split, train_list=args.train_list,
        val_list=args.val_list, val_before=args.val_before, val_fraction=args.val_fraction,
        resume=args.resume, overwrite=args.overwrite, json=args.json, parent=args.parent,
        no_resume_state=args.no_resume_state, save_dtype=args.save_dtype,
        save_interval=args.save_interval,
    )


# -- resume ----------------------------------------------------------------------------------


class ResumeError(FCNError):
    """``--resume`` cannot continue the run as asked (the message says why)."""


# What a resumed run may change: how long it runs, how fast it learns from here on and
# where it runs. Everything else defines the run (model, data, augmentation, schedule
# shape) and is taken from its config.json.
RESUME_CHANGEABLE: tuple[str, ...] = ("epochs", "iters", "time_limit", "lr", "device", "amp",
                                      "workers", "data", "save_dtype", "save_interval")
_RESUME_META = ("out", "resume", "overwrite", "json")  # about this invocation, not the run
_PATH_FIELDS = ("data", "init", "classes", "train_list", "val_list")


def default_lr(backbone_init: str | None) -> float:
    """The base rate when --lr is not given: by how the backbone started ("scratch",
    "imagenet"; None when unknown, as in checkpoints from before this was recorded)."""
    return SCRATCH_LR if backbone_init == "scratch" else PRETRAINED_LR


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _same(name: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if a is None or b is None or name not in _PATH_FIELDS:
        return False
    if name == "init" and {a, b} & {"imagenet", "scratch"}:
        return False
    # The same file named another way (relative to another folder, ~) is the same run.
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def _given_fields(given: set[str]) -> set[str]:
    """argparse destinations -> TrainConfig fields (--scale sets two)."""
    out = set(given)
    if "scale" in out:
        out.discard("scale")
        out |= {"scale_min", "scale_max"}
    return out


def merge_resume(stored: dict[str, Any], cfg: TrainConfig, given: set[str],
                 source: str) -> tuple[TrainConfig, list[str]]:
    """The run's own configuration with the options given now applied or refused.

    ``stored`` is the run's config (``source`` names where it came from), ``cfg``
    the command line's and ``given`` the options it named. Returns the config to
    train with and one note per changed option. Raises ResumeError for a given
    option that would make it a different run.
    """
    known = {f.name for f in fields(TrainConfig)}
    base = TrainConfig.from_dict({**asdict(cfg), **{k: v for k, v in stored.items() if k in known}})
    changes: dict[str, Any] = {name: getattr(cfg, name) for name in _RESUME_META}
    notes: list[str] = []
    refused: list[str] = []
    for name in sorted(_given_fields(given) & known - set(_RESUME_META)):
        new, old = getattr(cfg, name), getattr(base, name)
        if name == "arch" and not old:
            # The run took its architecture from --init; the trainer checks the given
            # one against the checkpoint's.
            changes[name] = new
            continue
        if _same(name, new, old):
            continue
        shown = {"scale_min": "--scale MIN", "scale_max": "--scale MAX"}.get(name, _opt(name))
        if name in RESUME_CHANGEABLE:
            changes[name] = new
            notes.append(f"{shown} {new} (the run had {old})")
        else:
            refused.append(f"{shown} {new} (the run has {old})")
    if "epochs" in changes and "iters" not in given:
        changes["iters"] = None  # --epochs given now replaces the run's --iters
    if refused:
        raise ResumeError(
            f"cannot resume {cfg.out} with {'; '.join(refused)}: a resumed run keeps its "
            f"model, data and schedule from {source}. Only "
            f"{', '.join(_opt(n) for n in RESUME_CHANGEABLE)} may change; for other options "
            f"start a new run, e.g. --init {Path(cfg.out) / 'last.pt'} --out NEW_FOLDER"
        )
    return replace(base, **changes), notes
