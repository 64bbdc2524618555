"""Small dialogs: class names for a new project, importing class-id masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QWidget,
)


def ask_class_names(parent: QWidget) -> list[str] | None:
    text, ok = QInputDialog.getMultiLineText(
        parent, "Classes", "One class name per line; the first is class 0 (background):",
        "background\n")
    if not ok:
        return None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names if len(names) >= 2 else None


@dataclass(frozen=True)
class ImportSpec:
    images: Path
    masks: Path
    dest: Path
    class_names: list[str]
    void_id: int | None


class _PathField(QWidget):
    def __init__(self, parent: QWidget, title: str, folder: bool = True) -> None:
        super().__init__(parent)
        self.edit = QLineEdit(self)
        button = QPushButton("Browse…", self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(button)

        def browse() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, title)
            else:
                path, _ = QFileDialog.getOpenFileName(self, title, "", "Text files (*.txt);;All (*)")
            if path:
                self.edit.setText(path)

        button.clicked.connect(browse)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text) if text else None


class ImportMasksDialog(QDialog):
    """Images + grayscale class-id masks + a class list + the void id -> a VOC project."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import class-id masks")
        self.images = _PathField(self, "Folder of images")
        self.masks = _PathField(self, "Folder of masks (PNG, pixel value = class id)")
        self.classes = _PathField(self, "Class list (one name per line)", folder=False)
        self.dest = _PathField(self, "Empty folder for the new project")
        self.void = QSpinBox(self)
        self.void.setRange(-1, 255)
        self.void.setValue(255)
        self.void.setSpecialValueText("none")
        self.void.setToolTip("Mask value that means 'unlabelled' (CamVid: 11; Cityscapes trainIds: "
                             "255). Stored as 255 (void).")
        form = QFormLayout(self)
        form.addRow("Images:", self.images)
        form.addRow("Masks:", self.masks)
        form.addRow("Class list:", self.classes)
        form.addRow("Void id:", self.void)
        form.addRow("New project:", self.dest)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, parent=self)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _check(self) -> None:
        missing = [n for n, f in (("images", self.images), ("masks", self.masks),
                                  ("class list", self.classes), ("new project", self.dest))
                   if f.path() is None]
        if missing:
            QMessageBox.warning(self, "Import", "Please choose: " + ", ".join(missing))
            return
        self.accept()

    def result_spec(self) -> ImportSpec:
        from training.id_masks import read_class_list

        void = self.void.value()
        return ImportSpec(images=self.images.path(), masks=self.masks.path(),  # type: ignore[arg-type]
                          dest=self.dest.path(), class_names=read_class_list(self.classes.path()),  # type: ignore[arg-type]
                          void_id=None if void < 0 else void)
