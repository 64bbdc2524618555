"""Importing grayscale class-id masks (CamVid / Cityscapes style) into a VOC folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import voc
from training.errors import DataError, LabelError
from training.id_masks import import_camvid, import_id_masks, read_class_list

NAMES = ["sky", "road", "car"]
VOID_ID = 11


def _pair(images: Path, masks: Path, name: str, mask: np.ndarray, ext: str = ".jpg",
          suffix: str = "") -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    h, w = mask.shape
    Image.fromarray(np.full((h, w, 3), 50, np.uint8)).save(images / f"{name}{ext}")
    Image.fromarray(mask).save(masks / f"{name}{suffix}.png")  # mode "L"


def _mask(h: int = 5, w: int = 7) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[0] = 1
    m[1, :3] = 2
    m[2, 2] = VOID_ID
    m[3, 3] = 255
    return m


def test_import_maps_void_and_copies_images(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "img", tmp_path / "ann", tmp_path / "voc"
    _pair(images, masks, "f1", _mask())
    _pair(images, masks, "f0", _mask(), ext=".png")
    (images / "README.txt").write_text("not an image")  # skipped
    ids = import_id_masks(images, masks, out, NAMES, VOID_ID, split="train")
    assert ids == ["f0", "f1"]
    assert (out / "JPEGImages" / "f1.jpg").read_bytes() == (images / "f1.jpg").read_bytes()
    label = voc.read_label(voc.label_path(out, "f1"), len(NAMES), (7, 5))
    expected = _mask()
    expected[expected == VOID_ID] = 255
    np.testing.assert_array_equal(label, expected)
    with Image.open(voc.label_path(out, "f1")) as img:
        assert img.mode == "P"
    assert voc.read_class_names(out) == NAMES
    assert voc.read_split(out, "train") == ["f0", "f1"] == voc.read_split(out, "trainval")

    # A second import appends to the lists without duplicates.
    _pair(tmp_path / "vimg", tmp_path / "vann", "g0", _mask())
    import_id_masks(tmp_path / "vimg", tmp_path / "vann", out, NAMES, VOID_ID, split="val")
    assert voc.read_split(out, "val") == ["g0"]
    assert voc.read_split(out, "trainval") == ["f0", "f1", "g0"]


def test_mask_suffix_and_image_suffix(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "img", tmp_path / "gt", tmp_path / "voc"
    images.mkdir()
    mask = _mask()
    mask[mask == VOID_ID] = 255  # trainIds use 255 for void
    _pair(images, masks, "aachen_1", mask, ext=".png", suffix="_gtFine_labelTrainIds")
    (images / "aachen_1.png").rename(images / "aachen_1_leftImg8bit.png")
    ids = import_id_masks(images, masks, out, NAMES, 255, image_suffix="_leftImg8bit",
                          mask_suffix="_gtFine_labelTrainIds")
    assert ids == ["aachen_1"]
    assert voc.image_path(out, "aachen_1").name == "aachen_1.png"


def test_out_of_range_ids_name_mask_and_ids(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "img", tmp_path / "ann", tmp_path / "voc"
    _pair(images, masks, "a", _mask())
    bad = _mask()
    bad[4, 0], bad[4, 1] = 5, 9
    _pair(images, masks, "b", bad)
    with pytest.raises(LabelError) as err:
        import_id_masks(images, masks, out, NAMES, VOID_ID)
    msg = str(err.value)
    assert str(masks / "b.png") in msg and "5, 9" in msg
    assert not out.exists()  # checked before anything was written


def test_without_void_id_the_void_value_is_out_of_range(tmp_path: Path) -> None:
    images, masks = tmp_path / "img", tmp_path / "ann"
    _pair(images, masks, "a", _mask())
    with pytest.raises(LabelError, match="class ids 11 out of range"):
        import_id_masks(images, masks, tmp_path / "voc", NAMES, None)


def test_size_mismatch_and_missing_mask(tmp_path: Path) -> None:
    images, masks = tmp_path / "img", tmp_path / "ann"
    _pair(images, masks, "a", _mask())
    Image.fromarray(_mask(4, 7)).save(masks / "a.png")
    with pytest.raises(LabelError, match=r"a\.png.*7x4.*7x5"):
        import_id_masks(images, masks, tmp_path / "voc", NAMES, VOID_ID)
    (masks / "a.png").unlink()
    with pytest.raises(DataError, match=r"img/a\.jpg.*no mask"):
        import_id_masks(images, masks, tmp_path / "voc", NAMES, VOID_ID)


def test_void_id_that_is_a_class_is_refused(tmp_path: Path) -> None:
    images, masks = tmp_path / "img", tmp_path / "ann"
    _pair(images, masks, "a", _mask())
    with pytest.raises(ValueError, match="void_id 2 is also class 'car'"):
        import_id_masks(images, masks, tmp_path / "voc", NAMES, 2)


def test_read_class_list(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("Sky\r\nRoad \n\n")
    assert read_class_list(path) == ["Sky", "Road"]
    with pytest.raises(DataError, match="missing"):
        read_class_list(tmp_path / "nope.txt")
    voc.write_labelmap(tmp_path, ["bg", "x"])
    assert read_class_list(tmp_path / "labelmap.txt") == ["bg", "x"]


def test_import_camvid_mini(camvid_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "camvid"
    result = import_camvid(camvid_dir, out)
    assert len(result["train"]) == 60 and len(result["val"]) == 20
    assert len(voc.read_split(out, "train")) == 60
    assert len(voc.read_split(out, "val")) == 20
    assert len(voc.read_split(out, "trainval")) == 80
    names = voc.read_class_names(out)
    assert len(names) == 11 and names[0] == "Sky"
    label = voc.read_label(voc.label_path(out, result["val"][0]), 11, (480, 360))
    assert set(np.unique(label)) <= set(range(11)) | {255}


def test_import_into_a_dataset_with_other_classes_or_files(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "img", tmp_path / "ann", tmp_path / "voc"
    _pair(images, masks, "a", _mask())
    voc.write_class_names(out, ["x", "y", "z"])
    with pytest.raises(DataError, match=r"class_names\.txt.*differ"):
        import_id_masks(images, masks, out, NAMES, VOID_ID)
    voc.write_class_names(out, NAMES)
    (out / "JPEGImages").mkdir()
    Image.new("RGB", (7, 5)).save(out / "JPEGImages" / "a.png")
    with pytest.raises(DataError, match="already has a.png"):
        import_id_masks(images, masks, out, NAMES, VOID_ID)
