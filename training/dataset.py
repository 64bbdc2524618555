"""The training dataset over a VOC folder, batches that share one random scale, and a
collate that pads to the largest image.

Items are ``(image, label)``: image ``3 x H x W`` uint8 RGB, label ``H x W`` int64
with 255 = void. Labels are checked against the class count and the image size
on every read, so a bad file fails with its name instead of a CUDA assert.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from . import voc
from .errors import DataError, LabelError
from .images import read_image
from .palette import VOID
from .transforms import (
    PairTransform,
    TrainTransform,
    checked_scale_range,
    eval_transform,
    train_transform,
)

__all__ = ["SegmentationDataset", "SharedScaleBatches", "collate_padded", "eval_transform",
           "train_transform"]

Key = int | tuple[int, float]  # an index, or an index and the scale to crop it at


class SegmentationDataset(Dataset[tuple[Tensor, Tensor]]):
    """Labelled images of a VOC folder, by split name or by an explicit id list."""

    def __init__(self, root: str | Path, ids: Sequence[str] | str, num_classes: int,
                 transform: PairTransform | TrainTransform | None = None) -> None:
        self.root = Path(root)
        if not 1 <= num_classes <= voc.MAX_CLASSES:
            raise ValueError(f"num_classes must be in 1..{voc.MAX_CLASSES}, not {num_classes}")
        self.num_classes = num_classes
        self.transform = transform
        if isinstance(ids, str):
            self.split: str | None = ids
            self.ids = voc.read_split(self.root, ids)
            where = f"split {ids!r} ({voc.split_path(self.root, ids)}) lists no images"
        else:
            self.split = None
            self.ids = [voc.validate_id(self.root, i, self.root) for i in ids]
            where = "no image ids were given"
        if not self.ids:
            raise DataError(self.root, f"empty dataset: {where}")
        # Resolve every file now: a missing label should stop training before the
        # first step, not an hour in, inside a worker process.
        self._images = [voc.image_path(self.root, i) for i in self.ids]
        self._labels = [voc.label_path(self.root, i) for i in self.ids]
        missing = [p for p in self._labels if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise LabelError(missing[0], f"missing: no label for this image{more}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: Key) -> tuple[Tensor, Tensor]:
        i, scale = key if isinstance(key, tuple) else (key, None)
        image = read_image(self._images[i])
        h, w = image.shape[:2]
        label = voc.read_label(self._labels[i], self.num_classes, image_size=(w, h))
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        lab_t = torch.from_numpy(label)
        if scale is not None:
            if not isinstance(self.transform, TrainTransform):
                raise TypeError(f"a scale was given for item {i}, but {self.transform!r} "
                                "takes none")
            img_t, lab_t = self.transform(img_t, lab_t, scale)
        elif self.transform is not None:
            img_t, lab_t = self.transform(img_t, lab_t)
        return img_t.contiguous(), lab_t.to(torch.int64).contiguous()

    def __repr__(self) -> str:
        what = f"split={self.split!r}" if self.split else f"{len(self.ids)} ids"
        return f"SegmentationDataset({str(self.root)!r}, {what}, num_classes={self.num_classes})"


class SharedScaleBatches(Sampler[list[tuple[int, float]]]):
    """Batches of ``sampler``'s indices, each with one scale drawn uniformly from
    ``scale_range`` for all its members.

    With a scale per image, a batch was padded to its largest member: on frames the
    crop does not cap (240x180 with scales up to 2), about a third of every batch
    was void padding (half on 120x90). One scale per batch makes same-size images
    same-size crops. The scales come from their own seeded generator, so every rank
    of a distributed run draws the same ones and their steps take equally long.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool,
                 scale_range: tuple[float, float], seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.scale_range = checked_scale_range(scale_range)
        self.generator = torch.Generator().manual_seed(seed)

    def _scale(self) -> float:
        lo, hi = self.scale_range
        return lo + (hi - lo) * float(torch.rand((), generator=self.generator))

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(int(i))
            if len(batch) == self.batch_size:
                s = self._scale()
                yield [(j, s) for j in batch]
                batch = []
        if batch and not self.drop_last:
            s = self._scale()
            yield [(j, s) for j in batch]

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


PAD_MULTIPLE = 32  # the FCN's total stride: a padded batch needs no further padding


def collate_padded(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack images of different sizes, padding bottom/right to the largest H and W
    rounded up to a multiple of 32 (equal sizes are stacked as they are).

    Padding is 0 in the images and 255 (void) in the labels, so it adds nothing
    to the loss or the metrics.
    """
    if not batch:
        raise ValueError("collate_padded got an empty batch")
    images = [b[0] for b in batch]
    labels = [b[1] for b in batch]
    if all(im.shape == images[0].shape for im in images):
        return torch.stack(images), torch.stack(labels)
    h = -(-max(im.shape[-2] for im in images) // PAD_MULTIPLE) * PAD_MULTIPLE
    w = -(-max(im.shape[-1] for im in images) // PAD_MULTIPLE) * PAD_MULTIPLE
    out_img = images[0].new_zeros((len(batch), images[0].shape[0], h, w))
    out_lab = labels[0].new_full((len(batch), h, w), VOID)
    for k, (im, lab) in enumerate(zip(images, labels, strict=True)):
        out_img[k, :, : im.shape[-2], : im.shape[-1]] = im
        out_lab[k, : lab.shape[-2], : lab.shape[-1]] = lab
    return out_img, out_lab
