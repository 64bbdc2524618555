"""Instant learning's idle-time work: labels saved before the model loaded, and
saved images whose features the current backbone has not computed yet.

A project opened with labels from an earlier session (or shipped with some, as
the sample project is) should not have to wait for a full fine-tune before those
labels count: they are training data for the head like any label saved now. And
after a fine-tune the new backbone has no features at all; without help a learn
recomputes only a few per save. Both cost a backbone forward per image, so they
are done one image per :meth:`LabelBacklog.step`, when the owner of the model
(the app's inference worker) has nothing else to do: a request for the shown
image waits for at most one forward.

Not thread-safe, like :class:`~training.instant.InstantLearner`: the thread that
owns the learner owns the backlog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import voc
from .errors import FCNError
from .images import image_size, read_image
from .instant import InstantLearner

# Labels saved earlier that instant learning takes up, the newest first. Their label
# maps stay in memory (a 500x375 label is 190 kB, so 200 are about 37 MB) and their
# features fill about the feature cache's memory (768 MB at VGG16, 500x375).
EARLIER_LABELS = 200
# ... and at most this many bytes of label maps: 200 labels of 12-megapixel photos
# would hold 2.4 GB.
EARLIER_LABEL_BYTES = 256 << 20


@dataclass(frozen=True)
class EarlierLabel:
    """A label saved before the model loaded: where its image and label file are."""

    key: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class Taken:
    """An earlier label that :meth:`LabelBacklog.step` turned into training data."""

    key: str
    image_path: Path
    label: np.ndarray


class LabelBacklog:
    """What instant learning can prepare while nothing else waits, one image a step."""

    def __init__(self, limit: int = EARLIER_LABELS, byte_limit: int = EARLIER_LABEL_BYTES) -> None:
        if limit < 0 or byte_limit < 0:
            raise ValueError("limit and byte_limit must not be negative")
        self.limit = limit
        self.byte_limit = byte_limit
        self._taken_bytes = 0  # label maps taken up so far
        self._earlier: list[EarlierLabel] = []  # newest first
        self._taken: set[str] = set()  # earlier labels tried (taken up, or refused)
        self._checked: set[str] = set()  # saved keys whose features this learner has
        self._problems: list[str] = []

    def set_earlier(self, items: Sequence[EarlierLabel]) -> None:
        """The labels saved before, the newest first; only the first ``limit`` count."""
        self._earlier = list(items[: self.limit])
        self._forget_taken()

    def clear(self) -> None:
        """The project closed: nothing of it is training data any more."""
        self._earlier.clear()
        self._forget_taken()
        self._checked.clear()
        self._problems.clear()

    def new_learner(self, kept_labels: bool) -> None:
        """A new model (and so new features): every saved image is checked anew; with
        ``kept_labels`` False the earlier labels are taken up again too."""
        self._checked.clear()
        if not kept_labels:
            self._forget_taken()

    def _forget_taken(self) -> None:
        self._taken.clear()
        self._taken_bytes = 0

    def pending(self, learner: InstantLearner) -> bool:
        return self._next(learner) is not None

    def _next(self, learner: InstantLearner) -> EarlierLabel | str | None:
        """An earlier label to take up, else the key of a saved image to check."""
        labelled = learner.labelled
        known = set(labelled)
        for item in self._earlier if self._taken_bytes < self.byte_limit else ():
            if item.key not in self._taken and item.key not in known:
                return item
        for key in reversed(labelled):  # the newest first: they matter most
            if key not in self._checked:
                return key
        return None

    def step(self, learner: InstantLearner, reload: Callable[[str], np.ndarray]) -> Taken | None:
        """Do one piece of the work: take up an earlier label (returned, so the owner
        can keep it with the labels saved now), or compute one saved image's
        features (``reload(key)`` reads its image). A label or image that cannot be
        used is left out and kept in :meth:`take_problems`."""
        what = self._next(learner)
        if what is None:
            return None
        if isinstance(what, EarlierLabel):
            self._taken.add(what.key)
            try:
                return self._take(learner, what)
            except (FCNError, OSError, ValueError) as exc:
                self._problems.append(_problem(what.key, exc))
                return None
        self._checked.add(what)
        if not learner.has_features(what):
            try:
                learner.predict(what, reload(what), uncertainty=None)
            except (FCNError, OSError, ValueError) as exc:
                # learn() tries it again (and skips it, saying so, if it still fails)
                self._problems.append(_problem(what, exc))
        return None

    def _take(self, learner: InstantLearner, item: EarlierLabel) -> Taken:
        size = image_size(item.image_path)  # the label must fit its image: checked here
        label = voc.read_label(item.label_path, learner.predictor.num_classes, image_size=size)
        image = None if learner.has_features(item.key) else read_image(item.image_path)
        learner.add_label(item.key, label, image, oldest=True)  # class ids are checked here
        self._checked.add(item.key)
        self._taken_bytes += label.nbytes
        return Taken(item.key, item.image_path, label)

    def take_problems(self) -> list[str]:
        """The problems met since the last call (each names the image), once each."""
        problems, self._problems = self._problems, []
        return problems


def _problem(key: str, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if key in text else f"{key}: {text}"
