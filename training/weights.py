"""Pretrained weights: torchvision's ImageNet backbones, and pytorch-fcn / Caffe FCN state dicts.

The ImageNet download goes through torchvision's weights API (hash-checked, with a
progress bar, cached in ``torch.hub.get_dir()/checkpoints``), one weights entry per
backbone (``training.backbones``); each entry's own normalisation goes into the
model's checkpoint. Offline, the error says which file to fetch and where to put
it, so a person can do it by hand. torchvision's state dicts map onto our layers
by a renaming of module prefixes (``Backbone.imagenet_pairs``); the classifiers
that the paper convolutionalises (VGG16's and AlexNet's fc6/fc7) are reshaped.
Models imported from pytorch-fcn expect ``preprocess.CAFFE`` input.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor

from .backbones import get_backbone
from .errors import CheckpointError, WeightsUnavailableError
from .model import FCN, ModelConfig, build_model
from .preprocess import Normalization

_FCN_KEYS = ("conv1_1.weight", "fc6.weight", "score_fr.weight")


def _weights_entry(backbone: str) -> Any:
    # torchvision is slow to import and only needed here, so it loads on first use.
    import torchvision.models

    enum_name, member = get_backbone(backbone).weights.split(".")
    return getattr(getattr(torchvision.models, enum_name), member)


def imagenet_normalization(backbone: str = "vgg16") -> Normalization:
    """The input normalisation the backbone's ImageNet weights entry expects.

    From the entry's own ``transforms()``; GoogLeNet's torchvision model further
    maps that input to ``(x - 0.5) / 0.5`` (``transform_input``, set for its
    ImageNet weights), which is what its normalisation here says directly.
    """
    transforms = _weights_entry(backbone).transforms()
    mean = tuple(float(v) for v in transforms.mean)
    std = tuple(float(v) for v in transforms.std)
    if backbone == "googlenet":
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return Normalization("RGB", 1.0 / 255.0, mean, std)  # type: ignore[arg-type]


def imagenet_weights_info(backbone: str = "vgg16") -> dict[str, Any]:
    """Where the ImageNet weights come from and go: for the app's download dialog.

    Keys: ``url``, ``filename``, ``folder``, ``path`` (folder/filename), ``size_mb``
    (approximate) and ``cached`` (the file is already there).
    """
    entry = _weights_entry(backbone)
    filename = os.path.basename(urlparse(entry.url).path)  # the name torch.hub saves under
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, filename)
    size_mb = entry.meta.get("_file_size") or entry.meta["num_params"] * 4 / 1e6
    return {
        "url": entry.url,
        "filename": filename,
        "folder": folder,
        "path": path,
        "size_mb": round(float(size_mb), 1),
        "cached": os.path.isfile(path),
    }


def _unavailable(backbone: str, info: dict[str, Any], was_cached: bool, reason: str) -> str:
    where = (
        f"download {info['url']} (about {info['size_mb']:.0f} MB) and put it, named "
        f"{info['filename']}, into the folder {info['folder']}"
    )
    if was_cached:
        return (
            f"The ImageNet {backbone} weights file {info['path']} cannot be used ({reason}); "
            f"it is probably incomplete or corrupt. Delete it and try again, or {where}."
        )
    return (
        f"The ImageNet {backbone} weights could not be downloaded ({reason}). "
        f"Without internet access on this computer, {where}; it will be found there."
    )


def imagenet_state(backbone: str = "vgg16", progress: bool = True) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict for ``backbone``, downloaded once and cached.

    Raises WeightsUnavailableError, naming the file, the folder and the URL, when
    the file can neither be downloaded nor read from the cache.
    """
    entry = _weights_entry(backbone)
    info = imagenet_weights_info(backbone)
    try:
        # torch.hub announces downloads on stdout, but a training child's stdout
        # carries one JSON event per line: send the notice to stderr with the bar.
        with contextlib.redirect_stdout(sys.stderr):
            state = entry.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except Exception as exc:  # network, disk, hash, unpickling: all end the same way for a person
        # The first line says enough (torch.load's own messages run to paragraphs).
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise WeightsUnavailableError(_unavailable(backbone, info, info["cached"], reason)) from exc
    key = get_backbone(backbone).first_key
    if not isinstance(state, dict) or not isinstance(state.get(key), Tensor):
        raise WeightsUnavailableError(
            _unavailable(backbone, info, True, f"it holds no {backbone} {key}")
        )
    return state


imagenet_vgg16_state = imagenet_state  # the name from when VGG16 was the only backbone


def _imagenet_plan(model: FCN, tv_state: Mapping[str, Tensor]) -> tuple[list[tuple[str, Tensor]],
                                                                        list[str]]:
    """(our state key, torchvision tensor) for every backbone tensor, and the missing keys."""
    spec = get_backbone(model.config.backbone)
    dst = model.state_dict()
    plan: list[tuple[str, Tensor]] = []
    missing: list[str] = []
    for ours, theirs in spec.imagenet_pairs(model.config.fc_channels):
        for key in (k for k in dst if k.startswith(ours + ".")):
            src = theirs + key[len(ours):]
            if src not in tv_state:
                if not key.endswith("num_batches_tracked"):
                    missing.append(src)  # older files lack the counter; BatchNorm needs it not
                continue
            value = tv_state[src]
            target = dst[key]
            if not isinstance(value, Tensor) or value.numel() != target.numel():
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise CheckpointError(
                    f"ImageNet weights: {src} has shape {shape}, but {key} "
                    f"needs {tuple(target.shape)}"
                )
            if value.is_floating_point() and not torch.isfinite(value).all():
                hint = (
                    " (torchvision's IMAGENET1K_FEATURES weights carry no classifier; "
                    "use IMAGENET1K_V1)" if src.startswith("classifier") else ""
                )
                raise CheckpointError(f"ImageNet weights: {src} holds NaN or inf{hint}")
            plan.append((key, value))
    return plan, missing


def init_from_imagenet(model: FCN, tv_state: Mapping[str, Tensor]) -> None:
    """Copy torchvision's ImageNet weights of ``model``'s backbone into it.

    VGG16's and AlexNet's fully connected layers become convolutions: VGG16's
    ``classifier.0`` viewed as (4096, 512, 7, 7) and ``classifier.3`` as (4096,
    4096, 1, 1); AlexNet's ``classifier.1`` as (4096, 256, 6, 6) and ``classifier.4``
    as (4096, 4096, 1, 1). Everything is checked before anything is copied, so a
    refused state leaves ``model`` as it was. A model with a narrower head
    (``fc_channels`` other than 4096) takes the convolutions only; its fc6/fc7
    keep their fresh initialisation. The head (score layers) is never touched.
    """
    backbone = model.config.backbone
    plan, missing = _imagenet_plan(model, tv_state)
    if missing:
        if backbone in ("vgg16", "vgg16_bn"):
            other = "vgg16" if backbone == "vgg16_bn" else "vgg16_bn"
            hint = f"are they the {other} weights?"
        else:
            hint = "are they another backbone's weights?"
        raise CheckpointError(f"ImageNet weights for {backbone} lack {_names(missing)} ({hint})")
    dst = model.state_dict()
    with torch.no_grad():
        for name, value in plan:
            dst[name].copy_(value.reshape(dst[name].shape))


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _unwrap(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Drop the ``module.`` prefix that DataParallel / DDP wrappers add to every key."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def is_pytorch_fcn_state_dict(state: Any) -> bool:
    """True for a pytorch-fcn (or Caffe-converted) FCN-32s/16s/8s state dict."""
    if not isinstance(state, Mapping):
        return False
    state = _unwrap(state)
    return all(isinstance(state.get(k), Tensor) for k in _FCN_KEYS)


def detect_pytorch_fcn_arch(state: Mapping[str, Any]) -> str:
    """``"fcn32s"``, ``"fcn16s"`` or ``"fcn8s"``, from the skip layers the state dict has."""
    if not is_pytorch_fcn_state_dict(state):
        raise CheckpointError(f"not an FCN state dict: it lacks one of {', '.join(_FCN_KEYS)}")
    state = _unwrap(state)
    if "score_pool3.weight" in state:
        return "fcn8s"
    if "score_pool4.weight" in state:
        return "fcn16s"
    return "fcn32s"


def model_from_pytorch_fcn(state: Mapping[str, Any], at_once: bool = False) -> FCN:
    """Rebuild a pytorch-fcn model in ``reference`` alignment and load ``state`` strictly.

    ``at_once`` marks an FCN-8s trained at once (its skips are damped; the weights
    alone do not tell). Missing or unexpected keys and wrong shapes raise
    CheckpointError naming them.
    """
    arch = detect_pytorch_fcn_arch(state)
    state = _unwrap(state)
    if at_once:
        if arch != "fcn8s":
            raise CheckpointError(f"'at once' applies to FCN-8s only, but this state dict is {arch}")
        arch = "fcn8s-atonce"
    score_fr = state["score_fr.weight"]
    try:
        config = ModelConfig(num_classes=int(score_fr.shape[0]), arch=arch, alignment="reference")
    except ValueError as exc:
        raise CheckpointError(f"score_fr.weight {tuple(score_fr.shape)}: {exc}") from None
    model = build_model(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__} "
        f"(needs {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and not (isinstance(v, Tensor) and v.shape == expected[k].shape)
    ]
    problems = [
        f"{label}: {_names(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if names
    ]
    if problems:
        raise CheckpointError(
            f"the state dict does not fit pytorch-fcn's {arch} with {config.num_classes} classes; "
            + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
    return model
