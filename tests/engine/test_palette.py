from __future__ import annotations

import numpy as np

from training.palette import VOC_CLASSES, colorize, palette_bytes, voc_colormap


def test_known_colours() -> None:
    cmap = voc_colormap()
    assert tuple(cmap[0]) == (0, 0, 0)
    assert tuple(cmap[1]) == (128, 0, 0)
    assert tuple(cmap[2]) == (0, 128, 0)
    assert tuple(cmap[15]) == (192, 128, 128)
    assert tuple(cmap[255]) == (224, 224, 192)


def test_colours_are_distinct_and_table_is_read_only() -> None:
    cmap = voc_colormap()
    assert len({tuple(c) for c in cmap}) == 256
    assert not cmap.flags.writeable
    assert len(palette_bytes()) == 768
    assert len(VOC_CLASSES) == 21


def test_colorize_maps_every_pixel() -> None:
    label = np.array([[0, 1], [255, 15]], dtype=np.uint8)
    rgb = colorize(label)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[1, 0]) == (224, 224, 192)
    assert tuple(rgb[1, 1]) == (192, 128, 128)
