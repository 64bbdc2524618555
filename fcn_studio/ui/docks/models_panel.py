"""The model versions dock: every fine-tuned version, its scores, and which one is in use.

The panel shows what ``set_versions`` gave it (duck-typed version objects from
the version store) and emits requests; it never loads, deletes or switches a
model itself. Setters never emit; a person's clicks do.

A broken version (its checkpoint cannot be loaded) stays listed, greyed, with
the reason as tooltip and in the details, but "Use this model" is disabled for
it: people should see that a run existed and why it is not offered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from PySide6.QtCore import QEvent, QObject, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QFont, QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...models.versions import format_size
from ..icons import icon
from .training_panel import format_hms, format_percent

COLUMNS: Final[tuple[str, ...]] = ("Version", "Created", "Status", "Val mean IoU", "Duration",
                                   "Size")
COL_ID, COL_CREATED, COL_STATUS, COL_MIOU, COL_DURATION, COL_SIZE = range(len(COLUMNS))
_ID_ROLE: Final[int] = Qt.ItemDataRole.UserRole
_FINETUNE_TIP: Final[str] = "Train the model on the corrected labels (you keep working while it runs)"


def format_created(iso: str) -> str:
    """``2025-11-21T05:13:07+00:00`` -> local ``2025-11-21 06:13``; unparsable text as is."""
    try:
        when = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def format_miou(after: float | None, before: float | None) -> str:
    """``41.2 %`` alone, or ``12.5 → 41.2 % (+28.7)`` when the base's score is known."""
    if after is None or not math.isfinite(after):
        return "–"
    if before is None or not math.isfinite(before):
        return format_percent(after)
    return f"{100 * before:.1f} → {format_percent(after)} ({100 * (after - before):+.1f})"


def before_per_class(meta: dict[str, Any]) -> list[float | None] | None:
    """The base model's per-class IoU: the history's epoch-0 ("before") record, if any."""
    for record in meta.get("history") or []:
        if isinstance(record, dict) and record.get("epoch") == 0:
            return record.get("per_class_iou")
    return None


class ModelsPanel(QWidget):
    """Version table, per-class details of the selected one, and the model actions."""

    useRequested = Signal(str)
    """Version id to load (switch to, or roll back to)."""
    deleteRequested = Signal(str)
    """Version id to delete (the controller asks first)."""
    importRunRequested = Signal()
    exportJobRequested = Signal()
    finetuneRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._versions: dict[str, Any] = {}
        self._current: str | None = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)

        self.details_label = QLabel()
        self.details_label.setWordWrap(True)
        self.details_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.class_table = QTableWidget(0, 3)
        self.class_table.setHorizontalHeaderLabels(["Class", "IoU", "Before"])
        self.class_table.verticalHeader().hide()
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.class_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.details_label)
        details_layout.addWidget(self.class_table, 1)

        self.finetune_button = QPushButton(icon("finetune"), "Fine-tune")
        self.finetune_button.setToolTip(_FINETUNE_TIP)
        self.finetune_button.setIconSize(QSize(22, 22))
        bold = QFont(self.finetune_button.font())
        bold.setBold(True)
        self.finetune_button.setFont(bold)
        self.use_button = QPushButton(icon("model"), "Use this model")
        self.use_button.setToolTip("Predict with the selected version from now on (roll back or forward)")
        self.delete_button = QPushButton(icon("remove"), "Delete…")
        self.delete_button.setToolTip("Delete the selected version's weights from the project "
                                      "(Del)")
        self.import_button = QPushButton(icon("import"), "Import run…")
        self.import_button.setToolTip("Add a run trained elsewhere, e.g. on a GPU server")
        self.export_button = QPushButton(icon("export"), "Export training job…")
        self.export_button.setToolTip("Write a folder to train on another machine (fcn-train)")

        top = QHBoxLayout()
        top.addWidget(self.finetune_button, 1)
        top.addWidget(self.use_button, 1)
        more = QHBoxLayout()
        more.addWidget(self.delete_button)
        more.addStretch(1)
        more.addWidget(self.import_button)
        more.addWidget(self.export_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(details)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(more)

        self.finetune_button.clicked.connect(self.finetuneRequested)
        self.use_button.clicked.connect(self._use_selected)
        self.delete_button.clicked.connect(self._delete_selected)
        self.table.installEventFilter(self)  # Del in the table deletes (after asking)
        self.import_button.clicked.connect(self.importRunRequested)
        self.export_button.clicked.connect(self.exportJobRequested)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.set_versions([], None)

    # -- data in --------------------------------------------------------------------

    def set_versions(self, versions: Sequence[Any], current_id: str | None) -> None:
        """Show ``versions`` in the given order; keeps the selection, else selects the current one."""
        keep = self.selected_id()
        self._versions = {v.id: v for v in versions}
        self._current = current_id
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(versions))
            for row, version in enumerate(versions):
                self._fill_row(row, version)
            self.table.clearSelection()
            wanted = keep if keep in self._versions else current_id
            for row, version in enumerate(versions):
                if version.id == wanted:
                    self.table.selectRow(row)
        self._show_selected()

    def set_training(self, running: bool) -> None:
        """Disable Fine-tune while a run is going (one run at a time)."""
        self.finetune_button.setEnabled(not running)
        self.finetune_button.setToolTip("A run is in progress" if running else _FINETUNE_TIP)

    def _fill_row(self, row: int, version: Any) -> None:
        meta = version.meta or {}
        cells = (
            version.id,
            format_created(version.created),
            str(version.status or "").replace("_", " "),
            format_miou(version.mean_iou, version.before_mean_iou),
            format_hms(meta.get("duration_s")) if meta.get("duration_s") is not None else "–",
            format_size(getattr(version, "size_bytes", None)),
        )
        current = version.id == self._current
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setData(_ID_ROLE, version.id)
            if version.broken:
                item.setForeground(grey)
                item.setToolTip(f"Cannot be used: {version.broken}")
            elif current:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
                item.setToolTip("The model in use")
            self.table.setItem(row, col, item)
        if current and not version.broken:
            self.table.item(row, COL_ID).setIcon(icon("model"))
        if version.before_mean_iou is not None and version.mean_iou is not None:
            self.table.item(row, COL_MIOU).setToolTip(
                f"before {format_percent(version.before_mean_iou)} → after "
                f"{format_percent(version.mean_iou)}, on the same validation images")

    # -- selection ------------------------------------------------------------------

    def selected_id(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(_ID_ROLE) if items else None

    def select(self, version_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, COL_ID).data(_ID_ROLE) == version_id:
                self.table.selectRow(row)
                return

    def can_use(self, version_id: str | None) -> bool:
        version = self._versions.get(version_id) if version_id else None
        return version is not None and not version.broken and version_id != self._current

    def _use_selected(self) -> None:
        version_id = self.selected_id()
        if version_id is not None and self.can_use(version_id):
            self.useRequested.emit(version_id)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if (watched is self.table and event.type() == QEvent.Type.KeyPress
                and isinstance(event, QKeyEvent) and event.key() == Qt.Key.Key_Delete):
            self._delete_selected()
            return True
        return super().eventFilter(watched, event)

    def _delete_selected(self) -> None:
        version_id = self.selected_id()
        if version_id is not None:
            self.deleteRequested.emit(version_id)

    def _show_selected(self) -> None:
        version_id = self.selected_id()
        self.use_button.setEnabled(self.can_use(version_id))
        self.delete_button.setEnabled(version_id is not None)
        version = self._versions.get(version_id) if version_id else None
        self.class_table.setRowCount(0)
        if version is None:
            self.details_label.setText(
                "Select a version to see its scores." if self._versions
                else "No model versions yet. Fine-tune to make one from your corrected labels.")
            return
        if version.broken:
            self.details_label.setText(f"{version.id} cannot be used: {version.broken}")
            return
        self.details_label.setText(self._summary(version))
        self._fill_classes(version)

    def _summary(self, version: Any) -> str:
        meta = version.meta or {}
        parts = [version.id + (" (in use)" if version.id == self._current else "")]
        if meta.get("base"):
            parts.append(f"from {meta['base']}")
        train, val = meta.get("train_ids"), meta.get("val_ids")
        if train is not None:
            parts.append(f"trained on {len(train)} image{'s' * (len(train) != 1)}")
        if val is not None:
            parts.append(f"validated on {len(val)}")
        parts.append(f"val mean IoU {format_miou(version.mean_iou, version.before_mean_iou)}")
        return " · ".join(parts)

    def _fill_classes(self, version: Any) -> None:
        meta = version.meta or {}
        ious = list(version.per_class_iou or [])
        names = list(meta.get("class_names") or [])
        before = before_per_class(meta) or []
        self.class_table.setRowCount(len(ious))
        for i, iou in enumerate(ious):
            prior = before[i] if i < len(before) else None
            cells = (names[i] if i < len(names) else f"class {i}",
                     format_percent(iou), format_percent(prior))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if iou is None:
                    item.setToolTip("Not in the validation images")
                self.class_table.setItem(i, col, item)
        self.class_table.setColumnHidden(2, not before)
