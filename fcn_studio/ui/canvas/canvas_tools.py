"""Per-tool mouse handling for the canvas: events in, core editing calls out.

A tool gets positions already mapped to image coordinates (floats, pixel
``(row, col)`` covering ``[col, col + 1) x [row, row + 1)``) and calls the Qt-free
core (:mod:`fcn_studio.labelmap.editing`); it never touches pixels itself. What it needs
from the canvas is the small :class:`ToolHost` protocol, so each tool can be read
(and tested) on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

from fcn_studio.labelmap.editing import PaintPolicy, Stroke, fill_polygon, flood_fill, pick
from fcn_studio.labelmap.history import Delta
from fcn_studio.ui.canvas.overlay import ViewTransform

Box = tuple[int, int, int, int]

ERASER_VALUE: Final = 0
"""What the eraser writes in a project with a background class (VOC); in one
without (CamVid, Cityscapes) it writes void: see ``Canvas.set_eraser_value``."""
VOID_VALUE: Final = 255
# A click this close (widget pixels) to the first vertex closes the polygon,
# as in labelme: aiming at an exact image pixel is not needed.
CLOSE_DISTANCE_PX: Final = 6.0

MIN_RADIUS: Final = 0.5
"""The core's one-pixel brush: the smallest radius anywhere in the app."""
MAX_RADIUS: Final = 500.0
"""The largest radius anywhere in the app (a 1000-pixel-wide brush for 12 MP frames)."""
BRUSH_STEPS: Final[tuple[float, ...]] = (
    0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150,
    200, 250, 300, 400, 500)
"""The radii ``[`` and ``]`` step through: about 25 % apart from 4 px up, so each
step looks the same size of change whatever the brush; below that every step still
paints a visibly different disc (a 0.5 px brush is one pixel, 1 px is a 3-pixel cross)."""


def clamp_radius(radius: float) -> float:
    return min(MAX_RADIUS, max(MIN_RADIUS, float(radius)))


def next_radius(radius: float, step: int) -> float:
    """The brush radius one step (``+1`` larger, ``-1`` smaller) from ``radius``.

    A radius between two steps (typed in the tool panel) goes to the neighbouring
    step in that direction, so one key press always changes the size.
    """
    radius = clamp_radius(radius)
    if step > 0:
        return next((r for r in BRUSH_STEPS if r > radius + 1e-9), MAX_RADIUS)
    return next((r for r in reversed(BRUSH_STEPS) if r < radius - 1e-9), MIN_RADIUS)


def brush_width_px(radius: float) -> int:
    """How many image pixels across the brush paints (a radius of r covers the pixel
    under the cursor and ``floor(r)`` more on each side)."""
    return 2 * int(clamp_radius(radius)) + 1 if radius >= 1 else 1


class ToolHost(Protocol):
    """What tools need from the canvas (:class:`~fcn_studio.ui.canvas.canvas.Canvas`)."""

    def label(self) -> np.ndarray | None: ...
    def paint_policy(self) -> PaintPolicy: ...
    def class_value(self) -> int: ...
    def eraser_value(self) -> int: ...
    def brush_radius(self) -> float: ...
    def refresh_overlay(self, bbox: Box | None = None) -> None: ...
    def push_edit(self, delta: Delta, text: str) -> None: ...
    def pick_class(self, value: int) -> None: ...
    def image_to_widget(self, x: float, y: float) -> QPointF: ...
    def widget_to_image(self, pos: QPointF) -> QPointF: ...
    def update_widget_rect(self, rect: QRectF) -> None: ...


class Tool:
    """Base tool: ignores everything. Positions are image coordinates."""

    name: str = ""
    cursor_shape: Qt.CursorShape = Qt.CursorShape.CrossCursor

    def __init__(self, host: ToolHost) -> None:
        self.host = host

    def press(self, pos: QPointF, button: Qt.MouseButton,
              modifiers: Qt.KeyboardModifier) -> None:
        """Mouse button pressed on the canvas."""

    def move(self, pos: QPointF, buttons: Qt.MouseButton) -> None:
        """Mouse moved (with or without buttons held)."""

    def release(self, pos: QPointF, button: Qt.MouseButton) -> None:
        """Mouse button released."""

    def double_click(self, pos: QPointF, button: Qt.MouseButton,
                     modifiers: Qt.KeyboardModifier) -> None:
        """Second press of a double click; by default just another press."""
        self.press(pos, button, modifiers)

    def key(self, event: QKeyEvent) -> bool:
        """A key the canvas did not use itself; True if the tool handled it."""
        return False

    def deactivate(self) -> None:
        """The tool is being switched away from or the image is going: settle up."""

    def step_back(self) -> bool:
        """Undo was asked mid-gesture: take back one step of it; True if there was one."""
        return False

    def paint(self, painter: QPainter, cursor: QPointF | None) -> None:
        """Draw tool feedback (in widget coordinates) on top of the image.

        ``cursor`` is the mouse position in widget coordinates, None when the
        mouse is away or panning.
        """

    def cursor_rect(self, cursor: QPointF | None) -> QRect:
        """Widget area of the feedback that follows the cursor, to repaint as it moves."""
        return QRect()


class BrushTool(Tool):
    """Brush, eraser and void brush: a drag is one :class:`Stroke`, one undo step.

    Shift+click paints a straight line from where the last stroke ended, the
    usual paint-program gesture for straight boundaries. The cursor is the brush
    itself: its circle at the current zoom with a dot at its centre (the system
    cross is hidden over an image, see :attr:`cursor_shape`).
    """

    cursor_shape = Qt.CursorShape.BlankCursor

    def __init__(self, host: ToolHost, name: str, fixed_value: int | None = None,
                 erases: bool = False) -> None:
        super().__init__(host)
        self.name = name
        self._fixed_value = fixed_value
        self._erases = erases
        self._stroke: Stroke | None = None
        self._last_end: QPointF | None = None

    @property
    def active(self) -> bool:
        """Whether a stroke is in progress."""
        return self._stroke is not None

    def value(self) -> int:
        """The value this brush paints: the current class, the project's eraser value, or
        its fixed value (void)."""
        if self._erases:
            return self.host.eraser_value()
        return self.host.class_value() if self._fixed_value is None else self._fixed_value

    def press(self, pos: QPointF, button: Qt.MouseButton,
              modifiers: Qt.KeyboardModifier) -> None:
        label = self.host.label()
        if button != Qt.MouseButton.LeftButton or label is None or self._stroke is not None:
            return
        self._stroke = Stroke(label, self.value(), self.host.brush_radius(),
                              self.host.paint_policy())
        if modifiers & Qt.KeyboardModifier.ShiftModifier and self._last_end is not None:
            self._add(self._last_end)
        self._add(pos)

    def move(self, pos: QPointF, buttons: Qt.MouseButton) -> None:
        if self._stroke is not None and buttons & Qt.MouseButton.LeftButton:
            self._add(pos)

    def release(self, pos: QPointF, button: Qt.MouseButton) -> None:
        if button == Qt.MouseButton.LeftButton and self._stroke is not None:
            self._add(pos)
            self._last_end = QPointF(pos)
            self._commit()

    def key(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self._stroke is not None:
            box = self._stroke.cancel()
            self._stroke = None
            if box is not None:
                self.host.refresh_overlay(box)
            return True
        return False

    def deactivate(self) -> None:
        # A stroke already painted live must land on the undo stack, or it
        # could never be undone.
        self._commit()
        self._last_end = None

    def paint(self, painter: QPainter, cursor: QPointF | None) -> None:
        """The round brush outline, at the size it paints in image scale."""
        if cursor is None or self.host.label() is None:
            return
        centre, r = self._outline(cursor)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        _two_tone(painter, lambda: painter.drawEllipse(centre, r, r), QColor(255, 255, 255))
        # The centre dot: where a click lands, visible inside a large circle too.
        _two_tone(painter, lambda: painter.drawEllipse(cursor, 1.0, 1.0), QColor(255, 255, 255))

    def cursor_rect(self, cursor: QPointF | None) -> QRect:
        if cursor is None or self.host.label() is None:
            return QRect()
        centre, r = self._outline(cursor)
        r += 3.0  # the halo pen
        circle = QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r)
        dot = QRectF(cursor.x() - 4, cursor.y() - 4, 8, 8)  # the centre dot and its halo
        return circle.united(dot).toAlignedRect()

    def _outline(self, cursor: QPointF) -> tuple[QPointF, float]:
        """Centre and radius (widget pixels) of the brush outline under ``cursor``.

        The core paints the pixels whose centres lie within the radius of the
        centre of the pixel under the cursor, so the outline is centred there;
        their squares reach about half a pixel further, hence the ``+ 0.5``.
        """
        p = self.host.widget_to_image(cursor)
        centre = self.host.image_to_widget(math.floor(p.x()) + 0.5, math.floor(p.y()) + 0.5)
        scale = self.host.image_to_widget(1.0, 0.0).x() - self.host.image_to_widget(0.0, 0.0).x()
        # Never smaller than a dot: the cursor must stay findable when zoomed far out.
        return centre, max(2.0, (self.host.brush_radius() + 0.5) * scale)

    def _add(self, pos: QPointF) -> None:
        assert self._stroke is not None
        box = self._stroke.add_point(pos.x(), pos.y())
        if box is not None:
            self.host.refresh_overlay(box)

    def _commit(self) -> None:
        stroke, self._stroke = self._stroke, None
        if stroke is None:
            return
        delta = stroke.finish()
        if delta is not None:
            self.host.push_edit(delta, self.name.capitalize())


class FillTool(Tool):
    """Flood fill of the clicked region with the current class."""

    name = "fill"
    cursor_shape = Qt.CursorShape.PointingHandCursor

    def press(self, pos: QPointF, button: Qt.MouseButton,
              modifiers: Qt.KeyboardModifier) -> None:
        label = self.host.label()
        if button != Qt.MouseButton.LeftButton or label is None:
            return
        delta = flood_fill(label, pos.x(), pos.y(), self.host.class_value(),
                           self.host.paint_policy())
        if delta is not None:
            self.host.refresh_overlay(delta.bbox)
            self.host.push_edit(delta, "Fill")


class EyedropperTool(Tool):
    """Click to pick the class under the cursor."""

    name = "eyedropper"

    def press(self, pos: QPointF, button: Qt.MouseButton,
              modifiers: Qt.KeyboardModifier) -> None:
        label = self.host.label()
        if button != Qt.MouseButton.LeftButton or label is None:
            return
        try:
            value = pick(label, pos.x(), pos.y())
        except IndexError:  # clicked beside the image
            return
        self.host.pick_class(value)


class PolygonTool(Tool):
    """Click vertices; double-click, Enter or a click on the first vertex fills.

    Escape cancels, Backspace removes the last vertex. Vertices are image
    coordinates, so zooming or panning mid-polygon is fine.
    """

    name = "polygon"

    def __init__(self, host: ToolHost) -> None:
        super().__init__(host)
        self.points: list[QPointF] = []
        self._feedback_rect: QRectF | None = None

    def press(self, pos: QPointF, button: Qt.MouseButton,
              modifiers: Qt.KeyboardModifier) -> None:
        if button != Qt.MouseButton.LeftButton or self.host.label() is None:
            return
        if len(self.points) >= 3 and self._near_first(pos):
            self.close()
            return
        self.points.append(QPointF(pos))
        self._update_feedback(pos)

    def double_click(self, pos: QPointF, button: Qt.MouseButton,
                     modifiers: Qt.KeyboardModifier) -> None:
        # The double click's first press already added this vertex.
        if button == Qt.MouseButton.LeftButton:
            self.close()

    def move(self, pos: QPointF, buttons: Qt.MouseButton) -> None:
        if self.points:
            self._update_feedback(pos)

    def key(self, event: QKeyEvent) -> bool:
        k = event.key()
        if k in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.points:
            self.close()
        elif k == Qt.Key.Key_Escape and self.points:
            self.cancel()
        elif k == Qt.Key.Key_Backspace and self.points:
            self.step_back()
        else:
            return False
        return True

    def close(self) -> None:
        """Fill the polygon with the current class and start a new one."""
        points = [(p.x(), p.y()) for p in self.points]
        self.cancel()
        label = self.host.label()
        if len(points) < 3 or label is None:
            return
        delta = fill_polygon(label, points, self.host.class_value(), self.host.paint_policy())
        if delta is not None:
            self.host.refresh_overlay(delta.bbox)
            self.host.push_edit(delta, "Polygon")

    def cancel(self) -> None:
        """Forget the polygon in progress."""
        self._update_feedback(None)
        self.points.clear()

    def deactivate(self) -> None:
        self.cancel()

    def step_back(self) -> bool:
        if not self.points:
            return False
        self._update_feedback(None)
        self.points.pop()
        return True

    def paint(self, painter: QPainter, cursor: QPointF | None) -> None:
        if not self.points:
            return
        pts = [self.host.image_to_widget(p.x(), p.y()) for p in self.points]
        if cursor is not None:
            pts.append(cursor)
        poly = QPolygonF(pts)
        painter.setBrush(QColor(255, 255, 255, 40) if len(pts) > 2 else Qt.BrushStyle.NoBrush)
        _two_tone(painter, lambda: painter.drawPolygon(poly), QColor(255, 255, 0))
        painter.setPen(QPen(QColor(0, 0, 0), 1.0))
        painter.setBrush(QColor(255, 255, 0))
        for p in pts[:len(self.points)]:
            painter.drawEllipse(p, 3.0, 3.0)

    def _near_first(self, pos: QPointF) -> bool:
        a = self.host.image_to_widget(self.points[0].x(), self.points[0].y())
        b = self.host.image_to_widget(pos.x(), pos.y())
        return (a - b).manhattanLength() <= CLOSE_DISTANCE_PX

    def _update_feedback(self, cursor_image: QPointF | None) -> None:
        """Repaint the area the polygon and its rubber band cover, old and new."""
        # The previous rubber band may reach beyond the new one: repaint both.
        if self._feedback_rect is not None:
            self.host.update_widget_rect(self._feedback_rect)
        pts = [self.host.image_to_widget(p.x(), p.y()) for p in self.points]
        if cursor_image is not None:
            pts.append(self.host.image_to_widget(cursor_image.x(), cursor_image.y()))
        self._feedback_rect = None
        if pts:
            # Margin for the vertex dots and the 3-px halo pen.
            self._feedback_rect = QPolygonF(pts).boundingRect().adjusted(-6, -6, 6, 6)
            self.host.update_widget_rect(self._feedback_rect)


class HandTool:
    """Panning, available under every tool: middle-drag, or left-drag with Space held.

    Works on the canvas's :class:`~fcn_studio.ui.canvas.overlay.ViewTransform`; ``on_pan``
    gets the offset change to repaint, ``tool_cursor`` the cursor shape to restore.
    """

    def __init__(self, widget: QWidget, view: ViewTransform, on_pan: Callable[[QPointF], None],
                 tool_cursor: Callable[[], Qt.CursorShape]) -> None:
        self._widget = widget
        self._view = view
        self._on_pan = on_pan
        self._tool_cursor = tool_cursor
        self.space_down = False
        self.last: QPointF | None = None

    @property
    def active(self) -> bool:
        """Whether a pan drag is in progress."""
        return self.last is not None

    def press(self, pos: QPointF, button: Qt.MouseButton) -> bool:
        """Start panning if this press is a pan gesture; True if it was."""
        if button == Qt.MouseButton.MiddleButton or (
                button == Qt.MouseButton.LeftButton and self.space_down):
            self.last = QPointF(pos)
            self._widget.setCursor(Qt.CursorShape.ClosedHandCursor)
            return True
        return False

    def move(self, pos: QPointF) -> bool:
        if self.last is None:
            return False
        before = QPointF(self._view.offset)
        self._view.set_offset(self._view.offset + (pos - self.last),
                              self._widget.devicePixelRatioF())
        self.last = QPointF(pos)
        self._on_pan(self._view.offset - before)
        return True

    def release(self, buttons: Qt.MouseButton) -> bool:
        if self.last is None:
            return False
        if not buttons & (Qt.MouseButton.LeftButton | Qt.MouseButton.MiddleButton):
            self.last = None
            self.restore_cursor()
        return True

    def key(self, event: QKeyEvent, pressed: bool) -> bool:
        """Space down/up (auto-repeat ignored); True if handled."""
        if event.key() != Qt.Key.Key_Space:
            return False
        if not event.isAutoRepeat():
            self.space_down = pressed
            if self.last is None:
                self.restore_cursor()
        return True

    def restore_cursor(self) -> None:
        self._widget.setCursor(Qt.CursorShape.OpenHandCursor if self.space_down
                               else self._tool_cursor())


def _two_tone(painter: QPainter, draw: Callable[[], None], light: QColor) -> None:
    """Draw a 3-px dark halo then a 1-px light line: visible on any image and class colour."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    for color, width in ((QColor(0, 0, 0, 160), 3.0), (light, 1.0)):
        pen = QPen(color, width)
        pen.setCosmetic(True)  # the same width at every zoom
        painter.setPen(pen)
        draw()
        painter.setBrush(Qt.BrushStyle.NoBrush)  # fill once, under the halo only


def make_tools(host: ToolHost) -> dict[str, Tool]:
    """The canvas's tools by name: brush, eraser, void, fill, polygon, eyedropper."""
    tools: list[Tool] = [
        BrushTool(host, "brush"),
        BrushTool(host, "eraser", erases=True),
        BrushTool(host, "void", VOID_VALUE),
        FillTool(host),
        PolygonTool(host),
        EyedropperTool(host),
    ]
    return {t.name: t for t in tools}
