"""Small dialogs: class names for a new project, importing class-id masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ...project.classes import PRESETS


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
    has_background: bool = True
    colors: tuple[tuple[int, int, int], ...] = ()  # one per class; empty: the VOC palette


class _PathField(QWidget):
    def __init__(self, parent: QWidget, title: str, folder: bool = True) -> None:
        super().__init__(parent)
        self.edit = QLineEdit(self)
        self.button = QPushButton("Browse…", self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

        def browse() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, title, self.edit.text())
            else:
                path, _ = QFileDialog.getOpenFileName(self, title, self.edit.text(),
                                                      "Text files (*.txt);;All (*)")
            if path:
                self.edit.setText(path)

        self.button.clicked.connect(browse)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None


CUSTOM = "custom"


def read_color_list(path: Path, count: int) -> tuple[tuple[int, int, int], ...]:
    """Class colours from a text file, one ``R G B`` (or ``R,G,B``) line per class."""
    from training.errors import DataError

    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the colours ({exc})") from exc
    colors = []
    for n, line in enumerate(lines, start=1):
        try:
            rgb = tuple(int(v) for v in line.replace(",", " ").split())
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DataError(path, f"line {n}: {line.strip()!r} is not three values 0..255")
        colors.append(rgb)
    if len(colors) != count:
        raise DataError(path, f"{len(colors)} colours for {count} classes")
    return tuple(colors)  # type: ignore[return-value]


class ImportMasksDialog(QDialog):
    """Images + grayscale class-id masks + a class list + the void id -> a VOC project.

    CamVid and Cityscapes are presets (their classes, colours and void id, and no
    background class); a custom class list says whether its class 0 is background.
    With ``run`` the dialog does the import itself when OK is pressed, and a failure
    is shown inside it with every input kept, so a wrong folder is fixed in place
    rather than typed again.
    """

    def __init__(self, parent: QWidget | None = None,
                 run: Callable[[ImportSpec], object] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import class-id masks")
        self._run = run
        self.spec: ImportSpec | None = None  # what was imported, once OK succeeded
        self.preset = QComboBox(self)
        for preset in PRESETS.values():
            self.preset.addItem(preset.title, preset.key)
        self.preset.addItem("Custom class list", CUSTOM)
        self.images = _PathField(self, "Folder of images")
        self.masks = _PathField(self, "Folder of masks (PNG, pixel value = class id)")
        self.classes = _PathField(self, "Class list (one name per line)", folder=False)
        self.colors = _PathField(self, "Class colours (one 'R G B' line per class)", folder=False)
        self.colors.edit.setPlaceholderText("optional: the VOC colours otherwise")
        self.dest = _PathField(self, "Empty folder for the new project")
        self.void = QSpinBox(self)
        self.void.setRange(-1, 255)
        self.void.setValue(255)
        self.void.setSpecialValueText("none")
        self.void.setToolTip("Mask value that means 'unlabelled' (CamVid: 11; Cityscapes trainIds: "
                             "255). Stored as 255 (void).")
        self.background = QCheckBox("Class 0 is background (drawn see-through; the eraser "
                                    "paints it)", self)
        self.background.setChecked(True)
        self.background.setToolTip("Off for datasets whose class 0 is a real class (CamVid's "
                                   "Sky): every class is drawn and the eraser paints void.")
        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        form = QFormLayout(self)
        form.addRow("Dataset:", self.preset)
        form.addRow("Images:", self.images)
        form.addRow("Masks:", self.masks)
        form.addRow("Class list:", self.classes)
        form.addRow("Colours:", self.colors)
        form.addRow("Void id:", self.void)
        form.addRow("", self.background)
        form.addRow("New project:", self.dest)
        form.addRow(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, parent=self)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.preset.currentIndexChanged.connect(self._on_preset)
        self._on_preset()

    def preset_key(self) -> str:
        return str(self.preset.currentData())

    def _on_preset(self) -> None:
        """A preset fixes the classes, colours, void id and background; custom asks."""
        preset = PRESETS.get(self.preset_key())
        custom = preset is None
        for widget in (self.classes, self.colors, self.void, self.background):
            widget.setEnabled(custom)
        if preset is not None:
            self.void.setValue(-1 if preset.void_id is None else preset.void_id)
            self.background.setChecked(preset.has_background)

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _check(self) -> None:
        fields = [("images", self.images), ("masks", self.masks), ("new project", self.dest)]
        if self.preset_key() == CUSTOM:
            fields.insert(2, ("class list", self.classes))
        missing = [n for n, f in fields if f.path() is None]
        if missing:
            self.show_error("Please choose: " + ", ".join(missing))
            return
        from training.errors import FCNError

        try:
            spec = self.result_spec()
            if self._run is not None:
                self._run(spec)
            self.spec = spec
        except (FCNError, OSError, ValueError) as exc:
            # Shown here, inputs kept: the person fixes one field and presses OK again.
            self.show_error(f"Import failed: {exc}")
            return
        self.show_error("")
        self.accept()

    def result_spec(self) -> ImportSpec:
        from training.id_masks import read_class_list

        preset = PRESETS.get(self.preset_key())
        if preset is not None:
            names, colors = list(preset.names), preset.colors
            void, background = preset.void_id, preset.has_background
        else:
            names = read_class_list(self.classes.path())  # type: ignore[arg-type]
            path = self.colors.path()
            colors = read_color_list(path, len(names)) if path is not None else ()
            void = None if self.void.value() < 0 else self.void.value()
            background = self.background.isChecked()
        return ImportSpec(images=self.images.path(), masks=self.masks.path(),  # type: ignore[arg-type]
                          dest=self.dest.path(), class_names=names,  # type: ignore[arg-type]
                          void_id=void, has_background=background, colors=colors)


def run_import(spec: ImportSpec) -> Path:
    """Make the project ``spec`` describes, with its classes' colours and background
    setting; returns its folder. Raises FCNError / OSError / ValueError on bad input
    (nothing is written then: the import checks every mask first)."""
    from ...project.classes import ClassSet
    from ...project.project import Project

    Project.create_from_id_masks(spec.images, spec.masks, spec.dest, spec.class_names,
                                 spec.void_id)
    classes = ClassSet.load(spec.dest)
    classes.has_background = spec.has_background
    for i, rgb in enumerate(spec.colors):
        classes.set_color(i, rgb)
    classes.save(spec.dest)
    return spec.dest
