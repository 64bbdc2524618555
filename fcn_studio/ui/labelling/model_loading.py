"""Turning a :class:`ModelSpec` into a predictor: only ever on the inference thread."""

from __future__ import annotations

from typing import Any

from ...models.model_spec import BACKBONE_LABELS, ModelSpec


def build_predictor(spec: ModelSpec, device: str) -> Any:
    """Runs on the worker thread: the only place the app turns a spec into a model."""
    from training.model_init import fresh_model
    from training.predict import Predictor

    if spec.kind == "imagenet":
        from training.errors import WeightsUnavailableError
        from training.weights import imagenet_weights_info

        info = imagenet_weights_info(spec.backbone)
        if not info["cached"]:
            # Never a silent download of hundreds of MB on a background thread: the Model
            # menu downloads with a progress dialog the person can cancel.
            raise WeightsUnavailableError(
                f"the ImageNet {BACKBONE_LABELS[spec.backbone]} weights are not downloaded "
                f"yet ({info['filename']}, "
                f"{info['size_mb']:.0f} MB, expected in {info['folder']}). Use Model > "
                "ImageNet FCN-8s to download them, or put the file there by hand.")
    if spec.kind == "untrained":
        import torch

        # Seeded by the class list: the same project gets the same random backbone after
        # a restart, so the head it learned (kept in a head file) still fits it.
        seed = int(spec.identity().key[:8], 16)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return Predictor(fresh_model(list(spec.class_names), "scratch", backbone=spec.backbone,
                                         progress=False), device)
    if spec.kind == "imagenet":
        return Predictor(fresh_model(list(spec.class_names), "imagenet", backbone=spec.backbone,
                                     progress=False), device)
    return Predictor.load(spec.path, device, classes=list(spec.class_names), at_once=spec.at_once)
