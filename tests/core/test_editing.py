"""Brush, flood fill, polygon, eyedropper and remap on numpy label maps (no Qt)."""

from __future__ import annotations

import math
import subprocess
import sys
import tracemalloc
from collections import deque

import numpy as np
import pytest

from fcn_studio.labelmap.editing import (
    PaintPolicy,
    Stroke,
    fill_polygon,
    flood_fill,
    pick,
)
from fcn_studio.labelmap.geometry import connected_region, polygon_mask
from fcn_studio.labelmap.history import Delta

BIG = (3000, 4000)  # 12 MP, the size the performance brief is about


def random_label(shape: tuple[int, int], seed: int = 0, classes: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, shape).astype(np.uint8)


def capsule_oracle(
    shape: tuple[int, int], points: list[tuple[float, float]], radius: float
) -> np.ndarray:
    """Brute force over the whole grid: pixels within radius of the stroke polyline,
    measured between the centres of the pixels under the points."""
    r = max(radius, 0.5)
    ii, jj = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    snapped = [(math.floor(y), math.floor(x)) for x, y in points]
    pairs = list(zip(snapped, snapped[1:], strict=False)) or [(snapped[0], snapped[0])]
    out = np.zeros(shape, dtype=bool)
    for (ay, ax), (by, bx) in pairs:
        dy, dx = by - ay, bx - ax
        l2 = dy * dy + dx * dx
        t = np.zeros(shape) if l2 == 0 else np.clip(((ii - ay) * dy + (jj - ax) * dx) / l2, 0, 1)
        out |= (ii - ay - t * dy) ** 2 + (jj - ax - t * dx) ** 2 <= r * r + 1e-7
    return out


def paint(label: np.ndarray, points: list[tuple[float, float]], value: int, radius: float,
          policy: PaintPolicy | None = None) -> Delta | None:
    stroke = Stroke(label, value, radius, policy or PaintPolicy())
    for x, y in points:
        stroke.add_point(x, y)
    return stroke.finish()


# --- brush ---------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5, 10.0, 25.0])
def test_dab_paints_a_disc_of_the_right_area(radius: float) -> None:
    label = np.zeros((80, 80), np.uint8)
    delta = paint(label, [(40.3, 39.8)], 7, radius)
    r = int(radius)
    lattice = sum(dy * dy + dx * dx <= radius * radius
                  for dy in range(-r, r + 1) for dx in range(-r, r + 1))
    assert int((label == 7).sum()) == lattice == delta.count
    # Gauss circle problem: the error is at most about the perimeter.
    assert lattice == pytest.approx(math.pi * radius * radius, abs=2 * math.pi * radius)
    assert label[39, 40] == 7  # centred on the pixel under the cursor


@pytest.mark.parametrize("point", [(10.0, 5.0), (10.99, 5.01), (10.5, 5.5)])
def test_radius_half_paints_exactly_the_pixel_under_the_cursor(point: tuple[float, float]) -> None:
    label = np.zeros((20, 20), np.uint8)
    stroke = Stroke(label, 3, 0.5)
    assert stroke.add_point(*point) == (5, 10, 6, 11)
    assert np.argwhere(label == 3).tolist() == [[5, 10]]


def test_fast_diagonal_drag_with_large_steps_leaves_no_gaps() -> None:
    label = np.zeros((600, 800), np.uint8)
    points = [(5.5, 5.5), (400.5, 300.5), (795.5, 595.5)]  # ~500 px per mouse move
    paint(label, points, 4, 1.0)
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for t in np.linspace(0.0, 1.0, 2000):
            assert label[int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))] == 4
    assert np.array_equal(label == 4, capsule_oracle(label.shape, points, 1.0))


def test_stroke_matches_brute_force_capsules_including_off_image_points() -> None:
    rng = np.random.default_rng(1)
    for _ in range(8):
        label = np.zeros((50, 70), np.uint8)
        points = [tuple(p) for p in rng.uniform(-30, 100, (5, 2))]
        radius = float(rng.uniform(0, 9))
        paint(label, points, 9, radius)
        assert np.array_equal(label == 9, capsule_oracle(label.shape, points, radius))


def test_stroke_from_far_off_image_paints_only_the_clipped_part() -> None:
    label = np.zeros((50, 50), np.uint8)
    points = [(-1e7, 25.5), (25.5, 25.5), (25.5, 1e9)]
    paint(label, points, 5, 2.0)
    assert np.array_equal(label == 5, capsule_oracle(label.shape, points, 2.0))
    assert (label[24:27, :26] == 5).all() and (label[25:, 24:27] == 5).all()


def test_add_point_returns_the_changed_box() -> None:
    label = np.zeros((100, 100), np.uint8)
    stroke = Stroke(label, 2, 3.0)
    assert stroke.add_point(20.5, 30.5) == (27, 17, 34, 24)
    assert stroke.add_point(20.5, 30.5) is None  # same place again: nothing changes
    box = stroke.add_point(60.5, 30.5)
    assert box == (27, 21, 34, 64)  # the start dab's pixels do not count again
    assert stroke.box == (27, 17, 34, 64)


def test_undo_restores_the_original_exactly_and_redo_reapplies() -> None:
    label = random_label((120, 160))
    original = label.copy()
    delta = paint(label, [(10, 10), (150, 100), (20, 110)], 200, 6.0)
    painted = label.copy()
    assert delta is not None and not np.array_equal(painted, original)
    delta.undo(label)
    assert np.array_equal(label, original)
    delta.redo(label)
    assert np.array_equal(label, painted)
    delta.redo(label)  # idempotent: Qt's push() calls redo on a stroke already painted
    assert np.array_equal(label, painted)


def test_self_crossing_stroke_records_the_original_values() -> None:
    label = random_label((100, 100), seed=3)
    original = label.copy()
    # A figure of eight: the stroke repaints its own pixels several times.
    loop = [(20, 20), (80, 80), (80, 20), (20, 80), (20, 20), (80, 80)]
    delta = paint(label, loop, 1, 5.0)
    assert delta is not None
    delta.undo(label)
    assert np.array_equal(label, original)


def test_locked_classes_are_not_painted_over() -> None:
    label = np.zeros((60, 60), np.uint8)
    label[20:40, 20:40] = 2
    label[0:5, :] = 255
    policy = PaintPolicy(locked=frozenset({2, 255}))
    delta = paint(label, [(0, 0), (59, 59)], 5, 8.0, policy)
    assert (label[20:40, 20:40] == 2).all() and (label[0:5] == 255).all()
    assert (label == 5).any()
    eraser = paint(label, [(0, 59), (59, 0)], 0, 30.0, policy)  # eraser obeys locks too
    assert (label[20:40, 20:40] == 2).all() and (label[0:5] == 255).all()
    assert delta is not None and eraser is not None


def test_stroke_entirely_off_image_changes_nothing() -> None:
    label = np.zeros((30, 30), np.uint8)
    stroke = Stroke(label, 1, 4.0)
    assert stroke.add_point(-100, -100) is None
    assert stroke.add_point(-100, 1e9) is None
    assert stroke.finish() is None
    assert not label.any()


def test_finished_stroke_rejects_more_points_and_cancel_restores() -> None:
    label = random_label((40, 40))
    original = label.copy()
    stroke = Stroke(label, 250, 3.0)
    stroke.add_point(5, 5)
    stroke.add_point(35, 30)
    assert stroke.cancel() is not None
    assert np.array_equal(label, original)
    with pytest.raises(RuntimeError):
        stroke.add_point(1, 1)
    with pytest.raises(ValueError):
        Stroke(label, 256, 3.0)
    with pytest.raises(TypeError):
        Stroke(label.astype(np.int32), 1, 3.0)


def test_small_stroke_on_12_megapixels_stays_small() -> None:
    label = np.zeros(BIG, np.uint8)
    tracemalloc.start()
    try:
        stroke = Stroke(label, 3, 50.0)
        for i in range(40):
            stroke.add_point(1000 + 7.3 * i, 1500 + 3.1 * i)
        delta = stroke.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert delta is not None and delta.nbytes < 1_000_000
    assert peak < 4_000_000  # no whole-image temporaries (the map itself is 12 MB)


# --- flood fill ------------------------------------------------------------


def region_oracle(label: np.ndarray, row: int, col: int, connectivity: int) -> np.ndarray:
    """Pixel-by-pixel BFS: slow, obviously right."""
    h, w = label.shape
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    out = np.zeros(label.shape, dtype=bool)
    out[row, col] = True
    queue = deque([(row, col)])
    while queue:
        y, x = queue.popleft()
        for dy, dx in steps:
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and not out[ny, nx] and label[ny, nx] == label[y, x]:
                out[ny, nx] = True
                queue.append((ny, nx))
    return out


def test_flood_fill_does_not_leak_through_a_diagonal() -> None:
    label = np.zeros((20, 20), np.uint8)
    label[np.arange(20), np.arange(20)] = 1  # a diagonal wall
    four = label.copy()
    delta = flood_fill(four, 15.5, 2.5, 3)  # row 2, column 15: above the wall
    assert delta is not None
    assert int((four == 3).sum()) == (400 - 20) // 2
    assert four[15, 2] == 0  # the other side is untouched
    eight = label.copy()
    flood_fill(eight, 15.5, 2.5, 3, connectivity=8)
    assert int((eight == 3).sum()) == 400 - 20  # 8-connectivity steps through the gaps


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("run_budget", [0, 10**9])  # vectorised and scanline paths
def test_connected_region_matches_a_pixel_bfs(connectivity: int, run_budget: int) -> None:
    rng = np.random.default_rng(connectivity)
    for trial in range(6):
        label = (rng.random((40, 53)) < 0.35 + 0.05 * trial).astype(np.uint8)
        row, col = int(rng.integers(0, 40)), int(rng.integers(0, 53))
        y0, x0, mask = connected_region(label, row, col, connectivity, run_budget=run_budget)
        full = np.zeros(label.shape, dtype=bool)
        full[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        assert np.array_equal(full, region_oracle(label, row, col, connectivity))


def test_flood_fill_undo_and_compact_delta() -> None:
    label = random_label((200, 300), classes=2)
    label[50:150, :] = 4
    original = label.copy()
    delta = flood_fill(label, 10.5, 100.5, 9)
    assert delta is not None and delta.bbox == (50, 0, 150, 300)
    assert (label[50:150] == 9).all()
    assert delta.old.ndim == 0 and delta.new.ndim == 0  # one value each side
    delta.undo(label)
    assert np.array_equal(label, original)


def test_flood_fill_no_ops() -> None:
    label = np.zeros((10, 10), np.uint8)
    label[5:, :] = 2
    assert flood_fill(label, 1, 1, 0) is None  # same value
    assert flood_fill(label, 1, 8, 7, PaintPolicy(locked=frozenset({2}))) is None
    assert flood_fill(label, -1, 3, 7) is None and flood_fill(label, 3, 10, 7) is None
    assert label[:5].sum() == 0 and (label[5:] == 2).all()


def test_flood_fill_of_a_12_megapixel_region_is_exact() -> None:
    label = np.zeros(BIG, np.uint8)
    label[1000, :] = 5
    delta = flood_fill(label, 3000.5, 2000.5, 1)
    assert delta is not None and delta.count == (3000 - 1001) * 4000
    assert delta.nbytes < 1_100_000  # bit-packed mask, scalar old/new


# --- polygon ------------------------------------------------------------------


def test_polygon_fills_a_square() -> None:
    label = np.zeros((30, 30), np.uint8)
    delta = fill_polygon(label, [(2, 3), (12, 3), (12, 13), (2, 13)], 6)
    assert delta is not None and delta.count == 100
    assert (label[3:13, 2:12] == 6).all() and int((label == 6).sum()) == 100


def test_polygon_fills_a_concave_l_shape() -> None:
    label = np.zeros((30, 30), np.uint8)
    fill_polygon(label, [(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)], 6)
    assert int((label == 6).sum()) == 10 * 4 + 4 * 6
    assert label[8, 8] == 0  # the notch stays empty


def test_polygon_matches_even_odd_ray_casting() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        pts = [tuple(p) for p in rng.uniform(-10, 50, (7, 2))]
        window = polygon_mask(pts, (40, 45))
        got = np.zeros((40, 45), dtype=bool)
        if window is not None:
            y0, x0, mask = window
            got[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]] = mask
        yc, xc = np.mgrid[:40, :45] + 0.5
        inside = np.zeros((40, 45), dtype=bool)
        for (xa, ya), (xb, yb) in zip(pts, pts[1:] + pts[:1], strict=True):
            crosses = (ya <= yc) != (yb <= yc)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = xa + (yc - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (xc >= x_at)
        assert np.array_equal(got, inside)


def test_polygon_clips_respects_locks_and_undoes() -> None:
    label = np.zeros((20, 20), np.uint8)
    label[:, 10:] = 3
    original = label.copy()
    delta = fill_polygon(label, [(-50, -50), (50, -50), (50, 5), (-50, 5)], 8,
                         PaintPolicy(locked=frozenset({3})))
    assert delta is not None and delta.count == 5 * 10
    assert (label[:5, :10] == 8).all() and (label[:, 10:] == 3).all()
    delta.undo(label)
    assert np.array_equal(label, original)
    assert fill_polygon(label, [(1, 1), (5, 5)], 8) is None
    assert fill_polygon(label, [(100, 100), (120, 100), (120, 120)], 8) is None


# --- eyedropper, remap, layering --------------------------------------------


def test_pick() -> None:
    label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert pick(label, 2.7, 1.2) == 6
    for x, y in [(-0.5, 0), (4, 0), (0, 3)]:
        with pytest.raises(IndexError):
            pick(label, x, y)


def test_core_modules_import_neither_qt_nor_torch() -> None:
    code = ("import sys, fcn_studio.labelmap.editing, fcn_studio.labelmap.history, "
            "fcn_studio.labelmap.geometry\n"
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert not [m for m in out if m.split(".")[0] in {"PySide6", "shiboken6", "torch"}]
