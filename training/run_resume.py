"""What ``fcn-train --resume`` continues from: the run's configuration and resume.pt.

The configuration is the run's own ``config.json`` (else what ``last.pt`` recorded)
with the options given now merged in or refused (:func:`train_config.merge_resume`);
``resume.pt`` holds the optimizer and schedule state, read through the checkpoint
reader so a foreign or damaged file is named, never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from .checkpoint import read_checkpoint_file, read_metadata
from .errors import CheckpointError, DataError
from .train_config import TrainConfig, merge_resume


def _given_by_default(cfg: TrainConfig) -> set[str]:
    """For callers without a command line: the options that differ from the defaults."""
    d = TrainConfig(data="", out="")
    given = {f.name for f in fields(TrainConfig) if getattr(cfg, f.name) != getattr(d, f.name)}
    return given | {"data", "out"}


def _stored_config(out: Path) -> tuple[dict[str, Any], str]:
    """The run's own configuration: config.json, else what last.pt recorded."""
    path = out / "config.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, f"cannot read the run's configuration to resume it ({exc})") from None
        if not isinstance(stored, dict):
            raise DataError(path, "not a JSON object of options; cannot resume the run")
        return stored, str(path)
    last = out / "last.pt"
    if not last.is_file():
        raise DataError(out, "cannot resume: no training run here (no config.json, no last.pt)")
    stored = read_metadata(last).get("training")
    if not isinstance(stored, dict) or not stored:
        raise DataError(path, "missing, and last.pt records no training configuration; "
                              "cannot resume the run")
    return stored, f"{last} (the run has no config.json)"


def resume_config(cfg: TrainConfig, given: set[str] | None) -> tuple[TrainConfig, list[str], str]:
    """The config a ``--resume`` trains with, the notes on what changed, and its source."""
    stored, source = _stored_config(Path(cfg.out))
    merged, notes = merge_resume(stored, cfg, _given_by_default(cfg) if given is None else given,
                                 source)
    return merged, notes, source


def best_from_history(history: list[dict[str, Any]]) -> float:
    scores = [float(r["mean_iou"]) for r in history
              if int(r.get("epoch", 0)) >= 1 and isinstance(r.get("mean_iou"), int | float)]
    return max(scores, default=-1.0)


_RESUME_KEYS: dict[str, type | tuple[type, ...]] = {
    "optimizer": dict, "scheduler": dict, "epoch": int, "iteration": int,
    "best_miou": (int, float)}


def read_resume_state(path: Path) -> dict[str, Any]:
    """resume.pt through the checkpoint reader (weights_only, every failure named)."""
    try:
        state = read_checkpoint_file(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} Delete it to resume from last.pt with a fresh optimizer "
                              "state.") from None
    for key, kind in _RESUME_KEYS.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(f"{path}: not a resume file of this run ({key!r} missing or "
                                  "of the wrong type). Delete it to resume from last.pt with a "
                                  "fresh optimizer state.")
    return state
