"""A project's stored predictions with their uncertainty and the model that made them.

The project keeps the predicted label (``.fcn_studio/predictions/<id>.png``) and
the model's id in state.json; this module adds the per-pixel uncertainty beside
it (``.fcn_studio/uncertainty/<id>.png``, 8-bit, 255 = most uncertain, as
``fcn-predict --uncertainty`` writes it), so the heat map works for a stored
prediction as well as for a fresh one. Both files are written atomically; an
unreadable or mismatched uncertainty file is simply not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.atomic import atomic_save

from ..models.model_spec import KINDS, ModelId
from ..session import Prediction
from .project import Project

UNCERTAINTY_DIR = "uncertainty"


def uncertainty_path(project: Project, image_id: str) -> Path:
    return project.app_dir / UNCERTAINTY_DIR / f"{image_id}.png"


def parse_model_id(text: str | None, models_dir: str | Path | None = None) -> ModelId | None:
    """The id a stored prediction records (``ModelId.stored``); None when it names no
    model this app can identify (older projects recorded file names)."""
    if not text:
        return None
    kind, sep, key = text.partition(":")
    if sep and kind in KINDS and kind != "version" and key:
        return ModelId(kind, key)
    if not sep and text.startswith("v") and text[1:].isdigit():
        return ModelId.of_version(text, models_dir)
    return None


def to_uint8(uncertainty: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(uncertainty, 0.0, 1.0) * 255.0).astype(np.uint8)


def store(project: Project, image_id: str, prediction: Prediction) -> None:
    """Write the prediction, then its uncertainty. Raises DataError/OSError on failure."""
    u = prediction.uncertainty
    mean = None if u is None else float(u.mean())
    model = "" if prediction.model is None else prediction.model.stored
    project.save_prediction(image_id, prediction.label, model, mean)
    path = uncertainty_path(project, image_id)
    if u is None:
        path.unlink(missing_ok=True)
        return
    img = Image.fromarray(to_uint8(u), mode="L")
    atomic_save(path, lambda f: img.save(f, format="PNG", compress_level=1))


def load(project: Project, image_id: str) -> Prediction | None:
    """The stored prediction with its uncertainty and model, or None (none, stale, unreadable)."""
    try:
        label = project.load_prediction(image_id)
    except Exception:  # noqa: BLE001 - a stale prediction (other size or classes) is not used
        return None
    if label is None:
        return None
    entry = project.entry(image_id)
    return Prediction(label, _load_uncertainty(project, image_id, label.shape),
                      parse_model_id(entry.model_version, project.models_dir))


def _load_uncertainty(project: Project, image_id: str,
                      shape: tuple[int, ...]) -> np.ndarray | None:
    path = uncertainty_path(project, image_id)
    if not path.is_file():
        return None
    try:
        with Image.open(path) as img:
            u8 = np.asarray(img.convert("L"))
    except (OSError, ValueError):
        return None
    if u8.shape != shape:
        return None
    return u8.astype(np.float32) / 255.0
