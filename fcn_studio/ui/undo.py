"""Undo commands for label edits: one small ``QUndoCommand`` per edit.

As in orange-canvas-core, ``redo``/``undo`` only call the model (a
:class:`fcn_studio.history.Delta` holding the changed bounding box) and then tell
the view which box changed; the view redraws just that box. Nothing here copies
the whole label map, except :class:`ReplaceLabelCommand`, whose edit is the
whole map by nature (and even it keeps only the box that actually differs).

Qt 6's ``QUndoStack.push()`` calls ``redo()`` at once. A brush stroke, fill or
polygon is applied live before it is pushed, so :class:`EditCommand` skips the
effect of its first ``redo`` (it only announces the change) instead of painting
the stroke a second time.
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtGui import QUndoCommand, QUndoStack

from fcn_studio.history import Delta, HistoryBudget, delta_between

Box = tuple[int, int, int, int]

DEFAULT_BUDGET: Final = HistoryBudget()
"""200 steps and 512 MiB; compact deltas make the step count the usual bound."""


class DeltaLike(Protocol):
    """What a command needs from an edit: ``fcn_studio.history.Delta`` satisfies it."""

    @property
    def bbox(self) -> Box: ...

    @property
    def nbytes(self) -> int: ...

    def undo(self, label: np.ndarray) -> None: ...

    def redo(self, label: np.ndarray) -> None: ...


class LabelView(Protocol):
    """The view a command reports to (the canvas)."""

    def label_changed(self, label: np.ndarray, bbox: Box, refresh: bool = True) -> None: ...


class EditCommand(QUndoCommand):
    """One undoable edit of one label map, holding only its bounding-box delta.

    ``applied`` says the edit is already in ``label`` (a live stroke): then the
    first ``redo``, which ``QUndoStack.push`` makes at once, only announces it.
    """

    def __init__(
        self, view: LabelView, label: np.ndarray, delta: DeltaLike, text: str = "Edit",
        applied: bool = True,
    ) -> None:
        super().__init__(text)
        self._view = view
        # The command keeps its own label: with one stack per image the canvas may
        # show another image by the time this is undone.
        self._label = label
        self._delta: DeltaLike | None = delta
        self._skip_first_redo = applied

    @property
    def bbox(self) -> Box | None:
        """The box this edit changes (None once dropped by the memory budget)."""
        return None if self._delta is None else tuple(self._delta.bbox)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Memory held by the delta; what the undo byte budget counts."""
        return 0 if self._delta is None else int(self._delta.nbytes)

    def drop(self) -> None:
        """Free the delta and mark the command obsolete so Qt discards it on undo.

        Used by :class:`UndoBudget` on the oldest done edits: the edit stays in the
        label, it just can no longer be undone.
        """
        self._delta = None
        self.setObsolete(True)

    def redo(self) -> None:  # noqa: D102 - Qt override
        if self._delta is None:
            return
        if self._skip_first_redo:
            self._skip_first_redo = False
            self._view.label_changed(self._label, self._delta.bbox, refresh=False)
            return
        self._delta.redo(self._label)
        self._view.label_changed(self._label, self._delta.bbox)

    def undo(self) -> None:  # noqa: D102 - Qt override
        if self._delta is None:
            return
        self._delta.undo(self._label)
        self._view.label_changed(self._label, self._delta.bbox)


class ReplaceLabelCommand(EditCommand):
    """Replace the whole label map (e.g. "use the prediction as the starting label").

    Not applied live: pushing it applies it. Only the changed pixels of the box
    where the maps differ are stored (:func:`fcn_studio.history.delta_between`);
    build it with :meth:`create`, which gives None when there is nothing to change.
    """

    def __init__(self, view: LabelView, label: np.ndarray, delta: Delta, text: str) -> None:
        super().__init__(view, label, delta, text, applied=False)

    @classmethod
    def create(
        cls, view: LabelView, label: np.ndarray, new_label: np.ndarray,
        text: str = "Replace label",
    ) -> ReplaceLabelCommand | None:
        """A command turning ``label`` into ``new_label`` on push, or None if they are equal."""
        new_label = np.asarray(new_label)
        if new_label.shape != label.shape:
            raise ValueError(f"new label is {new_label.shape}, the label is {label.shape}")
        delta = delta_between(label, new_label.astype(np.uint8, copy=False))
        return None if delta is None else cls(view, label, delta, text)


class UndoBudget(QObject):
    """Bounds the bytes held by a stack's edits by dropping the oldest done ones.

    ``QUndoStack`` only limits the number of steps; one step can be a stroke across
    a 12-megapixel image, so memory needs its own bound (the policy is the core's
    :class:`~fcn_studio.history.HistoryBudget`). Only done commands below the
    current index are dropped (a dropped redo step would corrupt the label), and
    never the newest one.
    """

    def __init__(self, stack: QUndoStack, budget: HistoryBudget) -> None:
        super().__init__(stack)
        self._stack = stack
        self.budget = budget
        stack.indexChanged.connect(self.enforce)

    def sizes(self) -> list[int]:
        """Bytes held by each command on the stack, oldest first."""
        return [_nbytes(self._stack.command(i)) for i in range(self._stack.count())]

    def enforce(self, *_: object) -> None:
        """Drop the oldest done edits until the stack fits the budget."""
        if not shiboken6.isValid(self._stack):  # the stack clears itself while being deleted
            return
        sizes = self.sizes()
        drop = min(self.budget.steps_to_drop(sizes), self._stack.index())
        for i in range(drop):
            cmd = self._stack.command(i)
            if isinstance(cmd, EditCommand) and sizes[i]:
                cmd.drop()


def _nbytes(cmd: QUndoCommand | None) -> int:
    return cmd.nbytes if isinstance(cmd, EditCommand) else 0


def configure_undo_stack(
    stack: QUndoStack, budget: HistoryBudget = DEFAULT_BUDGET,
) -> UndoBudget:
    """Give ``stack`` ``budget.max_steps`` undo steps and a byte bound; returns the guard.

    Call it on a fresh stack: Qt accepts an undo limit only while the stack is
    empty (on a used stack only the byte bound applies).
    """
    if stack.count() == 0:
        stack.setUndoLimit(budget.max_steps)
    return UndoBudget(stack, budget)
