"""Notices above the canvas: things worth knowing that must not stop the work.

A start-up hint or "the ImageNet weights are not downloaded" used to be message
boxes that waited for a click, stacked on each other on a first offline start.
Here each is a slim bar with its text, optional links (``<a href="...">``) and a
close button; it stays until dismissed or until the window hides it because it
no longer applies.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

LinkHandler = Callable[[str], None]

_STYLE = {
    "info": "background: #e8f0fb; border: 1px solid #b8cde8;",
    "warning": "background: #fff4dc; border: 1px solid #e6c67a;",
}


class Notice(QFrame):
    """One notice: rich text with links, and a close button."""

    def __init__(self, key: str, html: str, level: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.setObjectName(f"notice-{key}")
        self.setStyleSheet(f"#notice-{key} {{ {_STYLE.get(level, _STYLE['info'])} "
                           "border-radius: 3px; } QLabel { color: #202020; }")
        self.label = QLabel(html)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                           | Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 3, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)


class NoticeBar(QWidget):
    """A column of notices; empty (and taking no space) when there are none."""

    dismissed = Signal(str)
    """A person closed the notice with this key."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._notices: dict[str, Notice] = {}
        self._handlers: dict[str, LinkHandler | None] = {}
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 0)
        self._layout.setSpacing(3)
        self.setVisible(False)

    def show_notice(self, key: str, html: str, on_link: LinkHandler | None = None,
                    level: str = "info") -> Notice:
        """Show (or update) the notice ``key``; ``on_link`` gets a clicked link's href."""
        notice = self._notices.get(key)
        if notice is None:
            notice = Notice(key, html, level, self)
            notice.close_button.clicked.connect(lambda: self._dismiss(key))
            notice.label.linkActivated.connect(lambda href: self._link(key, href))
            self._notices[key] = notice
            self._layout.addWidget(notice)
        else:
            notice.label.setText(html)
        self._handlers[key] = on_link
        self.setVisible(True)
        return notice

    def hide_notice(self, key: str) -> None:
        """Take the notice away (it no longer applies); nothing happens if not shown."""
        notice = self._notices.pop(key, None)
        self._handlers.pop(key, None)
        if notice is not None:
            self._layout.removeWidget(notice)
            notice.deleteLater()
        self.setVisible(bool(self._notices))

    def is_shown(self, key: str) -> bool:
        return key in self._notices

    def keys(self) -> list[str]:
        return list(self._notices)

    def notice(self, key: str) -> Notice | None:
        return self._notices.get(key)

    def _dismiss(self, key: str) -> None:
        self.hide_notice(key)
        self.dismissed.emit(key)

    def _link(self, key: str, href: str) -> None:
        handler = self._handlers.get(key)
        if handler is not None:
            handler(href)
