"""The image canvas: shows an image with its class mask and edits the mask.

A plain ``QWidget`` with its own view transform (scale + offset) rather than a
``QGraphicsView``: every paint draws only the source rectangle behind the
exposed region, so a brush segment repaints a few hundred pixels whatever the
image size, with no scene bookkeeping in between.

Pixels live in numpy arrays shared with QImages (zero copy): the RGB image,
an ARGB32 buffer of the coloured label map, and an optional uncertainty heat
buffer. An edit recolours only its dirty box through a 256-entry lookup table
(:mod:`fcn_studio.ui.canvas.overlay`) and repaints only the widget area that box covers.
Mouse events go to the current tool (:mod:`fcn_studio.ui.canvas.canvas_tools`), which
calls the Qt-free editing core; every edit becomes one step of the image's
:class:`~fcn_studio.session.LabelSession`. The canvas observes the session:
undo, redo and label replacements happen there and the canvas redraws the box
each one reports.

Zoom is in *device* pixels per image pixel: 1.0 ("actual size") shows one image
pixel on one physical pixel, also on high-DPI screens (see
:class:`~fcn_studio.ui.canvas.overlay.ViewTransform`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from fcn_studio.labelmap.editing import PaintPolicy
from fcn_studio.labelmap.history import Delta
from fcn_studio.session import Change, LabelSession
from fcn_studio.ui.canvas import overlay
from fcn_studio.ui.canvas.canvas_tools import (
    ERASER_VALUE,
    MAX_RADIUS,
    MIN_RADIUS,
    BrushTool,
    HandTool,
    Tool,
    clamp_radius,
    make_tools,
    next_radius,
)
from fcn_studio.ui.canvas.overlay import ViewTransform
from training.palette import voc_colormap

Box = tuple[int, int, int, int]

TOOLS: Final = ("brush", "eraser", "void", "fill", "polygon", "eyedropper")
ZOOM_STEP: Final = 1.25
__all__ = ["MAX_RADIUS", "MIN_RADIUS", "TOOLS", "Canvas"]


class Canvas(QWidget):
    """Image + label overlay view with brush, fill, polygon and eyedropper tools."""

    cursorInfo = Signal(int, int, int)
    """Pixel ``x, y`` and class under the cursor; ``-1, -1, -1`` off the image."""
    labelEdited = Signal(tuple)
    """``(y0, x0, y1, x1)`` after every undoable change: paint, fill, polygon, undo, redo."""
    classPicked = Signal(int)
    """The eyedropper picked this class (the canvas also selects it)."""
    zoomChanged = Signal(float)
    """Device pixels per image pixel."""
    brushRadiusChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)  # brush outline and cursorInfo follow the mouse
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # paintEvent fills all
        self._label: np.ndarray | None = None
        self._session: LabelSession | None = None
        self._layers = overlay.OverlayLayers(voc_colormap())
        self._locked: frozenset[int] = frozenset()
        self._view = ViewTransform()
        self._fit_mode = True
        self._mouse: QPointF | None = None
        self._cursor_rect = QRect()
        self._radius = 5.0
        self._class_value = 1
        self._eraser_value = ERASER_VALUE
        self._tools = make_tools(self)
        self._tool: Tool = self._tools["brush"]
        self._hand = HandTool(self, self._view, self._on_pan, self._tool_cursor_shape)
        self.setCursor(self._tool_cursor_shape())

    # ----------------------------------------------------------------- data
    def set_image(self, rgb: np.ndarray, session: LabelSession) -> None:
        """Show ``rgb`` (H x W x 3 uint8) with the open ``session``'s label (edited in place).

        Edits become steps of ``session``; the canvas redraws what the session
        reports changed. The view is kept when the new image has the size of the
        previous one and the user had zoomed (video frames, tiles); otherwise it
        fits the window.
        """
        label = session.label
        if label is None:
            raise ValueError(f"the session of {session.image_id} is not open")
        overlay.check_image(rgb, label)
        same_size = self._label is not None and self._label.shape == label.shape
        self._tool.deactivate()  # a live stroke belongs to the old image
        self._detach()
        self._label = label
        self._session = session
        session.subscribe(self._on_session_change)
        self._layers.attach(rgb, label)
        if not (same_size and not self._fit_mode):
            self.fit()
        self._hand.restore_cursor()
        self.update()

    def clear(self) -> None:
        """Show nothing and drop every reference to the last image."""
        self._tool.deactivate()
        self._detach()
        self._label = None
        self._layers.detach()
        self._hand.restore_cursor()
        self.update()

    def _detach(self) -> None:
        if self._session is not None:
            self._session.unsubscribe(self._on_session_change)
            self._session = None

    def has_image(self) -> bool:
        return self._label is not None

    def label(self) -> np.ndarray | None:
        """The label map being edited (the session's array), or None."""
        return self._label

    def session(self) -> LabelSession | None:
        return self._session

    def replace_label(self, new_label: np.ndarray, text: str = "Replace label") -> bool:
        """Make ``new_label`` the label map as one undoable step; False if nothing changed."""
        if self._session is None:
            return False
        self._tool.deactivate()
        return self._session.replace(new_label, text)

    def undo(self) -> None:
        """Undo, gesture-aware: bind the Undo action here rather than to the session.

        Mid-stroke the live stroke becomes its own step first, so it is what gets
        undone (undoing an older step under a live stroke would leave the stroke
        holding stale "before" values); mid-polygon the last vertex goes.
        """
        if self._session is not None and not self._tool.step_back():
            self._settle()
            self._session.undo()

    def redo(self) -> None:
        """Redo (a live stroke is committed first, which leaves nothing to redo)."""
        if self._session is not None:
            self._settle()
            self._session.redo()

    def _settle(self) -> None:
        if self.is_painting():
            self._tool.deactivate()

    def _on_session_change(self, session: LabelSession, change: Change) -> None:
        """The session changed its label (an edit, undo, redo, a prediction applied)."""
        if change.kind != "label" or session is not self._session or self._label is None:
            return
        bbox = change.bbox
        if bbox is None:
            h, w = self._label.shape
            bbox = (0, 0, h, w)
        if not change.live:
            self.refresh_overlay(bbox)
        self.labelEdited.emit(tuple(int(v) for v in bbox))

    # ------------------------------------------------------------- overlay
    def refresh_overlay(self, bbox: Box | None = None) -> None:
        """Recolour the label overlay inside ``bbox`` (None: all), repaint only that area."""
        box = self._layers.recolor(None if bbox is None else tuple(int(v) for v in bbox))
        if box is not None:
            self.update_widget_rect(self.image_rect_to_widget(box))

    def set_palette(self, colors: np.ndarray) -> None:
        """Class colours, N x 3 uint8 (N <= 256; unlisted ids keep theirs, void's is VOC's)."""
        self._layers.set_palette(colors)
        self.update()

    def set_opacity(self, opacity: float) -> None:
        """Overlay opacity 0..1; applied while drawing, so no buffer is rebuilt."""
        self._layers.opacity = min(1.0, max(0.0, float(opacity)))
        self.update()

    def opacity(self) -> float:
        return self._layers.opacity

    def set_outline(self, outline: bool) -> None:
        """Show class boundaries only (True) or filled regions (False)."""
        if bool(outline) != self._layers.outline:
            self._layers.set_outline(bool(outline))
            self.update()

    def outline(self) -> bool:
        return self._layers.outline

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the class overlay (edits keep it up to date either way)."""
        self._layers.visible = bool(visible)
        self.update()

    def set_hidden_classes(self, classes: Iterable[int]) -> None:
        """Classes not drawn (display only: they are still painted and saved)."""
        self._layers.set_hidden(frozenset(int(c) for c in classes))
        self.update()

    def set_locked_classes(self, classes: Iterable[int]) -> None:
        """Classes no tool paints over (the eraser and void brush included)."""
        self._locked = frozenset(int(c) for c in classes)

    def set_uncertainty(self, uncertainty: np.ndarray | None) -> None:
        """Per-pixel uncertainty (H x W float in [0, 1]) for the heat overlay, or None."""
        self._layers.set_uncertainty(uncertainty)
        self.update()

    def set_uncertainty_visible(self, visible: bool) -> None:
        self._layers.heat_visible = bool(visible)
        self.update()

    def overlay_buffer(self) -> np.ndarray | None:
        """The H x W uint32 premultiplied ARGB label overlay (read it, don't write it)."""
        return self._layers.buf

    def heat_buffer(self) -> np.ndarray | None:
        """The H x W uint32 premultiplied ARGB uncertainty heat map, if any."""
        return self._layers.heat

    # ---------------------------------------------------- tool host / edits
    def paint_policy(self) -> PaintPolicy:
        return PaintPolicy(locked=self._locked)

    def push_edit(self, delta: Delta, text: str) -> None:
        """Record an edit already applied (and drawn) on the label as one undo step."""
        if self._session is not None:
            self._session.record(delta, text)

    def pick_class(self, value: int) -> None:
        """Eyedropper result: select the class and tell the window."""
        self._class_value = int(value)
        self.classPicked.emit(int(value))

    def update_widget_rect(self, rect: QRectF) -> None:
        """Schedule a repaint of a widget-coordinate rectangle (rounded outwards)."""
        self.update(rect.toAlignedRect().adjusted(-1, -1, 1, 1))

    # ---------------------------------------------------------------- tools
    def set_tool(self, name: str) -> None:
        """One of :data:`TOOLS`."""
        if name not in self._tools:
            raise ValueError(f"unknown tool {name!r}; expected one of {TOOLS}")
        if self._tools[name] is self._tool:
            return
        self._tool.deactivate()
        self._tool = self._tools[name]
        self._hand.restore_cursor()
        self._update_cursor_feedback()

    def _tool_cursor_shape(self) -> Qt.CursorShape:
        """The tool's cursor; a brush's is its own circle, but only over an image
        (with nothing shown there is no circle, so the system cross stays)."""
        shape = self._tool.cursor_shape
        if shape == Qt.CursorShape.BlankCursor and self._label is None:
            return Qt.CursorShape.CrossCursor
        return shape

    def tool(self) -> str:
        return self._tool.name

    def is_painting(self) -> bool:
        """Whether a brush stroke is in progress (e.g. to defer swapping the label)."""
        return isinstance(self._tool, BrushTool) and self._tool.active

    def tool_object(self, name: str | None = None) -> Tool:
        """The tool instance (the current one by default), e.g. the polygon's points."""
        return self._tool if name is None else self._tools[name]

    def set_class(self, value: int) -> None:
        """The value the brush, fill and polygon paint."""
        if not 0 <= int(value) <= 255:
            raise ValueError(f"class must be in 0..255, not {value}")
        self._class_value = int(value)

    def class_value(self) -> int:
        return self._class_value

    def set_eraser_value(self, value: int) -> None:
        """What the eraser writes: the background class, or void (255) in a project
        without one (CamVid's class 0 is Sky; erasing must not paint sky)."""
        if not 0 <= int(value) <= 255:
            raise ValueError(f"eraser value must be in 0..255, not {value}")
        self._eraser_value = int(value)

    def eraser_value(self) -> int:
        return self._eraser_value

    def set_transparent_classes(self, classes: Iterable[int]) -> None:
        """Classes drawn see-through (the background class; none in CamVid)."""
        self._layers.set_transparent(frozenset(int(c) for c in classes))
        self.update()

    def set_brush_radius(self, radius: float) -> None:
        """Brush radius in image pixels, clamped to the app's one range
        (:data:`MIN_RADIUS`..:data:`MAX_RADIUS`); 0.5 paints exactly one pixel."""
        r = clamp_radius(radius)
        if r != self._radius:
            self._radius = r
            self._update_cursor_feedback()
            self.brushRadiusChanged.emit(r)

    def brush_radius(self) -> float:
        return self._radius

    def grow_brush(self) -> None:
        """The next brush size up (see :data:`~fcn_studio.ui.canvas.canvas_tools.BRUSH_STEPS`)."""
        self.set_brush_radius(next_radius(self._radius, +1))

    def shrink_brush(self) -> None:
        self.set_brush_radius(next_radius(self._radius, -1))

    # ----------------------------------------------------------------- view
    def zoom(self) -> float:
        """Device pixels per image pixel (1.0 = actual size)."""
        return self._view.zoom(self.devicePixelRatioF())

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under ``anchor`` (widget coords; default centre) still."""
        anchor = QPointF(self.width() / 2, self.height() / 2) if anchor is None else anchor
        self._view.zoom_about(float(zoom), anchor, self.devicePixelRatioF())
        self._fit_mode = False
        self._view_changed()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom() * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom() / ZOOM_STEP)

    def actual_size(self) -> None:
        """One image pixel per device pixel, around the widget centre."""
        self.set_zoom(1.0)

    def fit(self) -> None:
        """Show the whole image, centred; stays fitted as the widget resizes."""
        self._fit_mode = True
        if self._label is not None and self.width() > 0 and self.height() > 0:
            h, w = self._label.shape
            self._view.fit((self.width(), self.height()), (w, h), self.devicePixelRatioF())
            self._view_changed()

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Widget (logical) coordinates of image point ``(x, y)``."""
        return self._view.to_widget(x, y)

    def widget_to_image(self, pos: QPointF) -> QPointF:
        """Image coordinates of a widget point (pixel ``(r, c)`` spans ``c..c+1, r..r+1``)."""
        return self._view.to_image(pos)

    def image_rect_to_widget(self, box: Box) -> QRectF:
        """Widget rectangle covering image box ``(y0, x0, y1, x1)``."""
        return self._view.box_to_widget(box)

    def _on_pan(self, delta: QPointF) -> None:
        self._fit_mode = False
        dx, dy = delta.x(), delta.y()
        if dx.is_integer() and dy.is_integer():
            # Move the pixels already on screen and paint only the strips that
            # come into view: panning a zoomed-out 12 MP image stays cheap.
            self.scroll(int(dx), int(dy))
        else:
            self.update()

    def _view_changed(self) -> None:
        self._update_cursor_feedback()
        self.update()
        self.zoomChanged.emit(self.zoom())

    # --------------------------------------------------------------- events
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        # Crisp nearest-neighbour pixels from 1:1 up, smooth when zoomed out.
        self._layers.paint(painter, event.region(), self._view, smooth=self.zoom() < 1.0)
        self._tool.paint(painter, self._tool_cursor())
        painter.end()

    def _tool_cursor(self) -> QPointF | None:
        """Where tool feedback follows the mouse; None while panning or away."""
        return None if self._hand.active else self._mouse

    def _update_cursor_feedback(self) -> None:
        old, self._cursor_rect = self._cursor_rect, self._tool.cursor_rect(self._tool_cursor())
        if old != self._cursor_rect:
            self.update(old)
            self.update(self._cursor_rect)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._hand.press(event.position(), event.button()):
            self._update_cursor_feedback()
        else:
            self._tool.press(self.widget_to_image(event.position()), event.button(),
                             event.modifiers())

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if not self._hand.active:
            self._tool.double_click(self.widget_to_image(event.position()), event.button(),
                                    event.modifiers())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self._mouse = event.position()
        if self._hand.move(self._mouse):
            return
        img = self.widget_to_image(self._mouse)
        self._tool.move(img, event.buttons())
        self._update_cursor_feedback()
        self._emit_cursor_info(img)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._hand.release(event.buttons()):
            self._update_cursor_feedback()
        else:
            self._tool.release(self.widget_to_image(event.position()), event.button())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120.0
        if steps and self._label is not None:
            self.set_zoom(self.zoom() * ZOOM_STEP ** steps, event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        # [ and ] are the window's Smaller/Larger Brush actions (grow_brush and
        # shrink_brush): one binding, so a key never has two meanings.
        if not (self._hand.key(event, True) or self._tool.key(event)):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if not self._hand.key(event, False):
            super().keyReleaseEvent(event)

    def leaveEvent(self, event: object) -> None:  # noqa: N802 - Qt override
        self._mouse = None
        self._update_cursor_feedback()
        self.cursorInfo.emit(-1, -1, -1)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        if self._fit_mode:
            self.fit()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(900, 650)

    def _emit_cursor_info(self, img: QPointF) -> None:
        if self._label is None:
            return
        x, y = math.floor(img.x()), math.floor(img.y())
        h, w = self._label.shape
        if 0 <= x < w and 0 <= y < h:
            self.cursorInfo.emit(x, y, int(self._label[y, x]))
        else:
            self.cursorInfo.emit(-1, -1, -1)

