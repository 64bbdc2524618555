"""Paired transforms, the VOC training dataset and padded batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training import voc
from training.dataset import SegmentationDataset, SharedScaleBatches, collate_padded
from training.errors import DataError, LabelError
from training.transforms import RandomHorizontalFlip, eval_transform, train_transform

# A distinct colour per class, so every image pixel says which class it shows.
COLORS = torch.tensor([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]],
                      dtype=torch.uint8)


def _block_pair(seed: int, h: int = 64, w: int = 80, block: int = 8) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """Image 3xHxW coloured by class, label HxW: random 8x8 blocks of classes 1..4."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(1, len(COLORS), (h // block, w // block), generator=g)
    label = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1).to(torch.uint8)
    image = COLORS[label.long()].permute(2, 0, 1).contiguous()
    return image, label


def _interior(label: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label: away from every edge."""
    lab = label.long()
    pad = torch.nn.functional.pad(lab[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    same = torch.ones_like(lab, dtype=torch.bool)
    h, w = lab.shape
    for dy in range(3):
        for dx in range(3):
            same &= pad[dy : dy + h, dx : dx + w].long() == lab
    return same


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_label_aligned(seed: int) -> None:
    image, label = _block_pair(seed)
    torch.manual_seed(seed)
    t = train_transform(48, scale_range=(0.5, 2.0), color_jitter=False)
    img, lab = t(image, label)
    assert img.dtype == torch.uint8 and img.shape[1:] == lab.shape
    assert lab.shape[0] <= 48 and lab.shape[1] <= 48
    assert set(lab.unique().tolist()) <= {1, 2, 3, 4, 255}  # nearest: no new values
    inside = _interior(lab) & (lab != 255)
    assert inside.sum() > 100
    expected = COLORS[lab[inside].long()].T
    diff = (img[:, inside].int() - expected.int()).abs()
    assert int(diff.max()) <= 2, "the label no longer lies on the image content"


def test_a_crop_never_reaches_past_the_scaled_image() -> None:
    image = torch.full((3, 20, 30), 77, dtype=torch.uint8)
    label = torch.full((20, 30), 3, dtype=torch.uint8)
    torch.manual_seed(0)
    img, lab = train_transform((40, 50), scale_range=(1.0, 1.0), hflip=False,
                               color_jitter=False)(image, label)
    assert img.shape == (3, 20, 30) and lab.shape == (20, 30)  # no padding computed
    assert (img == 77).all() and (lab == 3).all()
    for seed in range(20):  # scaled: the window is the smaller of the crop and the image
        torch.manual_seed(seed)
        img, lab = train_transform(24, scale_range=(0.5, 1.5), color_jitter=False)(image, label)
        assert lab.shape[0] <= min(24, round(20 * 1.5)) and lab.shape[1] <= 24
        assert (lab == 3).all()


def test_a_given_scale_sets_the_window() -> None:
    image = torch.full((3, 20, 30), 77, dtype=torch.uint8)
    label = torch.full((20, 30), 3, dtype=torch.uint8)
    t = train_transform(40, scale_range=(0.5, 2.0), color_jitter=False)
    for scale, shape in ((0.5, (10, 15)), (1.3, (26, 39)), (2.0, (40, 40))):  # 2.0: capped
        for seed in range(3):  # the given scale, not a random one
            torch.manual_seed(seed)
            _img, lab = t(image, label, scale)
            assert lab.shape == shape
    with pytest.raises(ValueError, match="scale must be positive"):
        t(image, label, 0.0)


def test_values_only_from_the_input_set() -> None:
    g = torch.Generator().manual_seed(1)
    values = torch.tensor([0, 3, 7, 255], dtype=torch.uint8)
    label = values[torch.randint(0, 4, (37, 53), generator=g)]
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=g)
    t = train_transform(32)
    for seed in range(10):
        torch.manual_seed(seed)
        _img, lab = t(image, label)
        assert set(lab.unique().tolist()) <= {0, 3, 7, 255}


def test_colour_jitter_touches_only_the_image() -> None:
    image, label = _block_pair(3)
    torch.manual_seed(0)
    img, lab = train_transform((64, 80), scale_range=(1.0, 1.0), hflip=False)(image, label)
    assert torch.equal(lab, label)
    assert not torch.equal(img, image)


def test_flip_moves_both_and_eval_is_identity() -> None:
    image, label = _block_pair(4)
    img, lab = RandomHorizontalFlip(p=1.0)(image, label)
    assert torch.equal(img, image.flip(-1)) and torch.equal(lab, label.flip(-1))
    img, lab = eval_transform()(image, label)
    assert img is image and lab is label


def test_bad_transform_arguments() -> None:
    with pytest.raises(ValueError):
        train_transform(0)
    with pytest.raises(ValueError):
        train_transform(32, scale_range=(2.0, 1.0))


# -- dataset ---------------------------------------------------------------------------------


def _write_dataset(root: Path, sizes: list[tuple[int, int]], num_classes: int = 5) -> list[str]:
    ids = [f"im{i}" for i in range(len(sizes))]
    for i, (iid, (h, w)) in enumerate(zip(ids, sizes, strict=True)):
        image, label = _block_pair(i, h, w, block=4)
        path = root / "JPEGImages" / f"{iid}.png"  # lossless, so pixels can be compared
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        voc.write_label(voc.label_path(root, iid), label.numpy())
    voc.write_class_names(root, [f"c{k}" for k in range(num_classes)])
    voc.write_split(root, "train", ids)
    return ids


def test_dataset_items(tmp_path: Path) -> None:
    ids = _write_dataset(tmp_path, [(16, 24), (20, 12)])
    ds = SegmentationDataset(tmp_path, "train", 5)
    assert len(ds) == 2 and ds.ids == ids
    img, lab = ds[1]
    assert img.shape == (3, 20, 12) and img.dtype == torch.uint8
    assert lab.shape == (20, 12) and lab.dtype == torch.int64
    assert torch.equal(COLORS[lab].permute(2, 0, 1), img)  # RGB order, aligned
    assert SegmentationDataset(tmp_path, ["im0"], 5).ids == ["im0"]


def test_dataset_checks_labels(tmp_path: Path) -> None:
    _write_dataset(tmp_path, [(16, 24), (16, 24)])
    with pytest.raises(LabelError, match=r"im0\.png.*class ids 4 out of range"):
        SegmentationDataset(tmp_path, "train", 4)[0]  # labels hold 1..4
    voc.write_label(voc.label_path(tmp_path, "im1"), np.zeros((8, 8), np.uint8))
    with pytest.raises(LabelError, match=r"im1\.png.*8x8.*24x16"):
        SegmentationDataset(tmp_path, "train", 5)[1]
    voc.label_path(tmp_path, "im1").unlink()
    with pytest.raises(LabelError, match=r"im1\.png.*missing"):
        SegmentationDataset(tmp_path, "train", 5)


def test_empty_dataset_names_root_and_split(tmp_path: Path) -> None:
    _write_dataset(tmp_path, [(8, 8)])
    voc.write_split(tmp_path, "val", [])
    with pytest.raises(DataError) as err:
        SegmentationDataset(tmp_path, "val", 5)
    assert str(tmp_path) in str(err.value) and "'val'" in str(err.value)
    with pytest.raises(DataError, match="empty dataset"):
        SegmentationDataset(tmp_path, [], 5)
    with pytest.raises(DataError, match=r"'\.\./x'"):
        SegmentationDataset(tmp_path, ["../x"], 5)


def test_collate_padded_shapes() -> None:
    batch = [(torch.ones(3, 4, 6, dtype=torch.uint8), torch.zeros(4, 6, dtype=torch.int64)),
             (torch.ones(3, 7, 5, dtype=torch.uint8), torch.ones(7, 5, dtype=torch.int64))]
    images, labels = collate_padded(batch)
    assert images.shape == (2, 3, 32, 32) and labels.shape == (2, 32, 32)  # rounded up to 32
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert (images[0, :, 4:] == 0).all() and (images[0, :, :4, :6] == 1).all()
    assert (images[0, :, :, 6:] == 0).all()
    assert (labels[0, 4:] == 255).all() and (labels[1, :, 5:] == 255).all()
    assert (labels[:, 7:] == 255).all()
    assert (labels[0, :4, :6] == 0).all() and (labels[1, :7, :5] == 1).all()
    same = collate_padded([batch[0], batch[0]])
    assert same[0].shape == (2, 3, 4, 6)


def test_shared_scale_batches_cover_the_epoch_with_one_scale_each() -> None:
    sampler = list(range(10))
    batches = list(SharedScaleBatches(sampler, 4, drop_last=False, scale_range=(0.5, 2.0),
                                      seed=3))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert len(SharedScaleBatches(sampler, 4, False, (0.5, 2.0), 3)) == 3
    assert [i for b in batches for i, _ in b] == sampler
    scales = [b[0][1] for b in batches]
    for b in batches:
        assert len({s for _, s in b}) == 1  # one scale for the whole batch
    assert all(0.5 <= s <= 2.0 for s in scales) and len(set(scales)) == 3
    dropped = SharedScaleBatches(sampler, 4, drop_last=True, scale_range=(0.5, 2.0), seed=3)
    assert [len(b) for b in dropped] == [4, 4] and len(dropped) == 2
    # The same seed draws the same scales (every rank of a distributed run agrees);
    # another seed draws others.
    again = [b[0][1] for b in SharedScaleBatches(sampler, 4, False, (0.5, 2.0), seed=3)]
    assert again == scales
    other = [b[0][1] for b in SharedScaleBatches(sampler, 4, False, (0.5, 2.0), seed=4)]
    assert other != scales
    with pytest.raises(ValueError):
        SharedScaleBatches(sampler, 0, False, (0.5, 2.0), 0)
    with pytest.raises(ValueError):
        SharedScaleBatches(sampler, 2, False, (2.0, 0.5), 0)


def test_one_scale_per_batch_needs_no_padding(tmp_path: Path) -> None:
    _write_dataset(tmp_path, [(16, 24)] * 6)  # every pixel labelled: void means padding
    ds = SegmentationDataset(tmp_path, "train", 5,
                             transform=train_transform(40, scale_range=(0.5, 1.5)))
    def batches() -> SharedScaleBatches:
        return SharedScaleBatches(list(range(6)), 3, False, (0.5, 1.5), seed=0)

    loader = DataLoader(ds, batch_sampler=batches(), num_workers=0, collate_fn=collate_padded)
    for (images, labels), batch in zip(loader, batches(), strict=True):
        s = batch[0][1]
        assert labels.shape == (3, round(16 * s), round(24 * s))
        assert images.shape == (3, 3, *labels.shape[1:])
        assert (labels != 255).all()
    with pytest.raises(TypeError, match="takes none"):
        SegmentationDataset(tmp_path, "train", 5)[(0, 1.0)]


def test_dataloader_with_two_workers(tmp_path: Path) -> None:
    _write_dataset(tmp_path, [(16, 24), (20, 12), (24, 24), (12, 16)])
    ds = SegmentationDataset(tmp_path, "train", 5, transform=train_transform(16))
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_padded)
    batches = list(loader)
    assert len(batches) == 2
    for images, labels in batches:
        # Windows of at most 16 x 16; unequal ones padded together to 32.
        assert images.shape[:2] == (2, 3) and labels.shape == (2, *images.shape[2:])
        assert all(n <= 16 or n == 32 for n in labels.shape[1:])
        assert set(labels.unique().tolist()) <= {1, 2, 3, 4, 255}
