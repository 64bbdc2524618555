"""The labelling session: everything about the images being labelled, without Qt.

One :class:`LabelSession` per image owns its label array, its undo/redo
history of bounding-box deltas, its save state and its prediction (with the
uncertainty and the identity of the model that made them). It is the one
source of truth: the canvas draws what it says, the undo actions call it, the
image list shows its save state. Observers subscribe to its changes; nothing
else edits its label behind its back except a live brush stroke, which is
recorded as one step when it ends.

The history belongs to the image and survives switching away and back. While
an image is away its label array is released (a 12 MP label is 12 MB) unless
it holds edits that are not safely on disk (saving or failed); coming back,
the label read from disk must be the one the history was recorded against
(checked by a digest), else the history is dropped rather than replayed onto
other pixels.

"A new image starts from the prediction": while an image has no saved label and
nothing done in its history, each prediction that arrives becomes its label.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
import numpy.typing as npt

from fcn_studio.labelmap.geometry import Box
from fcn_studio.labelmap.history import Delta, HistoryBudget, delta_between
from fcn_studio.models.model_spec import ModelId

Label = npt.NDArray[np.uint8]

# Save tokens are unique in the process, so an outcome that arrives after its
# project was closed never matches a save of a new session with the same image id.
_save_tokens = itertools.count(1)


class SaveState(Enum):
    CLEAN = "clean"  # opened, nothing changed since
    EDITED = "edited"  # changes not saved
    SAVING = "saving"  # a save of the current label is being written
    FAILED = "failed"  # the last save failed (``LabelSession.failure`` says why)
    SAVED = "saved"  # the current label was written in this session


@dataclass(frozen=True, eq=False)
class Prediction:
    """A model's label for an image, its per-pixel uncertainty and who made it."""

    label: Label  # H x W uint8 class ids
    uncertainty: npt.NDArray[np.float32] | None  # H x W in [0, 1]; None if not known
    model: ModelId | None  # None when a stored prediction names no known model

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.label.shape[0]), int(self.label.shape[1])


@dataclass(frozen=True)
class Change:
    """What changed in a session, for its observers.

    ``label``: pixels in ``bbox`` (None: everywhere); ``live`` says the view
    already shows them (a stroke painted as the mouse moved). ``state``: the
    save state or dirty flag. ``prediction``: a new prediction or uncertainty.
    """

    kind: Literal["label", "state", "prediction"]
    bbox: Box | None = None
    live: bool = False


Observer = Callable[["LabelSession", Change], None]


class EditHistory:
    """Undo/redo of :class:`~fcn_studio.labelmap.history.Delta` steps under a memory budget.

    The label is passed in on every call, so the history is not tied to one array.
    ``clean`` marks the step at which the label equals what is on disk (or what
    the image opened with); None when no step does (after a failed save).
    """

    def __init__(self, budget: HistoryBudget | None = None) -> None:
        self.budget = budget or HistoryBudget()
        self._steps: list[tuple[str, Delta]] = []
        self._index = 0  # steps done
        self._clean: int | None = 0

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def index(self) -> int:
        return self._index

    @property
    def is_clean(self) -> bool:
        return self._clean == self._index

    @property
    def nbytes(self) -> int:
        return sum(d.nbytes for _t, d in self._steps)

    def can_undo(self) -> bool:
        return self._index > 0

    def can_redo(self) -> bool:
        return self._index < len(self._steps)

    def texts(self) -> list[str]:
        return [t for t, _d in self._steps]

    def push(self, delta: Delta, text: str) -> None:
        """Record an edit already applied to the label; the redo tail is dropped."""
        if self._clean is not None and self._clean > self._index:
            self._clean = None  # the saved state was in the dropped tail: unreachable
        del self._steps[self._index:]
        self._steps.append((text, delta))
        self._index += 1
        # Dropped steps stay in the label; they can no longer be undone.
        drop = self.budget.steps_to_drop([d.nbytes for _t, d in self._steps])
        if drop:
            del self._steps[:drop]
            self._index -= drop
            if self._clean is not None:
                self._clean = self._clean - drop if self._clean >= drop else None

    def undo(self, label: Label) -> Box | None:
        if not self.can_undo():
            return None
        self._index -= 1
        delta = self._steps[self._index][1]
        delta.undo(label)
        return delta.bbox

    def redo(self, label: Label) -> Box | None:
        if not self.can_redo():
            return None
        delta = self._steps[self._index][1]
        delta.redo(label)
        self._index += 1
        return delta.bbox

    def mark_clean(self) -> None:
        self._clean = self._index

    def mark_unclean(self) -> None:
        """No step equals what is on disk (a save failed): the image stays unsaved."""
        self._clean = None

    def clear(self) -> None:
        self._steps.clear()
        self._index = 0
        self._clean = 0


def label_digest(label: np.ndarray) -> bytes:
    """A fingerprint of a label map (shape and pixels)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(label.shape).encode())
    h.update(np.ascontiguousarray(label).data)
    return h.digest()


class LabelSession:
    """One image being labelled (see the module docstring)."""

    def __init__(self, image_id: str, budget: HistoryBudget | None = None) -> None:
        self.image_id = image_id
        self.history = EditHistory(budget)
        self.label: Label | None = None
        self.image: np.ndarray | None = None  # H x W x 3 uint8 while shown (display only)
        self.has_saved_label = False
        self.prediction: Prediction | None = None
        self.failure: str | None = None  # why the last save failed
        self._resting = SaveState.CLEAN  # the state when the history is at its clean step
        self._save_token = 0
        self._digest: bytes | None = None  # of the label when it was released
        self._shown = False
        self._observers: list[Observer] = []

    # -- observers -----------------------------------------------------------------
    def subscribe(self, observer: Observer) -> None:
        if observer not in self._observers:
            self._observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def _emit(self, change: Change) -> None:
        for observer in list(self._observers):
            observer(self, change)

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> SaveState:
        if self.failure is not None:
            return SaveState.FAILED
        if not self.history.is_clean:
            return SaveState.EDITED
        return self._resting

    @property
    def dirty(self) -> bool:
        """Changes the person made that are not on disk (a prediction alone is none)."""
        return self.state in (SaveState.EDITED, SaveState.FAILED)

    @property
    def is_open(self) -> bool:
        return self.label is not None

    @property
    def shape(self) -> tuple[int, int]:
        if self.label is None:
            raise RuntimeError(f"{self.image_id} is not open")
        return int(self.label.shape[0]), int(self.label.shape[1])

    @property
    def uncertainty(self) -> npt.NDArray[np.float32] | None:
        return self.prediction.uncertainty if self.prediction is not None else None

    def _label(self) -> Label:
        if self.label is None:
            raise RuntimeError(f"{self.image_id} is not open")
        return self.label

    # -- opening and leaving -----------------------------------------------------------------
    def open(self, label: Label, has_saved_label: bool,
             prediction: Prediction | None = None, image: np.ndarray | None = None) -> None:
        """Attach the label read for this visit (kept edits win over it).

        A label still held (its save is in flight or failed) is kept as it is: it
        is newer than the file. Otherwise the history is kept only if ``label`` is
        the array it was recorded against.
        """
        self._shown = True
        self.image = image
        if prediction is not None and prediction.shape == label.shape:
            self.prediction = prediction
        if self.label is not None:
            return
        label = np.ascontiguousarray(label, dtype=np.uint8)
        if self._digest is not None and self._digest != label_digest(label):
            self.history.clear()
            self._resting = SaveState.CLEAN
        self._digest = None
        self.label = label
        self.has_saved_label = has_saved_label or self.has_saved_label

    def release(self) -> None:
        """The image is no longer shown: free its arrays unless they hold unsaved edits
        (then they go once the save is on disk)."""
        self._shown = False
        self.image = None
        self._free_if_unneeded()

    def _free_if_unneeded(self) -> None:
        if self._shown or self.label is None or self.state in (
                SaveState.SAVING, SaveState.FAILED, SaveState.EDITED):
            return
        self._digest = label_digest(self.label)
        self.label = None
        self.prediction = None

    # -- editing -----------------------------------------------------------------------------
    def record(self, delta: Delta, text: str = "Edit") -> None:
        """An edit already applied to the label (a stroke, fill or polygon): one step."""
        self._label()
        was = self.state
        self.history.push(delta, text)
        self._emit(Change("label", delta.bbox, live=True))
        self._state_changed(was)

    def replace(self, new_label: np.ndarray, text: str = "Replace label") -> bool:
        """Make ``new_label`` the label as one undoable step; False if nothing changes."""
        label = self._label()
        new_label = np.asarray(new_label)
        if new_label.shape != label.shape:
            raise ValueError(f"new label is {new_label.shape}, the label is {label.shape}")
        delta = delta_between(label, new_label.astype(np.uint8, copy=False))
        if delta is None:
            return False
        delta.redo(label)
        was = self.state
        self.history.push(delta, text)
        self._emit(Change("label", delta.bbox))
        self._state_changed(was)
        return True

    def undo(self) -> Box | None:
        return self._step(self.history.undo)

    def redo(self) -> Box | None:
        return self._step(self.history.redo)

    def _step(self, move: Callable[[Label], Box | None]) -> Box | None:
        label = self._label()
        was = self.state
        box = move(label)
        if box is not None:
            self._emit(Change("label", box))
            self._state_changed(was)
        return box

    def _state_changed(self, was: SaveState) -> None:
        if self.state != was:
            self._emit(Change("state"))

    # -- predictions ---------------------------------------------------------------------------
    def starts_from_prediction(self) -> bool:
        """Whether the label still follows the model: no saved label, nothing done."""
        return (not self.has_saved_label and self.history.index == 0
                and self.state is SaveState.CLEAN)

    def offer_prediction(self, prediction: Prediction, auto_apply: bool = True) -> bool:
        """Take a new prediction; it becomes the label while the label follows the model.

        Returns whether the label changed. Undone steps recorded against the old
        prediction are dropped then: they cannot be redone onto other pixels.
        """
        label = self._label()
        if prediction.shape != label.shape:
            return False
        self.prediction = prediction
        applied = auto_apply and self.starts_from_prediction()
        if applied:
            label[...] = prediction.label
            self.history.clear()
            self._emit(Change("label", None))
        self._emit(Change("prediction"))
        return applied

    # -- saving ----------------------------------------------------------------------------------
    def begin_save(self, force: bool = False) -> tuple[int, Label] | None:
        """A copy of the label to write and a token for the outcome, or None if there is
        nothing to save (``force``: save an unedited label too, e.g. an accepted prediction).
        The person keeps editing while the copy is written."""
        if self.label is None or not (self.dirty or force):
            return None
        was = self.state
        self._save_token = next(_save_tokens)
        self.failure = None
        self.history.mark_clean()
        self._resting = SaveState.SAVING
        self._state_changed(was)
        return self._save_token, self.label.copy()

    def save_finished(self, token: int) -> None:
        """The save ``token`` is on disk (only the newest save decides the state)."""
        if token != self._save_token:
            return
        was = self.state
        self.has_saved_label = True
        self._resting = SaveState.SAVED
        self._state_changed(was)
        self._free_if_unneeded()

    def save_failed(self, token: int, reason: str) -> None:
        """The save ``token`` failed: the edit stays in memory and the image unsaved."""
        if token != self._save_token:
            return
        was = self.state
        self.failure = reason
        self.history.mark_unclean()
        self._resting = SaveState.EDITED
        self._state_changed(was)


class SessionStore:
    """The sessions of one project's images, by id.

    Sessions of images not shown keep only their history (their arrays are
    released), and only the ``keep`` most recently shown ones: older histories
    are dropped, except those of images whose edits are not on disk yet.
    """

    def __init__(self, keep: int = 64, budget: HistoryBudget | None = None) -> None:
        self._keep = max(1, keep)
        self._budget = budget
        self._sessions: OrderedDict[str, LabelSession] = OrderedDict()

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._sessions

    def __iter__(self) -> Iterator[LabelSession]:
        return iter(list(self._sessions.values()))

    def get(self, image_id: str) -> LabelSession:
        """The session of ``image_id``, made on first use; it becomes the most recent."""
        s = self._sessions.get(image_id)
        if s is None:
            s = self._sessions[image_id] = LabelSession(image_id, self._budget)
        self._sessions.move_to_end(image_id)
        self._trim()
        return s

    def peek(self, image_id: str) -> LabelSession | None:
        return self._sessions.get(image_id)

    def forget(self, image_id: str) -> None:
        """Drop an image's session (its label file was rewritten: old steps are void)."""
        self._sessions.pop(image_id, None)

    def clear(self) -> None:
        self._sessions.clear()

    def failed(self) -> list[str]:
        return sorted(i for i, s in self._sessions.items() if s.state is SaveState.FAILED)

    def unsaved(self) -> list[str]:
        return sorted(i for i, s in self._sessions.items()
                      if s.dirty or s.state is SaveState.SAVING)

    def _trim(self) -> None:
        excess = len(self._sessions) - self._keep
        for image_id in list(self._sessions):
            if excess <= 0:
                break
            s = self._sessions[image_id]
            if s.is_open or s.dirty or s.state is SaveState.SAVING:
                continue
            del self._sessions[image_id]
            excess -= 1
