"""How long opening a 10,000-image project takes, beside a naive open.

The naive baseline lists the same folder and reads every image header (what an
open that shows sizes up front would do). Both run in this process on the same
folder with a warm file cache, best of ``--repeat`` runs; the figure to read is
the ratio. Also the time of ``save_label`` for a new 500x375 label in that project
(label PNG, split lists, state.json) beside writing the bare label PNG alone.
Tests never assert times; this script only prints them.

    .venv/bin/python benchmarks/bench_project.py [--images 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcn_studio.project.project import Project  # noqa: E402
from training import voc  # noqa: E402
from training.images import image_size  # noqa: E402


def build(root: Path, n: int) -> None:
    """n images (hard links to one 500x375 JPEG), a label for every 4th, split lists."""
    images, labels = root / voc.IMAGES_DIR, root / voc.LABELS_DIR
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(0)
    seed_image = root / "seed.jpg"
    Image.fromarray(rng.integers(0, 255, (375, 500, 3), np.uint8)).save(seed_image, quality=90)
    seed_label = root / "seed.png"
    voc.write_label(seed_label, rng.integers(0, 3, (375, 500)).astype(np.uint8))
    ids = [f"{i:06d}" for i in range(n)]
    for iid in ids:
        os.link(seed_image, images / f"{iid}.jpg")
    labelled = ids[::4]
    for iid in labelled:
        os.link(seed_label, labels / f"{iid}.png")
    cut = len(labelled) * 4 // 5
    voc.write_split(root, "train", labelled[:cut])
    voc.write_split(root, "val", labelled[cut:])
    voc.write_split(root, "trainval", labelled)
    voc.write_class_names(root, ["background", "a", "b"])


def naive_open(root: Path) -> int:
    return len([image_size(voc.image_path(root, i)) for i in voc.image_ids(root)])


def project_open(root: Path) -> int:
    p = Project.open(root)
    for iid in p.ids:  # the image list asks every row once
        p.entry(iid)
    return len(p)


def save_times(root: Path, repeat: int) -> tuple[float, float]:
    """Best save_label time of new labels, and of the bare label PNG write."""
    p = Project.open(root)
    unlabelled = [i for i in p.ids if p.state_of(i) == "new"]
    label = np.random.default_rng(1).integers(0, 3, (375, 500)).astype(np.uint8)
    ours, bare = [], []
    for iid in unlabelled[:repeat]:
        t0 = time.perf_counter()
        p.save_label(iid, label)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        voc.write_label(root / "bare.png", label)
        bare.append(time.perf_counter() - t0)
    return min(ours), min(bare)


def best_of(fn: Callable[[Path], int], root: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(root)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        build(root, args.images)
        ours = best_of(project_open, root, args.repeat)
        open_only = best_of(lambda r: len(Project.open(r)), root, args.repeat)
        naive = best_of(naive_open, root, max(1, args.repeat // 2))
        save, bare = save_times(root, args.repeat)
    print(f"images: {args.images}")
    print(f"Project.open + entry() for every id: {ours * 1000:8.1f} ms"
          f"  (open alone {open_only * 1000:.1f} ms)")
    print(f"naive open (list + read every header): {naive * 1000:8.1f} ms")
    print(f"ratio naive / ours: {naive / ours:.1f}x")
    print(f"save_label (new label, lists, state.json): {save * 1000:8.1f} ms, "
          f"bare label PNG write {bare * 1000:.1f} ms, ratio {save / bare:.1f}x")


if __name__ == "__main__":
    main()
