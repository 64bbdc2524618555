"""How fast the image list shows a 10,000-image project, against eager thumbnails.

Run: ``.venv/bin/python benchmarks/bench_image_list.py [--count 10000]`` (offscreen).

Prints
- lazy: time from ``ImageListPanel.set_project`` to the list's first paint, and
  to the moment every thumbnail on screen has arrived, in list and icon mode;
- eager baseline: the same thumbnails loaded for every image before showing the
  list (what a QListWidget filled with icons does), measured on a sample and
  extrapolated to the full count; the ratio of the two;
- per-thumbnail cost on a 12 MP JPEG with and without ``Image.draft``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QEvent, QObject  # noqa: E402
from PySide6.QtGui import QIcon, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from fcn_studio.ui.docks.image_list import ImageListPanel  # noqa: E402
from fcn_studio.ui.docks.thumbnails import THUMB_SIZE, load_thumbnail  # noqa: E402

STATES = ("new", "predicted", "corrected", "saved")


@dataclass
class Entry:
    id: str
    image_path: Path
    state: str
    error: str | None = None
    correction_effort: float | None = None
    mean_uncertainty: float | None = None


class Project:
    def __init__(self, paths: list[Path]) -> None:
        self.ids = [p.stem for p in paths]
        self._entries = {p.stem: Entry(p.stem, p, STATES[i % 4]) for i, p in enumerate(paths)}

    def entry(self, image_id: str) -> Entry:
        return self._entries[image_id]


def write_images(folder: Path, count: int) -> list[Path]:
    """``count`` small real JPEGs (640x480, like a phone preview), 16 distinct contents."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(16):
        buf = io.BytesIO()
        pixels = rng.integers(0, 255, (480 // 16, 640 // 16, 3), np.uint8)
        Image.fromarray(pixels).resize((640, 480), Image.Resampling.BILINEAR).save(buf, "JPEG")
        blobs.append(buf.getvalue())
    paths = [folder / f"img_{i:05d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(blobs[i % 16])
    return paths


class FirstPaint(QObject):
    """Records when a widget is first painted."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Paint and self.at is None:
            self.at = time.perf_counter()
        return False


def lazy(app: QApplication, project: Project, icons: bool) -> tuple[float, float, float, int]:
    """(set_project s, first paint s, all visible thumbnails s, loads started)."""
    panel = ImageListPanel()
    panel.resize(360, 800)
    panel.set_icon_mode(icons)
    panel.show()
    app.processEvents()
    probe = FirstPaint()
    panel.view.viewport().installEventFilter(probe)
    t0 = time.perf_counter()
    panel.set_project(project)
    t_set = time.perf_counter() - t0
    while probe.at is None:
        app.processEvents()
    t_paint = probe.at - t0
    cache = panel.thumbnails
    # Thumbnails arrive as queued events; every row on screen has one when no
    # load is pending any more and the rows painted last found theirs cached.
    while True:
        app.processEvents()
        if not cache.pending_count() and cache.loads_started:
            panel.view.viewport().repaint()
            if not cache.pending_count():
                break
    t_thumbs = time.perf_counter() - t0
    loads = cache.loads_started
    panel.close()
    panel.deleteLater()
    app.processEvents()
    return t_set, t_paint, t_thumbs, loads


def eager_per_image(paths: list[Path]) -> float:
    """Seconds per image to load a thumbnail and make its icon, as an eager list would."""
    t0 = time.perf_counter()
    icons = [QIcon(QPixmap.fromImage(load_thumbnail(p, THUMB_SIZE))) for p in paths]
    elapsed = time.perf_counter() - t0
    assert len(icons) == len(paths)
    return elapsed / len(paths)


def draft_gain(folder: Path) -> tuple[float, float]:
    """Median seconds for one thumbnail of a 4000x3000 JPEG: with draft, and full decode."""
    path = folder / "photo_12mp.jpg"
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (75, 100, 3), np.uint8)
    Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)

    def full() -> None:
        with Image.open(path) as img:
            img.load()
            img.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR)

    def timed(fn) -> float:
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    return timed(lambda: load_thumbnail(path, THUMB_SIZE)), timed(full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--eager-sample", type=int, default=300)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = write_images(folder, args.count)
        print(f"wrote {args.count} JPEGs (640x480) in {time.perf_counter() - t0:.1f} s")
        project = Project(paths)
        results = {}
        for icons in (False, True):
            mode = "icon" if icons else "list"
            t_set, t_paint, t_thumbs, loads = lazy(app, project, icons)
            results[mode] = t_paint
            print(f"lazy, {mode} mode: set_project {1e3 * t_set:.1f} ms, first paint "
                  f"{1e3 * t_paint:.1f} ms, on-screen thumbnails done {1e3 * t_thumbs:.0f} ms "
                  f"({loads} files read of {args.count})")
        per = eager_per_image(paths[: args.eager_sample])
        eager = per * args.count
        print(f"eager baseline: {1e3 * per:.2f} ms per thumbnail x {args.count} = {eager:.1f} s "
              f"before the first paint (measured on {args.eager_sample}, extrapolated)")
        for mode, t_paint in results.items():
            print(f"  ratio eager / lazy first paint ({mode} mode): {eager / t_paint:.0f}x")
        with_draft, without = draft_gain(folder)
        print(f"12 MP JPEG thumbnail: {1e3 * with_draft:.0f} ms with Image.draft, "
              f"{1e3 * without:.0f} ms full decode ({without / with_draft:.1f}x)")


if __name__ == "__main__":
    main()
