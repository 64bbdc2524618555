"""Export Training Job: where the job folder goes, GPUs per node, nodes, epochs or a
time budget, and the batch size per GPU. Returns an
:class:`~fcn_studio.models.training_job_export.ExportChoice`; it writes nothing itself.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...models.finetune_plan import FinetunePlan
from ...models.training_job_export import DEFAULT_BATCH, DEFAULT_EPOCHS, ExportChoice
from ..icons import icon


class ExportJobDialog(QDialog):
    def __init__(self, parent: QWidget | None, plan: FinetunePlan, project_root: Path) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export training job")
        self.setWindowIcon(icon("finetune"))
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M")
        self.location_edit = QLineEdit(str(Path(project_root).resolve().parent))
        self.browse_button = QPushButton("Choose…")
        self.browse_button.clicked.connect(self._browse)
        self.name_edit = QLineEdit(f"{Path(project_root).name}-job-{stamp}")
        where = QHBoxLayout()
        where.addWidget(self.location_edit, 1)
        where.addWidget(self.browse_button)

        self.gpus_spin = _spin(1, 64, 1)
        self.nodes_spin = _spin(1, 1024, 1)
        self.epochs_radio = QRadioButton("Epochs")
        self.time_radio = QRadioButton("Time budget")
        group = QButtonGroup(self)
        group.addButton(self.epochs_radio)
        group.addButton(self.time_radio)
        self.epochs_radio.setChecked(True)
        self.epochs_spin = _spin(1, 100_000, DEFAULT_EPOCHS)
        self.minutes_spin = _spin(1, 7 * 24 * 60, 60)
        self.minutes_spin.setSuffix(" min")
        duration = QHBoxLayout()
        for w in (self.epochs_radio, self.epochs_spin, self.time_radio, self.minutes_spin):
            duration.addWidget(w)
        duration.addStretch(1)
        self.batch_spin = _spin(1, 1024, DEFAULT_BATCH)
        self.batch_spin.setSuffix(" per GPU")
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self._plan = plan

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Create in:", where)
        form.addRow("Job folder name:", self.name_edit)
        form.addRow("GPUs per node:", self.gpus_spin)
        form.addRow("Nodes:", self.nodes_spin)
        form.addRow("Duration:", duration)
        form.addRow("Batch size:", self.batch_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.buttons)
        for w in (self.location_edit, self.name_edit):
            w.textChanged.connect(self._update)
        for s in (self.gpus_spin, self.nodes_spin, self.epochs_spin, self.minutes_spin,
                  self.batch_spin):
            s.valueChanged.connect(self._update)
        group.buttonToggled.connect(self._update)
        self._update()

    def folder(self) -> Path:
        return Path(self.location_edit.text().strip()).expanduser() / self.name_edit.text().strip()

    def problem(self) -> str | None:
        """Why Export is disabled, or None."""
        name = self.name_edit.text().strip()
        if not self.location_edit.text().strip() or not name:
            return "Choose where to create the job folder and name it."
        if "/" in name or "\\" in name or name in (".", ".."):
            return "The job folder name must be a plain name, not a path."
        folder = self.folder()
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            return f"{folder} already exists and is not empty."
        return None

    def choice(self) -> ExportChoice:
        by_time = self.time_radio.isChecked()
        return ExportChoice(folder=self.folder(), gpus_per_node=self.gpus_spin.value(),
                            nodes=self.nodes_spin.value(),
                            epochs=None if by_time else self.epochs_spin.value(),
                            time_limit_s=self.minutes_spin.value() * 60.0 if by_time else None,
                            batch_size=self.batch_spin.value())

    def accept(self) -> None:
        if self.problem() is None:
            super().accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Create the job folder in",
                                                  self.location_edit.text())
        if folder:
            self.location_edit.setText(folder)

    def _update(self) -> None:
        self.epochs_spin.setEnabled(self.epochs_radio.isChecked())
        self.minutes_spin.setEnabled(self.time_radio.isChecked())
        gpus = self.gpus_spin.value() * self.nodes_spin.value()
        problem = self.problem()
        p = self._plan
        self.summary_label.setText(problem or (
            f"{len(p.train_ids)} training and {len(p.val_ids)} validation images "
            f"(the project's split), from {p.base.parent}, on {gpus} GPU{'s' * (gpus > 1)}: "
            f"a global batch of {gpus * self.batch_spin.value()}. Written to {self.folder()}."))
        self.summary_label.setStyleSheet("color: #c0392b;" if problem else "")
        self.ok_button.setEnabled(problem is None)


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    return spin


def ask_export(parent: QWidget | None, plan: FinetunePlan, project_root: Path) -> ExportChoice | None:
    dialog = ExportJobDialog(parent, plan, project_root)
    return dialog.choice() if dialog.exec() else None
