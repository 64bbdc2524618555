"""Pixel geometry for the editing tools: brush capsules, polygons, connected regions.

Pure numpy, no Qt. The mask functions return ``(y0, x0, mask)``: the
top-left corner of a bool mask in image rows/columns, so callers touch only
that window of the label map. Brush and polygon work only within their
window; the flood fill within the rows its region reaches (except its
fallback for salt-and-pepper regions, see :func:`connected_region`).

Coordinates: image pixel coordinates as the canvas maps them, ``x`` = column,
``y`` = row, floats allowed. Pixel ``(row, col)`` covers ``[col, col + 1) x
[row, row + 1)``; its centre is ``(col + 0.5, row + 0.5)``. In *index space*
(used by the brush) a pixel is the point ``(row, col)``, i.e. its centre.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]
"""Half-open box ``(y0, x0, y1, x1)`` in image rows/columns."""

BoolMask = npt.NDArray[np.bool_]
Window = tuple[int, int, BoolMask]
"""``(y0, x0, mask)``: a bool mask whose top-left pixel is at row y0, column x0."""

# Slack on the squared-distance test so pixels exactly on the brush edge
# (e.g. offset (3, 4) at radius 5) stay inside despite float rounding.
_EDGE_EPS = 1e-7

# Rows of run-length data decoded per numpy call in the flood fill: large enough
# to amortise numpy's per-call overhead, small enough that a fill confined to a
# few rows does not decode the whole image.
_RUN_BLOCK_ROWS = 64

# Pixels of cumulative sum that cost about as much as one Python slice write;
# decides how the flood fill rasterises its runs (measured on x86, not critical).
_LOOP_RUN_COST = 150

# Runs the Python scanline may visit (~2.5 us each) before the flood fill
# switches to whole-image vectorised components (~0.5 s at worst on 12 MP).
_SCANLINE_RUN_BUDGET = 60_000


def pixel_of(x: float, y: float) -> tuple[int, int]:
    """The ``(row, col)`` of the pixel containing image point ``(x, y)``."""
    return math.floor(y), math.floor(x)


def mask_box(mask: BoolMask) -> Box | None:
    """Tight half-open box of the True pixels of ``mask``, or None if it has none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """Smallest box holding both (None counts as empty)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def clip_segment(
    a: tuple[float, float], b: tuple[float, float], lo: tuple[float, float],
    hi: tuple[float, float],
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Liang-Barsky: the part of segment a-b (``(y, x)`` points) inside box [lo, hi].

    Lets a stroke that leaves the image by a million pixels cost nothing extra.
    """
    t0, t1 = 0.0, 1.0
    for axis in (0, 1):
        d = b[axis] - a[axis]
        for p, q in ((-d, a[axis] - lo[axis]), (d, hi[axis] - a[axis])):
            if p == 0:
                if q < 0:
                    return None
                continue
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return None
    ay, ax = a
    dy, dx = b[0] - ay, b[1] - ax
    return (ay + t0 * dy, ax + t0 * dx), (ay + t1 * dy, ax + t1 * dx)


def split_segment(
    a: tuple[float, float], b: tuple[float, float], max_len: float
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Cut a-b into equal pieces no longer than ``max_len``.

    A long diagonal drag would otherwise rasterise its whole (mostly empty)
    bounding square; pieces keep the work proportional to the painted area.
    """
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    n = max(1, math.ceil(length / max_len))
    pts = [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n + 1)]
    return list(zip(pts[:-1], pts[1:], strict=True))


def capsule_mask(
    a: tuple[float, float], b: tuple[float, float], radius: float, shape: tuple[int, int]
) -> Window | None:
    """Pixels within ``radius`` of segment a-b, in index space (``(row, col)`` points).

    With a == b this is the round brush dab: pixels whose centres lie within
    ``radius`` of the dab centre. The capsule is the exact union of all dabs
    along the segment, so a fast drag leaves no gaps. Clipped to ``shape``.
    """
    h, w = shape
    y0 = max(0, math.ceil(min(a[0], b[0]) - radius))
    y1 = min(h, math.floor(max(a[0], b[0]) + radius) + 1)
    x0 = max(0, math.ceil(min(a[1], b[1]) - radius))
    x1 = min(w, math.floor(max(a[1], b[1]) + radius) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    ys = np.arange(y0 - a[0], y1 - a[0], dtype=np.float64)[:, None]
    xs = np.arange(x0 - a[1], x1 - a[1], dtype=np.float64)[None, :]
    dy, dx = b[0] - a[0], b[1] - a[1]
    l2 = dy * dy + dx * dx
    if l2 == 0.0:
        d2 = ys * ys + xs * xs
    else:
        # Parameter of the closest point on the segment, clamped to its ends.
        t = ys * (dy / l2) + xs * (dx / l2)
        np.clip(t, 0.0, 1.0, out=t)
        ey = ys - t * dy
        ex = xs - t * dx
        d2 = ey * ey + ex * ex
    return y0, x0, d2 <= radius * radius + _EDGE_EPS


def polygon_mask(points: Sequence[tuple[float, float]], shape: tuple[int, int]) -> Window | None:
    """Pixels whose centres lie inside the polygon ``points`` (``(x, y)`` pairs).

    Even-odd rule, sampled at pixel centres with a top-left convention (a
    centre exactly on a left/top edge is inside, on a right/bottom edge
    outside), so polygons sharing an edge tile without overlap or gap.
    Vectorised over edge/row crossings: cost ~ perimeter rows + window area.
    """
    if len(points) < 3:
        return None
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("polygon points must be finite")
    px, py = pts[:, 0], pts[:, 1]
    h, w = shape
    # Pixel centre c = i + 0.5 lies in [lo, hi) when ceil(lo - 0.5) <= i < ceil(hi - 0.5).
    y0 = max(0, math.ceil(py.min() - 0.5))
    y1 = min(h, math.ceil(py.max() - 0.5))
    x0 = max(0, math.ceil(px.min() - 0.5))
    x1 = min(w, math.ceil(px.max() - 0.5))
    if y0 >= y1 or x0 >= x1:
        return None
    xa, ya = px, py
    xb, yb = np.roll(px, -1), np.roll(py, -1)
    keep = ya != yb  # horizontal edges never cross a row centre line
    xa, ya, xb, yb = xa[keep], ya[keep], xb[keep], yb[keep]
    # Rows whose centre line the edge crosses: min(ya, yb) <= c < max(ya, yb).
    first = np.clip(np.ceil(np.minimum(ya, yb) - 0.5), y0, y1).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(ya, yb) - 0.5), y0, y1).astype(np.int64)
    counts = stop - first
    total = int(counts.sum())
    hh, ww = y1 - y0, x1 - x0
    if total == 0:
        return None
    edge = np.repeat(np.arange(counts.size), counts)
    offsets = np.cumsum(counts) - counts
    rows = first[edge] + (np.arange(total) - offsets[edge])
    yc = rows + 0.5
    slope = (xb - xa) / (yb - ya)
    xc = xa[edge] + (yc - ya[edge]) * slope[edge]
    # A crossing at x toggles inside/outside for every centre j + 0.5 >= x.
    j = np.clip(np.ceil(xc - 0.5), x0, x1).astype(np.int64) - x0
    flips = np.bincount((rows - y0) * (ww + 1) + j, minlength=hh * (ww + 1))
    # uint8 cumsum wraps mod 256, which keeps the parity we need.
    parity = np.cumsum((flips & 1).astype(np.uint8).reshape(hh, ww + 1), axis=1, dtype=np.uint8)
    mask = (parity[:, :ww] & 1).astype(bool)
    return y0, x0, mask


class _RowRuns:
    """Runs of one value per row, decoded lazily in blocks of rows.

    Each row holds sorted ``starts``/``ends`` (half-open) as Python lists, for
    fast ``bisect``, and a ``seen`` flag per run for the flood fill.
    """

    def __init__(self, label: npt.NDArray[np.uint8], value: int) -> None:
        self.label = label
        self.value = value
        self.rows: list[tuple[list[int], list[int], bytearray] | None] = [None] * label.shape[0]

    def get(self, row: int) -> tuple[list[int], list[int], bytearray]:
        runs = self.rows[row]
        if runs is None:
            self._decode(row - row % _RUN_BLOCK_ROWS)
            runs = self.rows[row]
            assert runs is not None
        return runs

    def _decode(self, r0: int) -> None:
        h, w = self.label.shape
        r1 = min(h, r0 + _RUN_BLOCK_ROWS)
        padded = np.zeros((r1 - r0, w + 2), dtype=bool)
        np.equal(self.label[r0:r1], self.value, out=padded[:, 1:-1])
        # Each padded row starts and ends False, so its transitions pair up
        # as (start, end) of each run.
        edges = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
        row_of, col = np.divmod(edges, w + 1)
        starts = col[0::2].tolist()
        ends = col[1::2].tolist()
        counts = np.bincount(row_of[0::2], minlength=r1 - r0).tolist()
        pos = 0
        for i, n in enumerate(counts):
            self.rows[r0 + i] = (starts[pos:pos + n], ends[pos:pos + n], bytearray(n))
            pos += n


def connected_region(
    label: npt.NDArray[np.uint8], row: int, col: int, connectivity: int = 4, *,
    run_budget: int = _SCANLINE_RUN_BUDGET,
) -> Window:
    """The connected region of ``label[row, col]``'s value containing that pixel.

    A scanline fill over runs (spans) of the value: cost grows with the
    region's number of runs, not the image size. A region of more than
    ``run_budget`` runs (salt-and-pepper noise, not blobby labels) switches
    to a vectorised connected-components pass over the whole image, so the
    worst case stays around a second on 12 MP instead of many.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    # 8-connectivity also joins runs that only touch diagonally.
    grow = 0 if connectivity == 4 else 1
    runs = _scanline_runs(label, row, col, grow, run_budget)
    if runs is None:
        runs = _component_runs(label, row, col, grow)
    return _runs_to_window(*runs)


RunArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Rows, starts and (exclusive) ends of row runs, as three int arrays."""


def _scanline_runs(
    label: npt.NDArray[np.uint8], row: int, col: int, grow: int, run_budget: int
) -> RunArrays | None:
    """The region's runs by a Python scanline over lazily decoded row runs.

    numpy finds the runs of the value in blocks of rows; the loop visits each
    run of the region once and finds its neighbours in the rows above and
    below by bisection. Rows the region never reaches are never decoded.
    None once more than ``run_budget`` runs were visited.
    """
    h = label.shape[0]
    runs = _RowRuns(label, int(label[row, col]))
    rows = runs.rows
    starts, ends, seen = runs.get(row)
    k = bisect_right(starts, col) - 1
    seen[k] = 1
    stack = [(row, starts[k], ends[k])]
    out_y: list[int] = []
    out_s: list[int] = []
    out_e: list[int] = []
    while stack:
        y, s, e = stack.pop()
        out_y.append(y)
        out_s.append(s)
        out_e.append(e)
        if len(out_y) > run_budget:
            return None
        for ny in (y - 1, y + 1):
            if ny < 0 or ny >= h:
                continue
            # Inlined cache hit: this loop runs once per run of the region.
            n_starts, n_ends, n_seen = rows[ny] or runs.get(ny)
            # First run ending after s (touching, for 8-connectivity) ...
            i = bisect_right(n_ends, s - grow)
            n = len(n_starts)
            # ... up to the last one starting before e.
            while i < n and n_starts[i] < e + grow:
                if not n_seen[i]:
                    n_seen[i] = 1
                    stack.append((ny, n_starts[i], n_ends[i]))
                i += 1
    return np.array(out_y), np.array(out_s), np.array(out_e)


def _component_runs(label: npt.NDArray[np.uint8], row: int, col: int, grow: int) -> RunArrays:
    """The region's runs by vectorised connected components over all runs of its value.

    Runs are graph nodes; edges join overlapping runs of adjacent rows. Labels
    converge by hooking roots to the smaller root and pointer jumping, a few
    whole-array passes instead of one Python step per run.
    """
    h, w = label.shape
    padded = np.zeros((h, w + 2), dtype=bool)
    np.equal(label, label[row, col], out=padded[:, 1:-1])
    edges = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    del padded
    # int32 halves the memory traffic of every pass below when keys fit.
    stride = w + 2
    index_type = np.int32 if (h + 1) * stride < 2**31 else np.int64
    run_row, col_of = np.divmod(edges.astype(index_type), index_type(w + 1))
    ys, starts, ends = run_row[0::2], col_of[0::2], col_of[1::2]
    # Keys sort runs by (row, column); the stride keeps rows apart.
    key_start = ys * stride + starts
    key_end = ys * stride + ends
    below = (ys + 1) * stride
    # Runs of the next row overlapping run i form the index range [lo, hi).
    lo = np.searchsorted(key_end, below + starts - grow, side="right")
    hi = np.searchsorted(key_start, below + ends + grow, side="left")
    count = hi - lo
    lo, count = lo.astype(index_type), count.astype(index_type)
    u = np.repeat(np.arange(ys.size, dtype=index_type), count)
    first = np.cumsum(count, dtype=index_type) - count
    v = np.arange(u.size, dtype=index_type) - np.repeat(first - lo, count)
    parent = np.arange(ys.size, dtype=index_type)
    while True:
        pu, pv = parent[u], parent[v]
        open_ = pu != pv
        if not open_.any():
            break
        # Edges inside one tree stay there: drop them from later passes.
        u, v, pu, pv = u[open_], v[open_], pu[open_], pv[open_]
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    seed = int(np.searchsorted(key_start, row * stride + col, side="right")) - 1
    keep = parent == parent[seed]
    return ys[keep], starts[keep], ends[keep]


def _runs_to_window(ys: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Window:
    """Rasterise row runs into a tight bool window."""
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(starts.min()), int(ends.max())
    hh, ww = y1 - y0, x1 - x0
    base = (ys - y0) * (ww + 1) - x0
    if ys.size * _LOOP_RUN_COST < hh * ww:
        # Few long runs (the usual blobby region): one slice write per run
        # beats a cumulative sum over the whole window.
        flat = np.zeros(hh * (ww + 1), dtype=bool)
        for s, e in zip((base + starts).tolist(), (base + ends).tolist(), strict=True):
            flat[s:e] = True
        return y0, x0, flat.reshape(hh, ww + 1)[:, :ww]
    # Many short runs: +1 per start, -1 per end, then one cumulative sum. The
    # padding column keeps a run ending at the right edge from cancelling the
    # next row's run that starts at column 0.
    steps = np.zeros(hh * (ww + 1), dtype=np.int8)
    steps[base + starts] = 1
    steps[base + ends] = -1
    inside = np.cumsum(steps, dtype=np.int8).reshape(hh, ww + 1)[:, :ww]
    return y0, x0, inside != 0
