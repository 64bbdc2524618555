"""Synthesized mouse and key events on the canvas, in image coordinates."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication

from fcn_studio.ui.canvas.canvas import Canvas

LEFT = Qt.MouseButton.LeftButton
NOB = Qt.MouseButton.NoButton
NOMOD = Qt.KeyboardModifier.NoModifier


def send_mouse(c: Canvas, kind: QEvent.Type, x: float, y: float, button=LEFT, buttons=None,
               modifiers=NOMOD) -> None:
    """A mouse event at image point (x, y), mapped with the canvas's own transform."""
    pos = c.image_to_widget(x, y)
    if buttons is None:
        buttons = NOB if kind == QEvent.Type.MouseButtonRelease else button
    event = QMouseEvent(kind, pos, QPointF(c.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(c, event)


def drag(c: Canvas, points: list[tuple[float, float]], modifiers=NOMOD) -> None:
    """Press at the first point, move through the rest, release at the last."""
    send_mouse(c, QEvent.Type.MouseButtonPress, *points[0], modifiers=modifiers)
    for p in points[1:]:
        send_mouse(c, QEvent.Type.MouseMove, *p, button=NOB, buttons=LEFT)
    send_mouse(c, QEvent.Type.MouseButtonRelease, *points[-1])


def click(c: Canvas, x: float, y: float, modifiers=NOMOD) -> None:
    send_mouse(c, QEvent.Type.MouseButtonPress, x, y, modifiers=modifiers)
    send_mouse(c, QEvent.Type.MouseButtonRelease, x, y)


def key(c: Canvas, k: Qt.Key, text: str = "") -> None:
    QApplication.sendEvent(c, QKeyEvent(QEvent.Type.KeyPress, k, NOMOD, text))
    QApplication.sendEvent(c, QKeyEvent(QEvent.Type.KeyRelease, k, NOMOD, text))
