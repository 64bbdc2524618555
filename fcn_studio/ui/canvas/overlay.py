"""Colour lookup between label maps and the canvas's ARGB32 buffers.

The canvas keeps one ``H x W`` uint32 array per overlay, shared with a
``QImage`` in ``Format_ARGB32_Premultiplied`` (the raster engine's native
blending format, so drawing it needs no conversion). Each uint32 holds
``0xAARRGGBB``. These helpers write such arrays from a label map through a
256-entry lookup table, always restricted to a box, so an edit costs time in
proportion to what it changed and never to the image size.

Everything here except the ``qimage_*`` wrappers, :class:`ViewTransform` (where
on the widget the layers go) and :class:`OverlayLayers` (which owns the buffers
and draws them) is plain numpy.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QPointF, QRect, QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QRegion

Box = tuple[int, int, int, int]
"""Half-open box ``(y0, x0, y1, x1)`` in image rows/columns."""

VOID: Final = 255
BACKGROUND: Final = 0

ARGBArray = npt.NDArray[np.uint32]

BACKDROP: Final = QColor(48, 48, 48)
"""Behind and around the image."""
# Extra source pixels drawn around an exposed area: smooth (bilinear) sampling
# clamps at the source rectangle's edge, which would leave seams between
# partial repaints when zoomed out.
_SAMPLE_MARGIN: Final = 2
# Past this many rectangles a repaint region is drawn as its bounding rect:
# fewer, larger draws beat many tiny ones.
_MAX_REGION_RECTS: Final = 8
# Pixels per block when converting uncertainty: ~1 MB of float32, cache-sized.
_HEAT_BLOCK: Final = 1 << 18


def check_image(rgb: np.ndarray, label: np.ndarray) -> None:
    """Raise ValueError unless ``rgb`` is H x W x 3 uint8 and ``label`` H x W uint8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    if label.shape != rgb.shape[:2] or label.dtype != np.uint8:
        raise ValueError(f"label must be {rgb.shape[:2]} uint8, got {label.shape} {label.dtype}")


def pack_argb(rgb: np.ndarray, alpha: np.ndarray | int) -> ARGBArray:
    """Premultiplied ``0xAARRGGBB`` words from ``... x 3`` uint8 colours and alpha 0..255."""
    rgb32 = np.asarray(rgb, dtype=np.uint32)
    a = np.broadcast_to(np.asarray(alpha, dtype=np.uint32), rgb32.shape[:-1])
    # Premultiply with rounding; Qt expects colour <= alpha in premultiplied formats.
    pre = (rgb32 * a[..., None] + 127) // 255
    return (a << 24) | (pre[..., 0] << 16) | (pre[..., 1] << 8) | pre[..., 2]


def label_lut(
    colors: np.ndarray,
    hidden: frozenset[int] | set[int] = frozenset(),
    transparent: frozenset[int] | set[int] = frozenset({BACKGROUND}),
    alpha: int = 255,
) -> ARGBArray:
    """The 256-entry premultiplied ARGB table that colours a label map.

    ``hidden`` and ``transparent`` ids get alpha 0: background is transparent so the
    image shows through where nothing is labelled (napari's convention); hidden
    classes are a display choice only. Opacity is applied at draw time by the
    painter, so moving the opacity slider never rebuilds a buffer.
    """
    colors = np.asarray(colors, dtype=np.uint8)
    if colors.shape != (256, 3):
        raise ValueError(f"palette must be 256 x 3, got {colors.shape}")
    a = np.full(256, alpha, dtype=np.uint32)
    for ids in (hidden, transparent):
        for i in ids:
            if 0 <= i < 256:
                a[i] = 0
    return pack_argb(colors, a)


def grow_box(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    """``box`` grown by ``margin`` on every side, clipped to an ``H x W`` shape."""
    y0, x0, y1, x1 = box
    return (max(0, y0 - margin), max(0, x0 - margin),
            min(shape[0], y1 + margin), min(shape[1], x1 + margin))


def clip_box(box: Box, shape: tuple[int, ...]) -> Box | None:
    """``box`` clipped to the image, or None when nothing is left."""
    y0, x0, y1, x1 = grow_box(box, 0, shape)
    if y0 >= y1 or x0 >= x1:
        return None
    return y0, x0, y1, x1


def boundary_mask(label: np.ndarray, box: Box) -> npt.NDArray[np.bool_]:
    """Pixels of ``box`` whose value differs from a 4-neighbour (inside the image).

    Reads one pixel beyond the box where the image has one, so a box-wise result
    equals the same window of the whole-image result: tiles never disagree at
    their seams.
    """
    y0, x0, y1, x1 = box
    h, w = label.shape
    ry0, rx0, ry1, rx1 = max(0, y0 - 1), max(0, x0 - 1), min(h, y1 + 1), min(w, x1 + 1)
    region = label[ry0:ry1, rx0:rx1]
    edge = np.zeros(region.shape, dtype=bool)
    vert = region[1:, :] != region[:-1, :]
    horiz = region[:, 1:] != region[:, :-1]
    edge[1:, :] |= vert
    edge[:-1, :] |= vert
    edge[:, 1:] |= horiz
    edge[:, :-1] |= horiz
    return edge[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]


def colorize_box(
    out: ARGBArray, label: np.ndarray, lut: ARGBArray, box: Box, outline: bool = False,
) -> None:
    """Write ``lut[label]`` into ``out`` inside ``box``; with ``outline`` only on boundaries.

    In outline mode a change alters the boundary status of its neighbours too, so
    callers pass the dirty box grown by one pixel (see :func:`grow_box`).
    """
    y0, x0, y1, x1 = box
    dst = out[y0:y1, x0:x1]
    src = label[y0:y1, x0:x1]
    # np.take into the view writes in place without a temporary of the box's size.
    np.take(lut, src, out=dst, mode="clip")
    if outline:
        dst[~boundary_mask(label, box)] = 0


def heat_lut(max_alpha: int = 200) -> ARGBArray:
    """A 256-entry heat map: transparent at 0, through yellow to opaque red at 255.

    Low uncertainty stays invisible so the heat only draws the eye to the pixels
    worth checking; alpha rises with the value.
    """
    t = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([
        np.full_like(t, 255.0),                   # red throughout
        255.0 * np.clip(1.5 - 1.5 * t, 0.0, 1.0),  # yellow at the low end, red at the top
        np.zeros_like(t),
    ], axis=-1).round().astype(np.uint8)
    alpha = (max_alpha * np.clip(t * 1.25 - 0.05, 0.0, 1.0)).round().astype(np.uint32)
    return pack_argb(rgb, alpha)


def uncertainty_to_argb(
    uncertainty: np.ndarray, lut: ARGBArray | None = None, out: ARGBArray | None = None,
) -> ARGBArray:
    """Map an ``H x W`` float array in [0, 1] through :func:`heat_lut`; NaN counts as 0.

    Works in blocks of rows with float32 scratch space: a 12 MP float64 map would
    otherwise go through several full-size temporaries.
    """
    u = np.asarray(uncertainty)
    table = heat_lut() if lut is None else lut
    out = np.empty(u.shape, dtype=np.uint32) if out is None else out
    rows = max(1, _HEAT_BLOCK // max(1, u.shape[1]))
    for r0 in range(0, u.shape[0], rows):
        block = u[r0:r0 + rows].astype(np.float32)  # a copy: safe to work in place
        np.multiply(block, 255.0, out=block)
        np.add(block, 0.5, out=block)
        np.fmax(block, 0.0, out=block)  # fmax also turns NaN into 0
        np.fmin(block, 255.0, out=block)
        np.take(table, block.astype(np.uint8), out=out[r0:r0 + rows], mode="clip")
    return out


def qimage_rgb(rgb: np.ndarray) -> QImage:
    """A zero-copy ``Format_RGB888`` view of an ``H x W x 3`` uint8 C-contiguous array.

    The caller keeps ``rgb`` alive as long as the QImage; Qt draws RGB888 without a
    whole-image conversion, which keeps switching images fast.
    """
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888)


def qimage_argb(buf: ARGBArray) -> QImage:
    """A zero-copy premultiplied ARGB32 view of an ``H x W`` uint32 array.

    The caller keeps ``buf`` alive as long as the QImage.
    """
    h, w = buf.shape
    return QImage(buf.data, w, h, buf.strides[0], QImage.Format.Format_ARGB32_Premultiplied)


class ViewTransform:
    """Image <-> widget mapping: ``widget = offset + scale * image`` (logical pixels).

    Zoom, as users see it, is in *device* pixels per image pixel, so 1.0 shows one
    image pixel on one physical pixel on high-DPI screens too; ``dpr`` converts.
    The offset is kept on whole device pixels so 1:1 and integer zooms map pixel
    edges onto pixel edges (no resampling shimmer while panning).
    """

    MIN_ZOOM: Final = 0.01
    MAX_ZOOM: Final = 64.0

    def __init__(self) -> None:
        self.scale = 1.0
        self.offset = QPointF(0.0, 0.0)

    def zoom(self, dpr: float) -> float:
        return self.scale * dpr

    def to_widget(self, x: float, y: float) -> QPointF:
        return QPointF(self.offset.x() + x * self.scale, self.offset.y() + y * self.scale)

    def to_image(self, pos: QPointF) -> QPointF:
        return (pos - self.offset) / self.scale

    def box_to_widget(self, box: Box) -> QRectF:
        y0, x0, y1, x1 = box
        return QRectF(self.to_widget(x0, y0), self.to_widget(x1, y1))

    def zoom_about(self, zoom: float, anchor: QPointF, dpr: float) -> None:
        """Set the zoom keeping the image point under widget point ``anchor`` still."""
        image_pt = self.to_image(anchor)
        self.scale = min(self.MAX_ZOOM, max(self.MIN_ZOOM, zoom)) / dpr
        self.set_offset(anchor - image_pt * self.scale, dpr)

    def fit(self, widget: tuple[int, int], image: tuple[int, int], dpr: float) -> None:
        """Whole image (``w, h``) centred in the widget (``w, h``)."""
        (ww, wh), (iw, ih) = widget, image
        self.scale = max(min(ww / iw, wh / ih), self.MIN_ZOOM / dpr)
        self.set_offset(QPointF((ww - iw * self.scale) / 2, (wh - ih * self.scale) / 2), dpr)

    def set_offset(self, offset: QPointF, dpr: float) -> None:
        self.offset = QPointF(round(offset.x() * dpr) / dpr, round(offset.y() * dpr) / dpr)

    def source_box(self, rect: QRect, shape: tuple[int, int], margin: int) -> Box | None:
        """Image box behind widget ``rect`` plus ``margin`` pixels, clipped to ``shape``."""
        tl = self.to_image(QPointF(rect.topLeft()))
        br = self.to_image(QPointF(rect.right() + 1, rect.bottom() + 1))
        y0, x0 = max(0, math.floor(tl.y()) - margin), max(0, math.floor(tl.x()) - margin)
        y1 = min(shape[0], math.ceil(br.y()) + margin)
        x1 = min(shape[1], math.ceil(br.x()) + margin)
        return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


class OverlayLayers:
    """The shown image with its label overlay and uncertainty heat buffers.

    Display state (palette, hidden classes, outline view, opacity, visibility)
    lives here; each setter that changes colours recolours the whole buffer
    once (a rare, user-driven event), while :meth:`recolor` with a box is what an
    edit costs.
    """

    def __init__(self, colors: np.ndarray) -> None:
        self.colors = np.array(colors, dtype=np.uint8)
        self.hidden: frozenset[int] = frozenset()
        # See-through ids: the background class in a VOC project; none where class 0
        # is a real class (CamVid's Sky), so imported labels show all their classes.
        self.transparent: frozenset[int] = frozenset({BACKGROUND})
        self.outline = False
        self.opacity = 0.5
        self.visible = True
        self.heat_visible = False
        self.lut = label_lut(self.colors)
        self.rgb: np.ndarray | None = None
        self._rgb_img: QImage | None = None
        self.label: np.ndarray | None = None
        self.buf: ARGBArray | None = None
        self._img: QImage | None = None
        self.uncertainty: np.ndarray | None = None
        self._heat: ARGBArray | None = None
        self._heat_img: QImage | None = None

    def attach(self, rgb: np.ndarray, label: np.ndarray) -> None:
        """Show a new image and colour its label map (whole image: once per switch)."""
        self.rgb = np.ascontiguousarray(rgb)  # only copies an unusual layout
        self._rgb_img = qimage_rgb(self.rgb)
        self.label = label
        self.buf = np.empty(label.shape, dtype=np.uint32)
        self._img = qimage_argb(self.buf)
        self.set_uncertainty(None)
        self.recolor()

    def detach(self) -> None:
        self.rgb = self._rgb_img = self.label = self.buf = self._img = None
        self.set_uncertainty(None)

    def recolor(self, box: Box | None = None) -> Box | None:
        """Recolour ``box`` (None: all); returns the box actually touched, for repainting.

        In outline mode the box grows by one pixel, since an edit changes whether
        its neighbours lie on a boundary.
        """
        if self.label is None or self.buf is None:
            return None
        shape = self.label.shape
        if box is None:
            box = (0, 0, shape[0], shape[1])
        else:
            box = clip_box(box, shape)
            if box is None:
                return None
            if self.outline:
                box = grow_box(box, 1, shape)
        colorize_box(self.buf, self.label, self.lut, box, self.outline)
        return box

    def set_palette(self, colors: np.ndarray) -> None:
        """Class colours, N x 3 uint8 with N <= 256; rows past N keep their current colour.

        So a project's C class colours can be passed as they are, and void (255)
        keeps its colour. Validated before anything changes.
        """
        colors = np.asarray(colors, dtype=np.uint8)
        if colors.ndim != 2 or colors.shape[1] != 3 or not 0 < colors.shape[0] <= 256:
            raise ValueError(f"palette must be N x 3 with N <= 256, got {colors.shape}")
        full = self.colors.copy()
        full[:colors.shape[0]] = colors
        self.colors = full
        self._rebuild_lut()

    def set_hidden(self, classes: frozenset[int]) -> None:
        self.hidden = classes
        self._rebuild_lut()

    def set_transparent(self, classes: frozenset[int]) -> None:
        self.transparent = classes
        self._rebuild_lut()

    def _rebuild_lut(self) -> None:
        self.lut = label_lut(self.colors, hidden=self.hidden, transparent=self.transparent)
        self.recolor()

    def set_outline(self, outline: bool) -> None:
        self.outline = outline
        self.recolor()

    def set_uncertainty(self, uncertainty: np.ndarray | None) -> None:
        """Keep the uncertainty map; its heat buffer is built when first shown.

        Switching images must stay fast, and most of the time the heat map is
        hidden: building it costs a whole-image pass, paid once per prediction
        and only if someone looks.
        """
        if uncertainty is not None and self.label is not None \
                and uncertainty.shape != self.label.shape:
            raise ValueError(f"uncertainty is {uncertainty.shape}, label is {self.label.shape}")
        self.uncertainty = uncertainty
        self._heat = self._heat_img = None

    @property
    def heat(self) -> ARGBArray | None:
        """The heat buffer (built now if needed), or None without uncertainty."""
        if self._heat is None and self.uncertainty is not None:
            self._heat = uncertainty_to_argb(self.uncertainty)
            self._heat_img = qimage_argb(self._heat)
        return self._heat

    def paint(self, painter: QPainter, region: QRegion, view: ViewTransform, smooth: bool) -> None:
        """Paint the exposed ``region`` (widget coords): backdrop, image and layers.

        Each rectangle draws only the image pixels behind it, so a brush-sized
        repaint costs the same on a 12 MP image as on a small one.
        """
        many = region.rectCount() > _MAX_REGION_RECTS
        for rect in [region.boundingRect()] if many else list(region):
            painter.fillRect(rect, BACKDROP)
            if self.label is None:
                continue
            box = view.source_box(rect, self.label.shape, _SAMPLE_MARGIN)
            if box is None:
                continue
            y0, x0, y1, x1 = box
            painter.save()
            painter.setClipRect(rect)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
            self.draw(painter, view.box_to_widget(box), QRectF(x0, y0, x1 - x0, y1 - y0))
            painter.restore()

    def draw(self, painter: QPainter, target: QRectF, source: QRectF) -> None:
        """Draw the image and visible layers' ``source`` rectangle onto ``target``."""
        if self._rgb_img is None:
            return
        painter.drawImage(target, self._rgb_img, source)
        if self.visible and self.opacity > 0 and self._img is not None:
            # One-pixel outlines vanish at the opacity that suits filled regions.
            painter.setOpacity(min(1.0, 2.0 * self.opacity) if self.outline else self.opacity)
            painter.drawImage(target, self._img, source)
        if self.heat_visible and self.heat is not None:
            painter.setOpacity(1.0)
            painter.drawImage(target, self._heat_img, source)
        painter.setOpacity(1.0)
