"""Label-map editing: brush strokes, flood fill, polygon fill, eyedropper.

Pure numpy, no Qt: the canvas translates mouse events into these calls and
wraps each returned :class:`~fcn_studio.labelmap.history.Delta` in a ``QUndoCommand``.
Edits apply in place on an ``H x W`` uint8 label map (0 background, 1..C-1
classes, 255 void) and touch only the edited window, never the whole image,
so a brush segment on a 12 MP map costs well under a millisecond.

Coordinates are image pixel coordinates (``x`` = column, ``y`` = row, floats
allowed; pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``).
Points outside the image are clipped, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from fcn_studio.labelmap.geometry import (
    Box,
    capsule_mask,
    clip_segment,
    connected_region,
    mask_box,
    pixel_of,
    polygon_mask,
    split_segment,
    union_box,
)
from fcn_studio.labelmap.history import Delta

Label = npt.NDArray[np.uint8]

# Long segments are rasterised in pieces of at most this many brush radii
# (and at least _MIN_PIECE pixels): a piece's window is then mostly brush, not
# the empty corners of a long diagonal's bounding square.
_PIECE_RADII = 4.0
_MIN_PIECE = 32.0


@dataclass(frozen=True, slots=True)
class PaintPolicy:
    """What a tool may paint over. Visibility is display-only and not part of it."""

    locked: frozenset[int] = frozenset()
    """Pixels holding these values are never painted over (any tool, eraser too)."""

    def __post_init__(self) -> None:
        locked = frozenset(int(v) for v in self.locked)
        if any(not 0 <= v <= 255 for v in locked):
            raise ValueError(f"locked values must be in 0..255: {sorted(locked)}")
        object.__setattr__(self, "locked", locked)


@lru_cache(maxsize=64)
def _locked_table(locked: frozenset[int]) -> np.ndarray | None:
    """A 256-entry bool lookup (value -> locked); a gather beats np.isin on windows."""
    if not locked:
        return None
    table = np.zeros(256, dtype=bool)
    table[list(locked)] = True
    table.setflags(write=False)
    return table


def _changeable(window: Label, value: int, policy: PaintPolicy) -> npt.NDArray[np.bool_]:
    """Pixels of ``window`` that painting ``value`` would change under ``policy``."""
    change = window != value
    table = _locked_table(policy.locked)
    if table is not None:
        change &= ~table[window]
    return change


def _check_label(label: np.ndarray) -> None:
    if label.ndim != 2 or label.dtype != np.uint8:
        raise TypeError(f"label map must be 2-D uint8, got {label.ndim}-D {label.dtype}")


def _check_value(value: int) -> int:
    value = int(value)
    if not 0 <= value <= 255:
        raise ValueError(f"label value must be in 0..255, not {value}")
    return value


class Stroke:
    """A brush/eraser/void stroke from mouse press to release: one undo item.

    ``value`` 0 is the eraser, 255 the void brush, anything else a class id.
    The brush is a round disc of the pixels whose centres lie within ``radius``
    of the centre of the pixel under the cursor (radius 0.5 paints exactly that
    pixel; smaller radii are raised to 0.5). Between consecutive points the
    whole capsule is painted, so fast drags leave no gaps.

    Painting is live and in place. Bookkeeping is per segment, limited to the
    pixels that segment changed: a pixel painted once already holds ``value``
    and is never recorded again, so a stroke crossing itself keeps each
    pixel's original value, and memory is proportional to what changed.
    """

    def __init__(
        self, label: Label, value: int, radius: float, policy: PaintPolicy = PaintPolicy()
    ) -> None:
        _check_label(label)
        if not radius >= 0:  # also rejects NaN
            raise ValueError(f"brush radius must be >= 0, not {radius}")
        self.label = label
        self.value = _check_value(value)
        self.radius = max(float(radius), 0.5)
        self.policy = policy
        self._last: tuple[float, float] | None = None
        # (y0, x0, changed mask, old values at its True pixels) per painted piece.
        self._pieces: list[tuple[int, int, npt.NDArray[np.bool_], Label]] = []
        self._box: Box | None = None
        self._finished = False

    @property
    def box(self) -> Box | None:
        """Bounding box of everything this stroke changed so far."""
        return self._box

    def add_point(self, x: float, y: float) -> Box | None:
        """Paint a dab at the first point, then the segment from the previous one.

        Returns the box of changed pixels ``(y0, x0, y1, x1)`` for the canvas to
        redraw, or None if nothing changed.
        """
        if self._finished:
            raise RuntimeError("stroke already finished")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"point must be finite, got ({x}, {y})")
        # Index space: the pixel under the cursor, as the point (row, col).
        row, col = pixel_of(x, y)
        point = (float(row), float(col))
        start = self._last if self._last is not None else point
        self._last = point
        return self._paint_segment(start, point)

    def _paint_segment(self, a: tuple[float, float], b: tuple[float, float]) -> Box | None:
        h, w = self.label.shape
        r = self.radius
        # Only the part within one radius of the image can paint anything.
        clipped = clip_segment(a, b, (-r - 1.0, -r - 1.0), (h + r, w + r))
        if clipped is None:
            return None
        dirty: Box | None = None
        max_len = max(_PIECE_RADII * r, _MIN_PIECE)
        for pa, pb in split_segment(*clipped, max_len):
            window = capsule_mask(pa, pb, r, (h, w))
            if window is None:
                continue
            y0, x0, foot = window
            sub = self.label[y0:y0 + foot.shape[0], x0:x0 + foot.shape[1]]
            change = foot & _changeable(sub, self.value, self.policy)
            box = mask_box(change)
            if box is None:
                continue
            by0, bx0, by1, bx1 = box
            change = change[by0:by1, bx0:bx1]
            sub = sub[by0:by1, bx0:bx1]
            self._pieces.append((y0 + by0, x0 + bx0, change, sub[change]))
            np.copyto(sub, self.value, where=change)
            dirty = union_box(dirty, (y0 + by0, x0 + bx0, y0 + by1, x0 + bx1))
        self._box = union_box(self._box, dirty)
        return dirty

    def finish(self) -> Delta | None:
        """End the stroke: all its changes as one Delta, or None if nothing changed."""
        if self._finished:
            raise RuntimeError("stroke already finished")
        self._finished = True
        if self._box is None:
            return None
        y0, x0, y1, x1 = self._box
        mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        old = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        # Pieces changed disjoint pixel sets (see the class docstring), so they
        # can be pasted in any order.
        for py, px, change, values in self._pieces:
            ph, pw = change.shape
            sl = (slice(py - y0, py - y0 + ph), slice(px - x0, px - x0 + pw))
            mask[sl] |= change
            old[sl][change] = values
        self._pieces.clear()
        return Delta.from_mask(y0, x0, mask, old[mask], self.value)

    def cancel(self) -> Box | None:
        """Abandon the stroke (e.g. Escape mid-drag): restore the map; the box to redraw."""
        delta = self.finish()
        if delta is None:
            return None
        delta.undo(self.label)
        return delta.bbox


def flood_fill(
    label: Label, x: float, y: float, value: int, policy: PaintPolicy = PaintPolicy(),
    connectivity: int = 4,
) -> Delta | None:
    """Fill the connected region of the clicked pixel's value with ``value``, in place.

    ``connectivity`` 4 (default) does not leak through diagonal gaps; 8 does.
    None when nothing changes: a click off the image, on ``value`` itself, or
    on a locked value.
    """
    _check_label(label)
    value = _check_value(value)
    row, col = pixel_of(x, y)
    h, w = label.shape
    if not (0 <= row < h and 0 <= col < w):
        return None
    seed = int(label[row, col])
    if seed == value or seed in policy.locked:
        return None
    y0, x0, region = connected_region(label, row, col, connectivity)
    np.copyto(label[y0:y0 + region.shape[0], x0:x0 + region.shape[1]], value, where=region)
    return Delta.from_mask(y0, x0, region, seed, value)


def fill_polygon(
    label: Label, points: Sequence[tuple[float, float]], value: int,
    policy: PaintPolicy = PaintPolicy(),
) -> Delta | None:
    """Paint the pixels whose centres lie inside the polygon ``points`` (``(x, y)``).

    Even-odd rule, so a self-crossing lasso leaves its doubly-enclosed parts
    out. Parts off the image are clipped. None if nothing changes.
    """
    _check_label(label)
    value = _check_value(value)
    window = polygon_mask(points, label.shape)
    if window is None:
        return None
    y0, x0, inside = window
    sub = label[y0:y0 + inside.shape[0], x0:x0 + inside.shape[1]]
    change = inside & _changeable(sub, value, policy)
    old = sub[change]
    np.copyto(sub, value, where=change)
    return Delta.from_mask(y0, x0, change, old, value)


def pick(label: Label, x: float, y: float) -> int:
    """Eyedropper: the value under image point ``(x, y)``.

    Raises IndexError off the image (negative coordinates do not wrap).
    """
    row, col = pixel_of(x, y)
    h, w = label.shape
    if not (0 <= row < h and 0 <= col < w):
        raise IndexError(f"({x}, {y}) is outside the {w} x {h} image")
    return int(label[row, col])
