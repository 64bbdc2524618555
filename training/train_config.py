"""``fcn-train`` options, with defaults that learn on a few dozen images."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .device import DEVICE_CHOICES  # noqa: F401  (documented choices)
from .model import ALIGNMENTS, ARCHS, BACKBONES


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
    lr: float = 1e-4
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
    json: bool = False
    parent: str | None = None  # recorded in the checkpoint (the app's version id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="", out="")
    p.add_argument("data", type=Path,
                   help="VOC dataset folder (JPEGImages, SegmentationClass, class_names.txt)")
    p.add_argument("--out", type=Path, required=True, help="run folder: config, log, checkpoints")
    p.add_argument("--arch", choices=ARCHS, default=None,
                   help=f"network (default {d.arch}, or the --init model's)")
    p.add_argument("--backbone", choices=BACKBONES, default=d.backbone,
                   help="vgg16 (ImageNet) or vgg16_bn (better for --init scratch)")
    p.add_argument("--alignment", choices=ALIGNMENTS, default=d.alignment,
                   help="'same' (faster, default) or 'reference' (pad 100 + crops, the original net)")
    p.add_argument("--fc-channels", type=int, default=d.fc_channels,
                   help="width of fc6/fc7 for a new model (4096 = the paper; ImageNet fc weights "
                        "only fit 4096; narrower trains faster from scratch)")
    p.add_argument("--init", default=d.init,
                   help="imagenet, scratch, or PATH to an FCN Studio checkpoint or pytorch-fcn state dict")
    p.add_argument("--reinit-classes", action="store_true",
                   help="when the --init model's classes differ from the dataset's, start new score layers")
    p.add_argument("--classes", help="class names file for an imported state dict in --init")
    p.add_argument("--at-once", action="store_true", help="the imported state dict is an at-once FCN-8s")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training images")
    g.add_argument("--iters", type=int, help="total iterations (instead of --epochs)")
    p.add_argument("--time-limit", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="images per step (per process under torchrun)")
    p.add_argument("--crop", type=int, default=d.crop, help="square training crop size in pixels")
    p.add_argument("--scale", type=float, nargs=2, default=(d.scale_min, d.scale_max),
                   metavar=("MIN", "MAX"), help="random scale range")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr,
                   help="base learning rate (score layers x --head-lr-mult)")
    p.add_argument("--head-lr-mult", type=float, default=d.head_lr_mult)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), default=d.amp,
                   help="mixed precision (CUDA only)")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split)
    p.add_argument("--train-list", help="file of image ids to train on (instead of --train-split)")
    p.add_argument("--val-list", help="file of image ids to validate on (instead of --val-split)")
    p.add_argument("--val-before", action="store_true",
                   help="validate the starting model before training (reported as epoch 0)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of images for validation when the dataset has no split lists yet")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--json", action="store_true", help="JSON events on stdout, one per line")
    p.add_argument("--parent", help=argparse.SUPPRESS)


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
        resume=args.resume, json=args.json, parent=args.parent,
    )
