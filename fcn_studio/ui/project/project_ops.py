"""Project-level operations: open, create, import, export, class edits, the lock
file and the questions asked before closing.

:class:`ProjectOps` gets what it uses, never the window: the labelling
controller, the app settings (recent projects), a
:class:`~fcn_studio.ui.prompter.Prompter` for questions, errors and folders, and
optionally the order in which a reopened project's images are tried. The model
a project opens with comes from its own version store
(:func:`fcn_studio.models.finetune_plan.startup_spec`). Views learn of class edits from
``classesChanged``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from ...models.finetune_plan import startup_spec
from ...models.model_spec import ModelSpec
from ...project.classes import VOID
from ..actions import shortcut_table
from ..labelling.controller import Controller
from ..prompter import Prompter
from ..settings import AppSettings

OpeningOrder = Callable[[list[str]], list[str]]
"""A project's image ids in list order -> the order to try showing them in."""


class ProjectOps(QObject):
    classesChanged = Signal()  # the open project's class list was edited

    def __init__(self, controller: Controller, settings: AppSettings, prompter: Prompter,
                 opening_order: OpeningOrder | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.c = controller
        self.settings = settings
        self.prompter = prompter
        self._opening_order = opening_order or (lambda ids: ids)
        self._lock = None

    @property
    def parent_widget(self):  # QWidget | None: the parent of dialogs of their own
        return self.prompter.parent_widget

    # -- messages -----------------------------------------------------------------------
    def _error(self, text: str) -> None:
        self.prompter.error("FCN Studio", text)

    def _ask(self, text: str, buttons: list[str], default: int = 0) -> int:
        """A question with named buttons; returns the index chosen (-1 when closed)."""
        return self.prompter.ask("FCN Studio", text, buttons, default)

    # -- opening ----------------------------------------------------------------------------
    def open_dialog(self) -> None:
        folder = self.prompter.choose_folder("Open a project folder")
        if folder is not None:
            self.open_project(folder)

    def open_project(self, path: Path, model: ModelSpec | None = None) -> bool:
        from training.errors import FCNError

        from ...project import lockfile
        from ...project.project import NotAProject, Project

        try:
            project = Project.open(path)
        except NotAProject as exc:
            if exc.image_count == 0:  # nothing to create a project from
                self._error(f"Cannot open {path}:\n{exc}.\n\nChoose a project folder (one "
                            "with JPEGImages/) or a folder of images.")
                return False
            return self._offer_create(path, str(exc))
        except (FCNError, OSError) as exc:
            self._error(f"Cannot open {path}:\n{exc}")
            return False
        self.release_lock()
        try:
            self._lock = lockfile.acquire(project.root)
        except lockfile.ProjectLocked as exc:
            choice = self._ask(f"{exc}\n\nTwo windows editing the same project can overwrite "
                               "each other's labels.", ["Open anyway", "Cancel"], 1)
            if choice != 0:
                return False
        except FCNError as exc:  # the lock cannot be written: a read-only folder or disk
            choice = self._ask(f"{exc}\n\nThe project folder cannot be written to (read-only?). "
                               "Open it anyway? Nothing can be saved there: labels you draw "
                               "stay unsaved.", ["Open anyway", "Cancel"], 1)
            if choice != 0:
                return False
        self.c.set_project(project)
        self.settings.add_recent(project.root)
        self.c.set_model(model or startup_spec(project, self.c.new_backbone))
        # The image shown last time, else the first one that can be read (unreadable
        # ones are marked in the list).
        for image_id in self._opening_order(self.c.neighbours(+1)):  # the list's order
            if self.show_image(image_id):
                break
        return True

    def _offer_create(self, folder: Path, reason: str) -> bool:
        choice = self._ask(f"{reason}\n\nCreate a VOC project from these images? They are "
                           "copied; the folder itself is left as it is.",
                           ["Create project…", "Cancel"])
        if choice != 0:
            return False
        return self._create_from_images(folder)

    def new_project_dialog(self) -> None:
        src = self.prompter.choose_folder("Folder of images")
        if src is not None:
            self._create_from_images(src)

    def _create_from_images(self, src: Path) -> bool:
        from training.errors import FCNError
        from training.images import list_images

        from ...project.project import Project

        try:
            has_images = bool(list_images(src)[0])
        except (FCNError, OSError) as exc:
            self._error(f"Cannot read {src}:\n{exc}")
            return False
        if not has_images:  # say so before asking where the project should go
            self._error(f"{src} holds no images (.jpg, .png, ...): there is nothing to make a "
                        "project from.")
            return False
        dest = self.prompter.choose_folder("Empty folder for the new project", str(src.parent))
        if dest is None:
            return False
        names = self._class_names_for_new_project()
        try:
            _project, skipped = Project.create_from_images(src, Path(dest), names)
        except (FCNError, OSError) as exc:
            self._error(f"Could not create the project:\n{exc}")
            return False
        if skipped:
            listed = "\n".join(f"{p.name}: {why}" for p, why in skipped[:20])
            self.prompter.info("FCN Studio", f"Skipped {len(skipped)} file(s):\n{listed}")
        return self.open_project(Path(dest))

    def _class_names_for_new_project(self) -> list[str]:
        from .dialogs import ask_class_names

        return ask_class_names(self.parent_widget) or ["background", "object"]

    def import_masks_dialog(self) -> None:
        from .dialogs import ImportMasksDialog, run_import

        # The dialog runs the import: an error is shown in it, with every input kept.
        dlg = ImportMasksDialog(self.parent_widget, run=run_import)
        if dlg.exec() and dlg.spec is not None:
            self.open_project(dlg.spec.dest)

    def open_dropped(self, paths: list[Path]) -> None:
        folders = [p for p in paths if p.is_dir()]
        if folders:
            self.open_project(folders[0])
            return
        if paths and self.c.project is not None:
            from training.errors import FCNError

            from ...project.project_io import add_images

            self.c.flush()
            try:
                project, added, skipped = add_images(self.c.project, paths)
            except (FCNError, OSError) as exc:
                self._error(f"Could not add the images:\n{exc}")
                return
            if skipped:
                self._error("Not added:\n" + "\n".join(f"{p.name}: {why}" for p, why in skipped))
            if added:
                # The same project with more images: the worker keeps its model.
                self.c.set_project(project, keep_model=True)
                self.show_image(added[0])

    def export_dialog(self) -> None:
        if self.c.project is None:
            return
        dest = self.prompter.choose_folder("Export the labelled images to")
        if dest is None:
            return
        self.c.flush()
        from training.errors import FCNError

        from ...project.project_io import export_labelled

        try:
            ids = export_labelled(self.c.project, Path(dest))
        except (FCNError, OSError) as exc:
            self._error(f"Export failed:\n{exc}")
            return
        self.prompter.info("FCN Studio",
                           f"Exported {len(ids)} labelled images to {dest}.")

    # -- images -----------------------------------------------------------------------------
    def show_image(self, image_id: str) -> bool:
        """Show ``image_id``; False when it cannot be read (the list says why). A saved
        label that does not fit its image is asked about (True: handled)."""
        from training.errors import LabelError

        try:
            shown = self.c.show_image(image_id)
        except LabelError as exc:
            self._label_mismatch(image_id, exc)
            shown = True
        return shown

    def step(self, step: int) -> None:
        """PgDn / PgUp: the next (previous) image that can be read, in the list's order."""
        for image_id in self.c.neighbours(step):
            if self.show_image(image_id):
                return

    def open_from_list(self, image_id: str) -> None:
        """A click, Enter or an arrow key in the image list. An unreadable row keeps the
        highlight (its badge says why), so the arrow keys can move on past it."""
        self.show_image(image_id)

    def _label_mismatch(self, image_id: str, exc: Exception) -> None:
        choice = self._ask(
            f"The saved label of {image_id} does not fit its image:\n{exc}\n\n"
            "Start a new label (the file is replaced only when you save), resize the saved "
            "label to the image, or skip this image?",
            ["New label", "Resize label", "Skip"], 2)
        from training.errors import FCNError

        from ...project.project_io import resized_label

        try:
            if choice == 0:
                w, h = self.c.project.image_size(image_id)
                self.c.show_image(image_id, label_override=np.zeros((h, w), np.uint8))
            elif choice == 1:
                self.c.show_image(image_id, label_override=resized_label(self.c.project, image_id))
        except FCNError as exc:
            self._error(str(exc))

    # -- model ----------------------------------------------------------------------------------
    def use_imagenet_model(self) -> None:
        if self.c.project is not None:
            from ..finetuning.downloads import ensure_imagenet_weights

            backbone = self.c.new_backbone
            if self.parent_widget is not None and ensure_imagenet_weights(self.parent_widget,
                                                                          backbone):
                self.c.set_model(ModelSpec.imagenet(self.c.project.classes.names, backbone))

    def import_model_dialog(self) -> None:
        if self.c.project is None:
            return
        path = self.prompter.choose_file("Model file", "PyTorch weights (*.pt *.pth);;All files (*)")
        if path is not None:
            at_once = self._ask("Is this an at-once FCN-8s (trained in one stage, with the "
                                "0.01 / 0.0001 skip scaling)?", ["No", "Yes"]) == 1
            self.c.set_model(ModelSpec.file(path, self.c.project.classes.names, at_once))

    # -- classes --------------------------------------------------------------------------------
    def _class_edit(self, edit) -> None:
        """Run an edit of the class set; a refusal is shown, never raised."""
        from training.errors import FCNError

        p = self.c.project
        if p is None:
            return
        self.c.flush()
        try:
            remapped = edit(p)
        except (FCNError, ValueError, OSError) as exc:
            self._error(str(exc))
            return
        self.classesChanged.emit()
        if remapped:
            self._reload_current()

    def _rename_or_recolor(self, change) -> None:
        def edit(p) -> bool:
            change(p.classes)
            p.save_classes()
            return False  # names and colours only: no label changes

        self._class_edit(edit)

    def add_class(self, name: str) -> None:
        self._rename_or_recolor(lambda classes: classes.add(name))

    def rename_class(self, index: int, name: str) -> None:
        self._rename_or_recolor(lambda classes: classes.rename(index, name))

    def set_class_color(self, index: int, rgb: tuple) -> None:
        self._rename_or_recolor(lambda classes: classes.set_color(index, tuple(rgb)))

    def delete_class(self, index: int) -> None:
        p = self.c.project
        if p is None:
            return
        try:  # a refusal (the background class, the only class) is said before any question
            p.classes.delete(index, {}, replace_with=VOID)
        except ValueError as exc:
            self._error(str(exc))
            return
        # Only a VOC-style project has a background to relabel into; in CamVid, class 0 is
        # Sky, and offering "Background" there would paint the deleted class as sky.
        targets = ([0] if p.classes.has_background else []) + [VOID]
        buttons = [f"Background ({p.classes[0]})" if t == 0 else "Void" for t in targets]
        choice = self._ask(f"Delete class {index} ({p.classes[index]})? Saved labels that use "
                           "it are rewritten: its pixels become…",
                           [*buttons, "Cancel"], len(buttons))
        if 0 <= choice < len(targets):
            target = targets[choice]
            self._remap(lambda p: p.classes.delete(index, p.label_usage(), replace_with=target))

    def move_class(self, index: int, new_index: int) -> None:
        self._remap(lambda p: p.classes.move(index, new_index, p.label_usage()))

    def _remap(self, make_plan) -> None:
        def edit(p) -> bool:
            p.apply_class_change(make_plan(p))
            return True  # saved labels were rewritten

        self._class_edit(edit)

    def _reload_current(self) -> None:
        s = self.c.session
        if s is not None:
            image_id = s.image_id
            self.c.forget_history(image_id)  # old deltas hold old class ids
            self.show_image(image_id)

    # -- lock and close ---------------------------------------------------------------------------
    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def confirm_close(self) -> bool:
        """Save what can be saved; ask when something could not be."""
        try:
            self.c.flush()
        except Exception as exc:  # noqa: BLE001 - the question below covers it
            self._error(str(exc))
        failed = self.c.failed_saves()
        if not failed:
            return True
        choice = self._ask(f"These labels could not be saved: {', '.join(failed)}.\n"
                           "Close anyway and lose those edits?", ["Keep open", "Close"], 0)
        return choice == 1

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{a}</td><td><b>{k}</b></td></tr>" for a, k in shortcut_table())
        self.prompter.info("Keyboard shortcuts", f"<table>{rows}</table>")
