"""The inference worker: one thread owns the model; the GUI only sends requests.

A newer request for the shown image supersedes a stale one that has not started;
images queued for prediction ahead of time are dropped when a new queue arrives.
Every result carries its image id and the loaded model's identity
(:class:`~fcn_studio.model_spec.ModelId`: a version id or a file's content hash,
never a file name), so a late result never lands on the wrong image or model.
torch is first imported on this thread, so the window appears before the heavy
imports finish.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..model_spec import ModelId, ModelSpec


@dataclass(frozen=True)
class InferenceResult:
    image_id: str
    model: ModelId  # the model that made it
    label: np.ndarray  # H x W uint8
    uncertainty: np.ndarray  # H x W float32 in [0, 1]
    seconds: float
    ahead: bool  # predicted ahead of time (not the image shown when asked)

    @property
    def mean_uncertainty(self) -> float:
        return float(self.uncertainty.mean())


@dataclass(frozen=True)
class ModelInfo:
    id: ModelId
    description: str
    class_names: tuple[str, ...]
    device: str
    spec: ModelSpec | None = None  # what was asked for

    @property
    def version(self) -> str:
        """What a stored prediction records for this model."""
        return self.id.stored


def _build_predictor(spec: ModelSpec, device: str) -> Any:
    """Runs on the worker thread: the only place the app turns a spec into a model."""
    from training.model_init import fresh_model
    from training.predict import Predictor

    if spec.kind == "imagenet":
        from training.errors import WeightsUnavailableError
        from training.weights import imagenet_weights_info

        info = imagenet_weights_info()
        if not info["cached"]:
            # Never a silent 528 MB download on a background thread: the Model menu
            # downloads with a progress dialog the person can cancel.
            raise WeightsUnavailableError(
                f"the ImageNet VGG16 weights are not downloaded yet ({info['filename']}, "
                f"{info['size_mb']:.0f} MB, expected in {info['folder']}). Use Model > "
                "ImageNet FCN-8s to download them, or put the file there by hand.")
    if spec.kind in ("imagenet", "untrained"):
        init = "imagenet" if spec.kind == "imagenet" else "scratch"
        return Predictor(fresh_model(list(spec.class_names), init, progress=False), device)
    return Predictor.load(spec.path, device, classes=list(spec.class_names), at_once=spec.at_once)


class InferenceWorker(QObject):
    """Owns a Predictor on a background thread. Signals arrive on the GUI thread."""

    resultReady = Signal(object)  # InferenceResult
    predictionFailed = Signal(str, str, str)  # image_id, model id (stored form), message
    modelReady = Signal(object)  # ModelInfo
    modelFailed = Signal(object, str)  # ModelSpec, message (the previous model keeps working)
    statusChanged = Signal(str)  # what the model is doing now; "" when idle

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

    @property
    def model_id(self) -> ModelId | None:
        return self._model_id

    def is_idle(self) -> bool:
        with self._cond:
            return self._pending_model is None and self._current is None and not self._ahead

    # -- worker thread ------------------------------------------------------------------
    def _next_job(self) -> tuple[str, Any] | None:
        with self._cond:
            while not self._stop:
                if self._pending_model is not None:
                    spec, self._pending_model = self._pending_model, None
                    return "model", spec
                if self._predictor is not None and self._current is not None:
                    job, self._current = self._current, None
                    return "current", job
                if self._predictor is not None and self._ahead:
                    return "ahead", self._ahead.popleft()
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
            predictor = _build_predictor(spec, device)
            model_id = spec.identity()  # a file's content hash: read here, off the GUI
        except Exception as exc:  # FCNError, OSError, bad files: the old model stays
            self.statusChanged.emit("")
            self.modelFailed.emit(spec, str(exc) or type(exc).__name__)
            return
        self._predictor, self._model_id = predictor, model_id
        self.statusChanged.emit("")
        self.modelReady.emit(ModelInfo(model_id, spec.description, tuple(predictor.class_names),
                                       str(predictor.device), spec))

    def _predict(self, image_id: str, path: Path, ahead: bool) -> None:
        from training.errors import FCNError
        from training.images import read_image

        self.statusChanged.emit(("predicting ahead: " if ahead else "predicting: ") + image_id)
        t0 = time.perf_counter()
        try:
            image = read_image(path)
            pred = self._predictor.predict(image, uncertainty="entropy")
        except (FCNError, OSError, RuntimeError, ValueError) as exc:
            self.statusChanged.emit("")
            self.predictionFailed.emit(image_id, str(self._model_id or ""), str(exc))
            return
        self.statusChanged.emit("")
        assert self._model_id is not None  # set with the predictor
        self.resultReady.emit(InferenceResult(image_id, self._model_id, pred.label,
                                              pred.uncertainty, time.perf_counter() - t0, ahead))
