"""Questions and messages for the controllers, behind one narrow interface.

The fine-tune and project controllers never hold the window: they get a
:class:`Prompter` for what they must ask or say (a question with named
buttons, an error, a folder to choose), and tests give them a scripted one.
:class:`DialogPrompter` is the real one: message boxes and file dialogs over a
parent widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


class Prompter(Protocol):
    """What a controller may ask the person, or tell them."""

    @property
    def parent_widget(self) -> QWidget | None:
        """For dialogs of their own (class names, import options); None in tests."""

    def info(self, title: str, text: str) -> None: ...

    def warn(self, title: str, text: str) -> None: ...

    def error(self, title: str, text: str) -> None: ...

    def confirm(self, title: str, text: str) -> bool:
        """A yes/no question; True for yes."""

    def ask(self, title: str, text: str, buttons: list[str], default: int = 0) -> int:
        """A question with named buttons: the index chosen, -1 when closed."""

    def choose_folder(self, title: str, start: str = "") -> Path | None: ...

    def choose_file(self, title: str, filters: str) -> Path | None: ...


class DialogPrompter:
    """Message boxes and file dialogs over ``parent``."""

    def __init__(self, parent: QWidget | None) -> None:
        self._parent = parent

    @property
    def parent_widget(self) -> QWidget | None:
        return self._parent

    def info(self, title: str, text: str) -> None:
        QMessageBox.information(self._parent, title, text)

    def warn(self, title: str, text: str) -> None:
        QMessageBox.warning(self._parent, title, text)

    def error(self, title: str, text: str) -> None:
        QMessageBox.critical(self._parent, title, text)

    def confirm(self, title: str, text: str) -> bool:
        return QMessageBox.question(self._parent, title, text) == QMessageBox.StandardButton.Yes

    def ask(self, title: str, text: str, buttons: list[str], default: int = 0) -> int:
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self._parent)
        made = [box.addButton(b, QMessageBox.ButtonRole.ActionRole) for b in buttons]
        box.setDefaultButton(made[default])
        box.exec()
        clicked = box.clickedButton()
        return made.index(clicked) if clicked in made else -1

    def choose_folder(self, title: str, start: str = "") -> Path | None:
        folder = QFileDialog.getExistingDirectory(self._parent, title, start)
        return Path(folder) if folder else None

    def choose_file(self, title: str, filters: str) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self._parent, title, "", filters)
        return Path(path) if path else None
