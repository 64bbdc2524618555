"""The optimizer and learning-rate schedule of ``fcn-train``.

Backbone and score layers get their own rates (the score layers start at zero and
learn faster), biases no weight decay. The schedule warms up, then decays (poly,
power 0.9) over the run's iterations or its time budget, whichever ends first; a
resumed run is put back at its iteration with the rates it is given now.
"""

from __future__ import annotations

from typing import Any, Final

import torch
from torch import nn

from .model import FCN
from .train_config import TrainConfig


def param_groups(model: FCN, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Backbone at lr, score layers (zero-initialised) at lr x head_lr_mult; no decay on biases."""
    assert cfg.lr is not None, "the trainer resolves a default --lr before building the optimizer"
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


# Devices where PyTorch has fused SGD and AdamW kernels. A fused step passes over each
# parameter once; the default on a CPU is a Python loop of several whole-tensor ops per
# parameter. For VGG16's 134M parameters on a 2-core CPU an AdamW step took 0.49 s,
# fused 0.07 s (SGD with momentum and weight decay: 0.64 s, fused 0.04 s): most of a
# training step of 4 crops of 120x90 (1.60 s, fused 0.99 s). The numbers agree to
# rounding (float32, 2e-7 after five steps).
FUSED_DEVICES: Final = frozenset({"cpu", "cuda"})


def uses_fused(model: nn.Module) -> bool:
    """Whether ``model``'s optimizer gets the fused kernels (by its parameters' device)."""
    return next(model.parameters()).device.type in FUSED_DEVICES


def make_optimizer(model: FCN, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with --momentum) or AdamW over :func:`param_groups`, fused where it can be."""
    groups = param_groups(model, cfg)
    fused = uses_fused(model)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, fused=fused)  # each group has its lr
    return torch.optim.AdamW(groups, fused=fused)


def lr_multiplier(total: int, warmup: int):
    """The rate's multiplier: a linear warm-up, then poly decay (power 0.9) over the run.

    ``spent`` is the share of a time budget used so far: a run that ends at a time
    limit decays over the budget, not over an iteration count it will never reach
    (a fine-tune of "1000 epochs or 3 minutes" would otherwise train at full rate
    to its last step, and short runs gain most from ending at a low rate).
    """
    def f(it: int, spent: float = 0.0) -> float:
        if warmup and it < warmup:
            return (it + 1) / warmup
        return max(0.0, 1.0 - max(it / max(total, 1), spent)) ** 0.9

    return f


def follow_budget(optimizer: torch.optim.Optimizer, lr_at, iteration: int, spent: float) -> None:
    """Set every group's rate for the next step from the budget spent (after the
    iteration-based scheduler stepped)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * lr_at(iteration, min(spent, 1.0))


def place_schedule(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    base_lrs: list[float], lr_at, iteration: int) -> None:
    """Put the schedule at ``iteration`` with these base rates (a resumed run's --lr and
    length apply from here on, not only from the next restart)."""
    scheduler.base_lrs = list(base_lrs)
    scheduler.last_epoch = iteration
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * lr_at(iteration)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # what get_last_lr() reports
