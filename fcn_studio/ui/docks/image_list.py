"""The image list dock: every image of the project, filterable, with lazy thumbnails.

Data comes from a duck-typed project: ``project.ids`` (a sequence of str) and
``project.entry(id)`` with ``id``, ``image_path``, ``state`` ("new", "predicted",
"saved"), ``error``, ``correction_effort`` and ``mean_uncertainty``; unsaved edits
come from the labelling sessions through ``set_dirty``.

Setting a project reads ``project.ids`` and nothing else: entries are fetched
when a row is painted (and cached until ``refresh_entry``), thumbnails when a
row's icon is painted (see thumbnails.py). That keeps a 10,000-image project
instant to open. Filtering keeps its own list of visible ids, so next/previous
(``visible_ids``) and the view always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

from PySide6.QtCore import (
    QAbstractListModel,
    QElapsedTimer,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..icons import icon
from .thumbnails import THUMB_SIZE, BadgeDelegate, ThumbnailCache

Index = QModelIndex | QPersistentModelIndex

STATE_FILTERS: Final[tuple[str, ...]] = (
    "all", "new", "predicted", "saved", "unreadable", "unsaved changes",
)
ID_ROLE: Final[int] = Qt.ItemDataRole.UserRole + 1
STATE_ROLE: Final[int] = Qt.ItemDataRole.UserRole + 2
ERROR_ROLE: Final[int] = Qt.ItemDataRole.UserRole + 3
"""Why the image cannot be shown (the project's reason, else the thumbnail's), or None."""
DIRTY_ROLE: Final[int] = Qt.ItemDataRole.UserRole + 4

_DIRTY_MARK: Final[str] = "• "


class ProjectLike(Protocol):
    """What the list needs from a project (fcn_studio.project.project.Project fits)."""

    @property
    def ids(self) -> Sequence[str]: ...

    def entry(self, image_id: str) -> Any: ...


class ImageListModel(QAbstractListModel):
    """The filtered image ids of a project; row data is fetched only when asked for."""

    def __init__(self, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self._project: ProjectLike | None = None
        self._all: Sequence[str] = ()
        self._visible: list[str] = []
        self._row_of: dict[str, int] = {}
        self._entries: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._notes: dict[str, str] = {}  # a background problem per image (save, prediction)
        self._waiting: dict[str, str] = {}  # thumbnail key -> id, for rows shown so far
        self._text = ""
        self._state = "all"
        thumbnails.thumbnailReady.connect(self._on_thumbnail)

    # -- content ------------------------------------------------------------------

    def set_project(self, project: ProjectLike | None) -> None:
        self.beginResetModel()
        self._project = project
        self._all = project.ids if project is not None else ()
        self._entries.clear()
        self._dirty.clear()
        self._notes.clear()
        self._waiting.clear()
        self.thumbnails.clear()
        self._visible = self._filtered()
        self._row_of = {image_id: row for row, image_id in enumerate(self._visible)}
        self.endResetModel()

    def set_uncertainty_order(self, on: bool) -> None:
        """Active learning: unsaved images first, most uncertain prediction first."""
        self._by_uncertainty = on
        self.refilter()

    def set_filter(self, text: str, state: str) -> None:
        if state not in STATE_FILTERS:
            raise ValueError(f"unknown state filter {state!r}; expected one of {STATE_FILTERS}")
        self._text, self._state = text.strip().lower(), state
        self.refilter()

    def refilter(self) -> None:
        """Apply the filter again (rows stay put while a person works, until this runs)."""
        self.beginResetModel()
        self._visible = self._filtered()
        self._row_of = {image_id: row for row, image_id in enumerate(self._visible)}
        self.endResetModel()

    def refresh(self, image_id: str) -> None:
        """Fetch the entry again (its state changed) and repaint its row."""
        self._entries.pop(image_id, None)
        self._changed(image_id)

    def set_dirty(self, image_id: str, dirty: bool) -> None:
        if dirty == (image_id in self._dirty):
            return
        if dirty:
            self._dirty.add(image_id)
        else:
            self._dirty.discard(image_id)
        self._changed(image_id)

    def set_note(self, image_id: str, text: str | None) -> None:
        """A problem with this image shown in its tooltip (None: solved)."""
        if text:
            self._notes[image_id] = text
        elif self._notes.pop(image_id, None) is None:
            return
        self._changed(image_id)

    def note(self, image_id: str) -> str | None:
        return self._notes.get(image_id)

    def visible_ids(self) -> list[str]:
        return list(self._visible)

    def total(self) -> int:
        """Images in the project, filtered or not."""
        return len(self._all)

    def row_of(self, image_id: str) -> int | None:
        return self._row_of.get(image_id)

    def entry(self, image_id: str) -> Any:
        found = self._entries.get(image_id)
        if found is None and self._project is not None:
            found = self._entries[image_id] = self._project.entry(image_id)
        return found

    # -- Qt model API -----------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802 (Qt API)
        return 0 if parent.isValid() else len(self._visible)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._visible):
            return None
        image_id = self._visible[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _DIRTY_MARK + image_id if image_id in self._dirty else image_id
        if role == ID_ROLE:
            return image_id
        if role == DIRTY_ROLE:
            return image_id in self._dirty
        if role == Qt.ItemDataRole.FontRole:
            if image_id in self._dirty:
                font = QFont()
                font.setItalic(True)
                return font
            return None
        entry = self.entry(image_id)
        if role == STATE_ROLE:
            return entry.state
        if role == ERROR_ROLE:
            return self._error(entry, request=False)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._decoration(entry)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(entry)
        return None

    # -- internals ------------------------------------------------------------------------

    def _filtered(self) -> list[str]:
        ids = self._matching()
        if getattr(self, "_by_uncertainty", False):
            def key(image_id: str) -> tuple[int, float]:
                e = self.entry(image_id)
                u = e.mean_uncertainty
                return (e.state == "saved", -u if u is not None else 1.0)

            ids.sort(key=key)  # stable: equal keys keep name order
        return ids

    def _matching(self) -> list[str]:
        ids = [i for i in self._all if self._text in i.lower()] if self._text else list(self._all)
        if self._state == "all":
            return ids
        if self._state == "unsaved changes":
            return [i for i in ids if i in self._dirty]
        if self._state == "unreadable":
            return [i for i in ids if self._error(self.entry(i), request=False)]
        return [i for i in ids if self.entry(i).state == self._state]

    def _changed(self, image_id: str) -> None:
        row = self._row_of.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def _error(self, entry: Any, request: bool) -> str | None:
        if entry.error:
            return str(entry.error)
        get = self.thumbnails.get if request else self.thumbnails.peek
        thumb = get(entry.image_path)
        return thumb.error if thumb is not None else None

    def _decoration(self, entry: Any) -> Any:
        if entry.error:  # known unreadable: do not even try to load it
            return icon("image_error")
        thumb = self.thumbnails.get(entry.image_path)  # schedules a load on a miss
        if thumb is None:
            self._waiting[str(entry.image_path)] = entry.id
            return icon("image")
        return thumb.icon if thumb.icon is not None else icon("image_error")

    def _tooltip(self, entry: Any) -> str:
        lines = [entry.image_path.name, f"state: {entry.state}"]
        if entry.correction_effort is not None:
            lines.append(f"correction effort: {100 * entry.correction_effort:.1f} % of pixels")
        if entry.mean_uncertainty is not None:
            lines.append(f"mean uncertainty: {entry.mean_uncertainty:.3f}")
        split = getattr(entry, "split", None)
        if split:
            lines.append(f"split: {split}")
        if entry.error:
            lines.append(f"unreadable: {entry.error}")
        else:
            thumb = self.thumbnails.peek(entry.image_path)
            if thumb is not None and thumb.error:
                lines.append(f"cannot read image: {thumb.error}")
        if entry.id in self._dirty:
            lines.append("unsaved changes")
        if entry.id in self._notes:
            lines.append(self._notes[entry.id])
        return "\n".join(lines)

    def _on_thumbnail(self, key: str) -> None:
        image_id = self._waiting.pop(key, None)
        if image_id is not None:
            self._changed(image_id)


class ImageListPanel(QWidget):
    """Filter line, state filter, list/icon view of the project's images."""

    imageActivated = Signal(str)
    orderChanged = Signal()  # the filter or the order changed: navigation follows visible_ids()
    """A person clicked a row or pressed Enter on it."""

    def __init__(self, parent: QWidget | None = None,
                 thumbnails: ThumbnailCache | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails or ThumbnailCache(parent=self)
        self.model = ImageListModel(self.thumbnails, self)
        self._last_emit: tuple[str, QElapsedTimer] | None = None
        self._selecting = False  # select() moves the highlight without asking to open

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name")
        self.filter_edit.setClearButtonEnabled(True)
        self.state_combo = QComboBox()
        self.state_combo.addItems(list(STATE_FILTERS))
        self.state_combo.setToolTip("Show only images in this state")
        # Sized by a few characters, not its longest entry (the popup still shows all of
        # it), so the Images panel can be narrowed to leave the canvas the room.
        self.state_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.state_combo.setMinimumContentsLength(4)
        self.order_button = QToolButton()
        self.order_button.setCheckable(True)
        self.order_button.setAutoRaise(True)
        self.order_button.setIcon(icon("next_uncertain"))
        self.order_button.setToolTip("Active learning: unsaved images with the most uncertain "
                                     "predictions first (Next follows this order)")
        self.mode_button = QToolButton()
        self.mode_button.setCheckable(True)
        self.mode_button.setAutoRaise(True)
        self.count_label = QLabel()

        self.view = QListView()
        self.view.setModel(self.model)
        # Uniform sizes: the view never asks every row for its size hint, so a
        # project's rows are laid out without fetching a single entry.
        self.view.setUniformItemSizes(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setItemDelegate(BadgeDelegate(STATE_ROLE, ERROR_ROLE, self.view))
        self.set_icon_mode(False)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.state_combo)
        top.addWidget(self.order_button)
        top.addWidget(self.mode_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.state_combo.currentTextChanged.connect(self._apply_filter)
        self.mode_button.toggled.connect(self.set_icon_mode)
        self.order_button.toggled.connect(self._apply_order)
        self.view.clicked.connect(self._activate)
        self.view.activated.connect(self._activate)  # Enter, or double-click
        # Arrow keys, Home/End, PgUp/PgDn in the list move the current row: open it, so the
        # highlight and the canvas never disagree.
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)
        self._update_count()

    # -- API for the main window ----------------------------------------------------------

    def set_project(self, project: ProjectLike | None) -> None:
        """Show ``project``'s images (None: empty). Reads ``project.ids`` only."""
        self.model.set_project(project)
        self._update_count()

    def refresh_entry(self, image_id: str) -> None:
        """Repaint one row after its state changed (it stays until the filter changes)."""
        self.model.refresh(image_id)

    def set_dirty(self, image_id: str, dirty: bool) -> None:
        self.model.set_dirty(image_id, dirty)

    def set_note(self, image_id: str, text: str | None) -> None:
        """A background problem with this image (in its tooltip); None when solved."""
        self.model.set_note(image_id, text)

    def select(self, image_id: str) -> bool:
        """Highlight ``image_id`` and scroll to it, without emitting; False if filtered out."""
        row = self.model.row_of(image_id)
        if row is None:
            self.view.clearSelection()
            return False
        index = self.model.index(row)
        self._selecting = True
        try:
            self.view.setCurrentIndex(index)
        finally:
            self._selecting = False
        self.view.scrollTo(index)
        return True

    def current_id(self) -> str | None:
        index = self.view.currentIndex()
        return index.data(ID_ROLE) if index.isValid() else None

    def visible_ids(self) -> list[str]:
        """Ids shown after filtering, in order (for next / previous)."""
        return self.model.visible_ids()

    def set_filter(self, text: str = "", state: str = "all") -> None:
        """Set both filters as a person would (the widgets update, the list refilters)."""
        self.filter_edit.setText(text)
        self.state_combo.setCurrentText(state)
        self._apply_filter()

    def set_icon_mode(self, icons: bool) -> None:
        """Thumbnail grid (True) or a compact list with small thumbnails (False)."""
        view = self.view
        view.setViewMode(QListView.ViewMode.IconMode if icons else QListView.ViewMode.ListMode)
        # IconMode switches to free movement, whose layout keeps an item object
        # per row; static movement keeps the fast uniform-size list layout.
        view.setMovement(QListView.Movement.Static)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setWrapping(icons)
        if icons:
            text_height = view.fontMetrics().height()
            view.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
            view.setGridSize(QSize(THUMB_SIZE + 16, THUMB_SIZE + text_height + 12))
        else:
            view.setIconSize(QSize(40, 40))
            view.setGridSize(QSize())
        self.mode_button.blockSignals(True)
        self.mode_button.setChecked(icons)
        self.mode_button.blockSignals(False)
        self.mode_button.setIcon(icon("list_mode" if icons else "icon_mode"))
        self.mode_button.setToolTip("Show as a list" if icons else "Show thumbnails")

    # -- internals --------------------------------------------------------------------------

    def _apply_filter(self, *_args: object) -> None:
        keep = self.current_id()
        self.model.set_filter(self.filter_edit.text(), self.state_combo.currentText())
        if keep is not None:
            self.select(keep)
        self._update_count()
        self.orderChanged.emit()

    def _apply_order(self, on: bool) -> None:
        keep = self.current_id()
        self.model.set_uncertainty_order(on)
        if keep is not None:
            self.select(keep)
        self.orderChanged.emit()

    def _update_count(self) -> None:
        shown, total = self.model.rowCount(), self.model.total()
        self.count_label.setText(f"{total} images" if shown == total
                                 else f"{shown} of {total} images")

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        # Only a person's move counts: not select(), nor a model reset (filter, project).
        if not self._selecting and current.isValid():
            self._activate(current)

    def _activate(self, index: QModelIndex) -> None:
        image_id = index.data(ID_ROLE)
        if image_id is None:
            return
        # A double-click reports clicked and activated for the same row: one
        # request is enough. Later clicks on the same row ask again (the main
        # window may have refused the switch the first time).
        if self._last_emit is not None:
            last_id, since = self._last_emit
            if last_id == image_id and since.elapsed() < QApplication.doubleClickInterval():
                return
        timer = QElapsedTimer()
        timer.start()
        self._last_emit = (image_id, timer)
        self.imageActivated.emit(image_id)
