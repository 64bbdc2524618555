"""Exception types with messages that name the file and the problem."""

from __future__ import annotations

from pathlib import Path


class FCNError(Exception):
    """Base class for every error the engine reports to a person."""


class DataError(FCNError):
    """A data file (image, label, list, class list) is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str | None = None) -> None:
        if problem is None:
            # One argument: a finished message. This is how PyTorch's DataLoader rebuilds
            # an exception raised in a worker, so the type survives the trip.
            self.path, self.problem = None, str(path)
            super().__init__(self.problem)
            return
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)

    def __reduce__(self):
        return (type(self), (self.path, self.problem) if self.path else (self.problem,))


class ImageReadError(DataError):
    """An image file cannot be decoded (corrupt, truncated, empty, too large, not an image)."""


class LabelError(DataError):
    """A label map is inconsistent with its image or its class list."""


class CheckpointError(FCNError):
    """A checkpoint or weights file cannot be used."""


class WeightsUnavailableError(FCNError):
    """Pretrained weights are not in the cache and cannot be downloaded."""


class TrainingDiverged(FCNError):
    """The loss became non-finite; training stopped and the last good checkpoint was kept."""
