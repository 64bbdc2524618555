"""Undo history atoms: bounding-box deltas of a label map, and a memory budget.

One edit (a brush stroke, a flood fill, a polygon) is one :class:`Delta`: the
changed pixels' bounding box, which pixels in it changed, and their values
before and after. Never a copy of the whole image. The Qt canvas wraps each
Delta in a ``QUndoCommand`` whose ``undo``/``redo`` call :meth:`Delta.undo` /
:meth:`Delta.redo` and then redraw ``delta.bbox``.

Storage is compact because the history must hold 100+ steps of 12 MP edits:
the mask is bit-packed (1 bit per box pixel) and a side whose values are all
equal (always the new side of a brush or fill, and the old side of a flood
fill) is stored as one scalar. A full-image flood fill on 4000 x 3000 thus
holds about 1.5 MB instead of 36 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fcn_studio.labelmap.geometry import Box, mask_box

# Python object, dataclass and three array headers: counted so that even
# empty-ish deltas cost something in the budget.
_DELTA_OVERHEAD_BYTES = 400


def _values(values: npt.ArrayLike, count: int, side: str) -> np.ndarray:
    """uint8 values at the mask positions, as a read-only 1-D array or 0-d scalar."""
    arr = np.asarray(values)
    if arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{side} values must be in 0..255")
    # Always a private copy: the delta freezes it and must not alias caller arrays.
    arr = np.array(arr, dtype=np.uint8)
    if arr.ndim == 1:
        if arr.size != count:
            raise ValueError(f"{side} has {arr.size} values for {count} changed pixels")
        if count and arr.min() == arr.max():
            arr = np.array(arr[0])  # uniform: one scalar is enough
    elif arr.ndim != 0:
        raise ValueError(f"{side} must be 1-D (one value per changed pixel) or a scalar")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, slots=True, eq=False)
class Delta:
    """One undoable edit: only the changed bounding box.

    Build one with :meth:`from_mask`. ``old``/``new`` hold the values at the
    mask's True positions in row-major order: a 1-D array, or a 0-d array
    when every changed pixel shares one value.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    packed_mask: np.ndarray
    """``np.packbits`` of the ``(y1 - y0, x1 - x0)`` bool mask, row-major."""
    old: np.ndarray
    new: np.ndarray
    count: int
    """Number of changed pixels."""

    @classmethod
    def from_mask(
        cls, y0: int, x0: int, mask: npt.NDArray[np.bool_], old: npt.ArrayLike,
        new: npt.ArrayLike,
    ) -> Delta | None:
        """A delta for the True pixels of ``mask`` (top-left at row y0, col x0).

        ``old`` and ``new`` are the values at the True positions (1-D, row-major)
        or scalars. The box is trimmed to the True pixels; None if there are none.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError("mask must be 2-D")
        box = mask_box(mask)
        if box is None:
            return None
        by0, bx0, by1, bx1 = box
        # Cropping all-False rows/columns keeps the row-major order of the
        # True pixels, so old/new still line up.
        mask = mask[by0:by1, bx0:bx1]
        count = int(np.count_nonzero(mask))
        packed = np.packbits(mask, axis=None)
        packed.setflags(write=False)
        return cls(
            y0 + by0, x0 + bx0, y0 + by1, x0 + bx1, packed,
            _values(old, count, "old"), _values(new, count, "new"), count,
        )

    def __post_init__(self) -> None:
        h, w = self.y1 - self.y0, self.x1 - self.x0
        if h < 0 or w < 0 or self.y0 < 0 or self.x0 < 0:
            raise ValueError(f"bad box {self.bbox}")
        if self.packed_mask.size != (h * w + 7) // 8:
            raise ValueError("packed_mask does not match the box")

    @property
    def bbox(self) -> Box:
        """``(y0, x0, y1, x1)``, half-open: the region to redraw after undo/redo."""
        return self.y0, self.x0, self.y1, self.x1

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """The bool mask of changed pixels within the box (unpacked on demand)."""
        h, w = self.shape
        return np.unpackbits(self.packed_mask, count=h * w).view(bool).reshape(h, w)

    @property
    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def nbytes(self) -> int:
        """Memory held, for bounding the undo history."""
        arrays = self.packed_mask.nbytes + self.old.nbytes + self.new.nbytes
        return arrays + _DELTA_OVERHEAD_BYTES

    def undo(self, label: npt.NDArray[np.uint8]) -> None:
        """Put the old values back, in place."""
        self._write(label, self.old)

    def redo(self, label: npt.NDArray[np.uint8]) -> None:
        """Apply the new values again, in place.

        Idempotent, so a Qt 6 ``QUndoStack.push()`` calling ``redo()`` on a
        stroke already painted live only rewrites the same values.
        """
        self._write(label, self.new)

    def _write(self, label: npt.NDArray[np.uint8], values: np.ndarray) -> None:
        if self.count == 0:
            return
        box = label[self.y0:self.y1, self.x0:self.x1]
        if box.shape != self.shape:
            raise ValueError(f"delta box {self.bbox} does not fit a {label.shape} label map")
        if values.ndim == 0:
            np.copyto(box, values, where=self.mask)
        else:
            box[self.mask] = values


def delta_between(
    before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8]
) -> Delta | None:
    """The delta turning ``before`` into ``after`` (whole-image work: for rare
    edits such as remapping classes or accepting a prediction, not mouse moves)."""
    if before.shape != after.shape:
        raise ValueError(f"shapes differ: {before.shape} vs {after.shape}")
    changed = before != after
    box = mask_box(changed)
    if box is None:
        return None
    y0, x0, y1, x1 = box
    changed = changed[y0:y1, x0:x1]
    return Delta.from_mask(
        y0, x0, changed, before[y0:y1, x0:x1][changed], after[y0:y1, x0:x1][changed]
    )


@dataclass(frozen=True, slots=True)
class HistoryBudget:
    """How many undo steps to keep: at most ``max_steps`` and ``max_bytes``.

    ``QUndoStack.setUndoLimit`` counts steps only and can be set only while the
    stack is empty: set it to ``max_steps`` once. For bytes, after each push pass
    the ``nbytes`` of every command on the stack (oldest first) to
    :meth:`steps_to_drop` and release that many oldest deltas. The newest step
    is always kept, even if it alone is over the byte budget. With compact
    deltas a typical brush stroke holds kilobytes and a full 12 MP flood fill
    about 1.5 MB, so the default keeps the full ``max_steps`` in practice.
    """

    max_bytes: int = 512 * 2**20
    max_steps: int = 200

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_bytes < 0:
            raise ValueError("max_steps must be >= 1 and max_bytes >= 0")

    def steps_to_keep(self, sizes: Sequence[int]) -> int:
        """How many of the newest steps fit; ``sizes`` are nbytes, oldest first."""
        total = 0
        kept = 0
        for size in reversed(sizes):
            if kept == self.max_steps or (kept and total + size > self.max_bytes):
                break
            total += size
            kept += 1
        return kept

    def steps_to_drop(self, sizes: Sequence[int]) -> int:
        """How many of the oldest steps to release."""
        return len(sizes) - self.steps_to_keep(sizes)
