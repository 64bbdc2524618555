"""``fcn-train DATA --out RUN_DIR``: train or fine-tune an FCN on a VOC dataset.

Run folder: ``config.json`` (the full configuration), ``log.jsonl`` (every event),
``history.json`` (metrics per epoch), ``last.pt`` (the latest model, written at
epoch ends at most every ``--save-interval`` seconds, at the end and on a clean
stop), ``best.pt`` (best validation mean IoU) and,
while a run can still be resumed, ``resume.pt`` (optimizer and schedule state).
Under ``torchrun`` the same command trains with DistributedDataParallel; rank 0
alone writes files and events.

``--resume`` continues the run with its own ``config.json``; a fresh run refuses an
``--out`` that already holds one unless told ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from . import distributed as dist_utils
from . import voc
from .atomic import atomic_write_text, remove_stale_temps
from .checkpoint import (
    LoadedModel,
    load_model,
    make_checkpoint,
    save_checkpoint,
)
from .dataset import SegmentationDataset, SharedScaleBatches, collate_padded
from .device import autocast_dtype, describe_device, resolve_device
from .errors import CheckpointError, DataError, FCNError, TrainingDiverged
from .images import read_image
from .metrics import ConfusionMatrix
from .model import FCN
from .model_init import BACKBONE_INIT, initial_model
from .optim import follow_budget, lr_multiplier, make_optimizer, place_schedule
from .progress import EtaEstimator, Reporter
from .run_resume import best_from_history, read_resume_state, resume_config
from .stopping import StopFlag, StopRequested, batches, worker_init
from .train_config import ResumeError, TrainConfig, default_lr
from .transforms import eval_transform, train_transform
from .write_failures import CheckpointWriteError, describe_write_failure

VOID = 255
# Files that make a folder a training run worth protecting from a second fresh run.
RUN_FILES = ("config.json", "last.pt", "best.pt", "resume.pt", "history.json", "log.jsonl")
# A mean per-pixel cross-entropy this large means the weights have blown up (guessing
# uniformly over 255 classes costs 5.5): stop before such weights become a checkpoint.
EXPLODED_LOSS = 1e4


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    iteration: int = 0
    best_miou: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # seconds of training before this process (resume)


# Backbones whose training steps channels_last speeds up on a CPU (batch 4 at 288x224,
# 2-core CPUs; `fcn-bench --formats` times it): MobileNetV3-Large x1.26-1.74,
# GoogLeNet x1.19, ResNet50 x1.12; VGG16 (x0.75-0.96) and AlexNet (x0.84) were
# slower, so they stay contiguous. On CUDA it always pays.
CPU_CHANNELS_LAST_TRAINING: frozenset[str] = frozenset(
    {"mobilenet_v3_large", "googlenet", "resnet50"})


def trains_channels_last(device: torch.device, backbone: str) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and backbone in CPU_CHANNELS_LAST_TRAINING)


def _split_ids(root: Path, split: str) -> list[str]:
    if not (root / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
        return []
    return voc.read_split(root, split)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-void pixels; 0 (not NaN) for an all-void batch."""
    total = F.cross_entropy(logits.float(), target, ignore_index=VOID, reduction="sum")
    return total / (target != VOID).sum().clamp_min(1)


def _weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


# -- checks before training -----------------------------------------------------------------------


def _check_pair(root: Path, image_id: str, num_classes: int) -> str | None:
    """The problem with one listed image and its label, or None when both are usable."""
    try:
        image = read_image(voc.image_path(root, image_id))
        h, w = image.shape[:2]
        voc.read_label(voc.label_path(root, image_id), num_classes, image_size=(w, h))
    except DataError as exc:
        return str(exc)
    return None


def check_files(root: Path, ids: list[str], num_classes: int) -> None:
    """Decode every listed image and label now, so a corrupt file stops the run before
    training instead of after an epoch (a bad validation image would cost a whole one).

    Raises DataError listing the unusable files.
    """
    unique = list(dict.fromkeys(ids))
    threads = max(1, min(8, os.cpu_count() or 1, len(unique)))
    with ThreadPoolExecutor(max_workers=threads) as pool:  # decoding releases the GIL
        problems = [p for p in pool.map(lambda i: _check_pair(root, i, num_classes), unique) if p]
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(None, f"{len(problems)} of the {len(unique)} listed images cannot be "
                              f"used; fix them or take them out of the lists:\n  {shown}{more}")


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, loader: DataLoader | list, num_classes: int,
                   loaded: LoadedModel, device: torch.device,
                   amp: torch.dtype | None, info: dist_utils.DistInfo) -> ConfusionMatrix:
    """Confusion matrix over this rank's validation images, summed over all ranks."""
    model.eval()
    hist = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in batches(loader):
        x = loaded.normalization.apply(images.to(device))
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred = model(x).argmax(1)
        t = labels.to(device)
        keep = (t >= 0) & (t < num_classes)
        hist += torch.bincount(t[keep] * num_classes + pred[keep], minlength=num_classes**2)
    dist_utils.all_reduce_sum(hist, info)
    cm = ConfusionMatrix(num_classes)
    cm.hist = hist.view(num_classes, num_classes).cpu().numpy().astype(np.int64)
    return cm


class Trainer:
    """One training run; ``run()`` returns the process exit code."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter, info: dist_utils.DistInfo,
                 resume_notes: list[str] | None = None, resume_source: str | None = None) -> None:
        self.cfg = cfg
        self.reporter = reporter
        self.info = info
        self.out = Path(cfg.out)
        self.root = Path(cfg.data)
        self.device = resolve_device(dist_utils.device_for(info, cfg.device))
        self.amp = autocast_dtype(self.device, cfg.amp)
        self._channels_last = False  # set with the model: by device and backbone
        self.stop = StopFlag()
        self.state = RunState()
        self.model: FCN | None = None
        self.resume_notes = list(resume_notes or [])
        self.resume_source = resume_source
        self.warnings: list[str] = []
        self._log_file: TextIO | None = None
        self._log_failed = False
        self._kept: dict[str, Any] | None = None  # the newest last.pt on disk, if any
        self._last_write: float | None = None  # monotonic time of the last checkpoint write
        self._held_best: dict[str, Any] | None = None  # a better epoch not yet in best.pt
        self._t_session = time.monotonic()  # reset when training starts: --time-limit counts from there

    # -- events ---------------------------------------------------------------
    def emit(self, name: str, **fields: Any) -> None:
        if not self.info.is_main:
            return
        self.reporter.event(name, **fields)
        self._append_log({"event": name, "time": round(time.time(), 3), **fields})

    def _append_log(self, record: dict[str, Any]) -> None:
        """log.jsonl, opened at the first event (a run refused at once leaves none behind).
        A log that cannot be written is worth a warning, not the run."""
        if self._log_failed:
            return
        path = self.out / "log.jsonl"
        try:
            if self._log_file is None:
                self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115
            self._log_file.write(json.dumps(record, default=str) + "\n")
            self._log_file.flush()
        except OSError as exc:
            self._log_failed = True
            self.reporter.log(f"warning: {path}: cannot write the log "
                              f"({describe_write_failure(path, exc)}); training goes on")

    # -- files ------------------------------------------------------------------------
    def _existing_run_files(self) -> list[str]:
        found = []
        for name in RUN_FILES:
            path = self.out / name
            # An empty log is what an older, refused attempt left: nothing to protect.
            if path.exists() and not (name == "log.jsonl" and path.stat().st_size == 0):
                found.append(name)
        return found

    def _prepare_out(self) -> None:
        """Refuse to train a fresh run over an existing one unless told; create --out."""
        existing = self._existing_run_files() if self.out.is_dir() else []
        if existing and not self.cfg.resume:
            if not self.cfg.overwrite:
                raise DataError(self.out, f"already holds a training run ({', '.join(existing)}); "
                                          "pass --resume to continue it, --overwrite to start "
                                          "afresh (deleting it), or choose another --out")
            if self.info.is_main:
                for name in existing:
                    self._unlink(self.out / name)
        if not self.info.is_main:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointWriteError(f"{self.out}: cannot create the run folder "
                                       f"({describe_write_failure(self.out, exc)})") from None
        remove_stale_temps(self.out)  # temp files of saves that a kill interrupted

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CheckpointWriteError(f"{path}: cannot delete ({exc.strerror or exc})") from None

    def _kept_text(self) -> str:
        best = self.out / "best.pt"
        best_text = " and best.pt" if best.is_file() else ""
        if self._kept is None:
            return ("No checkpoint of this run was written yet" + (f"; {best} was kept" if best_text
                                                                   else "") + ".")
        k = self._kept
        loss = k.get("train_loss")
        loss_text = f", train loss {loss:.4g}" if isinstance(loss, int | float) else ""
        return (f"{self.out / 'last.pt'} (epoch {k.get('epoch')}, iteration {k.get('iteration')}"
                f"{loss_text}){best_text} kept.")

    def _write(self, path: Path, write) -> None:
        """Run a write of a run file; a failure says why and what was kept, no traceback."""
        try:
            write()
        except (OSError, RuntimeError) as exc:
            raise CheckpointWriteError(
                f"{path}: cannot write: {describe_write_failure(path, exc)}. {self._kept_text()} "
                "Make room or fix the folder, then continue with --resume."
            ) from None

    def _write_text(self, path: Path, text: str) -> None:
        self._write(path, lambda: atomic_write_text(path, text))

    # -- set-up -----------------------------------------------------------------
    def _prepare_data(self) -> tuple[list[str], list[str], list[str]]:
        cfg = self.cfg
        class_names = voc.read_class_names(self.root)
        if self.info.is_main and not cfg.train_list:
            voc.ensure_splits(self.root, cfg.val_fraction, cfg.seed)
        dist_utils.barrier(self.info)
        if cfg.train_list:
            train_ids = voc.read_id_list(self.root, cfg.train_list)
        else:
            train_ids = _split_ids(self.root, cfg.train_split)
        if not train_ids:
            raise DataError(cfg.train_list or self.root / "ImageSets" / "Segmentation"
                            / f"{cfg.train_split}.txt", "no training images listed")
        if cfg.val_list:
            val_ids = voc.read_id_list(self.root, cfg.val_list)
        else:
            val_ids = _split_ids(self.root, cfg.val_split)
        return class_names, train_ids, val_ids

    def _load_start(self, class_names: list[str]) -> tuple[LoadedModel, dict[str, Any] | None]:
        if not self.cfg.resume:
            return initial_model(self.cfg, class_names, progress=self.info.is_main), None
        last, resume = self.out / "last.pt", self.out / "resume.pt"
        if not last.is_file():
            raise DataError(last, "cannot resume: no last.pt in the run folder (the run "
                                  "stopped before its first checkpoint; start it afresh with "
                                  "--overwrite)")
        loaded = load_model(last)
        if self.cfg.arch and self.cfg.arch != loaded.config.arch:
            raise ResumeError(f"cannot resume {self.out} with --arch {self.cfg.arch}: its model "
                              f"is {loaded.config.arch}; for another architecture start a new "
                              f"run with --init {last}")
        state = read_resume_state(resume) if resume.is_file() else None
        return loaded, state

    def _restore(self, loaded: LoadedModel, state: dict[str, Any] | None, optimizer, scheduler,
                 scaler, lr_at, total: int) -> None:
        """Continue where last.pt (and resume.pt, when it belongs to it) left off."""
        last, resume = self.out / "last.pt", self.out / "resume.pt"
        meta = loaded.meta
        last_it, last_epoch = meta.get("iteration"), meta.get("epoch")
        if not isinstance(last_it, int) or not isinstance(last_epoch, int):
            raise CheckpointError(f"{last}: records no iteration and epoch; it is not the "
                                  "checkpoint of a run that can be resumed")
        bases = [g["initial_lr"] for g in optimizer.param_groups]  # this config's --lr
        history = meta.get("history")
        self.state.history = list(history) if isinstance(history, list) else []
        self._kept = {"iteration": last_it, "epoch": last_epoch,
                      "train_loss": (meta.get("metrics") or {}).get("train_loss")}
        if state is not None and state["iteration"] == last_it:
            try:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                if scaler is not None and state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
            except (KeyError, ValueError, TypeError, RuntimeError) as exc:
                raise CheckpointError(f"{resume}: does not fit this run's optimizer ({exc}). "
                                      "Delete it to resume from last.pt with a fresh optimizer "
                                      "state.") from None
            self.state.epoch, self.state.iteration = int(state["epoch"]), int(state["iteration"])
            self.state.best_miou = float(state["best_miou"])
            self.state.elapsed = float(state.get("elapsed", 0.0))
        else:
            self.state.epoch, self.state.iteration = last_epoch, last_it
            self.state.best_miou = best_from_history(self.state.history)
            duration = meta.get("duration_s")
            self.state.elapsed = float(duration) if isinstance(duration, int | float) else 0.0
            if last_it < total:
                why = ("missing" if state is None else
                       f"from iteration {state['iteration']}, not last.pt's {last_it}")
                self.warnings.append(f"{resume} is {why} (a stop between the two writes): "
                                     f"continuing from last.pt at iteration {last_it} with a "
                                     "fresh optimizer state")
        if self.state.iteration >= total:
            finished = " (a finished run keeps no resume.pt)" if state is None else ""
            raise ResumeError(
                f"{self.out} is already at iteration {self.state.iteration} of {total}"
                f"{finished}: nothing to resume. To train on, give a larger --iters or "
                f"--epochs with --resume, or start a new run with --init {last}")
        place_schedule(optimizer, scheduler, bases, lr_at, self.state.iteration)

    def _loaders(self, train_ids: list[str], val_ids: list[str], n: int):
        cfg = self.cfg
        train_ds = SegmentationDataset(
            self.root, train_ids, n,
            transform=train_transform(cfg.crop, scale_range=(cfg.scale_min, cfg.scale_max)),
        )
        sampler: DistributedSampler | None = (
            DistributedSampler(train_ds, shuffle=True, seed=cfg.seed, drop_last=False)
            if self.info.enabled else None)
        g = torch.Generator()
        g.manual_seed(cfg.seed)
        per_rank = math.ceil(len(train_ds) / self.info.world_size)
        batch_sampler = SharedScaleBatches(
            sampler if sampler is not None else RandomSampler(train_ds, generator=g),
            cfg.batch_size, drop_last=per_rank > cfg.batch_size,
            scale_range=(cfg.scale_min, cfg.scale_max), seed=cfg.seed)
        train_loader = DataLoader(
            train_ds, batch_sampler=batch_sampler, num_workers=cfg.workers, collate_fn=collate_padded,
            generator=g, pin_memory=self.device.type == "cuda", worker_init_fn=worker_init,
            persistent_workers=cfg.workers > 0,
        )
        shard = val_ids[self.info.rank :: self.info.world_size]
        val_loader = None
        if shard:
            val_ds = SegmentationDataset(self.root, shard, n, transform=eval_transform())
            val_loader = DataLoader(val_ds, batch_size=1, num_workers=min(cfg.workers, 1),
                                    worker_init_fn=worker_init)
        return train_ds, sampler, train_loader, val_loader

    # -- checkpoints ---------------------------------------------------------------
    def _save_due(self, ending: bool) -> bool:
        """Whether this epoch writes its checkpoint: always at the end of the run (or a
        stop) and the first time, else once --save-interval has passed since the last."""
        if ending or self._last_write is None or self.cfg.save_interval <= 0:
            return True
        return time.monotonic() - self._last_write >= self.cfg.save_interval

    def _checkpoint(self, bare: FCN, loaded: LoadedModel, metrics: dict[str, Any],
                    ids: dict[str, list[str]]) -> dict[str, Any]:
        """The model as it is now, as a checkpoint (a copy: training goes on)."""
        if not _weights_finite(bare):
            raise TrainingDiverged(f"the weights became non-finite by iteration "
                                   f"{self.state.iteration}; training stopped without saving "
                                   f"them. {self._kept_text()} Try a lower --lr.")
        extra = {"epoch": self.state.epoch, "iteration": self.state.iteration,
                 "train_ids": ids["train"], "val_ids": ids["val"],
                 "duration_s": round(self.state.elapsed, 2), "history": list(self.state.history)}
        if loaded.meta.get(BACKBONE_INIT):  # the backbone's start, down the line of runs
            extra[BACKBONE_INIT] = loaded.meta[BACKBONE_INIT]
        return make_checkpoint(bare, loaded.class_names, loaded.normalization,
                               palette=loaded.palette, training=self.cfg.to_dict(),
                               metrics=metrics, parent=self.cfg.parent or loaded.meta.get("init"),
                               extra=extra, weights_dtype=self.cfg.save_dtype)

    def _save(self, bare: FCN, loaded: LoadedModel, optimizer, scheduler, scaler, best: bool,
              metrics: dict[str, Any], ids: dict[str, list[str]], keep_resume: bool = True) -> None:
        if not self.info.is_main:
            return
        ckpt = self._checkpoint(bare, loaded, metrics, ids)
        last = self.out / "last.pt"
        self._write(last, lambda: save_checkpoint(last, ckpt))
        self._last_write = time.monotonic()
        self._kept = {"iteration": self.state.iteration, "epoch": self.state.epoch,
                      "train_loss": metrics.get("train_loss")}
        self.emit("checkpoint", kind="last", path=str(last),
                  epoch=self.state.epoch, iteration=self.state.iteration)
        held, self._held_best = self._held_best, None
        if best or held is not None:  # this epoch's, else a better one held since the last write
            chosen = ckpt if best else held
            assert chosen is not None
            path = self.out / "best.pt"
            self._write(path, lambda: save_checkpoint(path, chosen))
            self.emit("checkpoint", kind="best", path=str(path), epoch=chosen["epoch"],
                      iteration=chosen["iteration"], mean_iou=chosen["metrics"].get("mean_iou"))
        resume = self.out / "resume.pt"
        if keep_resume and not self.cfg.no_resume_state:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else {},
                     "epoch": self.state.epoch, "iteration": self.state.iteration,
                     "best_miou": self.state.best_miou, "elapsed": self.state.elapsed}
            self._write(resume, lambda: save_checkpoint(resume, state))
        else:
            self._unlink(resume)
        self._write_text(self.out / "history.json", json.dumps(self.state.history, indent=1))

    # -- progress --------------------------------------------------------------------
    def _session_elapsed(self) -> float:
        return time.monotonic() - self._t_session

    def _progress(self, eta: EtaEstimator, total: int) -> tuple[float, float | None]:
        """(fraction done, seconds left). With --time-limit the budget binds when it runs
        out first: a fine-tune of "1000 epochs or 10 minutes" is half done at 5 minutes."""
        remaining = eta.update(self.state.iteration, total)
        fraction = self.state.iteration / total
        limit = self.cfg.time_limit
        if limit is not None:
            elapsed = self._session_elapsed()
            fraction = max(fraction, elapsed / limit if limit > 0 else 1.0)
            left = max(limit - elapsed, 0.0)
            remaining = left if remaining is None else min(remaining, left)
        return min(fraction, 1.0), remaining

    def _timed_out(self) -> bool:
        return self.cfg.time_limit is not None and self._session_elapsed() >= self.cfg.time_limit

    # -- main loop -------------------------------------------------------------------
    def run(self) -> int:
        self.stop.install()  # from the start: a stop during set-up ends the run cleanly too
        try:
            self._prepare_out()
            return self._run()
        finally:
            self.stop.restore()
            if self._log_file is not None:
                with contextlib.suppress(OSError):
                    self._log_file.close()

    def _start_model(self, loaded: LoadedModel) -> tuple[FCN, torch.nn.Module]:
        bare = loaded.model.to(self.device)
        self._channels_last = trains_channels_last(self.device, bare.config.backbone)
        if self._channels_last:
            bare = bare.to(memory_format=torch.channels_last)
        self.model = bare  # the unwrapped model, for callers that inspect it afterwards
        model: torch.nn.Module = bare
        if self.info.enabled:
            model = torch.nn.parallel.DistributedDataParallel(
                bare, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return bare, model

    def _announce(self, bare: FCN, epochs: int, total: int, per_epoch: int,
                  train_ids: list[str], val_ids: list[str], class_names: list[str]) -> None:
        cfg, info = self.cfg, self.info
        self.emit("start", epochs=epochs, total=total, iters_per_epoch=per_epoch,
                  iteration=self.state.iteration, epoch=self.state.epoch,
                  train_images=len(train_ids), val_images=len(val_ids), classes=class_names,
                  device=describe_device(self.device), world_size=info.world_size,
                  run_dir=str(self.out), model=bare.config.to_dict(), resumed=cfg.resume,
                  time_limit=cfg.time_limit, config_from=self.resume_source,
                  changed=self.resume_notes, warnings=self.warnings)
        if not info.is_main:
            return
        if cfg.resume:
            self.reporter.log(f"resuming {self.out} at iteration {self.state.iteration} of "
                              f"{total} with the run's own configuration ({self.resume_source})")
            for note in self.resume_notes:
                self.reporter.log(f"  changed: {note}")
        for warning in self.warnings:
            self.reporter.log(f"warning: {warning}")
        self.reporter.log(
            f"training {bare.config.arch} ({bare.config.backbone}, {bare.config.alignment}) on "
            f"{len(train_ids)} images, validating on {len(val_ids)}, {describe_device(self.device)}"
            + (f", {info.world_size} processes" if info.enabled else "")
            + (f", at most {cfg.time_limit:g} s" if cfg.time_limit is not None else ""))

    def _run(self) -> int:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        class_names, train_ids, val_ids = self._prepare_data()
        n = len(class_names)
        check_files(self.root, train_ids + val_ids, n)
        loaded, resume_state = self._load_start(class_names)
        if cfg.lr is None:  # not given: by how the backbone started
            cfg = self.cfg = replace(cfg, lr=default_lr(loaded.meta.get(BACKBONE_INIT)))
        if loaded.class_names != class_names:
            raise DataError(self.root, f"the dataset's classes {class_names} differ from the "
                                       f"model's {loaded.class_names}")
        if info.is_main:
            path = self.out / "config.json"
            self._write_text(path, json.dumps(cfg.to_dict(), indent=2))
        bare, model = self._start_model(loaded)
        train_ds, sampler, train_loader, val_loader = self._loaders(train_ids, val_ids, n)
        per_epoch = len(train_loader)
        total = cfg.iters if cfg.iters else cfg.epochs * per_epoch
        epochs = math.ceil(total / per_epoch)
        optimizer = make_optimizer(bare, cfg)
        lr_at = lr_multiplier(total, cfg.warmup_iters)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        if cfg.resume:
            self._restore(loaded, resume_state, optimizer, scheduler, scaler, lr_at, total)
        ids = {"train": train_ids, "val": val_ids}
        self._announce(bare, epochs, total, per_epoch, train_ids, val_ids, class_names)
        self.stop.can_abandon = not info.enabled
        if self.stop.can_abandon:
            for param in bare.parameters():
                if param.requires_grad:
                    param.register_hook(self.stop.poll)  # returns None: the gradient is kept
        if cfg.val_before and val_ids and not cfg.resume:
            # The starting model on the same images: the "before" of a before/after.
            try:
                with self.stop.abandonable():
                    cm = evaluate_model(model, val_loader or [], n, loaded, self.device,
                                        self.amp, info)
            except StopRequested:
                pass  # stopped before training: the loop below ends the run at once
            else:
                before = {"epoch": 0, "iteration": 0, **cm.scores().to_dict()}
                self.state.history.append(before)
                self.emit("epoch", epochs=epochs, before=True, **before)
        first_iteration = self.state.iteration
        self._t_session = time.monotonic()
        t_start = self._t_session - self.state.elapsed
        eta = EtaEstimator()
        status = "finished"
        last_metrics: dict[str, Any] = {}
        while self.state.iteration < total and status == "finished":
            # A stop that came during set-up, validation or a save ends the run here, at a
            # saved epoch boundary, instead of after one more step. A time limit always
            # allows one step, so even --time-limit 0 leaves a checkpoint.
            stop_now = self.stop.reason is not None or (self._timed_out() and bool(last_metrics))
            if dist_utils.any_rank(stop_now, info, self.device):
                status = "cancelled" if self.stop.reason else "time_limit"
                break
            epoch = self.state.epoch
            if sampler is not None:
                sampler.set_epoch(epoch)
            model.train()
            loss_sum, loss_n, t_epoch = 0.0, 0, time.monotonic()
            for images, labels in batches(train_loader):
                x = loaded.normalization.apply(images.to(self.device, non_blocking=True))
                if self._channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = labels.to(self.device, non_blocking=True)
                try:
                    with self.stop.abandonable():
                        with torch.autocast(self.device.type, dtype=self.amp,
                                            enabled=self.amp is not None):
                            logits = model(x)
                        loss = _loss(logits, y)
                        value = float(loss.detach())
                except StopRequested:
                    status = "cancelled"  # nothing of this step reached the weights
                    break
                bad = not math.isfinite(value) or value > EXPLODED_LOSS
                if dist_utils.any_rank(bad, info, self.device):
                    what = ("the loss became non-finite" if not math.isfinite(value) else
                            f"the loss exploded to {value:.3g}")
                    raise TrainingDiverged(
                        f"{what} at iteration {self.state.iteration + 1}; training stopped. "
                        f"{self._kept_text()} Try a lower --lr.")
                optimizer.zero_grad(set_to_none=True)
                try:
                    with self.stop.abandonable():
                        (scaler.scale(loss) if scaler is not None else loss).backward()
                except StopRequested:
                    status = "cancelled"
                    break
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                self.state.iteration += 1
                if cfg.time_limit is not None and cfg.time_limit > 0:
                    # Rank 0's clock for all ranks: their rates must stay equal under DDP.
                    spent = dist_utils.from_main(self._session_elapsed() / cfg.time_limit,
                                                 info, self.device)
                    follow_budget(optimizer, lr_at, self.state.iteration, spent)
                loss_sum += value
                loss_n += 1
                self.state.elapsed = time.monotonic() - t_start
                fraction, remaining = self._progress(eta, total)
                ips = loss_n * cfg.batch_size * info.world_size / max(time.monotonic() - t_epoch, 1e-9)
                self.emit("progress", epoch=epoch + 1, epochs=epochs,
                          iteration=self.state.iteration, total=total, loss=value,
                          lr=optimizer.param_groups[0]["lr"], eta=remaining, fraction=fraction,
                          images_per_s=ips)
                if info.is_main:
                    self.reporter.bar(self.state.iteration, total, f"epoch {epoch + 1}/{epochs}",
                                      f"loss {loss_sum / loss_n:.3f}", eta=remaining)
                if dist_utils.any_rank(self.stop.reason is not None or self._timed_out(),
                                       info, self.device):
                    status = "cancelled" if self.stop.reason else "time_limit"
                    break
                if self.state.iteration >= total:
                    break
            if status == "cancelled" and self.state.iteration == first_iteration:
                break  # stopped before a step: nothing new to save (no copy of the start model)
            epoch_done = status == "finished" or loss_n >= per_epoch
            if epoch_done:
                self.state.epoch = epoch + 1
            metrics: dict[str, Any] = {"train_loss": loss_sum / max(loss_n, 1)}
            if val_ids and status != "cancelled":  # a person who cancels wants it to stop now
                try:
                    with self.stop.abandonable():
                        cm = evaluate_model(model, val_loader or [], n, loaded, self.device,
                                            self.amp, info)
                except StopRequested:
                    status = "cancelled"  # the epoch's training is saved, without a score
                else:
                    metrics.update(cm.scores().to_dict())
            mean_iou = metrics.get("mean_iou")
            best = mean_iou is not None and mean_iou > self.state.best_miou
            if mean_iou is not None and best:
                self.state.best_miou = float(mean_iou)
            record = {"epoch": epoch + 1, "iteration": self.state.iteration,
                      "seconds": round(time.monotonic() - t_epoch, 2), **metrics}
            self.state.history.append(record)
            last_metrics = metrics
            self.emit("epoch", epochs=epochs, best_mean_iou=self.state.best_miou
                      if self.state.best_miou >= 0 else None, **record)
            if info.is_main:
                miou = f", val mean IoU {100 * mean_iou:.1f}%" if mean_iou is not None else ""
                self.reporter.log(f"epoch {epoch + 1}/{epochs}: loss "
                                  f"{metrics['train_loss']:.4f}{miou}")
            no_val = not val_ids
            finished = status == "finished" and self.state.iteration >= total
            error: FCNError | None = None
            try:
                if self._save_due(finished or status != "finished"):
                    self._save(bare, loaded, optimizer, scheduler, scaler,
                               best=best or (no_val and finished), metrics=metrics, ids=ids,
                               keep_resume=not finished)
                elif best:  # kept for best.pt at the next write; a copy, as training goes on
                    held = self._checkpoint(bare, loaded, metrics, ids)
                    held["state_dict"] = {k: v.clone() for k, v in held["state_dict"].items()}
                    self._held_best = held
            except FCNError as exc:
                error = exc
            # Only rank 0 saves; every rank stops with it instead of waiting at a barrier.
            if dist_utils.any_rank(error is not None, info, self.device):
                raise error or CheckpointWriteError("the main process could not save the "
                                                    "checkpoint (its error says why)")
            dist_utils.barrier(info)
        return self._finish(status, total, last_metrics)

    def _finish(self, status: str, total: int, last_metrics: dict[str, Any]) -> int:
        last, best = self.out / "last.pt", self.out / "best.pt"
        self.emit("done", status=status, epoch=self.state.epoch, iteration=self.state.iteration,
                  total=total, best_mean_iou=self.state.best_miou if self.state.best_miou >= 0 else None,
                  metrics=last_metrics, seconds=round(self.state.elapsed, 2),
                  last=str(last) if last.is_file() else None,
                  best=str(best) if best.is_file() else None)
        if self.info.is_main:
            why = f" ({self.stop.signal_name})" if status == "cancelled" and self.stop.signal_name else ""
            kept = str(last) if last.is_file() else "no checkpoint written"
            self.reporter.log(f"{status}{why}: {kept}"
                              + (f", best val mean IoU {100 * self.state.best_miou:.1f}%"
                                 if self.state.best_miou >= 0 else ""))
        return 130 if status == "cancelled" else 0


def run_training(cfg: TrainConfig, reporter: Reporter, given: set[str] | None = None) -> int:
    """Train as ``cfg`` says; ``given`` names the options the command line gave (for
    ``--resume``: those are applied to, or refused against, the run's own config)."""
    notes: list[str] = []
    source = None
    if cfg.resume:
        cfg, notes, source = resume_config(cfg, given)
    info = dist_utils.init_distributed(cfg.device)
    reporter.enabled = info.is_main
    try:
        return Trainer(cfg, reporter, info, resume_notes=notes, resume_source=source).run()
    finally:
        dist_utils.cleanup(info)
