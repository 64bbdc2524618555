"""The class list dock: pick the class to paint, hide or lock classes, ask for edits.

The panel does not own the class list. The main window gives it names and
colours (``set_classes``) and applies the edit requests it emits to the project
model, which may refuse; the panel never changes a name or colour on its own, it
only shows what it was last given. Setters never emit; a person's actions do.

Rows are the classes 0..C-1 in id order, then void (255) as a fixed last row:
selectable for painting, hideable and lockable, but not renamable, deletable or
movable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPoint, QSignalBlocker, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QFont,
    QIcon,
    QKeyEvent,
    QMouseEvent,
    QPalette,
    QPixmap,
)
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QMenu,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from training.palette import VOID, voc_colormap

from ..icons import icon

COL_ID: Final[int] = 0
COL_NAME: Final[int] = 1
COL_VISIBLE: Final[int] = 2
COL_LOCK: Final[int] = 3
_ID_ROLE: Final[int] = Qt.ItemDataRole.UserRole

RGB = tuple[int, int, int]
NamePrompt = Callable[[str, str], "str | None"]
"""(title, initial text) -> the name typed, or None when cancelled."""
ColorPrompt = Callable[[QColor], "QColor | None"]
"""initial colour -> the colour picked, or None when cancelled."""


def _rgb(row: Iterable[int]) -> RGB:
    r, g, b = (int(c) for c in list(row)[:3])
    return (r, g, b)


class ClassPanel(QWidget):
    """Class list with colour swatch, id, name, visibility and lock per class."""

    currentChanged = Signal(int)
    hiddenChanged = Signal(object)
    """set[int] of hidden class ids (void included as 255)."""
    lockedChanged = Signal(object)
    """set[int] of locked class ids."""
    addRequested = Signal(str)
    renameRequested = Signal(int, str)
    colorRequested = Signal(int, tuple)
    """(class id, (r, g, b))."""
    deleteRequested = Signal(int)
    moveRequested = Signal(int, int)
    """(class id, new id): the class should move to ``new id``, one row up or down."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._colors: list[RGB] = []
        self._void_color: RGB = _rgb(voc_colormap()[VOID])
        self._current = 0
        self._hidden: set[int] = set()
        self._locked: set[int] = set()
        self._swatches: dict[RGB, QIcon] = {}
        # Dialogs are replaceable so tests (and scripted use) never block in exec().
        self.ask_name: NamePrompt = self._dialog_name
        self.ask_color: ColorPrompt = self._dialog_color

        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Id", "Name", "", ""])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAllColumnsShowFocus(True)
        # Inline rename is started by hand (double-click, F2) on the name column
        # only; built-in triggers would also edit the id column.
        self.tree.setEditTriggers(QTreeWidget.EditTrigger.NoEditTriggers)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.tree.header()
        header.setStretchLastSection(False)
        for col in (COL_ID, COL_VISIBLE, COL_LOCK):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)

        self.add_action = self._action("add", "Add class…", self.add_class)
        self.rename_action = self._action("rename", "Rename…", lambda: self.rename_class())
        self.color_action = self._action("color", "Change colour…", lambda: self.change_color())
        self.delete_action = self._action("remove", "Delete class", lambda: self.delete_class())
        self.up_action = self._action("up", "Move up", lambda: self.move_class(-1))
        self.down_action = self._action("down", "Move down", lambda: self.move_class(+1))

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for action in self._edit_actions():
            button = QToolButton()
            button.setDefaultAction(action)
            button.setAutoRaise(True)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)

        self.tree.currentItemChanged.connect(self._on_current_item)
        self.tree.itemChanged.connect(self._on_item_edited)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.tree.customContextMenuRequested.connect(self._show_menu)
        self.tree.viewport().installEventFilter(self)
        self.tree.installEventFilter(self)
        self.set_classes([], [])

    # -- data in ------------------------------------------------------------------

    def set_classes(
        self, names: Sequence[str], colors: np.ndarray | Sequence[Iterable[int]]
    ) -> None:
        """Show classes 0..len(names)-1 plus void. Emits nothing.

        ``colors`` has a row per class; a 256-row table (as the canvas uses) also
        gives void's colour at row 255. Missing rows fall back to the VOC palette.
        Hidden and locked ids that no longer exist are dropped silently: after a
        delete or move the main window knows the id remapping and should call
        ``set_hidden``/``set_locked``/``set_current`` itself.
        """
        had_classes = bool(self._names)
        table = [_rgb(row) for row in colors]
        palette = voc_colormap()
        self._names = [str(n) for n in names]
        self._colors = [
            table[i] if i < len(table) else _rgb(palette[i]) for i in range(len(self._names))
        ]
        if len(table) > VOID:
            self._void_color = table[VOID]
        valid = set(self.class_ids())
        self._hidden &= valid
        self._locked &= valid
        if self._current not in valid or (self._current == VOID and not had_classes):
            # Void is current only because the list was empty; a new list starts at 0.
            self._current = 0 if self._names else VOID
        with QSignalBlocker(self.tree):
            wanted = len(self._names) + 1
            # Same row count (rename, recolour): update in place, which keeps the
            # scroll position and is safe while an inline edit is being committed.
            if self.tree.topLevelItemCount() != wanted:
                self.tree.clear()
                for _ in range(wanted):
                    self.tree.addTopLevelItem(QTreeWidgetItem())
            for row, class_id in enumerate(self.class_ids()):
                self._fill_row(self.tree.topLevelItem(row), class_id)
            self.tree.setCurrentItem(self._item(self._current))
        self._update_actions()

    def set_current(self, class_id: int) -> None:
        """Select ``class_id`` for painting without emitting; unknown ids are ignored."""
        if class_id not in self.class_ids():
            return
        self._current = class_id
        with QSignalBlocker(self.tree):
            self.tree.setCurrentItem(self._item(class_id))
        self._update_actions()

    def set_hidden(self, ids: Iterable[int]) -> None:
        """Show ``ids`` as hidden without emitting."""
        self._hidden = set(ids) & set(self.class_ids())
        self._refresh_toggles()

    def set_locked(self, ids: Iterable[int]) -> None:
        """Show ``ids`` as locked without emitting."""
        self._locked = set(ids) & set(self.class_ids())
        self._refresh_toggles()

    # -- data out -----------------------------------------------------------------

    def current(self) -> int:
        return self._current

    def hidden(self) -> set[int]:
        return set(self._hidden)

    def locked(self) -> set[int]:
        return set(self._locked)

    def class_ids(self) -> list[int]:
        """Ids in row order: 0..C-1, then void."""
        return [*range(len(self._names)), VOID]

    # -- a person's actions ---------------------------------------------------------

    def select_by_number(self, n: int) -> bool:
        """Select class ``n`` (1..9, the digit keys); emits ``currentChanged`` on a change."""
        if not 1 <= n <= 9 or n >= len(self._names):
            return False
        self._choose(n)
        return True

    def toggle_hidden(self, class_id: int) -> None:
        self._hidden ^= {class_id}
        self._refresh_toggles()
        self.hiddenChanged.emit(set(self._hidden))

    def toggle_locked(self, class_id: int) -> None:
        self._locked ^= {class_id}
        self._refresh_toggles()
        self.lockedChanged.emit(set(self._locked))

    def add_class(self) -> None:
        name = self.ask_name("Add class", "")
        if name and name.strip():
            self.addRequested.emit(name.strip())

    def rename_class(self, class_id: int | None = None) -> None:
        class_id = self._current if class_id is None else class_id
        if not self._is_real_class(class_id):
            return
        name = self.ask_name("Rename class", self._names[class_id])
        self._request_rename(class_id, name)

    def change_color(self, class_id: int | None = None) -> None:
        class_id = self._current if class_id is None else class_id
        picked = self.ask_color(QColor(*self._color_of(class_id)))
        if picked is not None and picked.isValid():
            rgb = (picked.red(), picked.green(), picked.blue())
            if rgb != self._color_of(class_id):
                self.colorRequested.emit(class_id, rgb)

    def delete_class(self, class_id: int | None = None) -> None:
        """Ask to delete; the main window confirms (it knows whether labels use the class)."""
        class_id = self._current if class_id is None else class_id
        if self._is_real_class(class_id):
            self.deleteRequested.emit(class_id)

    def move_class(self, step: int, class_id: int | None = None) -> None:
        class_id = self._current if class_id is None else class_id
        target = class_id + step
        if self._is_real_class(class_id) and self._is_real_class(target):
            self.moveRequested.emit(class_id, target)

    # -- internals ------------------------------------------------------------------

    def _action(self, icon_name: str, text: str, slot: Callable[[], None]) -> QAction:
        action = QAction(icon(icon_name), text, self)
        action.setToolTip(text.rstrip("…"))
        action.triggered.connect(slot)
        return action

    def _edit_actions(self) -> list[QAction]:
        return [self.add_action, self.rename_action, self.color_action, self.delete_action,
                self.up_action, self.down_action]

    def _is_real_class(self, class_id: int) -> bool:
        return 0 <= class_id < len(self._names)

    def _color_of(self, class_id: int) -> RGB:
        return self._void_color if class_id == VOID else self._colors[class_id]

    def _item(self, class_id: int) -> QTreeWidgetItem:
        row = len(self._names) if class_id == VOID else class_id
        return self.tree.topLevelItem(row)

    def _swatch(self, rgb: RGB) -> QIcon:
        if rgb not in self._swatches:
            pixmap = QPixmap(14, 14)
            pixmap.fill(QColor(*rgb))
            self._swatches[rgb] = QIcon(pixmap)
        return self._swatches[rgb]

    def _fill_row(self, item: QTreeWidgetItem, class_id: int) -> None:
        is_void = class_id == VOID
        rgb = self._color_of(class_id)
        item.setData(COL_ID, _ID_ROLE, class_id)
        item.setIcon(COL_ID, self._swatch(rgb))
        item.setText(COL_ID, str(class_id))
        item.setText(COL_NAME, "void" if is_void else self._names[class_id])
        item.setToolTip(COL_ID, f"colour {rgb[0]}, {rgb[1]}, {rgb[2]}")
        item.setToolTip(
            COL_NAME,
            "void: ignored by training and metrics" if is_void
            else f"class {class_id}" + (f" (key {class_id})" if 1 <= class_id <= 9 else ""),
        )
        font = QFont(item.font(COL_NAME))
        font.setItalic(is_void)
        item.setFont(COL_NAME, font)
        flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
        if not is_void:
            flags |= Qt.ItemFlag.ItemIsEditable
        item.setFlags(flags)
        self._fill_toggles(item, class_id)

    def _fill_toggles(self, item: QTreeWidgetItem, class_id: int) -> None:
        hidden = class_id in self._hidden
        locked = class_id in self._locked
        item.setIcon(COL_VISIBLE, icon("hidden" if hidden else "visible"))
        item.setToolTip(COL_VISIBLE, "hidden: click to show" if hidden else "shown: click to hide")
        item.setIcon(COL_LOCK, icon("locked" if locked else "unlocked"))
        item.setToolTip(COL_LOCK, "locked: painting cannot change these pixels; click to unlock"
                        if locked else "unlocked: click to protect these pixels")
        # Grey out hidden classes' names so the state reads at a glance.
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        item.setForeground(COL_NAME, QBrush(grey) if hidden else QBrush())

    def _refresh_toggles(self) -> None:
        with QSignalBlocker(self.tree):
            for class_id in self.class_ids():
                self._fill_toggles(self._item(class_id), class_id)

    def _update_actions(self) -> None:
        real = self._is_real_class(self._current)
        self.rename_action.setEnabled(real)
        self.delete_action.setEnabled(real)
        self.up_action.setEnabled(real and self._current > 0)
        self.down_action.setEnabled(real and self._current < len(self._names) - 1)
        self.color_action.setEnabled(bool(self._names) or self._current == VOID)

    def _choose(self, class_id: int) -> None:
        """A person picked ``class_id``: select the row and emit once on a change."""
        changed = class_id != self._current
        self.set_current(class_id)
        if changed:
            self.currentChanged.emit(class_id)

    def _on_current_item(self, item: QTreeWidgetItem | None, _previous: object) -> None:
        if item is None:
            return
        class_id = int(item.data(COL_ID, _ID_ROLE))
        if class_id != self._current:
            self._current = class_id
            self._update_actions()
            self.currentChanged.emit(class_id)

    def _on_item_edited(self, item: QTreeWidgetItem, column: int) -> None:
        """An inline edit was committed: show the model's name again, then ask to rename."""
        if column != COL_NAME:
            return
        class_id = int(item.data(COL_ID, _ID_ROLE))
        if not self._is_real_class(class_id):
            return
        typed = item.text(COL_NAME)
        # Revert first: if the main window accepts, it calls set_classes with the
        # new name (possibly during the emit below); if it refuses, the row must
        # not keep showing a name the model does not have.
        with QSignalBlocker(self.tree):
            item.setText(COL_NAME, self._names[class_id])
        self._request_rename(class_id, typed)

    def _request_rename(self, class_id: int, name: str | None) -> None:
        if name is None:
            return
        name = name.strip()
        if name and name != self._names[class_id]:
            self.renameRequested.emit(class_id, name)

    def _on_double_click(self, item: QTreeWidgetItem, column: int) -> None:
        class_id = int(item.data(COL_ID, _ID_ROLE))
        if column == COL_ID:
            self.change_color(class_id)
        elif column == COL_NAME and self._is_real_class(class_id):
            self.tree.editItem(item, COL_NAME)

    def _show_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        menu.addActions(self._edit_actions())
        menu.exec(self.tree.viewport().mapToGlobal(pos))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.tree.viewport() and event.type() in (
            QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick
        ):
            return self._toggle_at(event)  # type: ignore[arg-type]
        if watched is self.tree and event.type() == QEvent.Type.KeyPress:
            return self._key(event)  # type: ignore[arg-type]
        return super().eventFilter(watched, event)

    def _toggle_at(self, event: QMouseEvent) -> bool:
        """Clicks on the eye or lock toggle it without selecting the row for painting."""
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        index = self.tree.indexAt(event.position().toPoint())
        if not index.isValid() or index.column() not in (COL_VISIBLE, COL_LOCK):
            return False
        class_id = int(index.siblingAtColumn(COL_ID).data(_ID_ROLE))
        if event.type() == QEvent.Type.MouseButtonPress:
            if index.column() == COL_VISIBLE:
                self.toggle_hidden(class_id)
            else:
                self.toggle_locked(class_id)
        return True  # a double-click's second press must not toggle back nor edit

    def _key(self, event: QKeyEvent) -> bool:
        key = event.key()
        if Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and not event.modifiers() & ~(
            Qt.KeyboardModifier.KeypadModifier
        ):
            self.select_by_number(key - Qt.Key.Key_0)
            return True  # not the tree's type-ahead search
        if key == Qt.Key.Key_F2 and self._is_real_class(self._current):
            self.tree.editItem(self._item(self._current), COL_NAME)
            return True
        return False

    def _dialog_name(self, title: str, initial: str) -> str | None:
        text, ok = QInputDialog.getText(self, title, "Class name:", text=initial)
        return text if ok else None

    def _dialog_color(self, initial: QColor) -> QColor | None:
        color = QColorDialog.getColor(initial, self, "Class colour")
        return color if color.isValid() else None
