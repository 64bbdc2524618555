"""The fine-tuning options dialog.

The dialog is given plain values (the current version id, how many labels are
saved, the project's classes, the current model's classes, the devices there
are, the project's train/val counts) and returns
:class:`~fcn_studio.models.finetune_plan.FinetuneOptions` from ``options()``; it starts
nothing itself. Its defaults, the split it previews and the class check are the
fine-tune plan's (:mod:`fcn_studio.models.finetune_plan`), the same as the one-click
button's. Whatever would make a run pointless or surprising is checked here,
before OK: no saved label disables OK with the reason, a base model whose
classes differ from the project's needs an explicit "new score layers" tick, and
very few images get a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...models.finetune_plan import (
    CPU_BUDGET_S,
    FEW_IMAGES,
    PRETRAINED_LR,
    SCRATCH_LR,
    FinetuneOptions,
    class_mismatch,
    default_epochs,
    default_options,
    has_accelerator,
    n_val_for,
)
from ...models.model_spec import (
    BACKBONE_LABELS,
    BACKBONE_NOTES,
    DEFAULT_BACKBONE,
    recommended_backbone,
)
from ..icons import icon

LEARNING_RATES: Final[tuple[float, ...]] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
DEFAULT_VAL_PERCENT: Final[int] = 20
"""The share offered when the project's own split is not used."""

ClassReader = Callable[[str], "list[str] | None"]
"""checkpoint path -> its class names, or None when they cannot be read."""
FilePicker = Callable[[QWidget], "str | None"]
"""parent -> a chosen checkpoint path, or None when cancelled."""


def split_counts(labelled: int, val_share: float) -> tuple[int, int]:
    """How many (training, validation) images a share gives; training keeps at least one."""
    val = n_val_for(labelled, val_share)
    return labelled - val, val


class FinetuneDialog(QDialog):
    """Base model, duration (epochs or minutes), learning rate, device, validation share."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        current_version: str | None,
        labelled: int,
        class_names: list[str],
        base_classes: list[str] | None,
        devices: list[str],
        read_classes: ClassReader | None = None,
        project_split: tuple[int, int] | None = None,
        backbone: str = DEFAULT_BACKBONE,
        current_is_new: bool = False,
    ) -> None:
        """``base_classes``: the current model's classes; ``read_classes`` gives a file's;
        ``project_split``: (training, validation) images of the project's split lists;
        ``backbone``: the backbone a new model gets; ``current_is_new``: the current
        model has no trained weights yet (its backbone can still be chosen)."""
        super().__init__(parent)
        self.setWindowTitle("Fine-tune the model")
        self.setWindowIcon(icon("finetune"))
        self._labelled = labelled
        self._class_names = list(class_names)
        self._base_classes = base_classes
        self._read_classes = read_classes
        self._file: str | None = None
        self._file_classes: list[str] | None = None
        # Replaceable so tests (and scripted use) never block in a modal file dialog.
        self.pick_file: FilePicker = _dialog_pick_file
        self._project_split = project_split
        n_train = project_split[0] if project_split else split_counts(
            labelled, DEFAULT_VAL_PERCENT / 100)[0]
        defaults = default_options(current_version, devices, n_train)

        self.base_combo = QComboBox()
        if current_version:
            self.base_combo.addItem(icon("model"), f"current model ({current_version})", "current")
        self.base_combo.addItem("ImageNet FCN-8s (new score layers)", "imagenet")
        self.base_combo.addItem("a file…", "file")
        self.file_label = QLabel()
        self.file_button = QPushButton("Choose…")
        file_row = QHBoxLayout()
        file_row.setContentsMargins(0, 0, 0, 0)
        file_row.addWidget(self.file_label, 1)
        file_row.addWidget(self.file_button)
        self.file_row = QWidget()
        self.file_row.setLayout(file_row)

        # A new network's backbone: for ImageNet, or a current model without training.
        self._current_is_new = current_is_new
        recommended = recommended_backbone(has_accelerator(devices))
        self.backbone_combo = QComboBox()
        for name, label in BACKBONE_LABELS.items():
            text = f"{label} (recommended here)" if name == recommended else label
            self.backbone_combo.addItem(text, name)
            self.backbone_combo.setItemData(self.backbone_combo.count() - 1,
                                            BACKBONE_NOTES[name], Qt.ItemDataRole.ToolTipRole)
        self.backbone_combo.setCurrentIndex(max(0, self.backbone_combo.findData(backbone)))
        self.backbone_note = QLabel()
        self.backbone_note.setWordWrap(True)

        self.epochs_radio = QRadioButton("Epochs")
        self.time_radio = QRadioButton("Time budget")
        self._duration = QButtonGroup(self)
        self._duration.addButton(self.epochs_radio)
        self._duration.addButton(self.time_radio)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(defaults.epochs or default_epochs(n_train))
        self.minutes_spin = QSpinBox()
        self.minutes_spin.setRange(1, 24 * 60)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setValue(round((defaults.time_limit_s or CPU_BUDGET_S) / 60))
        (self.epochs_radio if defaults.epochs else self.time_radio).setChecked(True)
        duration = QHBoxLayout()
        for w in (self.epochs_radio, self.epochs_spin, self.time_radio, self.minutes_spin):
            duration.addWidget(w)
        duration.addStretch(1)

        self.lr_combo = QComboBox()
        self.lr_combo.addItem("auto", None)  # the engine's choice, by how the backbone started
        for lr in LEARNING_RATES:
            self.lr_combo.addItem(f"{lr:.0e}".replace("e-0", "e-"), lr)
        self.lr_combo.setToolTip(
            "Lower keeps more of what the model knew; higher adapts faster.\n"
            f"auto: {PRETRAINED_LR:g} for a backbone that started from ImageNet weights, "
            f"{SCRATCH_LR:g} for one that started from random weights")

        self.device_combo = QComboBox()
        auto = next((d for d in ("cuda", "mps") if any(x.startswith(d) for x in devices)), "cpu")
        self.device_combo.addItem(f"auto ({auto})", "auto")
        for d in dict.fromkeys(devices):
            if d != "auto":  # already the first entry, with what it resolves to
                self.device_combo.addItem(d, d)

        self.project_split_check = QCheckBox()
        if project_split is not None:
            self.project_split_check.setText(
                f"the project's split: {project_split[0]} for training, "
                f"{project_split[1]} for validation")
            self.project_split_check.setToolTip(
                "ImageSets/Segmentation/train.txt and val.txt: an image that validated one "
                "version never trains the next, so before/after scores stay comparable")
            self.project_split_check.setChecked(True)
        self.project_split_check.setVisible(project_split is not None)
        self.val_spin = QSpinBox()
        self.val_spin.setRange(0, 50)
        self.val_spin.setSuffix(" %")
        self.val_spin.setValue(DEFAULT_VAL_PERCENT)
        self.split_label = QLabel()
        val_row = QHBoxLayout()
        val_row.addWidget(self.val_spin)
        val_row.addWidget(self.split_label, 1)

        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.reinit_check = QCheckBox("Start new score layers for these classes")
        self.reinit_check.setToolTip("The base model's class scores are dropped; the backbone is kept")
        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        self.reason_label.setStyleSheet("color: #c0392b;")

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Start fine-tuning")
        self.ok_button.setIcon(icon("finetune"))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Base model:", self.base_combo)
        form.addRow("", self.file_row)
        form.addRow("Backbone:", self.backbone_combo)
        form.addRow("", self.backbone_note)
        form.addRow("Duration:", duration)
        form.addRow("Learning rate:", self.lr_combo)
        form.addRow("Device:", self.device_combo)
        form.addRow("Validation:", self.project_split_check)
        form.addRow("Validation share:" if project_split is None else "or a share:", val_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.warning_label)
        layout.addWidget(self.reinit_check)
        layout.addWidget(self.reason_label)
        layout.addWidget(self.buttons)

        self._base_index = self.base_combo.currentIndex()
        self.base_combo.currentIndexChanged.connect(self._on_base)
        self.file_button.clicked.connect(self._choose_file)
        self.backbone_combo.currentIndexChanged.connect(self._update)
        self._duration.buttonToggled.connect(self._update)
        self.val_spin.valueChanged.connect(self._update)
        self.project_split_check.toggled.connect(self._update)
        self.reinit_check.toggled.connect(self._update)
        self._update()

    # -- reading the controls ------------------------------------------------------

    def base(self) -> str:
        """"current", "imagenet" or the chosen file's path ("" while none is chosen)."""
        kind = self.base_combo.currentData()
        return (self._file or "") if kind == "file" else str(kind)

    def chosen_base_classes(self) -> list[str] | None:
        """The classes of the chosen base, or None when unknown or irrelevant (ImageNet)."""
        kind = self.base_combo.currentData()
        if kind == "current":
            return self._base_classes
        return self._file_classes if kind == "file" else None

    def backbone_choosable(self) -> bool:
        """Whether the run builds a new network (ImageNet, or an untrained current one)."""
        kind = self.base_combo.currentData()
        return kind == "imagenet" or (kind == "current" and self._current_is_new)

    def mismatch(self) -> str | None:
        return class_mismatch(self.chosen_base_classes(), self._class_names)

    def problem(self) -> str | None:
        """Why OK is disabled, or None."""
        if self._labelled <= 0:
            return "Nothing to train on yet: save at least one corrected label first."
        if self.base_combo.currentData() == "file" and not self._file:
            return "Choose a model file to start from."
        if self.mismatch() and not self.reinit_check.isChecked():
            return "Tick “Start new score layers” to train the base model on these classes."
        return None

    def uses_project_split(self) -> bool:
        return self._project_split is not None and self.project_split_check.isChecked()

    def counts(self) -> tuple[int, int]:
        """(training, validation) images of the chosen split."""
        if self.uses_project_split():
            assert self._project_split is not None
            return self._project_split
        return split_counts(self._labelled, self.val_spin.value() / 100)

    def options(self) -> FinetuneOptions:
        by_time = self.time_radio.isChecked()
        return FinetuneOptions(
            base=self.base(),
            epochs=None if by_time else self.epochs_spin.value(),
            time_limit_s=self.minutes_spin.value() * 60.0 if by_time else None,
            lr=None if self.lr_combo.currentData() is None else float(self.lr_combo.currentData()),
            device=str(self.device_combo.currentData()),
            val_share=None if self.uses_project_split() else self.val_spin.value() / 100,
            reinit_classes=bool(self.mismatch()) and self.reinit_check.isChecked(),
            backbone=str(self.backbone_combo.currentData()) if self.backbone_choosable() else None,
        )

    def accept(self) -> None:
        if self.problem() is None:  # Enter on a disabled OK must not start a run either
            super().accept()

    # -- reactions -------------------------------------------------------------------

    def _on_base(self, index: int) -> None:
        if self.base_combo.itemData(index) == "file" and not self._file and not self._choose_file():
            # Cancelled the picker: go back to what was chosen before.
            self.base_combo.setCurrentIndex(self._base_index)
            return
        self._base_index = index
        self._update()

    def _choose_file(self) -> bool:
        path = self.pick_file(self)
        if not path:
            return False
        self._file = path
        self._file_classes = self._read_classes(path) if self._read_classes else None
        self.file_label.setText(path)
        self.file_label.setToolTip(path)
        self._update()
        return True

    def _update(self) -> None:
        self.file_row.setVisible(self.base_combo.currentData() == "file")
        choosable = self.backbone_choosable()
        self.backbone_combo.setEnabled(choosable)
        self.backbone_note.setText(BACKBONE_NOTES[str(self.backbone_combo.currentData())]
                                   if choosable else "The base model's own (it has trained "
                                   "weights).")
        self.epochs_spin.setEnabled(self.epochs_radio.isChecked())
        self.minutes_spin.setEnabled(self.time_radio.isChecked())
        self.val_spin.setEnabled(not self.uses_project_split())
        train, val = self.counts()
        self.split_label.setText("" if self.uses_project_split()
                                 else f"≈ {train} for training, {val} for validation")
        warnings = []
        mismatch = self.mismatch()
        if mismatch:
            warnings.append(f"Classes differ: {mismatch}.")
        elif self.base_combo.currentData() == "file" and self._file and self._file_classes is None:
            warnings.append("The file's classes could not be read; they are checked when training starts.")
        if 0 < self._labelled < FEW_IMAGES:
            warnings.append(f"Only {self._labelled} labelled image{'s' * (self._labelled != 1)}: "
                            "the model may overfit and the score is noisy. Label a few more if you can.")
        if self._labelled > 0 and val == 0:
            warnings.append("No validation images: there will be no before/after score.")
        self.warning_label.setText("\n".join(warnings))
        self.warning_label.setVisible(bool(warnings))
        self.reinit_check.setVisible(bool(mismatch))
        problem = self.problem()
        self.reason_label.setText(problem or "")
        self.reason_label.setVisible(problem is not None)
        self.ok_button.setEnabled(problem is None)


def _dialog_pick_file(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Model to start from", "",
                                          "Checkpoints (*.pt *.pth);;All files (*)")
    return path or None
