"""The image being edited: pixels, label, prediction and its undo history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtGui import QUndoStack


@dataclass
class ImageSession:
    image_id: str
    rgb: np.ndarray  # H x W x 3 uint8
    label: np.ndarray  # H x W uint8, edited in place by the canvas
    stack: QUndoStack
    has_saved_label: bool  # a label file existed when the image was opened
    prediction: np.ndarray | None = None  # the model's own label, kept apart
    prediction_version: str | None = None
    uncertainty: np.ndarray | None = None
    accepted: bool = False  # Ctrl+S on an unedited prediction accepts it
    notes: dict = field(default_factory=dict)

    @property
    def dirty(self) -> bool:
        """Unsaved corrections by the person (a prediction alone is not a correction)."""
        return not self.stack.isClean()

    @property
    def shape(self) -> tuple[int, int]:
        return self.label.shape[0], self.label.shape[1]
