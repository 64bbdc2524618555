"""Self-describing FCN Studio checkpoints, and loading any weights file we accept.

A checkpoint is a plain dict of tensors and JSON-like values, so it loads with
``torch.load(..., weights_only=True)``: nothing is unpickled but data. It holds
everything needed to use the model without outside knowledge (ARCHITECTURE.md, "Checkpoints"):
architecture, backbone, alignment, class names, palette, input normalisation,
training config, metrics, parent version and creation time.

Also accepted everywhere a checkpoint is: a pytorch-fcn / Caffe-converted FCN
state dict (recognised by its keys), which runs in the reference alignment with
Caffe (BGR, mean-subtracted) input.
"""

from __future__ import annotations

import datetime as _dt
import io
import pickle
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import preprocess
from .atomic import atomic_save
from .errors import CheckpointError
from .model import FCN, ModelConfig, build_model, reinit_score_layers
from .palette import VOC_CLASSES, voc_colormap
from .preprocess import Normalization

FORMAT = "fcn-studio-checkpoint"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A model ready to run, with what it needs to interpret its input and output."""

    model: FCN
    class_names: list[str]
    normalization: Normalization
    palette: np.ndarray  # 256 x 3 uint8, display colours
    meta: dict[str, Any] = field(default_factory=dict)  # the rest of the checkpoint's metadata
    source: str = ""  # "checkpoint" or "pytorch-fcn"

    @property
    def config(self) -> ModelConfig:
        return self.model.config


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def palette_table(colors: Sequence[Sequence[int]] | None, num_classes: int) -> np.ndarray:
    """A 256-entry table: custom colours for the classes given, the VOC colormap elsewhere."""
    table = voc_colormap().copy()
    if colors is not None:
        for i, c in enumerate(list(colors)[:num_classes]):
            table[i] = np.asarray(c, dtype=np.uint8)[:3]
    return table


def make_checkpoint(
    model: FCN,
    class_names: Sequence[str],
    normalization: Normalization,
    *,
    palette: np.ndarray | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent: str | None = None,
    extra: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
) -> dict[str, Any]:
    """Build the checkpoint dict for ``model`` (the bare model, not a DDP wrapper).

    ``weights_dtype="float16"`` stores the weights at half the size; loading copies them
    back into a float32 model. BatchNorm statistics stay float32 (a variance near 1e-5
    has few digits left in float16, and they are a tiny share of the bytes).
    """
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(
            f"{len(class_names)} class names given for a model with "
            f"{model.config.num_classes} outputs"
        )
    table = palette if palette is not None else voc_colormap()
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be float32 or float16, not {weights_dtype!r}")
    state = {k: _stored(k, v.detach().cpu(), weights_dtype) for k, v in model.state_dict().items()}
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "class_names": list(class_names),
        "palette": np.asarray(table[: len(class_names)], dtype=np.uint8).tolist(),
        "normalization": normalization.to_dict(),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "parent": parent,
        "created": now_iso(),
        "weights_dtype": weights_dtype,
        "state_dict": state,
    }
    if extra:
        ckpt.update(extra)
    return ckpt


def _stored(name: str, value: Tensor, dtype: str) -> Tensor:
    if dtype == "float16" and value.is_floating_point() and not name.endswith(
            ("running_mean", "running_var")):
        return value.to(torch.float16)
    return value


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: a crash or a full disk leaves the previous file intact."""
    atomic_save(path, lambda f: torch.save(checkpoint, f))


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0].rstrip(".")[:200]


def describe_load_failure(exc: BaseException) -> str:
    """What really went wrong in ``torch.load(..., weights_only=True)``, in words.

    PyTorch words every unpickling failure as a weights_only refusal and advises
    turning weights_only off, even for random bytes. That advice must never reach a
    person (it is how a malicious file gets executed), so its text is never passed on.
    """
    if isinstance(exc, OSError) and not isinstance(exc, io.UnsupportedOperation):
        return f"cannot read the file ({exc.strerror or exc})"
    text = str(exc)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked or "Unsupported global" in text or "unsupported global" in text:
        name = f" ({blocked.group(1)})" if blocked else ""
        return ("refused: it holds Python objects other than tensors and plain values"
                f"{name}; such files are never loaded, because loading them could run code")
    # Random bytes fed to the unpickler fail in whatever way the bytes happen to steer it
    # (an index past a stack, an unknown opcode, a bad unicode escape...); all of them
    # mean the same thing to the person.
    if isinstance(exc, pickle.UnpicklingError | EOFError | ValueError | TypeError | LookupError
                  | AttributeError | ArithmeticError | MemoryError):
        return "not a PyTorch weights file (unreadable data: corrupt, or not written by torch.save)"
    if isinstance(exc, zipfile.BadZipFile | RuntimeError | io.UnsupportedOperation):
        return f"not a readable PyTorch file (truncated or corrupt: {_first_sentence(exc)})"
    return f"not a readable PyTorch weights file ({type(exc).__name__})"


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; every failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: {describe_load_failure(exc)}") from None
    if size == 0:
        raise CheckpointError(f"{path}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols of files it then refuses anyway.
            warnings.simplefilter("ignore", UserWarning)
            # Memory-mapped where the file allows it (torch's zip format): the weights are
            # read once, when copied into the model, and metadata-only reads (the Models
            # dock) touch a few pages instead of 538 MB.
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message naming the file
        raise CheckpointError(f"{path}: {describe_load_failure(exc)}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    return obj


def is_studio_checkpoint(obj: dict[str, Any]) -> bool:
    return obj.get("format") == FORMAT


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata without its weights or optimizer state."""
    obj = read_checkpoint_file(path)
    if not is_studio_checkpoint(obj):
        raise CheckpointError(f"{path}: not an FCN Studio checkpoint")
    return {k: v for k, v in obj.items() if k not in ("state_dict", "optimizer", "scheduler")}


def _load_studio(path: Path, obj: dict[str, Any]) -> LoadedModel:
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this FCN Studio "
            f"understands ({FORMAT_VERSION}); update FCN Studio"
        )
    try:
        config = ModelConfig.from_dict(obj["model"])
        class_names = [str(n) for n in obj["class_names"]]
        norm = Normalization.from_dict(obj["normalization"])
        state = obj["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: incomplete checkpoint metadata ({exc})") from None
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the recorded architecture: {exc}") from None
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "optimizer", "scheduler")}
    return LoadedModel(
        model=model,
        class_names=class_names,
        normalization=norm,
        palette=palette_table(obj.get("palette"), config.num_classes),
        meta=meta,
        source="checkpoint",
    )


def _load_pytorch_fcn(
    path: Path, state: dict[str, Any], classes: Sequence[str] | None, at_once: bool
) -> LoadedModel:
    from .weights import model_from_pytorch_fcn

    try:
        model = model_from_pytorch_fcn(state, at_once=at_once)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    n = model.config.num_classes
    names = list(classes) if classes is not None else (list(VOC_CLASSES) if n == 21 else None)
    if names is None:
        raise CheckpointError(
            f"{path}: this FCN has {n} classes; name them with --classes FILE "
            "(the 21 VOC classes are only the default for 21-class models)"
        )
    if len(names) != n:
        raise CheckpointError(f"{path}: the model has {n} classes but {len(names)} class names were given")
    return LoadedModel(
        model=model,
        class_names=names,
        normalization=preprocess.CAFFE,
        palette=palette_table(None, n),
        meta={"model": model.config.to_dict(), "imported_from": str(path), "created": now_iso()},
        source="pytorch-fcn",
    )


def load_model(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    at_once: bool = False,
) -> LoadedModel:
    """Load an FCN Studio checkpoint or a pytorch-fcn / Caffe-converted state dict (on CPU).

    ``classes`` and ``at_once`` only matter for imported state dicts, which carry
    neither their class names nor whether they were trained at once.
    """
    from .weights import is_pytorch_fcn_state_dict

    path = Path(path)
    obj = read_checkpoint_file(path)
    if is_studio_checkpoint(obj):
        return _load_studio(path, obj)
    # pytorch-fcn's own training checkpoints wrap the weights in 'model_state_dict'.
    state = obj.get("model_state_dict", obj)
    if isinstance(state, dict) and is_pytorch_fcn_state_dict(state):
        return _load_pytorch_fcn(path, state, classes, at_once)
    keys = ", ".join(list(obj)[:5])
    raise CheckpointError(
        f"{path}: neither an FCN Studio checkpoint nor a pytorch-fcn FCN state dict "
        f"(first keys: {keys})"
    )


def adapt_classes(loaded: LoadedModel, class_names: Sequence[str], reinit: bool, path: str) -> LoadedModel:
    """Make a loaded model fit a dataset's classes, or refuse with both lists named.

    With ``reinit`` the score and upsampling layers start afresh for the new class
    list while the backbone keeps its weights.
    """
    if list(loaded.class_names) == list(class_names):
        return loaded
    if not reinit:
        raise CheckpointError(
            f"{path}: the model's classes {loaded.class_names} differ from the dataset's "
            f"{list(class_names)}; pass --reinit-classes to start new score layers for the "
            "dataset's classes"
        )
    model = reinit_score_layers(loaded.model, len(class_names))
    return LoadedModel(
        model=model,
        class_names=list(class_names),
        normalization=loaded.normalization,
        palette=palette_table(None, len(class_names)),
        meta={**loaded.meta, "reinitialised_classes_from": list(loaded.class_names)},
        source=loaded.source,
    )
