"""Prediction: the in-memory Python API (load once, predict many) and ``fcn-predict``.

Huge images: a network input beyond ``tile_size`` pixels on a side is predicted
in overlapping tiles (each output pixel comes from the tile whose border is
furthest from it), so memory stays bounded at any image size and the result
keeps the image's full resolution. ``huge="downscale"`` instead predicts on a
copy whose longer side is ``tile_size`` and scales the label back (faster,
coarser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import LoadedModel, load_model
from .device import autocast_dtype, resolve_device
from .feature_cache import ImageFeatures

UNCERTAINTY_KINDS: tuple[str, ...] = ("entropy", "margin")

# Inference runs channels_last where it is faster for the same labels: on CUDA, and on
# CPUs, where `fcn-bench --formats` measured FCN-8s/MobileNetV3-Large 1.84x faster and
# VGG16 1.07x, with 100 % argmax agreement. bf16 autocast stays off: 10x slower on a
# CPU without bf16 instructions; on one with them (AVX512-BF16) faster (a trained
# MobileNetV3 x1.53, x2.60 with channels_last) but 98.8 % argmax agreement, under the
# 99.5 % that would leave the labels the same.
CHANNELS_LAST_DEVICES = ("cuda", "cpu")


def _tensor(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` without its warning on read-only arrays (the app's image cache
    hands those out): such an array is copied, which costs far less than a forward."""
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = array.copy()
    return torch.from_numpy(array)


@dataclass
class Prediction:
    """One image's result. ``label``: H x W uint8 class ids.

    ``probabilities``: C x H x W float32 softmax, when asked for.
    ``uncertainty``: H x W float32 in [0, 1] (1 = most uncertain), when asked for.
    """

    label: np.ndarray
    probabilities: np.ndarray | None = None
    uncertainty: np.ndarray | None = None

    @property
    def mean_uncertainty(self) -> float | None:
        return None if self.uncertainty is None else float(self.uncertainty.mean())


def uncertainty_from_probs(probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-pixel uncertainty in [0, 1] from N x C x H x W probabilities.

    entropy: Shannon entropy divided by log(C). margin: 1 - (p_top1 - p_top2).
    """
    if kind == "entropy":
        c = probs.shape[1]
        ent = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        return (ent / math.log(c)).clamp(0, 1) if c > 1 else torch.zeros_like(ent)
    if kind == "margin":
        if probs.shape[1] < 2:
            return torch.zeros_like(probs[:, 0])
        top2 = probs.topk(2, dim=1).values
        return 1.0 - (top2[:, 0] - top2[:, 1])
    raise ValueError(f"unknown uncertainty kind {kind!r}; use one of {UNCERTAINTY_KINDS}")


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


class Predictor:
    """Owns a model on a device; predicts numpy images. Not thread-safe: one per thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device = "auto",
        *,
        amp: str | None = None,
        tile_size: int = 1024,
        tile_overlap: int = 128,
        huge: str = "tile",
    ) -> None:
        if huge not in ("tile", "downscale"):
            raise ValueError(f"huge must be 'tile' or 'downscale', not {huge!r}")
        self.loaded = loaded
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.autocast = autocast_dtype(self.device, amp)
        self.tile_size = int(tile_size)
        self.tile_overlap = int(tile_overlap)
        self.huge = huge
        model = loaded.model.eval().to(self.device)
        if self.device.type in CHANNELS_LAST_DEVICES:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        *,
        classes: Sequence[str] | None = None,
        at_once: bool = False,
        **kwargs,
    ) -> Predictor:
        return cls(load_model(path, classes=classes, at_once=at_once), device, **kwargs)

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def num_classes(self) -> int:
        return self.loaded.config.num_classes

    @property
    def palette(self) -> np.ndarray:
        return self.loaded.palette

    # -- core ---------------------------------------------------------------
    def _logits(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W uint8 on CPU -> N x C x H x W float32 logits on the device."""
        x = self._normalised(batch_uint8)
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return self.model(x).float()
        return self.model(x).float()

    def _normalised(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        x = self.loaded.normalization.apply(batch_uint8.to(self.device, non_blocking=True))
        if self.device.type in CHANNELS_LAST_DEVICES:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _tiled_probs(self, image: torch.Tensor) -> torch.Tensor:
        """1 x 3 x H x W uint8 -> C x H x W probabilities on CPU, tile by tile."""
        _, _, h, w = image.shape
        t, ov = self.tile_size, self.tile_overlap
        out = torch.empty((self.num_classes, h, w), dtype=torch.float32)
        ys, xs = _tile_starts(h, t, ov), _tile_starts(w, t, ov)
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                th, tw = min(t, h - y), min(t, w - x)
                probs = self._logits(image[:, :, y : y + th, x : x + tw]).softmax(1)[0].cpu()
                # Keep the middle of each overlap: half the overlap from each neighbour.
                y0 = 0 if yi == 0 else (ys[yi - 1] + min(t, h - ys[yi - 1]) - y) // 2
                x0 = 0 if xi == 0 else (xs[xi - 1] + min(t, w - xs[xi - 1]) - x) // 2
                out[:, y + y0 : y + th, x + x0 : x + tw] = probs[:, y0:, x0:]
        return out

    def _finish(
        self, probs: torch.Tensor, want_probs: bool, uncertainty: str | None
    ) -> Prediction:
        """C x H x W (or 1 x C x H x W) probabilities on any device -> Prediction."""
        if probs.dim() == 3:
            probs = probs.unsqueeze(0)
        label = probs.argmax(1)[0].to(torch.uint8).cpu().numpy()
        unc = None
        if uncertainty is not None:
            unc = uncertainty_from_probs(probs, uncertainty)[0].float().cpu().numpy()
        p = probs[0].float().cpu().numpy() if want_probs else None
        return Prediction(label=label, probabilities=p, uncertainty=unc)

    @torch.inference_mode()
    def predict(
        self,
        image: np.ndarray,
        *,
        probabilities: bool = False,
        uncertainty: str | None = None,
    ) -> Prediction:
        """Segment one H x W x 3 uint8 RGB image."""
        return self.predict_batch([image], probabilities=probabilities, uncertainty=uncertainty)[0]

    @torch.inference_mode()
    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        probabilities: bool = False,
        uncertainty: str | None = None,
    ) -> list[Prediction]:
        """Segment several images; equal-sized ones share one forward pass."""
        if uncertainty is not None and uncertainty not in UNCERTAINTY_KINDS:
            raise ValueError(f"unknown uncertainty kind {uncertainty!r}")
        results: list[Prediction | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected H x W x 3 uint8, got {img.shape} {img.dtype}")
            h, w = img.shape[:2]
            if max(h, w) > self.tile_size:
                results[i] = self._predict_huge(img, probabilities, uncertainty)
            else:
                groups.setdefault((h, w), []).append(i)
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([images[i] for i in idx])).permute(0, 3, 1, 2)
            probs = self._logits(batch).softmax(1)
            for j, i in enumerate(idx):
                results[i] = self._finish(probs[j], probabilities, uncertainty)
        return [r for r in results if r is not None]

    # -- features: the backbone and the head apart (instant learning) ---------------------
    def network_input(self, image: np.ndarray) -> np.ndarray:
        """The image as the feature path sees it: itself, or for an image beyond
        ``tile_size`` a copy whose longer side is ``tile_size`` (bounded memory)."""
        h, w = image.shape[:2]
        if max(h, w) <= self.tile_size:
            return image
        scale = self.tile_size / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.array(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))

    @torch.inference_mode()
    def predict_with_features(
        self, image: np.ndarray, backbone: str, *, uncertainty: str | None = None
    ) -> tuple[Prediction, ImageFeatures]:
        """Segment one image and return the skip-tap features the head read.

        For an image beyond ``tile_size`` the prediction is the usual tiled one and
        the features come from the downscaled :meth:`network_input`.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        small = self.network_input(image)
        x = self._normalised(_tensor(small).permute(2, 0, 1)[None])
        h, w = small.shape[:2]
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            taps = self.model.features(x)
            logits = None if small is not image else self.model.head(taps, h, w)
        feats = ImageFeatures.from_taps(taps, (h, w), backbone)
        if logits is None:
            return self.predict(image, uncertainty=uncertainty), feats
        return self._finish(logits.float().softmax(1), False, uncertainty), feats

    @torch.inference_mode()
    def predict_from_features(
        self, feats: ImageFeatures, size: tuple[int, int], *, uncertainty: str | None = None
    ) -> Prediction:
        """The head alone on cached features (milliseconds): the prediction at ``size``."""
        taps = {k: v.to(self.device, torch.float32) for k, v in feats.taps.items()}
        probs = self.model.head(taps, *feats.size).softmax(1)
        if tuple(size) != tuple(feats.size):
            probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
        return self._finish(probs, False, uncertainty)

    def _predict_huge(self, img: np.ndarray, want_probs: bool, uncertainty: str | None) -> Prediction:
        h, w = img.shape[:2]
        if self.huge == "tile":
            tensor = _tensor(img).permute(2, 0, 1).unsqueeze(0)
            return self._finish(self._tiled_probs(tensor), want_probs, uncertainty)
        scale = self.tile_size / max(h, w)
        small = np.array(  # a writable copy: torch.from_numpy needs one
            Image.fromarray(img).resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
            )
        )
        tensor = torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0)
        probs = self._logits(tensor).softmax(1)
        if want_probs:
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            return self._finish(probs, True, uncertainty)
        low = self._finish(probs, False, uncertainty)
        label = np.asarray(Image.fromarray(low.label).resize((w, h), Image.Resampling.NEAREST))
        unc = None
        if low.uncertainty is not None:
            unc = np.asarray(
                Image.fromarray(low.uncertainty, mode="F").resize((w, h), Image.Resampling.BILINEAR)
            )
        return Prediction(label=label, uncertainty=unc)


def uncertainty_to_uint8(uncertainty: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> 0..255 for an 8-bit PNG (255 = most uncertain)."""
    return np.clip(np.rint(uncertainty * 255.0), 0, 255).astype(np.uint8)
