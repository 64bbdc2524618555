"""``fcn-train DATA --out RUN_DIR``: train or fine-tune an FCN on a VOC dataset.

Run folder: ``config.json`` (the full configuration), ``log.jsonl`` (every event),
``history.json`` (metrics per epoch), ``last.pt`` (the latest model, written at
every epoch end and on a clean stop), ``best.pt`` (best validation mean IoU) and,
while a run can still be resumed, ``resume.pt`` (optimizer and schedule state).
Under ``torchrun`` the same command trains with DistributedDataParallel; rank 0
alone writes files and events.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from . import distributed as dist_utils
from . import voc
from .atomic import atomic_write_text
from .checkpoint import LoadedModel, load_model, make_checkpoint, save_checkpoint
from .dataset import SegmentationDataset, collate_padded
from .device import autocast_dtype, describe_device, resolve_device
from .errors import DataError, TrainingDiverged
from .metrics import ConfusionMatrix
from .model import FCN
from .model_init import initial_model
from .progress import EtaEstimator, Reporter
from .train_config import TrainConfig
from .transforms import eval_transform, train_transform

VOID = 255


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop polls it between iterations."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test thread)
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.reason = "cancelled"


def _ignore_sigint_in_worker(_worker_id: int) -> None:
    # Ctrl+C reaches the whole process group; only the main process decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    iteration: int = 0
    best_miou: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # seconds of training before this process (resume)


def _param_groups(model: FCN, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Backbone at lr, score layers (zero-initialised) at lr x head_lr_mult; no decay on biases."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # frozen bilinear upsampling
        head = name.startswith(("score", "upscore"))
        decay = p.ndim > 1
        groups.setdefault((head, decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * (cfg.head_lr_mult if head else 1.0),
         "weight_decay": cfg.weight_decay if decay else 0.0}
        for (head, decay), ps in groups.items()
    ]


def _optimizer(model: FCN, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _lr_lambda(total: int, warmup: int):
    def f(it: int) -> float:
        if warmup and it < warmup:
            return (it + 1) / warmup
        return max(0.0, 1.0 - it / max(total, 1)) ** 0.9

    return f


def _split_ids(root: Path, split: str) -> list[str]:
    if not (root / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
        return []
    return voc.read_split(root, split)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-void pixels; 0 (not NaN) for an all-void batch."""
    total = F.cross_entropy(logits.float(), target, ignore_index=VOID, reduction="sum")
    return total / (target != VOID).sum().clamp_min(1)


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, loader: DataLoader, num_classes: int,
                   loaded: LoadedModel, device: torch.device,
                   amp: torch.dtype | None, info: dist_utils.DistInfo) -> ConfusionMatrix:
    """Confusion matrix over this rank's validation images, summed over all ranks."""
    model.eval()
    hist = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in loader:
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

    def __init__(self, cfg: TrainConfig, reporter: Reporter, info: dist_utils.DistInfo) -> None:
        self.cfg = cfg
        self.reporter = reporter
        self.info = info
        self.out = Path(cfg.out)
        self.root = Path(cfg.data)
        self.device = resolve_device(dist_utils.device_for(info, cfg.device))
        self.amp = autocast_dtype(self.device, cfg.amp)
        self.stop = StopFlag()
        self.state = RunState()
        self.model: FCN | None = None
        self._log_file = None

    # -- events ---------------------------------------------------------------
    def emit(self, name: str, **fields: Any) -> None:
        if not self.info.is_main:
            return
        self.reporter.event(name, **fields)
        if self._log_file is not None:
            self._log_file.write(json.dumps({"event": name, "time": round(time.time(), 3),
                                             **fields}, default=str) + "\n")
            self._log_file.flush()

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
        if self.cfg.resume:
            last, resume = self.out / "last.pt", self.out / "resume.pt"
            if not last.is_file():
                raise DataError(last, "cannot resume: no last.pt in the run folder")
            loaded = load_model(last)
            state = None
            if resume.is_file():
                state = torch.load(resume, map_location="cpu", weights_only=True)
            return loaded, state
        return initial_model(self.cfg, class_names, progress=self.info.is_main), None

    def _loaders(self, train_ids: list[str], val_ids: list[str], n: int):
        cfg = self.cfg
        train_ds = SegmentationDataset(
            self.root, train_ids, n,
            transform=train_transform(cfg.crop, scale_range=(cfg.scale_min, cfg.scale_max)),
        )
        sampler = (DistributedSampler(train_ds, shuffle=True, seed=cfg.seed, drop_last=False)
                   if self.info.enabled else None)
        g = torch.Generator()
        g.manual_seed(cfg.seed)
        per_rank = math.ceil(len(train_ds) / self.info.world_size)
        train_loader = DataLoader(
            train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
            num_workers=cfg.workers, collate_fn=collate_padded, generator=g,
            drop_last=per_rank > cfg.batch_size, pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_sigint_in_worker, persistent_workers=cfg.workers > 0,
        )
        shard = val_ids[self.info.rank :: self.info.world_size]
        val_loader = None
        if shard:
            val_ds = SegmentationDataset(self.root, shard, n, transform=eval_transform())
            val_loader = DataLoader(val_ds, batch_size=1, num_workers=min(cfg.workers, 1),
                                    worker_init_fn=_ignore_sigint_in_worker)
        return train_ds, sampler, train_loader, val_loader

    # -- checkpoints ---------------------------------------------------------------
    def _save(self, bare: FCN, loaded: LoadedModel, optimizer, scheduler, scaler, best: bool,
              metrics: dict[str, Any], ids: dict[str, list[str]], keep_resume: bool = True) -> None:
        if not self.info.is_main:
            return
        extra = {"epoch": self.state.epoch, "iteration": self.state.iteration,
                 "train_ids": ids["train"], "val_ids": ids["val"],
                 "duration_s": round(self.state.elapsed, 2), "history": self.state.history}
        ckpt = make_checkpoint(bare, loaded.class_names, loaded.normalization,
                               palette=loaded.palette, training=self.cfg.to_dict(),
                               metrics=metrics, parent=self.cfg.parent or loaded.meta.get("init"),
                               extra=extra)
        save_checkpoint(self.out / "last.pt", ckpt)
        self.emit("checkpoint", kind="last", path=str(self.out / "last.pt"),
                  epoch=self.state.epoch, iteration=self.state.iteration)
        if best:
            save_checkpoint(self.out / "best.pt", ckpt)
            self.emit("checkpoint", kind="best", path=str(self.out / "best.pt"),
                      epoch=self.state.epoch, iteration=self.state.iteration,
                      mean_iou=metrics.get("mean_iou"))
        if keep_resume:
            resume = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict() if scaler is not None else {},
                      "epoch": self.state.epoch, "iteration": self.state.iteration,
                      "best_miou": self.state.best_miou, "elapsed": self.state.elapsed}
            save_checkpoint(self.out / "resume.pt", resume)
        elif (self.out / "resume.pt").exists():
            (self.out / "resume.pt").unlink()
        atomic_write_text(self.out / "history.json", json.dumps(self.state.history, indent=1))

    # -- main loop -------------------------------------------------------------------
    def run(self) -> int:
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        try:
            return self._run()
        finally:
            if self._log_file is not None:
                self._log_file.close()

    def _run(self) -> int:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        class_names, train_ids, val_ids = self._prepare_data()
        loaded, resume_state = self._load_start(class_names)
        if loaded.class_names != class_names:
            raise DataError(self.root, f"the dataset's classes {class_names} differ from the "
                                       f"model's {loaded.class_names}")
        if info.is_main and not cfg.resume:
            atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        n = len(class_names)
        bare = loaded.model.to(self.device)
        if self.device.type == "cuda":
            bare = bare.to(memory_format=torch.channels_last)
        self.model = bare  # the unwrapped model, for callers that inspect it afterwards
        model: torch.nn.Module = bare
        if info.enabled:
            model = torch.nn.parallel.DistributedDataParallel(
                bare, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        train_ds, sampler, train_loader, val_loader = self._loaders(train_ids, val_ids, n)
        per_epoch = len(train_loader)
        total = cfg.iters if cfg.iters else cfg.epochs * per_epoch
        epochs = math.ceil(total / per_epoch)
        optimizer = _optimizer(bare, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, cfg.warmup_iters))
        scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        if resume_state is not None:
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            if scaler is not None and resume_state.get("scaler"):
                scaler.load_state_dict(resume_state["scaler"])
            self.state.epoch = int(resume_state["epoch"])
            self.state.iteration = int(resume_state["iteration"])
            self.state.best_miou = float(resume_state["best_miou"])
            self.state.elapsed = float(resume_state.get("elapsed", 0.0))
            self.state.history = list(loaded.meta.get("history", []))
        ids = {"train": train_ids, "val": val_ids}
        self.emit("start", epochs=epochs, total=total, iters_per_epoch=per_epoch,
                  iteration=self.state.iteration, epoch=self.state.epoch,
                  train_images=len(train_ids), val_images=len(val_ids), classes=class_names,
                  device=describe_device(self.device), world_size=info.world_size,
                  run_dir=str(self.out), model=bare.config.to_dict(), resumed=cfg.resume)
        self.reporter.log(
            f"training {bare.config.arch} ({bare.config.backbone}, {bare.config.alignment}) on "
            f"{len(train_ids)} images, validating on {len(val_ids)}, {describe_device(self.device)}"
            + (f", {info.world_size} processes" if info.enabled else "")
        ) if info.is_main else None
        self.stop.install()
        if cfg.val_before and val_ids and not cfg.resume:
            # The starting model on the same images: the "before" of a before/after.
            cm = evaluate_model(model, val_loader or [], n, loaded, self.device, self.amp, info)
            before = {"epoch": 0, "iteration": 0, **cm.scores().to_dict()}
            self.state.history.append(before)
            self.emit("epoch", epochs=epochs, before=True, **before)
        t_start = time.monotonic() - self.state.elapsed
        eta = EtaEstimator()
        status = "finished"
        last_metrics: dict[str, Any] = {}
        try:
            while self.state.iteration < total and status == "finished":
                epoch = self.state.epoch
                if sampler is not None:
                    sampler.set_epoch(epoch)
                model.train()
                loss_sum, loss_n, t_epoch = 0.0, 0, time.monotonic()
                for images, labels in train_loader:
                    x = loaded.normalization.apply(images.to(self.device, non_blocking=True))
                    if self.device.type == "cuda":
                        x = x.contiguous(memory_format=torch.channels_last)
                    y = labels.to(self.device, non_blocking=True)
                    with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                        logits = model(x)
                    loss = _loss(logits, y)
                    bad = not bool(torch.isfinite(loss))
                    if dist_utils.any_rank(bad, info, self.device):
                        raise TrainingDiverged(
                            f"the loss became non-finite at iteration {self.state.iteration + 1}; "
                            "training stopped and the last good checkpoint was kept. "
                            "Try a lower --lr."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    scheduler.step()
                    self.state.iteration += 1
                    loss_sum += float(loss.detach())
                    loss_n += 1
                    self.state.elapsed = time.monotonic() - t_start
                    remaining = eta.update(self.state.iteration, total)
                    ips = loss_n * cfg.batch_size * info.world_size / max(time.monotonic() - t_epoch, 1e-9)
                    self.emit("progress", epoch=epoch + 1, epochs=epochs,
                              iteration=self.state.iteration, total=total, loss=float(loss.detach()),
                              lr=optimizer.param_groups[0]["lr"], eta=remaining, images_per_s=ips)
                    if info.is_main:
                        self.reporter.bar(self.state.iteration, total, f"epoch {epoch + 1}/{epochs}",
                                          f"loss {loss_sum / loss_n:.3f}", eta=remaining)
                    timed_out = cfg.time_limit is not None and self.state.elapsed >= cfg.time_limit
                    if dist_utils.any_rank(self.stop.reason is not None or timed_out, info, self.device):
                        status = "cancelled" if self.stop.reason else "time_limit"
                        break
                    if self.state.iteration >= total:
                        break
                epoch_done = status == "finished" or loss_n >= per_epoch
                if epoch_done:
                    self.state.epoch = epoch + 1
                metrics: dict[str, Any] = {"train_loss": loss_sum / max(loss_n, 1)}
                if val_ids and status != "cancelled":  # a person who cancels wants it to stop now
                    cm = evaluate_model(model, val_loader or [], n, loaded, self.device,
                                        self.amp, info)
                    metrics.update(cm.scores().to_dict())
                mean_iou = metrics.get("mean_iou")
                best = mean_iou is not None and mean_iou > self.state.best_miou
                if best:
                    self.state.best_miou = mean_iou
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
                self._save(bare, loaded, optimizer, scheduler, scaler,
                           best=best or (no_val and finished), metrics=metrics, ids=ids,
                           keep_resume=not finished)
                dist_utils.barrier(info)
        finally:
            self.stop.restore()
        self.emit("done", status=status, epoch=self.state.epoch, iteration=self.state.iteration,
                  total=total, best_mean_iou=self.state.best_miou if self.state.best_miou >= 0 else None,
                  metrics=last_metrics, seconds=round(self.state.elapsed, 2),
                  last=str(self.out / "last.pt"),
                  best=str(self.out / "best.pt") if (self.out / "best.pt").exists() else None)
        if info.is_main:
            self.reporter.log(f"{status}: {self.out / 'last.pt'}"
                              + (f", best val mean IoU {100 * self.state.best_miou:.1f}%"
                                 if self.state.best_miou >= 0 else ""))
        return 130 if status == "cancelled" else 0


def run_training(cfg: TrainConfig, reporter: Reporter) -> int:
    info = dist_utils.init_distributed(cfg.device)
    reporter.enabled = info.is_main
    try:
        return Trainer(cfg, reporter, info).run()
    finally:
        dist_utils.cleanup(info)
