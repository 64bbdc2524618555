"""Benchmark the editing core on a 4000 x 3000 (12 MP) label map.

A plain script, not a test: ``.venv/bin/python benchmarks/bench_editing.py``.
Prints each figure beside a naive baseline measured in the same run:

- brush segment (one mouse move, dirty box included), radius 10 and 50,
  against a whole-image ``np.where`` per segment (with the dirty box found by
  ``np.nonzero`` over the whole image);
- flood fill of a large region, against a pixel-by-pixel Python BFS (the
  textbook flood fill) on the same region; ``--quick`` runs that slow
  baseline on a 1000 x 1000 crop and scales it by pixel count;
- the worst case for a span fill (salt-and-pepper noise), against the pure
  scanline without the vectorised fallback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcn_studio.labelmap.editing import Stroke, fill_polygon, flood_fill  # noqa: E402
from fcn_studio.labelmap.geometry import capsule_mask, connected_region  # noqa: E402

H, W = 3000, 4000


def blobby_label(seed: int = 0) -> np.ndarray:
    """Background with 400 discs of 20 classes: like a corrected FCN prediction."""
    rng = np.random.default_rng(seed)
    label = np.zeros((H, W), np.uint8)
    for _ in range(400):
        cy, cx, r = int(rng.integers(0, H)), int(rng.integers(0, W)), int(rng.integers(5, 90))
        y0, y1, x0, x1 = max(0, cy - r), min(H, cy + r + 1), max(0, cx - r), min(W, cx + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        label[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, 21)
    return label


def drag_points(n: int, step: float, seed: int = 1) -> list[tuple[float, float]]:
    """A wandering mouse drag of ``n`` events about ``step`` pixels apart."""
    rng = np.random.default_rng(seed)
    x, y, heading = 500.0, 500.0, 0.3
    points = []
    for _ in range(n):
        heading += float(rng.normal(0, 0.3))
        x = min(max(x + step * np.cos(heading), 0.0), W - 1.0)
        y = min(max(y + step * np.sin(heading), 0.0), H - 1.0)
        points.append((x, y))
    return points


def naive_segment(label: np.ndarray, a: tuple[float, float], b: tuple[float, float],
                  radius: float, value: int) -> object:
    """Whole-image work per mouse move: full-size mask, np.where, np.nonzero bbox."""
    window = capsule_mask((int(a[1]), int(a[0])), (int(b[1]), int(b[0])), radius, label.shape)
    full = np.zeros(label.shape, dtype=bool)
    if window is not None:
        y0, x0, m = window
        full[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
    changed = full & (label != value)
    ys, xs = np.nonzero(changed)
    box = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if ys.size else None
    label[...] = np.where(full, value, label)
    return box


def segment_times(label: np.ndarray, points: list[tuple[float, float]], radius: float,
                  naive: bool) -> list[float]:
    """ms per mouse move of one stroke painting class 7 along ``points``."""
    stroke = Stroke(label, 7, radius)
    stroke.add_point(*points[0])
    times = []
    for a, b in zip(points, points[1:], strict=False):
        t = time.perf_counter()
        if naive:
            naive_segment(label, a, b, radius, 7)
        else:
            stroke.add_point(*b)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def naive_fill(label: np.ndarray, row: int, col: int, value: int) -> int:
    """The textbook flood fill: one Python step per pixel."""
    h, w = label.shape
    seed = label[row, col]
    flat = label.ravel()
    todo = deque([row * w + col])
    flat[row * w + col] = value
    n = 0
    while todo:
        i = todo.popleft()
        n += 1
        y, x = divmod(i, w)
        for j, ok in ((i - w, y > 0), (i + w, y < h - 1), (i - 1, x > 0), (i + 1, x < w - 1)):
            if ok and flat[j] == seed:
                flat[j] = value
                todo.append(j)
    return n


def best_of(n: int, f: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return min(times)


def bench_brush() -> None:
    base = blobby_label()
    for radius in (10.0, 50.0):
        for step, n in ((8.0, 300), (60.0, 100)):
            points = drag_points(n, step)
            ours = segment_times(base.copy(), points, radius, naive=False)
            naive = segment_times(base.copy(), points[:40], radius, naive=True)
            med, p99 = statistics.median(ours), float(np.percentile(ours, 99))
            nmed = statistics.median(naive)
            print(f"brush r={radius:>4.0f} step {step:>3.0f}px: {med:6.3f} ms/segment "
                  f"(p99 {p99:.3f}, max {max(ours):.3f}) | naive np.where {nmed:7.2f} ms "
                  f"| {nmed / med:6.0f}x faster")
    # finish + undo/redo of one long stroke
    label = base.copy()
    stroke = Stroke(label, 7, 50.0)
    for p in drag_points(300, 8.0):
        stroke.add_point(*p)
    t = time.perf_counter()
    delta = stroke.finish()
    t_finish = (time.perf_counter() - t) * 1e3
    assert delta is not None
    t_undo = best_of(3, lambda: delta.undo(label))
    t_redo = best_of(3, lambda: delta.redo(label))
    print(f"stroke of 300 moves, r=50: finish {t_finish:.1f} ms, undo {t_undo:.2f} ms, "
          f"redo {t_redo:.2f} ms, delta {delta.nbytes / 1e3:.0f} kB for box {delta.shape}")


def bench_fill(quick: bool) -> None:
    base = blobby_label()
    seed_row, seed_col = np.argwhere(base == 0)[0]

    def ours() -> None:
        label = base.copy()
        flood_fill(label, seed_col + 0.5, seed_row + 0.5, 200)

    copy_ms = best_of(5, base.copy)
    ours_ms = best_of(5, ours) - copy_ms
    label = base.copy()
    delta = flood_fill(label, seed_col + 0.5, seed_row + 0.5, 200)
    assert delta is not None
    area = delta.count
    if quick:
        crop = base[:1000, :1000].copy()
        t = time.perf_counter()
        n = naive_fill(crop, int(seed_row), int(seed_col), 200)
        naive_ms = (time.perf_counter() - t) * 1e3 * area / n
        how = f"pixel BFS on a 1 MP crop, scaled x{area / n:.1f}"
    else:
        label = base.copy()
        t = time.perf_counter()
        n = naive_fill(label, int(seed_row), int(seed_col), 200)
        naive_ms = (time.perf_counter() - t) * 1e3
        assert n == area
        how = "pixel BFS, same region"
    print(f"flood fill 12 MP, region {area / 1e6:.1f} MP (background with 400 holes): "
          f"{ours_ms:.1f} ms | naive {how}: {naive_ms:.0f} ms | {naive_ms / ours_ms:.0f}x faster")
    print(f"  delta {delta.nbytes / 1e6:.2f} MB; undo {best_of(3, lambda: delta.undo(label)):.1f} ms")

    empty = np.zeros((H, W), np.uint8)
    empty_ms = best_of(5, lambda: flood_fill(empty.copy(), 0, 0, 1)) - copy_ms
    print(f"flood fill 12 MP, whole empty image: {empty_ms:.1f} ms")

    rng = np.random.default_rng(2)
    noise = (rng.random((H, W)) < 0.2).astype(np.uint8)  # 80 % background, 20 % specks
    fast = best_of(2, lambda: connected_region(noise, 0, 0))
    slow = best_of(1, lambda: connected_region(noise, 0, 0, run_budget=10**9))
    print(f"worst case, salt-and-pepper 12 MP: {fast:.0f} ms with the vectorised fallback | "
          f"pure scanline {slow:.0f} ms | {slow / fast:.1f}x faster")

    poly = [(200.0, 150.0), (3800.0, 300.0), (3500.0, 2800.0), (2000.0, 1200.0), (300.0, 2900.0)]
    print(f"polygon fill, ~7 MP concave polygon: "
          f"{best_of(3, lambda: fill_polygon(base.copy(), poly, 9)) - copy_ms:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="run the slow pixel-BFS baseline on a 1 MP crop only")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    bench_brush()
    bench_fill(args.quick)


if __name__ == "__main__":
    main()
