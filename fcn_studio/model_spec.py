"""Which model the app runs: a plain description the GUI passes to the worker.

The GUI never touches torch; it hands a ModelSpec to the inference worker,
which turns it into a training.predict.Predictor on its own thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KINDS = ("imagenet", "untrained", "file", "version")


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # imagenet | untrained | file | version
    class_names: tuple[str, ...]
    path: str | None = None  # checkpoint or state dict for "file" / "version"
    version: str = ""  # shown to the user; every prediction carries it
    at_once: bool = False  # for an imported at-once FCN-8s state dict

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}")
        if self.kind in ("file", "version") and not self.path:
            raise ValueError(f"a {self.kind!r} model needs a path")

    @property
    def description(self) -> str:
        if self.kind == "imagenet":
            return "FCN-8s, ImageNet VGG16 backbone, untrained head"
        if self.kind == "untrained":
            return "FCN-8s, untrained (random weights)"
        if self.kind == "version":
            return f"project model {self.version}"
        return f"file {Path(self.path or '').name}"

    @staticmethod
    def imagenet(class_names: list[str] | tuple[str, ...]) -> ModelSpec:
        return ModelSpec("imagenet", tuple(class_names), version="imagenet")

    @staticmethod
    def untrained(class_names: list[str] | tuple[str, ...]) -> ModelSpec:
        return ModelSpec("untrained", tuple(class_names), version="untrained")

    @staticmethod
    def file(path: str | Path, class_names: list[str] | tuple[str, ...], at_once: bool = False,
             version: str | None = None) -> ModelSpec:
        return ModelSpec("file", tuple(class_names), path=str(path),
                         version=version or Path(path).name, at_once=at_once)
