"""The main window: builds the widgets, menus and docks and wires them together.

The labelling logic lives in controller.py, painting in canvas.py, the model in
inference.py; this module only connects them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QWidget,
)

from ..model_spec import ModelSpec
from .actions import create_actions
from .canvas import Canvas
from .class_panel import ClassPanel
from .controller import Controller
from .effort_chart import EffortChart
from .finetune import FinetuneController
from .image_list import ImageListPanel
from .inference import InferenceWorker, ModelInfo
from .menus import build_menus, build_toolbar
from .models_panel import ModelsPanel
from .project_ops import ProjectOps
from .settings import AppSettings
from .tool_options import ToolOptionsPanel
from .training_panel import TrainingPanel

TOOLS = ("brush", "eraser", "void", "fill", "polygon", "eyedropper")


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, device: str = "auto") -> None:
        super().__init__()
        self.settings = settings or AppSettings()
        self.setWindowTitle("FCN Studio")
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.worker = InferenceWorker(device)
        self.controller = Controller(self.worker, self)
        self.ops = ProjectOps(self)
        self.finetune = FinetuneController(self)
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.class_panel = ClassPanel()
        self.image_list = ImageListPanel()
        self.tool_options = ToolOptionsPanel()
        self._dock("Classes", self.class_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Tool Options", self.tool_options, Qt.DockWidgetArea.RightDockWidgetArea)
        self.training_panel = TrainingPanel()
        self.models_panel = ModelsPanel()
        self.effort_chart = EffortChart()
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self.training_dock = self._dock("Training", self.training_panel, bottom)
        models_dock = self._dock("Models", self.models_panel, bottom)
        effort_dock = self._dock("Correction Effort", self.effort_chart, bottom)
        self.tabifyDockWidget(self.training_dock, models_dock)
        self.tabifyDockWidget(models_dock, effort_dock)
        models_dock.raise_()
        self.actions_ = create_actions(self, self._handlers())
        self.menus = build_menus(self, self.actions_)
        self._device = device
        self._build_device_menu()
        build_toolbar(self, self.actions_)
        self._status_widgets()
        self._connect()
        for n in range(1, 10):
            QShortcut(QKeySequence(str(n)), self, lambda n=n: self.class_panel.select_by_number(n))
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:
            # The canvas is the work area: on a first run the bottom docks start short
            # (after the first layout pass, when the dock sizes can be set).
            QTimer.singleShot(0, lambda: self.resizeDocks([self.training_dock], [300],
                                                          Qt.Orientation.Vertical))
        self.actions_["brush"].setChecked(True)
        self.actions_["toggle_overlay"].setChecked(True)
        self.worker.start()

    # -- construction ------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "") + "Dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

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
            "brush_smaller": lambda: self._scale_brush(1 / 1.25),
            "brush_larger": lambda: self._scale_brush(1.25),
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

    def set_device(self, name: str) -> None:
        """Reload the model in use on ``name``; a device that is not there is reported
        and the model keeps running where it was."""
        self._device = name
        self.worker.set_device(name)
        if self.controller.spec is not None:
            self.controller.set_model(self.controller.spec)

    def _status_widgets(self) -> None:
        self.model_label = QLabel("Model: loading…")
        self.worker_label = QLabel("")
        self.cursor_label = QLabel("")
        self.zoom_label = QLabel("")
        # The last background problem (a prediction, save or model load that failed):
        # shown here and in the image list, never in a modal box that stops the work.
        self.alert_label = QLabel("")
        self.alert_label.setStyleSheet("color: #b00020;")
        bar = self.statusBar()
        bar.addWidget(self.worker_label, 1)
        bar.addPermanentWidget(self.alert_label)
        bar.addPermanentWidget(self.cursor_label)
        bar.addPermanentWidget(self.zoom_label)
        bar.addPermanentWidget(self.model_label)

    def _connect(self) -> None:
        c, cv = self.controller, self.canvas
        c.sessionChanged.connect(self._on_session)
        c.projectChanged.connect(self._on_project)
        c.entryChanged.connect(self._on_entry)
        c.predictionShown.connect(self._on_prediction)
        c.modelChanged.connect(self._on_model)
        c.problem.connect(self._on_problem)
        c.status.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self.worker.statusChanged.connect(self.worker_label.setText)
        cv.cursorInfo.connect(self._on_cursor)
        cv.zoomChanged.connect(lambda z: self.zoom_label.setText(f"{100 * z:.0f} %"))
        cv.classPicked.connect(self.class_panel.set_current)
        cv.labelEdited.connect(lambda _box: self._update_title())
        self.image_list.imageActivated.connect(self.ops.open_from_list)
        self.image_list.orderChanged.connect(
            lambda: self.controller.set_order(self.image_list.visible_ids()))
        cp = self.class_panel
        cp.currentChanged.connect(cv.set_class)
        cp.hiddenChanged.connect(cv.set_hidden_classes)
        cp.lockedChanged.connect(cv.set_locked_classes)
        cp.addRequested.connect(self.ops.add_class)
        cp.renameRequested.connect(self.ops.rename_class)
        cp.colorRequested.connect(self.ops.set_class_color)
        cp.deleteRequested.connect(self.ops.delete_class)
        cp.moveRequested.connect(self.ops.move_class)
        to = self.tool_options
        to.brushRadiusChanged.connect(cv.set_brush_radius)
        to.opacityChanged.connect(cv.set_opacity)
        to.outlineChanged.connect(self.actions_["outline"].setChecked)
        to.overlayVisibleChanged.connect(self.actions_["toggle_overlay"].setChecked)
        to.uncertaintyVisibleChanged.connect(self.actions_["uncertainty"].setChecked)
        ft, job, tp, mp = self.finetune, self.finetune.job, self.training_panel, self.models_panel
        job.started.connect(tp.on_started)
        job.progress.connect(tp.on_progress)
        job.epochFinished.connect(tp.on_epoch)
        job.logLine.connect(tp.on_log)
        job.finished.connect(tp.on_finished)
        job.started.connect(lambda _d: self._training_running(True))
        job.finished.connect(lambda _d: self._training_running(False))
        job.progress.connect(self._training_status)
        tp.cancelRequested.connect(job.cancel)
        ft.versionsChanged.connect(self._refresh_versions)
        mp.useRequested.connect(ft.use_version)
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
        self._update_title()

    def refresh_classes(self) -> None:
        p = self.controller.project
        if p is None:
            return
        self.class_panel.set_classes(list(p.classes.names),
                                     [p.classes.color(i) for i in range(len(p.classes))])
        self.canvas.set_palette(p.classes.color_table())

    @Slot(object)
    def _on_session(self, session) -> None:
        if session is None:
            self.canvas.clear()
        else:
            self.canvas.set_image(session.image, session)
            self.canvas.set_uncertainty(session.uncertainty)
            self.image_list.select(session.image_id)
            self.actions_["undo"].setEnabled(True)
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
        if not running:
            self.worker_label.setText("")

    def _training_status(self, d: dict) -> None:
        from training.progress import format_duration

        self.worker_label.setText(f"training: {d.get('iteration')}/{d.get('total')}, "
                                  f"eta {format_duration(d.get('eta'))}")

    def show_training_dock(self) -> None:
        self.training_dock.show()
        self.training_dock.raise_()

    @Slot(object)
    def _on_prediction(self, session) -> None:
        self.canvas.set_uncertainty(session.uncertainty)
        self.canvas.refresh_overlay(None)

    @Slot(object)
    def _on_model(self, info: ModelInfo) -> None:
        self.model_label.setText(f"Model: {info.description} ({info.device})")
        self.model_label.setToolTip(f"version {info.version}\nclasses: {', '.join(info.class_names)}")

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

    def _scale_brush(self, factor: float) -> None:
        radius = max(0.5, min(200.0, self.canvas.brush_radius() * factor))
        self.canvas.set_brush_radius(radius)
        self.tool_options.set_brush_radius(radius)

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

            self.canvas.replace_label(np.zeros_like(s.label), "Clear label")

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
        if x < 0 or self.controller.project is None:
            self.cursor_label.setText("")
            return
        names = self.controller.project.classes.names
        name = "void" if class_id == 255 else (names[class_id] if class_id < len(names) else "?")
        self.cursor_label.setText(f"x {x}  y {y}  {name} ({class_id})")

    # -- messages, drag and drop, close --------------------------------------------------------
    def _on_problem(self, image_id: str, text: str) -> None:
        """A background problem: in the status bar (last one kept with its full text) and,
        for one image, in the image list; the person keeps working."""
        first = text.strip().splitlines()[0] if text.strip() else text
        self.alert_label.setText(first if len(first) <= 90 else first[:87] + "…")
        self.alert_label.setToolTip(text)
        self.statusBar().showMessage(first, 10_000)
        if image_id:
            self.image_list.set_note(image_id, text)

    def _show_message(self, level: str, text: str) -> None:
        box = {"info": QMessageBox.information, "warning": QMessageBox.warning,
               "error": QMessageBox.critical}[level]
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
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.ops.release_lock()
        self.controller.shutdown()
        event.accept()

    def start_model(self, spec: ModelSpec) -> None:
        self.controller.set_model(spec)

    def show_first_run_hint(self) -> None:
        """The loop in four steps, shown once on the sample project."""
        box = QMessageBox(QMessageBox.Icon.Information, "Welcome to FCN Studio",
                          "<b>The loop</b><ol>"
                          "<li><b>Predict</b>: the model segments each image in the background.</li>"
                          "<li><b>Correct</b>: fix the mask with the brush (B), fill (F), polygon "
                          "(P) and eraser (E); 1–9 pick a class, [ ] size the brush.</li>"
                          "<li><b>Save</b>: Ctrl+S, or just move on (PgDn): labels autosave as "
                          "a PASCAL VOC dataset.</li>"
                          "<li><b>Fine-tune</b>: train the model on your saved labels so the "
                          "next predictions need fewer corrections.</li></ol>"
                          "This sample project has three labelled images to start from.",
                          parent=self)
        box.setModal(False)
        box.open()
        self._first_run_box = box  # keep a reference while it is shown
