"""The main window: builds the widgets, menus and docks and wires them together.

The labelling logic lives in controller.py, painting in canvas.py, the model in
inference.py; this module only connects them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QRect, Qt, QTimer, Slot
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..models.model_spec import (
    BACKBONE_LABELS,
    IMAGENET_DOWNLOAD_MB,
    likely_accelerator,
    recommended_backbone,
)
from .actions import create_actions
from .canvas.canvas import Canvas
from .docks.class_panel import ClassPanel
from .docks.effort_chart import EffortChart
from .docks.image_list import ImageListPanel
from .docks.models_panel import ModelsPanel
from .docks.tool_options import ToolOptionsPanel
from .docks.training_panel import TrainingPanel
from .finetuning.finetune import FinetuneController
from .labelling.controller import Controller
from .labelling.inference import InferenceWorker
from .labelling.worker_results import ModelInfo
from .menus import (
    build_auto_finetune_menu,
    build_backbone_menu,
    build_menus,
    build_panels_menu,
    build_recent_menu,
    build_toolbar,
)
from .notices import NoticeBar
from .project.project_ops import ProjectOps
from .prompter import DialogPrompter
from .settings import AppSettings
from .status_bar import StatusBar
from .window_layout import (
    BOTTOM_PANEL_SHARE,
    default_rect,
    fit_rect,
    screen_key,
    side_panel_width,
)

TOOLS = ("brush", "eraser", "void", "fill", "polygon", "eyedropper")
LAYOUT_VERSION = 2
"""Saved dock layouts of another version (the old one with the panels below the
canvas) are not restored: the default layout is used instead."""
_LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
_RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
_BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea
DEFAULT_DOCKS: dict[str, tuple[Qt.DockWidgetArea, bool]] = {
    # object name: (area, shown on a default layout)
    "ImagesDock": (_LEFT, True),
    "ClassesDock": (_RIGHT, True),
    "ToolOptionsDock": (_RIGHT, True),
    "TrainingDock": (_BOTTOM, False),
    "ModelsDock": (_BOTTOM, False),
    "CorrectionEffortDock": (_BOTTOM, False),
}
NOTICE_FIRST_RUN = "first-run"
NOTICE_WEIGHTS = "imagenet-weights"


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, device: str = "auto") -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self._restoring = False  # True while a project's last tool/class/brush is put back
        self.setWindowTitle("FCN Studio")
        self.setAcceptDrops(True)
        self.worker = InferenceWorker(device)
        self.controller = Controller(self.worker, self)
        # The controllers get what they use, never the window.
        self.ops = ProjectOps(self.controller, self.settings, DialogPrompter(self),
                              opening_order=self.opening_order, parent=self)
        self.finetune = FinetuneController(self.controller, DialogPrompter(self), self)
        self.canvas = Canvas(self)
        self.notices = NoticeBar()
        self.setCentralWidget(self._central(self.notices, self.canvas))
        self.class_panel = ClassPanel()
        self.image_list = ImageListPanel()
        self.tool_options = ToolOptionsPanel()
        self.training_panel = TrainingPanel()
        self.models_panel = ModelsPanel()
        self.effort_chart = EffortChart()
        self.images_dock = self._dock("Images", self.image_list)
        self.classes_dock = self._dock("Classes", self.class_panel)
        self.tool_dock = self._dock("Tool Options", self.tool_options)
        self.training_dock = self._dock("Training", self.training_panel)
        self.models_dock = self._dock("Models", self.models_panel)
        self.effort_dock = self._dock("Correction Effort", self.effort_chart)
        self.actions_ = create_actions(self, self._handlers())
        self.menus = build_menus(self, self.actions_)
        self._device = device
        self._build_device_menu()
        build_auto_finetune_menu(self.menus["Model"], self.actions_["cancel_training"],
                                 self.settings, self.finetune.set_auto_after)
        build_backbone_menu(self.menus["Model"], self.actions_["model_file"], self.settings,
                            recommended_backbone(likely_accelerator(device)),
                            self._set_new_backbone)
        build_toolbar(self, self.actions_)
        build_panels_menu(self.menus["View"], self.docks(), self.reset_layout)
        build_recent_menu(self.menus["File"], self.actions_["export"], self.settings,
                          self._open_recent)
        self._status_widgets()
        self._connect()
        for n in range(1, 10):
            QShortcut(QKeySequence(str(n)), self, lambda n=n: self.class_panel.select_by_number(n))
        self._layout_pending = not self._restore_layout()
        self.place_on_screen()
        self.actions_["brush"].setChecked(True)
        self.actions_["toggle_overlay"].setChecked(True)
        self.actions_["instant_learning"].setChecked(self.worker.instant_enabled)
        self._show_brush_size(self.canvas.brush_radius())
        self.worker.start()

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def _central(notices: QWidget, canvas: QWidget) -> QWidget:
        """The canvas with the notice bar above it (the bar takes no room when empty)."""
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(notices)
        layout.addWidget(canvas, 1)
        return box

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "") + "Dock")
        area, _visible = DEFAULT_DOCKS[dock.objectName()]
        if area == _BOTTOM:
            # Charts and tables have tall minimum sizes; in a scroll area the panel can
            # be made short on a small screen instead of pushing the canvas away.
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(widget)
            widget = scroll
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def docks(self) -> list[QDockWidget]:
        """Every panel, in View > Panels order."""
        return [self.images_dock, self.classes_dock, self.tool_dock, self.training_dock,
                self.models_dock, self.effort_dock]

    # -- layout and geometry -------------------------------------------------------------
    def reset_layout(self) -> None:
        """The default layout: the canvas in the middle with narrow side panels (images
        left, classes and tool options right); training, models and correction effort
        tabbed below, hidden until used."""
        for dock in self.docks():
            area, visible = DEFAULT_DOCKS[dock.objectName()]
            dock.setFloating(False)
            self.addDockWidget(area, dock)  # moves it back if it was elsewhere
            dock.setVisible(visible)
        self.splitDockWidget(self.classes_dock, self.tool_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.training_dock, self.models_dock)
        self.tabifyDockWidget(self.models_dock, self.effort_dock)
        self.training_dock.raise_()
        self._size_side_panels()
        # Dock sizes only stick once the window is laid out: set them again then.
        QTimer.singleShot(0, self._size_side_panels)
        self.settings.clear_dock_state()

    def _size_side_panels(self) -> None:
        side = side_panel_width(self.width())
        self.resizeDocks([self.images_dock, self.classes_dock], [side, side],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.classes_dock, self.tool_dock],
                         [max(1, self.height() // 2), max(1, self.height() // 4)],
                         Qt.Orientation.Vertical)

    def _restore_layout(self) -> bool:
        """The layout the person left (docks moved, closed, resized); False when there
        is none or it was saved by an older layout."""
        state = self.settings.dock_state()
        if state is not None and self.restoreState(state, LAYOUT_VERSION):
            return True
        self.reset_layout()
        return False

    def place_on_screen(self, available: QRect | None = None, key: str | None = None) -> None:
        """Size and place the window on the screen it opens on: where it was last on
        that screen, else a default that fits; never larger than the available area
        (any scaling: Qt's logical pixels), so the status bar is always on screen."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if available is None:
            available = screen.availableGeometry() if screen is not None else QRect(0, 0, 1280, 720)
        key = key or screen_key(screen)
        saved = self.settings.screen_geometry(key)
        rect = default_rect(available) if saved is None else fit_rect(saved[0], available)
        self.setGeometry(rect)
        if saved is not None and saved[1]:
            self.setWindowState(self.windowState() | Qt.WindowState.WindowMaximized)
        if self._layout_pending:
            self._size_side_panels()

    def show_panel(self, dock: QDockWidget) -> None:
        """Show a panel hidden by default (training, models, effort), at a height that
        leaves the canvas most of the window."""
        first = not dock.isVisible()
        dock.show()
        dock.raise_()
        if first and self.dockWidgetArea(dock) == Qt.DockWidgetArea.BottomDockWidgetArea:
            def size() -> None:
                self.resizeDocks([dock], [int(self.height() * BOTTOM_PANEL_SHARE)],
                                 Qt.Orientation.Vertical)
            size()
            QTimer.singleShot(0, size)  # again once the shown dock is laid out

    def _handlers(self) -> dict:
        c = self.controller
        h = {
            "open": self.ops.open_dialog,
            "new_project": self.ops.new_project_dialog,
            "import_masks": self.ops.import_masks_dialog,
            "export": self.ops.export_dialog,
            "save": lambda: c.save_current(force=True),
            "quit": self.close,
            "undo": self._undo,
            "redo": self._redo,
            "use_prediction": self._use_prediction,
            "clear_label": self._clear_label,
            "brush_smaller": self.canvas.shrink_brush,
            "brush_larger": self.canvas.grow_brush,
            "zoom_in": self.canvas.zoom_in,
            "zoom_out": self.canvas.zoom_out,
            "fit": self.canvas.fit,
            "actual_size": self.canvas.actual_size,
            "toggle_overlay": self._set_overlay_visible,
            "outline": self._set_outline,
            "uncertainty": self._set_uncertainty_visible,
            "prev": lambda: self.ops.step(-1),
            "next": lambda: self.ops.step(+1),
            "next_uncertain": self._next_uncertain,
            "predict": lambda: c.request_prediction(force=True),
            "model_imagenet": self.ops.use_imagenet_model,
            "model_file": self.ops.import_model_dialog,
            "help_shortcuts": self.ops.show_shortcuts,
            "instant_learning": self.worker.set_instant,
            "undo_learning": lambda *_: self.worker.roll_back_learning(),
            "finetune": self.finetune.one_click,
            "finetune_dialog": self.finetune.dialog,
            "cancel_training": self.finetune.job.cancel,
            "import_run": self.finetune.import_run,
            "export_job": self.finetune.export_job,
        }
        for tool in TOOLS:
            h[tool] = lambda checked, t=tool: checked and self._set_tool(t)
        return h

    def _build_device_menu(self) -> None:
        """Model > Device: where the model runs (auto = CUDA, then MPS, then CPU)."""
        from PySide6.QtGui import QActionGroup

        menu = self.menus["Model"].addMenu("&Device")
        group = QActionGroup(self)
        for name in ("auto", "cpu", "cuda", "mps"):
            act = menu.addAction(name)
            act.setCheckable(True)
            act.setChecked(name == self._device)
            group.addAction(act)
            act.triggered.connect(lambda _checked=False, n=name: self.set_device(n))

    def _set_new_backbone(self, name: str) -> None:
        """Model > Backbone for New Models: a model without trained weights is rebuilt on
        it at once; trained versions keep their own."""
        c = self.controller
        c.new_backbone = name
        if c.project is not None and c.spec is not None and c.spec.is_new \
                and c.spec.backbone != name:
            c.set_model(dataclasses.replace(c.spec, backbone=name), refresh_all=True)

    def set_device(self, name: str) -> None:
        """Reload the model in use on ``name``; a device that is not there is reported
        and the model keeps running where it was."""
        self._device = name
        self.worker.set_device(name)
        if self.controller.spec is not None:
            self.controller.set_model(self.controller.spec)

    def _status_widgets(self) -> None:
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self.status.weightsLinkActivated.connect(self._on_weights_link)

    def _connect(self) -> None:
        c, cv = self.controller, self.canvas
        c.sessionChanged.connect(self._on_session)
        c.projectChanged.connect(self._on_project)
        c.entryChanged.connect(self._on_entry)
        c.predictionShown.connect(self._on_prediction)
        c.modelChanged.connect(self._on_model)
        c.problem.connect(self._on_problem)
        c.status.connect(lambda text: self.status.showMessage(text, 4000))
        self.worker.statusChanged.connect(self.status.worker_label.setText)
        cv.cursorInfo.connect(self._on_cursor)
        cv.zoomChanged.connect(self.status.show_zoom)
        cv.classPicked.connect(self.class_panel.set_current)
        cv.classPicked.connect(lambda v: self._remember("class", int(v)))
        cv.brushRadiusChanged.connect(self._on_brush_radius)
        self.notices.dismissed.connect(self._on_notice_dismissed)
        cv.labelEdited.connect(lambda _box: self._update_title())
        self.image_list.imageActivated.connect(self.ops.open_from_list)
        self.image_list.orderChanged.connect(
            lambda: self.controller.set_order(self.image_list.visible_ids()))
        cp = self.class_panel
        cp.currentChanged.connect(cv.set_class)
        cp.currentChanged.connect(lambda v: self._remember("class", int(v)))
        cp.hiddenChanged.connect(cv.set_hidden_classes)
        cp.lockedChanged.connect(cv.set_locked_classes)
        cp.addRequested.connect(self.ops.add_class)
        cp.renameRequested.connect(self.ops.rename_class)
        cp.colorRequested.connect(self.ops.set_class_color)
        cp.deleteRequested.connect(self.ops.delete_class)
        cp.moveRequested.connect(self.ops.move_class)
        to = self.tool_options
        # The canvas owns the radius (and its one range); the panel shows it back.
        to.brushRadiusChanged.connect(cv.set_brush_radius)
        to.opacityChanged.connect(cv.set_opacity)
        to.outlineChanged.connect(self.actions_["outline"].setChecked)
        to.overlayVisibleChanged.connect(self.actions_["toggle_overlay"].setChecked)
        to.uncertaintyVisibleChanged.connect(self.actions_["uncertainty"].setChecked)
        ft, job, tp, mp = self.finetune, self.finetune.job, self.training_panel, self.models_panel
        self.ops.classesChanged.connect(self.refresh_classes)
        ft.runStarted.connect(lambda plan: (tp.reset(plan), self.show_training_dock()))
        ft.autoStarted.connect(tp.reset)  # a background run leaves the panels as they are
        ft.autoStatus.connect(lambda text: self.status.showMessage(text, 15_000))
        self.controller.labelSaved.connect(ft.on_label_saved)
        job.started.connect(tp.on_started)
        job.progress.connect(tp.on_progress)
        job.epochFinished.connect(tp.on_epoch)
        job.logLine.connect(tp.on_log)
        job.finished.connect(tp.on_finished)
        job.started.connect(lambda _d: self._training_running(True))
        job.finished.connect(lambda _d: self._training_running(False))
        job.progress.connect(self.status.training_status)
        tp.cancelRequested.connect(job.cancel)
        ft.versionsChanged.connect(self._refresh_versions)
        mp.useRequested.connect(ft.use_version)
        mp.deleteRequested.connect(ft.delete_version)
        mp.importRunRequested.connect(ft.import_run)
        mp.exportJobRequested.connect(ft.export_job)
        mp.finetuneRequested.connect(ft.one_click)
        self._training_running(False)

    # -- project and session ------------------------------------------------------------
    @Slot(object)
    def _on_project(self, project) -> None:
        self.image_list.set_project(project)
        self.finetune.set_project(project)
        self._refresh_effort()
        if project is None:
            self.class_panel.set_classes([], [])
            self._update_title()
            return
        self.refresh_classes()
        self.controller.set_order(self.image_list.visible_ids())
        self._restore_project_state(project.root)
        self._update_title()

    def refresh_classes(self) -> None:
        p = self.controller.project
        if p is None:
            return
        self.class_panel.set_classes(list(p.classes.names),
                                     [p.classes.color(i) for i in range(len(p.classes))])
        self.canvas.set_palette(p.classes.color_table())
        self._apply_background(p.classes)

    def _apply_background(self, classes) -> None:
        """The project's background semantics: what the eraser writes, what is see-through."""
        self.canvas.set_eraser_value(classes.eraser_value)
        self.canvas.set_transparent_classes(classes.transparent_ids)
        eraser = self.actions_["eraser"]
        if classes.has_background:
            eraser.setStatusTip(f"Paint background (class 0, {classes.names[0]})")
        else:
            eraser.setStatusTip("Paint void (255): this project has no background class")
        eraser.setToolTip(f"{eraser.statusTip()} (E)")

    @Slot(object)
    def _on_session(self, session) -> None:
        if session is None:
            self.canvas.clear()
        else:
            self.canvas.set_image(session.image, session)
            self.canvas.set_uncertainty(session.uncertainty)
            self.image_list.select(session.image_id)
            self.actions_["undo"].setEnabled(True)
            self._remember("image", session.image_id)
        self._update_title()

    @Slot(str)
    def _on_entry(self, image_id: str) -> None:
        self.image_list.set_dirty(image_id, self.controller.is_dirty(image_id))
        s = self.controller.sessions.peek(image_id)
        if s is not None and s.failure is None and s.state.value in ("saved", "saving"):
            self.image_list.set_note(image_id, None)  # a problem it had is solved
        self.image_list.refresh_entry(image_id)
        self._update_title()
        p = self.controller.project
        if p is not None and p.state_of(image_id) == "saved":
            self._refresh_effort()

    def _refresh_effort(self) -> None:
        p = self.controller.project
        self.effort_chart.set_history(p.history if p is not None else [])

    def _refresh_versions(self) -> None:
        self.models_panel.set_versions(self.finetune.versions(), self.finetune.current_id())

    def _training_running(self, running: bool) -> None:
        self.actions_["cancel_training"].setEnabled(running)
        self.actions_["finetune"].setEnabled(not running)
        self.actions_["finetune_dialog"].setEnabled(not running)
        self.status.training_running(running)

    def show_training_dock(self) -> None:
        """A run started: show its panel (below the canvas, about a third of the height)."""
        self.show_panel(self.training_dock)

    @Slot(object)
    def _on_prediction(self, session) -> None:
        self.canvas.set_uncertainty(session.uncertainty)
        self.canvas.refresh_overlay(None)

    @Slot(object)
    def _on_model(self, info: ModelInfo) -> None:
        # A new model's description names its backbone; a trained one's comes from its file.
        net = "" if info.spec is not None and info.spec.is_new else \
            f"{BACKBONE_LABELS.get(info.backbone, info.backbone)}, "
        self.status.show_model(info.description, f"{net}{info.device}", str(info.version),
                               list(info.class_names))
        spec = info.spec
        if spec is not None and spec.kind == "untrained":
            self._show_weights_notice(spec.backbone)
        else:
            self.status.show_untrained_link(False)  # no longer applies

    def _update_title(self) -> None:
        c = self.controller
        parts = ["FCN Studio"]
        if c.project is not None:
            parts.insert(0, c.project.root.name)
        if c.session is not None:
            parts.insert(0, f"{c.session.image_id}[*]")  # Qt shows [*] as * when modified
        self.setWindowTitle(" — ".join(parts))
        self.setWindowModified(bool(c.session and c.session.dirty))

    def _go(self, image_id: str | None) -> None:
        if image_id:
            self.ops.show_image(image_id)

    def _next_uncertain(self) -> None:
        target = self.controller.most_uncertain()
        if target is None:
            self._show_message("info", "No unsaved image has a prediction yet; the model "
                               "predicts images ahead as you work.")
        else:
            self._go(target)

    # -- editing --------------------------------------------------------------------------
    def _set_tool(self, tool: str) -> None:
        for t in TOOLS:
            self.actions_[t].setChecked(t == tool)
        self.canvas.set_tool(tool)
        self._remember("tool", tool)

    # -- per project: what was shown last ---------------------------------------------------
    def _remember(self, key: str, value: object) -> None:
        p = self.controller.project
        if p is not None and not self._restoring:
            self.settings.set_project_value(p.root, key, value)

    def _restore_project_state(self, root: Path) -> None:
        """Tool, class and brush size as they were when this project was last open (the
        image is chosen by :meth:`opening_order`)."""
        state = self.settings.project_state(root)
        self._restoring = True  # restoring is not a new choice to remember
        try:
            tool = state.get("tool")
            if tool in TOOLS:
                self.actions_[tool].setChecked(True)
            cls = state.get("class")
            if isinstance(cls, int) and cls in self.class_panel.class_ids():
                self.class_panel.set_current(cls)
                self.canvas.set_class(cls)
            brush = state.get("brush")
            if isinstance(brush, float):
                self.canvas.set_brush_radius(brush)
        finally:
            self._restoring = False

    def opening_order(self, ids: list[str]) -> list[str]:
        """``ids`` with the image last shown in this project first: reopening a project
        goes back to where the person was."""
        p = self.controller.project
        last = self.settings.project_state(p.root).get("image") if p is not None else None
        if isinstance(last, str) and last in ids:
            return [last, *(i for i in ids if i != last)]
        return ids

    def _open_recent(self, path: str) -> None:
        if not Path(path).is_dir():
            self.settings.remove_recent(path)
            self._on_problem("", f"{path} is no longer there; it was taken off the recent list.")
            return
        self.ops.open_project(Path(path))

    def _on_brush_radius(self, radius: float) -> None:
        self.tool_options.set_brush_radius(radius)
        self._show_brush_size(radius)
        self._remember("brush", float(radius))

    def _show_brush_size(self, radius: float) -> None:
        self.status.show_brush_size(radius)

    def _undo(self) -> None:
        if self.controller.session is not None:
            self.canvas.undo()  # also ends a live stroke or drops a polygon vertex

    def _redo(self) -> None:
        if self.controller.session is not None:
            self.canvas.redo()

    def _use_prediction(self) -> None:
        s = self.controller.session
        if s is None or s.prediction is None:
            self._show_message("info", "There is no prediction for this image yet.")
            return
        self.canvas.replace_label(s.prediction.label, "Use prediction")

    def _clear_label(self) -> None:
        s = self.controller.session
        if s is not None:
            import numpy as np

            # What the eraser writes: background, or void in a project without one.
            self.canvas.replace_label(np.full_like(s.label, self.canvas.eraser_value()),
                                      "Clear label")

    def _set_overlay_visible(self, on: bool) -> None:
        self.canvas.set_overlay_visible(on)
        self.tool_options.set_overlay_visible(on)

    def _set_outline(self, on: bool) -> None:
        self.canvas.set_outline(on)
        self.tool_options.set_outline(on)

    def _set_uncertainty_visible(self, on: bool) -> None:
        self.canvas.set_uncertainty_visible(on)
        self.tool_options.set_uncertainty_visible(on)

    def _on_cursor(self, x: int, y: int, class_id: int) -> None:
        p = self.controller.project
        self.status.show_cursor(x, y, class_id, tuple(p.classes.names) if p else None)

    # -- messages, drag and drop, close --------------------------------------------------------
    def _on_problem(self, image_id: str, text: str) -> None:
        """A background problem: in the status bar (last one kept with its full text) and,
        for one image, in the image list; the person keeps working."""
        self.status.show_problem(text)
        if image_id:
            self.image_list.set_note(image_id, text)

    def _show_message(self, level: str, text: str) -> None:
        if level == "info":  # a remark on a key press: the status bar, not a box to click
            self.status.showMessage(text, 8000)
            return
        box = {"warning": QMessageBox.warning, "error": QMessageBox.critical}[level]
        # Deferred so a message raised inside a signal handler never re-enters it.
        QTimer.singleShot(0, lambda: box(self, "FCN Studio", text))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        self.ops.open_dropped(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.finetune.confirm_close() or not self.ops.confirm_close():
            event.ignore()
            return
        self.save_layout()
        self.settings.sync()
        self.ops.release_lock()
        self.controller.shutdown()
        event.accept()

    def save_layout(self) -> None:
        """Remember the dock layout, and the window's size and place for this screen."""
        # A maximized window keeps the size it had before, for when it is restored.
        rect = self.normalGeometry() if self.isMaximized() else self.geometry()
        self.settings.save_screen_geometry(screen_key(self.screen()), rect, self.isMaximized())
        self.settings.save_dock_state(self.saveState(LAYOUT_VERSION))

    # -- notices: what a person should know, never a box that waits for a click --------------
    def show_first_run_hint(self) -> None:
        """How the loop goes, in one line above the canvas until dismissed."""
        if self.settings.notice_dismissed(NOTICE_FIRST_RUN):
            return
        notice = self.notices.show_notice(
            NOTICE_FIRST_RUN,
            "<b>Welcome.</b> Correct the model's prediction (brush B, fill F, eraser E); "
            "PgDn saves and moves on; Ctrl+T fine-tunes. "
            "<a href=\"shortcuts\">All shortcuts</a>",
            lambda _href: self.ops.show_shortcuts())
        notice.setToolTip(
            "The loop: the model predicts each image in the background; you correct the "
            "mask; moving to another image saves it as PASCAL VOC; Fine-tune trains the model "
            "on your saved labels so the next predictions need fewer corrections.\n"
            "This sample project has three labelled images to start from.")

    def _show_weights_notice(self, backbone: str) -> None:
        """The model is untrained because the ImageNet weights are missing: a link in the
        status bar, beside the model's name, until dismissed or downloaded."""
        if self.settings.notice_dismissed(NOTICE_WEIGHTS):
            return
        self.status.show_untrained_link(True, BACKBONE_LABELS[backbone],
                                        IMAGENET_DOWNLOAD_MB[backbone])

    def _on_weights_link(self, href: str) -> None:
        if href == "dismiss":
            self.status.show_untrained_link(False)
            self._on_notice_dismissed(NOTICE_WEIGHTS)
        else:
            self.ops.use_imagenet_model()

    def _on_notice_dismissed(self, key: str) -> None:
        self.settings.set_notice_dismissed(key)
