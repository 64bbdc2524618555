"""What the inference worker sends back to the GUI thread: plain frozen records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...models.model_spec import ModelId, ModelSpec


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
    backbone: str = "vgg16"  # of the loaded network (a version's own, from its checkpoint)

    @property
    def version(self) -> str:
        """What a stored prediction records for this model."""
        return self.id.stored


@dataclass(frozen=True)
class LearnResult:
    """One round of instant learning on the worker."""

    model: ModelInfo  # the model after it (a new identity), or as rolled back to
    images: int  # saved images learned from (0: nothing was learned)
    seconds: float
    skipped: tuple[str, ...] = ()  # saved images whose features were not available
    rolled_back: bool = False

    def describe(self) -> str:
        if self.rolled_back:
            return f"learning undone: back to {self.model.description}"
        if self.images == 0:
            return "nothing learned yet (no saved image with features)"
        return f"learned from {self.images} image{'s' * (self.images != 1)} in {self.seconds:.1f} s"
