"""Where the main window goes on a screen, and how big its side panels start.

Everything is in logical pixels (what Qt reports for a screen's available
geometry), so a 2100 x 1350 screen at 1.5x scaling is treated as the
1400 x 900 it shows, and a window never opens with its status bar below the
bottom of the screen.
"""

from __future__ import annotations

from typing import Final

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QScreen

PREFERRED_SIZE: Final = QSize(1400, 900)
"""The window size on a first start when the screen has room for it; a smaller
screen gets all of its available area but room for the frame."""
FRAME_ALLOWANCE: Final = QSize(16, 40)
"""Room for the title bar and borders the window manager adds."""
SIDE_PANEL_SHARE: Final = 0.15
"""Each side panel's share of the window width on a default layout (the canvas keeps the rest)."""
SIDE_PANEL_MIN: Final = 180
SIDE_PANEL_MAX: Final = 280
BOTTOM_PANEL_SHARE: Final = 0.3
"""Height of the training / models / effort panels when they are first shown."""


def screen_key(screen: QScreen | None) -> str:
    """A name for a screen that stays the same between runs: its name and size."""
    if screen is None:
        return "unknown"
    g = screen.geometry()
    return f"{screen.name() or 'screen'}-{g.width()}x{g.height()}"


def default_rect(available: QRect, preferred: QSize = PREFERRED_SIZE) -> QRect:
    """The window's client rectangle on a first start: the preferred size, or as much
    of a smaller screen as leaves room for the frame, centred in ``available``
    (on a small screen every pixel the window leaves unused is one the canvas lacks)."""
    w = min(preferred.width(), max(1, available.width() - FRAME_ALLOWANCE.width()))
    h = min(preferred.height(), max(1, available.height() - FRAME_ALLOWANCE.height()))
    rect = QRect(0, 0, w, h)
    rect.moveCenter(available.center())
    # The title bar sits above the client area: keep it on the screen too.
    return fit_rect(rect, available)


def fit_rect(rect: QRect, available: QRect, frame: QSize = FRAME_ALLOWANCE) -> QRect:
    """``rect`` (a client rectangle) shrunk and moved so that it and its frame lie
    inside ``available``; a rectangle that fits already is returned unchanged."""
    max_w = max(1, available.width() - frame.width())
    max_h = max(1, available.height() - frame.height())
    out = QRect(rect.x(), rect.y(), min(rect.width(), max_w), min(rect.height(), max_h))
    # The frame sits mostly above the client area (the title bar): keep it on screen.
    top = available.top() + frame.height() - frame.width() // 2
    left = available.left() + frame.width() // 2
    right = available.right() - frame.width() // 2
    bottom = available.bottom() - frame.width() // 2
    if out.right() > right:
        out.moveRight(right)
    if out.bottom() > bottom:
        out.moveBottom(bottom)
    if out.left() < left:
        out.moveLeft(left)
    if out.top() < top:
        out.moveTop(top)
    return out


def side_panel_width(window_width: int) -> int:
    """Width of each side panel (images on the left, classes on the right) by default."""
    return max(SIDE_PANEL_MIN, min(SIDE_PANEL_MAX, int(window_width * SIDE_PANEL_SHARE)))
