"""The inference worker: one thread owns the model; the GUI only sends requests.

A newer request for the shown image supersedes a stale one that has not started;
images queued for prediction ahead of time are dropped when a new queue arrives.
Every result carries its image id and the loaded model's identity
(:class:`~fcn_studio.models.model_spec.ModelId`: a version id or a file's content hash,
never a file name), so a late result never lands on the wrong image or model.
torch is first imported on this thread, so the window appears before the heavy
imports finish.

Instant learning (on by default) runs here too, with the engine's
``training.instant.InstantLearner``: every prediction keeps the image's backbone
features, and a saved label queued with :meth:`InferenceWorker.learn` trains the
head on the features of every saved image. Labels saved before the model loaded
(an earlier session's, the sample project's) are taken up as training data when
the worker is idle, one backbone forward each (``training.instant_backlog``). That gives
the model a new identity (its id with a ``head`` tag), reported by ``learned``;
predictions of images whose features are cached are then refreshed by the head
alone, in milliseconds.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from ...models.model_spec import ModelId, ModelSpec
from .model_loading import build_predictor
from .worker_results import InferenceResult, LearnResult, ModelInfo

HEADS_DIR = ".fcn_studio/heads"  # in the project: one learned head per model, kilobytes
MAX_RELOADS_PER_LEARN = 3  # backbone forwards a learn may spend on images no longer cached
FEATURE_CACHE_BYTES = 768 << 20
FEATURE_DISK_BYTES = 2 << 30  # about 550 images of 500x375 at FCN-8s / VGG16
FEATURES_DIR = ".fcn_studio/features"


class InferenceWorker(QObject):
    """Owns a Predictor on a background thread. Signals arrive on the GUI thread."""

    resultReady = Signal(object)  # InferenceResult
    predictionFailed = Signal(str, str, str)  # image_id, model id (stored form), message
    modelReady = Signal(object)  # ModelInfo
    modelFailed = Signal(object, str)  # ModelSpec, message (the previous model keeps working)
    statusChanged = Signal(str)  # what the model is doing now; "" when idle
    learned = Signal(object)  # LearnResult
    learnFailed = Signal(str)  # message (the model stays as it was)

    def __init__(self, device: str = "auto", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._device = device
        self._cond = threading.Condition()
        self._pending_model: ModelSpec | None = None
        self._current: tuple[str, Path] | None = None
        self._ahead: deque[tuple[str, Path]] = deque()
        self._stop = False
        self._predictor: Any = None
        self._model_id: ModelId | None = None
        self._info: ModelInfo | None = None
        self._instant = True
        self._learner: Any = None
        self._labels: dict[str, tuple[Path, np.ndarray]] = {}  # training data: saved labels
        self._backlog: Any = None  # training.instant_backlog.LabelBacklog, made on this thread
        self._earlier_pending: list[tuple[str, Path, Path]] | None = None  # from the GUI
        self._preparing = False  # idle-time work for instant learning is left (under _cond)
        self._classes_fit = False  # the loaded model has the project's classes
        self._learn_pending: dict[str, tuple[Path, np.ndarray]] = {}
        self._rollback_pending = False
        self._forget = False  # set on the GUI thread, applied on the worker thread
        self._project_root: Path | None = None  # where learned heads are kept
        self._heads: list[tuple[ModelId, str]] = []  # ids and descriptions before each learn
        self._thread = threading.Thread(target=self._loop, name="fcn-inference", daemon=True)
        self._started = False

    # -- GUI-thread API -----------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._started:
            self._thread.join(timeout)

    def set_device(self, device: str) -> None:
        """Takes effect with the next model load."""
        with self._cond:
            self._device = device

    def set_model(self, spec: ModelSpec) -> None:
        with self._cond:
            self._pending_model = spec
            self._cond.notify_all()

    def request(self, image_id: str, path: Path, ahead: list[tuple[str, Path]] | None = None) -> None:
        """Predict the shown image first, then ``ahead`` in order; replaces older requests."""
        with self._cond:
            self._current = (image_id, Path(path))
            self._ahead = deque(ahead or [])
            self._cond.notify_all()

    def queue_ahead(self, items: list[tuple[str, Path]]) -> None:
        """Replace the ahead-of-time queue without touching the current request."""
        with self._cond:
            self._ahead = deque(items)
            self._cond.notify_all()

    def cancel_pending(self) -> None:
        with self._cond:
            self._current = None
            self._ahead.clear()
            self._learn_pending.clear()

    def forget_labels(self) -> None:
        """Drop the labels learned from (the project closes); the next model load starts
        its learner without them."""
        with self._cond:
            self._learn_pending.clear()
            self._forget = True
            self._cond.notify_all()

    def set_saved_labels(self, items: list[tuple[str, Path, Path]]) -> None:
        """The open project's labels saved before now, the newest first, as (image id,
        image path, label path): instant learning takes them up as training data when
        the worker is idle (reading them is disk work: never on the GUI thread)."""
        with self._cond:
            self._earlier_pending = list(items)
            self._cond.notify_all()

    def set_project_root(self, root: Path | None) -> None:
        """The open project: its ``.fcn_studio/heads/`` keeps what instant learning taught
        each model, so a restart goes on from there. Takes effect with the next load."""
        with self._cond:
            self._project_root = Path(root) if root is not None else None

    def set_instant(self, enabled: bool) -> None:
        """Instant learning on or off (off: saves queue nothing, the head stays)."""
        with self._cond:
            self._instant = bool(enabled)
            if not enabled:
                self._learn_pending.clear()
            self._cond.notify_all()  # on again: the idle-time preparation goes on

    @property
    def instant_enabled(self) -> bool:
        return self._instant

    def learn(self, image_id: str, path: Path, label: np.ndarray) -> None:
        """``image_id``'s label was saved: learn from it (and every earlier one) next.

        ``label`` must be the saved array (the caller's copy: the worker keeps it).
        Saves that arrive while a learn runs are learned together afterwards.
        """
        with self._cond:
            if not self._instant:
                return
            self._learn_pending[image_id] = (Path(path), label)
            self._cond.notify_all()

    def roll_back_learning(self) -> None:
        """Undo the last round of instant learning (the head before it)."""
        with self._cond:
            self._rollback_pending = True
            self._cond.notify_all()

    @property
    def model_id(self) -> ModelId | None:
        return self._model_id

    def is_idle(self) -> bool:
        """Nothing queued: no model load, prediction or idle-time preparation left."""
        with self._cond:
            return (self._pending_model is None and self._current is None and not self._ahead
                    and self._earlier_pending is None and not self._preparing)

    # -- worker thread ------------------------------------------------------------------
    def _next_job(self) -> tuple[str, Any] | None:
        with self._cond:
            while not self._stop:
                if self._forget:
                    self._forget = False
                    return "forget", None
                if self._pending_model is not None:
                    spec, self._pending_model = self._pending_model, None
                    return "model", spec
                if self._predictor is not None and self._rollback_pending:
                    self._rollback_pending = False
                    return "rollback", None
                # Learning before predicting: the next prediction should use the new head.
                if self._predictor is not None and self._learn_pending:
                    jobs, self._learn_pending = self._learn_pending, {}
                    return "learn", jobs
                if self._predictor is not None and self._current is not None:
                    job, self._current = self._current, None
                    return "current", job
                if self._predictor is not None and self._ahead:
                    return "ahead", self._ahead.popleft()
                self._preparing = True
                if self._earlier_pending is not None:
                    items, self._earlier_pending = self._earlier_pending, None
                    return "earlier", items
                # Idle: prepare what the next learn will use (earlier labels, features).
                if (self._instant and self._classes_fit and self._learner is not None
                        and self._backlog is not None and self._backlog.pending(self._learner)):
                    return "prepare", None
                self._preparing = False
                self._cond.wait()
        return None

    def _loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, payload = job
            try:
                if kind == "model":
                    self._load(payload)
                elif kind == "learn":
                    self._learn(payload)
                elif kind == "rollback":
                    self._roll_back()
                elif kind == "forget":
                    self._labels.clear()
                    if self._backlog is not None:
                        self._backlog.clear()
                    if self._learner is not None:
                        for image_id in self._learner.labelled:
                            self._learner.remove_label(image_id)
                elif kind == "earlier":
                    self._set_earlier(payload)
                elif kind == "prepare":
                    self._prepare()
                else:
                    self._predict(*payload, ahead=kind == "ahead")
            except Exception:  # never let the thread die: report and carry on
                self.statusChanged.emit("")
                self.predictionFailed.emit("", str(self._model_id or ""),
                                           traceback.format_exc(limit=3))

    def _load(self, spec: ModelSpec) -> None:
        self.statusChanged.emit(f"loading model: {spec.description}")
        try:
            with self._cond:
                device = self._device
            predictor = build_predictor(spec, device)
            model_id = spec.identity()  # a file's content hash: read here, off the GUI
        except Exception as exc:  # FCNError, OSError, bad files: the old model stays
            self.statusChanged.emit("")
            self.modelFailed.emit(spec, str(exc) or type(exc).__name__)
            return
        self._predictor, self._model_id = predictor, model_id
        self._info = ModelInfo(model_id, spec.description, tuple(predictor.class_names),
                               str(predictor.device), spec,
                               backbone=predictor.loaded.config.backbone)
        # The project's labels are training data only for a model of the project's classes.
        self._classes_fit = spec.class_names == tuple(predictor.class_names)
        self._new_learner(carry_labels=self._classes_fit)
        self._restore_head()
        self.statusChanged.emit("")
        self.modelReady.emit(self._info)

    def _new_learner(self, carry_labels: bool) -> None:
        """A learner for the model just loaded. Labels saved earlier stay training data
        when the classes are the same (their features are recomputed when idle)."""
        from training.feature_cache import FeatureCache
        from training.instant import InstantLearner
        self._heads.clear()
        # The old learner's order (oldest first) is the order the labels were saved in.
        order = [k for k in (self._learner.labelled if self._learner is not None else [])
                 if k in self._labels]
        order += [k for k in self._labels if k not in order]
        if not carry_labels:
            self._labels.clear()
            order = []
        self._own_backlog().new_learner(kept_labels=carry_labels)
        with self._cond:
            root = self._project_root
        # Features memory lets go of wait in the project's hidden folder (and across
        # restarts), so learning from older labels rarely runs the backbone again.
        disk = root / FEATURES_DIR if root is not None else None
        cache = FeatureCache(FEATURE_CACHE_BYTES, disk_dir=disk, disk_bytes=FEATURE_DISK_BYTES)
        self._learner = InstantLearner(self._predictor, cache, backbone_id=str(self._model_id))
        for image_id in order:
            self._learner.add_label(image_id, self._labels[image_id][1])

    def _own_backlog(self) -> Any:  # LabelBacklog: made here, so torch loads on this thread
        from training.instant_backlog import LabelBacklog

        if self._backlog is None:
            self._backlog = LabelBacklog()
        return self._backlog

    def _set_earlier(self, items: list[tuple[str, Path, Path]]) -> None:
        from training.instant_backlog import EarlierLabel

        self._own_backlog().set_earlier([EarlierLabel(k, Path(i), Path(lab)) for k, i, lab in items])

    def _prepare(self) -> None:
        """One image of idle-time work for instant learning (a backbone forward at most)."""
        from training.images import read_image

        assert self._learner is not None and self._backlog is not None
        self.statusChanged.emit("preparing saved labels for instant learning")
        taken = self._backlog.step(self._learner, lambda k: read_image(self._labels[k][0]))
        if taken is not None:
            self._labels[taken.key] = (taken.image_path, taken.label)
        self.statusChanged.emit("")
        # One message for the whole backlog, once it is done: the first problem, and how
        # many more.
        problems = [] if self._backlog.pending(self._learner) else self._backlog.take_problems()
        if problems:
            first, n = problems[0], len(problems)
            more = f" (and {n - 1} more)" if n > 1 else ""
            self.learnFailed.emit(f"Instant learning left out a saved label: {first}{more}")

    # -- head files ---------------------------------------------------------------------
    def _head_path(self) -> Path | None:
        with self._cond:
            root = self._project_root
        if root is None or self._info is None:
            return None
        key = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(self._info.id.with_head("")))
        return root / HEADS_DIR / f"{key}.pt"

    def _restore_head(self) -> None:
        """Put back the head this project's model learned before (if it fits)."""
        from training import voc
        from training.instant import load_head_state, read_head_file

        path = self._head_path()
        if path is None or self._info is None:
            return
        base = self._info.id
        try:
            rec = read_head_file(path, self._predictor.model, parent=str(base),
                                 class_names=list(self._predictor.class_names))
        except ValueError as exc:
            self.learnFailed.emit(f"The learned head was not restored: {exc}")
            return
        if rec is None:
            return
        load_head_state(self._predictor.model, rec["head"])
        root = path.parent.parent.parent  # <project>/.fcn_studio/heads/<model>.pt
        for image_id in rec["images"]:  # its saved labels stay training data
            try:
                label = voc.read_label(voc.label_path(root, image_id), len(self._predictor.class_names))
                self._labels[image_id] = (voc.image_path(root, image_id), label)
                self._learner.add_label(image_id, label)
            except Exception:  # noqa: BLE001 (a label deleted or broken since: learn without it)
                continue
        self._set_info(base.with_head(str(rec["tag"])), self._learned_description(len(rec["images"])))

    def _store_head(self) -> None:
        """After learning or undoing it: the head file follows the model in use."""
        from training.instant import save_head_file

        path = self._head_path()
        if path is None or self._info is None:
            return
        try:
            if not self._info.id.head:
                path.unlink(missing_ok=True)  # back to the model as loaded
                return
            save_head_file(path, self._predictor.model, parent=str(self._info.id.with_head("")),
                           class_names=list(self._predictor.class_names),
                           images=list(self._learner.labelled), tag=self._info.id.head)
        except OSError as exc:
            self.learnFailed.emit(f"Could not keep the learned head ({path}): {exc}")

    def _learn(self, jobs: dict[str, tuple[Path, np.ndarray]]) -> None:
        from training.images import read_image

        assert self._info is not None and self._learner is not None
        self.statusChanged.emit(f"learning from {len(jobs)} new label{'s' * (len(jobs) != 1)}")
        try:
            for image_id, (path, label) in jobs.items():
                self._learner.add_label(image_id, label)  # checks the class ids
                self._labels[image_id] = (path, label)
            report = self._learner.learn(reload=lambda k: read_image(self._labels[k][0]),
                                         max_reload=MAX_RELOADS_PER_LEARN)
        except Exception as exc:  # a bad label or an unreadable image: say so, keep the head
            for image_id in jobs:
                self._labels.pop(image_id, None)
                self._learner.remove_label(image_id)
            self.statusChanged.emit("")
            self.learnFailed.emit(f"Instant learning skipped: {exc}")
            return
        if report.images:
            self._heads.append((self._info.id, self._info.description))
            base = self._info.id.with_head("")
            head = f"h{len(self._heads)}.{secrets.token_hex(3)}"
            self._set_info(base.with_head(head), self._learned_description(report.images))
            self._store_head()
        self.statusChanged.emit("")
        self.learned.emit(LearnResult(self._info, report.images, report.seconds, report.skipped))

    def _roll_back(self) -> None:
        assert self._info is not None and self._learner is not None
        if not self._heads or not self._learner.can_roll_back():
            self.learnFailed.emit("Nothing to undo: the model has not learned since it was loaded.")
            return
        self._learner.roll_back()
        model_id, description = self._heads.pop()
        self._set_info(model_id, description)
        self._store_head()
        self.learned.emit(LearnResult(self._info, 0, 0.0, rolled_back=True))

    def _learned_description(self, images: int) -> str:
        return f"{self._base_description()} + head learned from {images} image{'s' * (images != 1)}"

    def _base_description(self) -> str:
        assert self._info is not None
        return self._info.spec.description if self._info.spec is not None else self._info.description

    def _set_info(self, model_id: ModelId, description: str) -> None:
        assert self._info is not None
        self._model_id = model_id
        self._info = replace(self._info, id=model_id, description=description)

    def _predict(self, image_id: str, path: Path, ahead: bool) -> None:
        from training.errors import FCNError
        from training.images import read_image

        self.statusChanged.emit(("predicting ahead: " if ahead else "predicting: ") + image_id)
        t0 = time.perf_counter()
        try:
            learner = self._learner
            pred = None
            if learner is not None and self._model_id is not None and self._model_id.head:
                # The backbone is the same: the new head on the cached features suffices.
                pred = learner.refresh(image_id, uncertainty="entropy")
            if pred is None:
                image = read_image(path)
                pred = (learner.predict(image_id, image) if learner is not None and self._instant
                        else self._predictor.predict(image, uncertainty="entropy"))
        except (FCNError, OSError, RuntimeError, ValueError) as exc:
            self.statusChanged.emit("")
            self.predictionFailed.emit(image_id, str(self._model_id or ""), str(exc))
            return
        self.statusChanged.emit("")
        assert self._model_id is not None  # set with the predictor
        self.resultReady.emit(InferenceResult(image_id, self._model_id, pred.label,
                                              pred.uncertainty, time.perf_counter() - t0, ahead))
