"""Paired image/label augmentation for training (torchvision reference recipe).

Every transform takes and returns ``(image, label)``: image ``3 x H x W`` uint8
RGB, label ``H x W`` (any integer dtype, 255 = void). Geometry is applied to both
with the same parameters (bilinear for the image, nearest for the label, so a
label only ever takes values it already had); colour only touches the image.
Images stay uint8: normalisation happens later on the device
(``training.preprocess.Normalization.apply``).

Randomness comes from torch's global generator, which DataLoader seeds per
worker, so workers never repeat each other's augmentations. Transforms are plain
classes (not closures) so they pickle into spawned worker processes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.transforms.v2 import ColorJitter, InterpolationMode
from torchvision.transforms.v2 import functional as F

PairTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, ()))


def checked_scale_range(scale_range: tuple[float, float]) -> tuple[float, float]:
    """``(min, max)`` as floats; a ValueError unless ``0 < min <= max``."""
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < min <= max, not {scale_range}")
    return float(lo), float(hi)


class RandomScaleCrop:
    """Scale by a random factor, then take a random window of at most ``crop_size``.

    The window never reaches past the scaled image: where the scaled image is
    smaller than the crop, the window is the whole image on that side, so no
    pixel of compute is spent on padding (on small frames a fixed 320 crop was
    90 % void). Batches of unequal windows are padded together by
    ``collate_padded``. Only the source region under the window is resized, so a
    2x zoom of a 12 MP photo costs a crop-sized resize, not 48 MP.

    ``scale`` given to a call is used instead of a random one: training draws one
    scale per batch (``training.dataset.SharedScaleBatches``), so a batch of
    same-size images is the same size and needs no padding.
    """

    def __init__(self, crop_size: int | tuple[int, int],
                 scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        ch, cw = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
        if ch < 1 or cw < 1:
            raise ValueError(f"crop_size must be positive, not {crop_size}")
        self.crop = (int(ch), int(cw))
        self.scale_range = checked_scale_range(scale_range)

    def __call__(self, image: Tensor, label: Tensor,
                 scale: float | None = None) -> tuple[Tensor, Tensor]:
        h, w = label.shape[-2:]
        s = _uniform(*self.scale_range) if scale is None else scale
        if not s > 0:
            raise ValueError(f"scale must be positive, not {s}")
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        ch, cw = min(self.crop[0], sh), min(self.crop[1], sw)
        top, left = _randint(0, sh - ch), _randint(0, sw - cw)  # window in scaled coordinates
        # The source rectangle that maps onto scaled [top, top+ch) x [left, left+cw).
        fy, fx = h / sh, w / sw
        sy0, sx0 = int(top * fy), int(left * fx)
        sy1 = min(h, max(sy0 + 1, round((top + ch) * fy)))
        sx1 = min(w, max(sx0 + 1, round((left + cw) * fx)))
        out_size = [ch, cw]
        img = F.resized_crop(image, sy0, sx0, sy1 - sy0, sx1 - sx0, out_size,
                             interpolation=InterpolationMode.BILINEAR, antialias=True)
        # NEAREST_EXACT samples pixel centres as bilinear does, so labels stay on the
        # image content rather than shifting by half a pixel.
        lab = F.resized_crop(label.unsqueeze(0), sy0, sx0, sy1 - sy0, sx1 - sx0, out_size,
                             interpolation=InterpolationMode.NEAREST_EXACT).squeeze(0)
        return img, lab


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if float(torch.rand(())) < self.p:
            return image.flip(-1), label.flip(-1)
        return image, label


class ImageOnly:
    """Apply an image transform (e.g. colour jitter) and leave the label alone."""

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform(image), label


class Compose:
    def __init__(self, transforms: list[PairTransform]) -> None:
        self.transforms = transforms

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        for t in self.transforms:
            image, label = t(image, label)
        return image, label


class TrainTransform:
    """Random scale + crop, then the rest (flip, colour); the scale may be given per
    call (one per batch), else each call draws its own."""

    def __init__(self, scale_crop: RandomScaleCrop, rest: list[PairTransform]) -> None:
        self.scale_crop = scale_crop
        self.rest = Compose(rest)

    def __call__(self, image: Tensor, label: Tensor,
                 scale: float | None = None) -> tuple[Tensor, Tensor]:
        return self.rest(*self.scale_crop(image, label, scale))


class Identity:
    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        return image, label


def train_transform(crop_size: int | tuple[int, int],
                    scale_range: tuple[float, float] = (0.5, 2.0), hflip: bool = True,
                    color_jitter: bool = True) -> TrainTransform:
    """Random scale + crop (at most the scaled image), horizontal flip, colour jitter."""
    steps: list[PairTransform] = []
    if hflip:
        steps.append(RandomHorizontalFlip())
    if color_jitter:
        # After the crop, so the jitter only touches crop-sized images. No hue: it
        # costs an HSV round trip and road-scene classes are partly defined by colour.
        steps.append(ImageOnly(ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)))
    return TrainTransform(RandomScaleCrop(crop_size, scale_range), steps)


def eval_transform() -> PairTransform:
    """No change: evaluation sees each image at full size."""
    return Identity()
