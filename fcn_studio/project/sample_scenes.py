"""Procedural street scenes with exact labels: the built-in sample project.

The images in resources/sample_project were made by this module (run it as a
script to make them again), so they are the project's own work with no licence
strings attached. Each scene has sky, buildings with windows, trees, a road with
lane marks and cars; the label map marks each, with void on a thin band around
cars where an annotator would be unsure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["background", "sky", "building", "tree", "road", "car"]
BG, SKY, BUILDING, TREE, ROAD, CAR = range(6)


def scene(seed: int, w: int = 480, h: int = 360) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h))
    lab = Image.new("L", (w, h), BG)
    d, dl = ImageDraw.Draw(img), ImageDraw.Draw(lab)
    horizon = int(h * rng.uniform(0.42, 0.55))
    top = np.array([70, 130, 200]) + rng.integers(-20, 20, 3)
    for y in range(horizon):  # sky gradient
        t = y / max(horizon, 1)
        c = (top * (1 - t) + np.array([190, 210, 230]) * t).astype(int)
        d.line([(0, y), (w, y)], fill=tuple(int(v) for v in c))
    dl.rectangle([0, 0, w, horizon], fill=SKY)
    d.rectangle([0, horizon, w, h], fill=(96, 100, 92))  # verge, background class
    x = int(rng.integers(-40, 0))
    while x < w:  # buildings
        bw, bh = int(rng.integers(60, 140)), int(rng.integers(60, horizon - 10))
        col = tuple(int(v) for v in rng.integers(90, 200, 3))
        box = [x, horizon - bh, x + bw, horizon + 8]
        d.rectangle(box, fill=col)
        dl.rectangle(box, fill=BUILDING)
        for wy in range(horizon - bh + 8, horizon - 8, 18):
            for wx in range(x + 6, x + bw - 10, 16):
                d.rectangle([wx, wy, wx + 8, wy + 10], fill=(40, 50, 70))
        x += bw + int(rng.integers(0, 30))
    road_top = horizon + int(rng.integers(10, 30))
    d.polygon([(0, h), (w, h), (w * 0.65, road_top), (w * 0.35, road_top)], fill=(70, 70, 75))
    dl.polygon([(0, h), (w, h), (w * 0.65, road_top), (w * 0.35, road_top)], fill=ROAD)
    for k in range(6):  # lane marks
        y0 = road_top + (h - road_top) * k / 6
        d.line([(w / 2, y0 + 4), (w / 2, y0 + (h - road_top) / 12)], fill=(230, 230, 210), width=3)
    for _ in range(int(rng.integers(1, 4))):  # trees
        cx, r = int(rng.integers(0, w)), int(rng.integers(25, 50))
        cy = horizon - int(rng.integers(0, 30))
        d.rectangle([cx - 4, cy, cx + 4, cy + r + 10], fill=(80, 60, 40))
        dl.rectangle([cx - 4, cy, cx + 4, cy + r + 10], fill=TREE)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(40, int(rng.integers(100, 150)), 50))
        dl.ellipse([cx - r, cy - r, cx + r, cy + r], fill=TREE)
    for _ in range(int(rng.integers(1, 4))):  # cars, nearer ones lower and larger
        cy = int(rng.integers(road_top + 20, h - 20))
        s = 0.4 + 0.9 * (cy - road_top) / (h - road_top)
        cw, ch = int(90 * s), int(40 * s)
        cx = int(rng.integers(int(w * 0.2), int(w * 0.8) - cw))
        col = tuple(int(v) for v in rng.integers(20, 230, 3))
        body = [cx, cy - ch, cx + cw, cy]
        dl.rounded_rectangle([b + o for b, o in zip(body, (-2, -2, 2, 2), strict=True)],
                             radius=int(8 * s), fill=255)
        d.rounded_rectangle(body, radius=int(8 * s), fill=col)
        dl.rounded_rectangle(body, radius=int(8 * s), fill=CAR)
        d.rectangle([cx + cw * 0.2, cy - ch * 0.9, cx + cw * 0.8, cy - ch * 0.55], fill=(150, 190, 210))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 5, (h, w, 3)).astype(np.int16)
    return arr.clip(0, 255).astype(np.uint8), np.asarray(lab)


def write_sample_project(root: Path, count: int = 8, labelled: int = 3) -> None:
    """A VOC project: ``count`` scenes, the first ``labelled`` with saved labels."""
    from training.palette import palette_bytes

    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(exist_ok=True)
    ids = [f"street_{i:02d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        image, label = scene(1000 + i)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=88)
        if i < labelled:
            p = Image.fromarray(label, mode="P")
            p.putpalette(palette_bytes())
            p.save(root / "SegmentationClass" / f"{image_id}.png")
    (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[: max(1, labelled - 1)]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[max(1, labelled - 1) : labelled]) + "\n")
    (sets / "trainval.txt").write_text("\n".join(ids[:labelled]) + "\n")


if __name__ == "__main__":
    write_sample_project(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("resources/sample_project"))
