"""The labelling loop: open a project, show an image, take predictions, save labels.

Qt widgets stay in main_window.py; this object keeps the state of the open
project and the image on screen, and talks to the inference worker and the
background saver. It does no tensor maths and no whole-image work per event.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from ..image_cache import ImageCache
from ..model_spec import ModelSpec
from ..project import Project
from .image_session import ImageSession
from .inference import InferenceResult, InferenceWorker, ModelInfo
from .saver import BackgroundSaver
from .undo import configure_undo_stack

PREDICT_AHEAD = 3  # images predicted ahead of the one shown


class Controller(QObject):
    projectChanged = Signal(object)  # Project | None
    sessionChanged = Signal(object)  # ImageSession | None
    entryChanged = Signal(str)  # image id whose state/dirty flag changed
    predictionShown = Signal(object)  # ImageSession, after a prediction arrived for it
    modelChanged = Signal(object)  # ModelInfo
    message = Signal(str, str)  # level ("info" | "warning" | "error"), text
    status = Signal(str)

    def __init__(self, worker: InferenceWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.project: Project | None = None
        self.session: ImageSession | None = None
        self.model: ModelInfo | None = None
        self.spec: ModelSpec | None = None  # the spec of the model in use
        self._pending_spec: ModelSpec | None = None
        self._refresh_all = False
        self.auto_apply = True  # a new image starts from the model's prediction
        self.saver = BackgroundSaver(self)
        self.saver.saved.connect(self._on_saved)
        self.saver.failed.connect(self._on_save_failed)
        self._cache: ImageCache | None = None
        self._stacks: dict[str, QUndoStack] = {}
        self._order: list[str] = []  # navigation order (the list panel's filter applies)
        self._failed_saves: dict[str, np.ndarray] = {}  # labels whose save failed, kept
        self._in_flight: dict[str, np.ndarray] = {}  # labels being written
        worker.resultReady.connect(self._on_result)
        worker.predictionFailed.connect(self._on_prediction_failed)
        worker.modelReady.connect(self._on_model_ready)
        worker.modelFailed.connect(self._on_model_failed)

    # -- project ----------------------------------------------------------------------
    def set_project(self, project: Project | None) -> None:
        self.close_project()
        self.project = project
        if project is not None:
            self._cache = ImageCache(project.load_image, capacity=4)
            self._order = list(project.ids)
        self.projectChanged.emit(project)

    def close_project(self) -> None:
        self.flush()
        if self.project is not None:
            self.project.flush()
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self.worker.cancel_pending()
        self._stacks.clear()
        self._failed_saves.clear()
        self.session = None
        self.sessionChanged.emit(None)
        self.project = None

    def forget_history(self, image_id: str) -> None:
        """Drop an image's undo history and session (after its label file was rewritten)."""
        self._stacks.pop(image_id, None)
        if self.session is not None and self.session.image_id == image_id:
            self.session = None

    def set_order(self, ids: list[str]) -> None:
        self._order = ids

    # -- model ---------------------------------------------------------------------------
    def set_model(self, spec: ModelSpec, refresh_all: bool = False) -> None:
        """Load ``spec`` on the worker; with ``refresh_all`` every uncorrected image is
        predicted again once it is loaded (after fine-tuning), else only those ahead."""
        self._refresh_all = refresh_all
        self._pending_spec = spec
        self.status.emit(f"loading {spec.description}…")
        self.worker.set_model(spec)

    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model = info
        if self._pending_spec is not None and self._pending_spec.version == info.version:
            self.spec = self._pending_spec
        self.modelChanged.emit(info)
        if self.project is not None and list(info.class_names) != list(self.project.classes.names):
            self.message.emit("warning", "The model's classes differ from the project's:\n"
                              f"model: {', '.join(info.class_names)}\n"
                              f"project: {', '.join(self.project.classes.names)}\n"
                              "Predictions use the model's class ids.")
        if self._refresh_all:
            self._refresh_all = False
            self.refresh_predictions()
        else:
            self.request_prediction()

    def _on_model_failed(self, version: str, text: str) -> None:
        if self.model is None and version == "imagenet" and self.project is not None:
            # No model at all yet: say why, and work with an untrained FCN-8s meanwhile
            # (it is shown as untrained in the status bar; fine-tuning makes it useful).
            self.message.emit("warning", f"{text}\n\nUntil then the model is an untrained "
                              "FCN-8s: fine-tuning on your saved labels trains it.")
            self.set_model(ModelSpec.untrained(self.project.classes.names))
            return
        keep = f" The current model ({self.model.description}) stays in use." if self.model else ""
        self.message.emit("error", f"Could not load the model {version}:\n{text}{keep}")

    def request_prediction(self, force: bool = False) -> None:
        """Predict the shown image (unless its prediction is current) and a few ahead."""
        if self.project is None or self.session is None or self.model is None:
            return
        sid = self.session.image_id
        ahead = [(i, self.project.entry(i).image_path) for i in self._ahead_ids(sid)]
        if force or self.session.prediction_version != self.model.version:
            self.worker.request(sid, self.project.entry(sid).image_path, ahead)
        else:
            self.worker.queue_ahead(ahead)

    def _stale(self, image_id: str) -> bool:
        """Not corrected, readable, and without a prediction from the current model."""
        assert self.project is not None and self.model is not None
        e = self.project.entry(image_id)
        if e.error is not None or e.state not in ("new", "predicted"):
            return False
        return e.state == "new" or e.model_version != self.model.version

    def _ahead_ids(self, current: str, limit: int = PREDICT_AHEAD) -> list[str]:
        assert self.project is not None
        try:
            start = self._order.index(current) + 1
        except ValueError:
            start = 0
        out = []
        for image_id in self._order[start:] + self._order[:start]:
            if image_id != current and self._stale(image_id):
                out.append(image_id)
            if len(out) >= limit:
                break
        return out

    def refresh_predictions(self) -> None:
        """After a model change: the shown image first, then every uncorrected image."""
        if self.project is None or self.session is None or self.model is None:
            return
        sid = self.session.image_id
        ahead = [(i, self.project.entry(i).image_path)
                 for i in self._ahead_ids(sid, limit=len(self._order))]
        self.worker.request(sid, self.project.entry(sid).image_path, ahead)

    def _on_result(self, result: InferenceResult) -> None:
        if self.project is None or self.model is None or result.model_version != self.model.version:
            return  # from a model no longer in use
        if result.image_id not in self.project.ids:
            return
        try:
            self.project.save_prediction(result.image_id, result.label, result.model_version,
                                         result.mean_uncertainty)
        except Exception as exc:  # the prediction stays usable in memory
            self.message.emit("warning", f"Could not store the prediction: {exc}")
        self.entryChanged.emit(result.image_id)
        s = self.session
        if s is None or s.image_id != result.image_id:
            return  # a late or ahead-of-time result: stored, not shown
        if result.label.shape != s.shape:
            return
        s.prediction, s.prediction_version = result.label, result.model_version
        s.uncertainty = result.uncertainty
        if self.auto_apply and not s.has_saved_label and not s.dirty and s.stack.count() == 0:
            s.label[...] = result.label  # the starting label; nothing to undo yet
        self.predictionShown.emit(s)
        self.status.emit(f"predicted {result.image_id} in {result.seconds:.2f} s")

    def _on_prediction_failed(self, image_id: str, version: str, text: str) -> None:
        if self.project is not None and image_id and image_id in self.project.ids:
            self.message.emit("warning", f"Prediction failed for {image_id}: {text}")

    # -- images -----------------------------------------------------------------------------
    def show_image(self, image_id: str, label_override: np.ndarray | None = None) -> bool:
        """Make ``image_id`` the edited image; autosaves the previous one first."""
        if self.project is None or self._cache is None:
            return False
        if self.session is not None and self.session.image_id == image_id:
            return True
        self.save_current()
        project = self.project
        try:
            rgb = self._cache.get(image_id)
        except Exception as exc:
            project.mark_unreadable(image_id, str(exc))
            self.entryChanged.emit(image_id)
            self.message.emit("error", str(exc))
            return False
        label = label_override
        has_label = False
        if label is None:
            label = project.load_label(image_id)  # LabelError is handled by the window
            has_label = label is not None
        try:
            prediction = project.load_prediction(image_id)
        except Exception:  # a stale prediction (other size or classes) is simply not used
            prediction = None
        if label is None:
            use = prediction is not None and self.auto_apply
            label = prediction.copy() if use else np.zeros(rgb.shape[:2], np.uint8)
        if label_override is None and image_id in self._failed_saves:
            label, has_label = self._failed_saves[image_id], True  # never lose an edit
        stack = self._stacks.get(image_id)
        if stack is None or label_override is not None:
            # History survives switching away and back: the autosaved label on disk is
            # exactly the array the old deltas were recorded against.
            stack = QUndoStack(self)
            configure_undo_stack(stack)
            stack.cleanChanged.connect(lambda _c, i=image_id: self.entryChanged.emit(i))
            self._stacks[image_id] = stack
        entry = project.entry(image_id)
        self.session = ImageSession(
            image_id=image_id, rgb=rgb, label=np.ascontiguousarray(label, dtype=np.uint8),
            stack=stack, has_saved_label=has_label, prediction=prediction,
            prediction_version=entry.model_version if prediction is not None else None)
        if image_id in self._failed_saves:
            stack.resetClean()  # still unsaved
        self.sessionChanged.emit(self.session)
        self._prefetch_neighbours(image_id)
        self.request_prediction()
        return True

    def _prefetch_neighbours(self, image_id: str) -> None:
        if self._cache is None or image_id not in self._order:
            return
        i = self._order.index(image_id)
        self._cache.prefetch(self._order[j] for j in (i + 1, i - 1) if 0 <= j < len(self._order))

    def neighbour(self, step: int) -> str | None:
        if not self._order:
            return None
        if self.session is None or self.session.image_id not in self._order:
            return self._order[0]
        i = self._order.index(self.session.image_id) + step
        return self._order[i] if 0 <= i < len(self._order) else None

    def most_uncertain(self) -> str | None:
        """The unsaved image whose stored prediction is least certain."""
        if self.project is None:
            return None
        best, best_u = None, -1.0
        current = self.session.image_id if self.session else None
        for image_id in self.project.ids:
            e = self.project.entry(image_id)
            if image_id == current or e.state == "saved" or e.mean_uncertainty is None:
                continue
            if e.mean_uncertainty > best_u:
                best, best_u = image_id, e.mean_uncertainty
        return best

    # -- saving ----------------------------------------------------------------------------
    def save_current(self, force: bool = False) -> None:
        """Save the shown label if the person changed it (or ``force``: Ctrl+S)."""
        s = self.session
        if self.project is None or s is None or not (s.dirty or force):
            return
        label = s.label.copy()  # the person keeps painting while the copy is written
        project, image_id = self.project, s.image_id
        s.stack.setClean()
        s.has_saved_label = True
        self.status.emit(f"saving {image_id}…")
        self._failed_saves.pop(image_id, None)
        self._in_flight[image_id] = label
        self.saver.submit(image_id, lambda: project.save_label(image_id, label))

    def flush(self) -> None:
        """Save pending edits and wait for every write (closing, switching projects)."""
        self.save_current()
        self.saver.wait()

    def _on_saved(self, image_id: str) -> None:
        self._in_flight.pop(image_id, None)
        self.entryChanged.emit(image_id)
        self.status.emit(f"saved {image_id}")

    def _on_save_failed(self, image_id: str, text: str) -> None:
        # The edit is still in memory: mark the image dirty again so it is not lost.
        label = self._in_flight.pop(image_id, None)
        if label is not None:
            self._failed_saves[image_id] = label
        s = self.session
        if s is not None and s.image_id == image_id:
            s.stack.resetClean()
        self.entryChanged.emit(image_id)
        self.message.emit("error", f"Could not save the label of {image_id}:\n{text}\n"
                          "Your edits are kept in memory; fix the problem and save again.")

    def is_dirty(self, image_id: str) -> bool:
        return self.session is not None and self.session.image_id == image_id and self.session.dirty

    def unsaved(self) -> bool:
        return ((self.session is not None and self.session.dirty) or self.saver.busy()
                or bool(self._failed_saves))

    def failed_saves(self) -> list[str]:
        return sorted(self._failed_saves)

    def shutdown(self) -> None:
        self.close_project()
        self.saver.shutdown()
        self.worker.shutdown()
