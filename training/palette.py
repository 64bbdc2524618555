"""The PASCAL VOC colormap and conversions between label maps and colours.

For index i the colour bits are spread from the most significant bit down:
for j = 7..0, bit 0 of i goes to bit j of R, bit 1 to G, bit 2 to B, then
i >>= 3. So 0 is black, 1 is (128, 0, 0) and 255 (void) is (224, 224, 192).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

VOID: int = 255
"""Label value ignored by the loss and every metric."""


@lru_cache(maxsize=1)
def _voc_colormap() -> np.ndarray:
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        r = g = b = 0
        c = index
        for j in range(7, -1, -1):
            r |= (c & 1) << j
            g |= ((c >> 1) & 1) << j
            b |= ((c >> 2) & 1) << j
            c >>= 3
        cmap[index] = (r, g, b)
    cmap.setflags(write=False)
    return cmap


def voc_colormap() -> np.ndarray:
    """The 256 x 3 uint8 VOC colormap (read-only)."""
    return _voc_colormap()


def palette_bytes() -> list[int]:
    """The colormap flattened for ``PIL.Image.putpalette``."""
    return voc_colormap().reshape(-1).tolist()


def colorize(label: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
    """Map an ``H x W`` uint8 label map to ``H x W x 3`` RGB with a 256-entry table."""
    table = voc_colormap() if colors is None else colors
    return table[label]


VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
"""The 21 PASCAL VOC segmentation classes, in id order."""
