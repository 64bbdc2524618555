"""Which model the app runs, and which model made a prediction.

The GUI never touches torch; it hands a :class:`ModelSpec` to the inference
worker, which turns it into a ``training.predict.Predictor`` on its own thread
and reports the loaded model's :class:`ModelId`. Every prediction carries that
identity, so a result is matched to the model that made it, never to a file name
(two different ``best.pt`` files are two models).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("imagenet", "untrained", "file", "version")

# The engine's backbones (training.model.BACKBONES; a test keeps the two lists equal),
# named for people, with what each is for.
BACKBONE_LABELS: dict[str, str] = {
    "vgg16": "VGG16",
    "vgg16_bn": "VGG16-BN",
    "alexnet": "AlexNet",
    "googlenet": "GoogLeNet",
    "mobilenet_v3_large": "MobileNetV3-Large",
    "resnet50": "ResNet50",
}
BACKBONE_NOTES: dict[str, str] = {
    "vgg16": "the paper's FCN-8s; the best choice on a GPU, slow on a CPU (538 MB)",
    "vgg16_bn": "VGG16 with BatchNorm: trains better from scratch",
    "alexnet": "the paper's FCN-AlexNet: 4x faster than VGG16, less accurate",
    "googlenet": "the paper's FCN-GoogLeNet: 7x faster than VGG16 on a CPU, 23 MB",
    "mobilenet_v3_large": "about 20x faster than VGG16 on a CPU, 13 MB: the laptop choice",
    "resnet50": "4x faster than VGG16 on a CPU, 95 MB",
}
DEFAULT_BACKBONE = "vgg16"
IMAGENET_DOWNLOAD_MB: dict[str, int] = {  # torchvision's weights files, for the messages
    "vgg16": 528, "vgg16_bn": 528, "alexnet": 233, "googlenet": 50,
    "mobilenet_v3_large": 21, "resnet50": 98,
}


def likely_accelerator(device: str) -> bool:
    """Whether models will run on a GPU, known before torch is imported (the window
    picks its defaults first): a named device says so; "auto" looks for an NVIDIA
    driver or an Apple-silicon Mac. Only a default hangs on it."""
    if device != "auto":
        return device.startswith(("cuda", "mps"))
    import platform
    import shutil
    import sys

    return (Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None
            or (sys.platform == "darwin" and platform.machine() == "arm64"))


def recommended_backbone(accelerator: bool) -> str:
    """The backbone of a new model: VGG16 where there is a GPU, MobileNetV3-Large on a
    CPU (predicting and fine-tuning about 20x faster there)."""
    return DEFAULT_BACKBONE if accelerator else "mobilenet_v3_large"

_HASH_CHUNK = 4 * 2**20


@dataclass(frozen=True)
class ModelId:
    """The identity of one model's weights.

    * ``version``: a project's model version; ``key`` is its id (``v002``) and
      ``scope`` the project's models folder, so ``v001`` of two projects differ.
    * ``file``: ``key`` is the SHA-256 of the file's bytes.
    * ``imagenet`` / ``untrained``: a new FCN-8s; ``key`` is a digest of its class
      list (its score layers start at zero, so two such models predict alike).

    ``str()`` is what a stored prediction records (state.json's ``model_version``);
    a version keeps its plain id there, as before.
    """

    kind: str
    key: str
    scope: str = field(default="", compare=True)
    # Instant learning retrains the head of the loaded model: the same backbone with
    # a new head is another model. "" for the weights as loaded.
    head: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}")
        if not self.key:
            raise ValueError("a model id needs a key")

    def __str__(self) -> str:
        base = self.key if self.kind == "version" else f"{self.kind}:{self.key}"
        return f"{base}+{self.head}" if self.head else base

    def with_head(self, head: str) -> ModelId:
        """This model after instant learning gave it the head ``head`` ("" = as loaded)."""
        return ModelId(self.kind, self.key, self.scope, head)

    @property
    def stored(self) -> str:
        """The text a stored prediction records for this model."""
        return str(self)

    @staticmethod
    def of_version(version_id: str, models_dir: str | Path | None = None) -> ModelId:
        return ModelId("version", version_id, str(models_dir or ""))

    @staticmethod
    def of_classes(kind: str, class_names: tuple[str, ...] | list[str],
                   backbone: str = DEFAULT_BACKBONE) -> ModelId:
        # VGG16's digest is the class list alone, as before backbones could be chosen:
        # predictions and heads stored by older versions keep their model.
        text = "\n".join(class_names) + ("" if backbone == DEFAULT_BACKBONE else f"\n@{backbone}")
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return ModelId(kind, digest)

    @staticmethod
    def of_file(path: str | Path) -> ModelId:
        """The content hash of a weights file (reads the whole file: call it off the GUI
        thread; the inference worker does)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        return ModelId("file", h.hexdigest())


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # imagenet | untrained | file | version
    class_names: tuple[str, ...]
    path: str | None = None  # checkpoint or state dict for "file" / "version"
    version: str = ""  # a version's id; a short name shown to the user otherwise
    at_once: bool = False  # for an imported at-once FCN-8s state dict
    scope: str = ""  # a version's models folder (part of its identity)
    backbone: str = DEFAULT_BACKBONE  # of a new model (imagenet, untrained)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}")
        if self.backbone not in BACKBONE_LABELS:
            raise ValueError(f"unknown backbone {self.backbone!r}; one of "
                             f"{', '.join(BACKBONE_LABELS)}")
        if self.kind in ("file", "version") and not self.path:
            raise ValueError(f"a {self.kind!r} model needs a path")
        if self.kind == "version" and not self.version:
            raise ValueError("a version model needs its version id")

    @property
    def description(self) -> str:
        net = BACKBONE_LABELS[self.backbone]
        if self.kind == "imagenet":
            return f"FCN-8s, ImageNet {net} backbone, untrained head"
        if self.kind == "untrained":
            return f"FCN-8s/{net}, untrained (random weights)"
        if self.kind == "version":
            return f"project model {self.version}"
        return f"file {Path(self.path or '').name}"

    def identity(self) -> ModelId:
        """The id of the model this spec loads. For a file this hashes its bytes:
        call it where that may take a while (the worker thread)."""
        if self.kind == "version":
            return ModelId.of_version(self.version, self.scope)
        if self.kind == "file":
            return ModelId.of_file(self.path or "")
        return ModelId.of_classes(self.kind, self.class_names, self.backbone)

    @property
    def is_new(self) -> bool:
        """A new FCN (ImageNet backbone or random weights), not trained weights."""
        return self.kind in ("imagenet", "untrained")

    @staticmethod
    def imagenet(class_names: list[str] | tuple[str, ...],
                 backbone: str = DEFAULT_BACKBONE) -> ModelSpec:
        return ModelSpec("imagenet", tuple(class_names), version="imagenet", backbone=backbone)

    @staticmethod
    def untrained(class_names: list[str] | tuple[str, ...],
                  backbone: str = DEFAULT_BACKBONE) -> ModelSpec:
        return ModelSpec("untrained", tuple(class_names), version="untrained", backbone=backbone)

    @staticmethod
    def of_version(version_id: str, checkpoint: str | Path,
                   class_names: list[str] | tuple[str, ...],
                   models_dir: str | Path | None = None) -> ModelSpec:
        return ModelSpec("version", tuple(class_names), path=str(checkpoint),
                         version=version_id, scope=str(models_dir or ""))

    @staticmethod
    def file(path: str | Path, class_names: list[str] | tuple[str, ...], at_once: bool = False,
             version: str | None = None) -> ModelSpec:
        return ModelSpec("file", tuple(class_names), path=str(path),
                         version=version or Path(path).name, at_once=at_once)
