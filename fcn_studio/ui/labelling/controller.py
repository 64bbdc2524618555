"""The labelling loop: open a project, show an image, take predictions, save labels.

Qt widgets stay in main_window.py. The state of each image being labelled lives
in the Qt-free :class:`~fcn_studio.session.LabelSession` (label, undo history,
save state, prediction); this object picks the session to show, feeds it
predictions from the inference worker, and runs its saves and the storing of
predictions on background threads. It does no tensor maths and no whole-image
work per event.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal

from ...models.model_spec import DEFAULT_BACKBONE, ModelSpec
from ...project import prediction_store
from ...project.image_cache import ImageCache
from ...project.project import Project
from ...session import Change, LabelSession, Prediction, SessionStore
from .inference import InferenceWorker
from .saver import BackgroundSaver
from .worker_results import InferenceResult, ModelInfo

PREDICT_AHEAD = 3  # images predicted ahead of the one shown


class Controller(QObject):
    projectChanged = Signal(object)  # Project | None
    sessionChanged = Signal(object)  # LabelSession | None: the image shown
    entryChanged = Signal(str)  # image id whose state/dirty flag changed
    predictionShown = Signal(object)  # LabelSession, after a prediction arrived for it
    modelChanged = Signal(object)  # ModelInfo
    labelSaved = Signal(str)  # image id: its label is on disk (training data from now on)
    problem = Signal(str, str)  # image id ("" for none), text: a background error, not modal
    status = Signal(str)

    def __init__(self, worker: InferenceWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.project: Project | None = None
        self.session: LabelSession | None = None
        self.sessions = SessionStore()
        self.model: ModelInfo | None = None  # the model predicting for this project
        self.spec: ModelSpec | None = None  # the spec of the model in use
        self._pending_spec: ModelSpec | None = None
        self._refresh_all = False
        self.auto_apply = True  # a new image starts from the model's prediction
        self.new_backbone = DEFAULT_BACKBONE  # of a project's new model (Model > Backbone)
        self.saver = BackgroundSaver(self)
        self.saver.saved.connect(self._on_saved)
        self.saver.failed.connect(self._on_save_failed)
        # Predictions are PNG-encoded and written off the GUI thread too.
        self.prediction_writer = BackgroundSaver(self)
        self.prediction_writer.saved.connect(lambda image_id, _t: self._entry_changed(image_id))
        self.prediction_writer.failed.connect(
            lambda image_id, _t, text: self.problem.emit(
                image_id, f"Could not store the prediction of {image_id}: {text}"))
        self._cache: ImageCache | None = None
        self._order: list[str] = []  # navigation order (the list panel's filter applies)
        worker.resultReady.connect(self._on_result)
        worker.predictionFailed.connect(self._on_prediction_failed)
        worker.modelReady.connect(self._on_model_ready)
        worker.modelFailed.connect(self._on_model_failed)
        worker.learned.connect(self._on_learned)
        worker.learnFailed.connect(lambda text: self.problem.emit("", text))
        self._saving: dict[tuple[str, int], np.ndarray] = {}  # labels being written, by token

    # -- project ----------------------------------------------------------------------
    def set_project(self, project: Project | None, keep_model: bool = False) -> None:
        """Open ``project``. Its model is chosen by the caller (:meth:`set_model`): a
        model is never carried over from another project unless ``keep_model`` (the same
        project reopened with images added)."""
        model, spec = self.model, self.spec
        self.close_project()
        self.project = project
        if keep_model:
            self.model, self.spec = model, spec
        self.worker.set_project_root(project.root if project is not None else None)
        if project is not None:
            # Labels saved before today count for instant learning too (read off this thread).
            self.worker.set_saved_labels([(i, project.image_path(i), project.label_path(i))
                                          for i in project.saved_newest_first()])
            self._cache = ImageCache(project.load_image, capacity=4)
            self._order = list(project.ids)
        self.projectChanged.emit(project)

    def close_project(self) -> None:
        self.flush()
        self.prediction_writer.wait()
        if self.project is not None:
            self.project.flush()
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        self.worker.cancel_pending()
        self.worker.forget_labels()  # another project's labels are never training data here
        self._saving.clear()
        self.sessions.clear()
        self.session = None
        self.model = self.spec = self._pending_spec = None
        self.sessionChanged.emit(None)
        self.project = None

    def forget_history(self, image_id: str) -> None:
        """Drop an image's session and history (after its label file was rewritten)."""
        self.sessions.forget(image_id)
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
        if info.spec != self._pending_spec or self.project is None:
            return  # a load this project no longer waits for
        self._pending_spec = None
        names = list(self.project.classes.names)
        if list(info.class_names) != names:
            # Never predict with another class list: the ids would mean other classes.
            self.problem.emit("", f"The model {info.description} has other classes than "
                              f"the project, so it is not used here.\nmodel: "
                              f"{', '.join(info.class_names)}\nproject: {', '.join(names)}")
            self._fall_back(info.spec)
            return
        self.model, self.spec = info, info.spec
        self.modelChanged.emit(info)
        if self._refresh_all:
            self._refresh_all = False
            self.refresh_predictions()
        else:
            self.request_prediction()

    def _fall_back(self, failed: ModelSpec | None) -> None:
        """After the model asked for could not be used: the one in use before (the worker
        must load it again), else the project's own chain: ImageNet, then untrained."""
        assert self.project is not None
        names = self.project.classes.names
        if self.spec is not None and self.spec != failed:
            self.set_model(self.spec)
        elif failed is None or failed.kind != "untrained":
            kind = "untrained" if failed is not None and failed.kind == "imagenet" else "imagenet"
            # A new model keeps the backbone asked for (ImageNet missing: the same, untrained).
            backbone = failed.backbone if failed is not None and failed.is_new else self.new_backbone
            self.set_model(ModelSpec.untrained(names, backbone) if kind == "untrained"
                           else ModelSpec.imagenet(names, backbone))

    def _on_model_failed(self, spec: ModelSpec, text: str) -> None:
        if spec != self._pending_spec or self.project is None:
            return
        self._pending_spec = None
        if self.model is None:
            # No model for this project yet: say why and go down the project's chain
            # (ImageNet if the weights are on disk, else an untrained FCN-8s, shown as
            # such in the status bar; fine-tuning makes it useful).
            then = ("an untrained FCN-8s: fine-tuning on your saved labels trains it"
                    if spec.kind == "imagenet" else "the next model that can be loaded")
            self.problem.emit("", f"Could not load {spec.description}: {text}\n\n"
                              f"Until then the model is {then}.")
            self._fall_back(spec)
            return
        self.problem.emit("", f"Could not load the model {spec.description}:\n{text} "
                          f"The current model ({self.model.description}) stays in use.")

    def request_prediction(self, force: bool = False) -> None:
        """Predict the shown image (unless its prediction is current) and a few ahead."""
        if self.project is None or self.session is None or self.model is None:
            return
        sid = self.session.image_id
        ahead = [(i, self.project.entry(i).image_path) for i in self._ahead_ids(sid)]
        p = self.session.prediction
        if force or p is None or p.model != self.model.id:
            self.worker.request(sid, self.project.entry(sid).image_path, ahead)
        else:
            self.worker.queue_ahead(ahead)

    def _stale(self, image_id: str) -> bool:
        """Not corrected, readable, and without a prediction from the current model."""
        assert self.project is not None and self.model is not None
        e = self.project.entry(image_id)
        if e.error is not None or e.state not in ("new", "predicted") or self.is_dirty(image_id):
            return False
        return e.state == "new" or e.model_version != self.model.id.stored

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
        if self.project is None or self.model is None or result.model != self.model.id:
            return  # from a model no longer in use, or another project's
        if result.image_id not in self.project.ids:
            return
        prediction = Prediction(result.label, result.uncertainty, result.model)
        project, image_id = self.project, result.image_id
        self.prediction_writer.submit(
            image_id, lambda: prediction_store.store(project, image_id, prediction))
        s = self.session
        if s is None or s.image_id != image_id or prediction.shape != s.shape:
            return  # a late or ahead-of-time result: stored, not shown
        s.offer_prediction(prediction, self.auto_apply)
        self.predictionShown.emit(s)
        self.status.emit(f"predicted {image_id} in {result.seconds:.2f} s")

    def _on_prediction_failed(self, image_id: str, _model: str, text: str) -> None:
        if self.project is None:
            return
        if image_id and image_id in self.project.ids:
            self.problem.emit(image_id, f"Prediction failed for {image_id}: {text}")
        elif not image_id:
            self.problem.emit("", f"The model worker hit an error: {text}")

    # -- images -----------------------------------------------------------------------------
    def show_image(self, image_id: str, label_override: np.ndarray | None = None) -> bool:
        """Make ``image_id`` the edited image; autosaves the previous one first.

        False when the image cannot be read (it is marked unreadable with the
        reason, and the shown image stays). A saved label that does not fit its
        image raises LabelError before anything changes (the window asks what to do).
        """
        if self.project is None or self._cache is None:
            return False
        if (self.session is not None and self.session.image_id == image_id
                and label_override is None):
            return True
        project = self.project
        try:
            rgb = self._cache.get(image_id)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: reported, skipped
            project.mark_unreadable(image_id, str(exc))
            self.entryChanged.emit(image_id)
            self.problem.emit(image_id, f"Cannot read {image_id}: {exc}")
            return False
        if label_override is not None:
            self.forget_history(image_id)
        kept = self.sessions.peek(image_id)
        prediction = prediction_store.load(project, image_id)
        label: np.ndarray | None = label_override
        has_label = False
        if label is None and not (kept is not None and kept.is_open):
            label = project.load_label(image_id)  # LabelError: handled by the window
            has_label = label is not None
            if label is None:
                use = prediction is not None and self.auto_apply
                label = (prediction.label.copy() if use and prediction is not None
                         else np.zeros(rgb.shape[:2], np.uint8))
        self._leave_current()
        s = self.sessions.get(image_id)
        s.subscribe(self._on_session_change)
        s.open(label if label is not None else np.zeros(rgb.shape[:2], np.uint8),
               has_label, prediction, image=rgb)
        self.session = s
        self.sessionChanged.emit(s)
        self.entryChanged.emit(image_id)
        self._prefetch_neighbours(image_id)
        self.request_prediction()
        return True

    def _leave_current(self) -> None:
        s = self.session
        if s is None:
            return
        self.save_current()
        s.release()
        self.session = None

    def _on_session_change(self, session: LabelSession, change: Change) -> None:
        if change.kind == "state":
            self._entry_changed(session.image_id)

    def _entry_changed(self, image_id: str) -> None:
        """Tell the views, for an image of the open project (late outcomes of a closed
        project's writes are dropped)."""
        if self.project is not None and image_id in self.project.ids:
            self.entryChanged.emit(image_id)

    def _prefetch_neighbours(self, image_id: str) -> None:
        if self._cache is None or image_id not in self._order:
            return
        i = self._order.index(image_id)
        self._cache.prefetch(self._order[j] for j in (i + 1, i - 1) if 0 <= j < len(self._order))

    def neighbour(self, step: int) -> str | None:
        found = self.neighbours(step)
        return found[0] if found else None

    def neighbours(self, step: int) -> list[str]:
        """The images after (``step`` > 0) or before the shown one, nearest first,
        in the list's order; readable or not (showing one finds out)."""
        if not self._order:
            return []
        if self.session is None or self.session.image_id not in self._order:
            return list(self._order)
        i = self._order.index(self.session.image_id)
        return self._order[i + 1:] if step > 0 else self._order[:i][::-1]

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
        if self.project is None or s is None:
            return
        job = s.begin_save(force)
        if job is None:
            return
        token, label = job  # a copy: the person keeps painting while it is written
        project, image_id = self.project, s.image_id
        self.status.emit(f"saving {image_id}…")
        self._saving[(image_id, token)] = label  # learned from once it is on disk
        self.saver.submit(image_id, lambda: project.save_label(image_id, label), token)

    def flush(self) -> None:
        """Save pending edits and wait for every write (closing, switching projects)."""
        self.save_current()
        self.saver.wait()

    def _on_saved(self, image_id: str, token: int) -> None:
        label = self._saving.pop((image_id, token), None)
        s = self.sessions.peek(image_id)
        if s is None:
            return  # a save of a project closed since
        if label is not None and self.project is not None and self.model is not None:
            # Instant learning: the worker trains the head on it (a no-op when off).
            self.worker.learn(image_id, self.project.entry(image_id).image_path, label)
        s.save_finished(token)
        self._entry_changed(image_id)
        self.status.emit(f"saved {image_id}")
        self.labelSaved.emit(image_id)

    def _on_learned(self, result) -> None:  # LearnResult
        if self.project is None or self.model is None or self._pending_spec is not None:
            return  # learned for a model this project no longer uses
        if result.model.spec != self.model.spec:
            return
        self.model = result.model
        self.modelChanged.emit(result.model)
        self.status.emit(result.describe())
        if result.images or result.rolled_back:
            self.request_prediction()  # the shown image and those ahead, from the new head

    def _on_save_failed(self, image_id: str, token: int, text: str) -> None:
        self._saving.pop((image_id, token), None)
        # The edit is still in memory (the session keeps it): the image stays unsaved.
        s = self.sessions.peek(image_id)
        if s is not None:
            s.save_failed(token, text)
        self._entry_changed(image_id)
        self.problem.emit(image_id, f"Could not save the label of {image_id}: {text}\n"
                          "Your edits are kept in memory; fix the problem and save again.")

    def is_dirty(self, image_id: str) -> bool:
        s = self.sessions.peek(image_id)
        return s is not None and s.dirty

    def unsaved(self) -> bool:
        return bool(self.sessions.unsaved()) or self.saver.busy()

    def failed_saves(self) -> list[str]:
        return self.sessions.failed()

    def shutdown(self) -> None:
        self.close_project()
        self.saver.shutdown()
        self.prediction_writer.shutdown()
        self.worker.shutdown()
