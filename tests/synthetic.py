"""Synthetic segmentation data that tests write themselves (no files outside the repo).

Each image is a noisy grey background with a red rectangle (class 1) and a blue
disc (class 2); the label map says exactly where they are, with a void border
around the disc, the way annotators mark uncertain edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.palette import palette_bytes

CLASS_NAMES = ["background", "box", "disc"]


def synthetic_pair(seed: int, h: int = 64, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(128, 12, (h, w, 3)).clip(0, 255).astype(np.uint8)
    label = np.zeros((h, w), np.uint8)
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    y1, x1 = y0 + rng.integers(h // 5, h // 2), x0 + rng.integers(w // 5, w // 2)
    image[y0:y1, x0:x1] = (200, 40, 40)
    label[y0:y1, x0:x1] = 1
    cy, cx, r = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4), h // 6
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    disc = d2 <= r * r
    image[disc] = (40, 60, 210)
    label[disc] = 2
    label[(d2 > r * r) & (d2 <= (r + 1) ** 2)] = 255
    return image, label


def save_palette_png(path: Path, label: np.ndarray) -> None:
    img = Image.fromarray(label, mode="P")
    img.putpalette(palette_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_voc(root: Path, n: int = 6, n_val: int = 2, h: int = 64, w: int = 80,
              seed: int = 0) -> list[str]:
    """A VOC folder with n labelled images; the last n_val are the val split."""
    ids = [f"img{i:03d}" for i in range(n)]
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(ids):
        image, label = synthetic_pair(seed + i, h, w)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.png")
        save_palette_png(root / "SegmentationClass" / f"{image_id}.png", label)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[: n - n_val]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[n - n_val :]) + "\n")
    (sets / "trainval.txt").write_text("\n".join(ids) + "\n")
    (root / "class_names.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return ids
