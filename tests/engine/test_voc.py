"""VOC folder I/O: labels, class lists, split lists, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import voc
from training.errors import DataError, LabelError
from training.palette import voc_colormap


def _label(h: int = 6, w: int = 8) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)
    label[1:3, 2:5] = 1
    label[4:, :3] = 3
    label[0, 0] = 255
    return label


def _write_image(path: Path, w: int = 8, h: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)


def _dataset(root: Path, ids: list[str], labelled: list[str] | None = None) -> None:
    for iid in ids:
        _write_image(root / "JPEGImages" / f"{iid}.jpg")
    for iid in ids if labelled is None else labelled:
        voc.write_label(voc.label_path(root, iid), _label())


# -- labels ----------------------------------------------------------------------------------


def test_label_round_trip_is_palette_png_with_voc_colours(tmp_path: Path) -> None:
    path = tmp_path / "SegmentationClass" / "a.png"
    label = _label()
    voc.write_label(path, label)
    np.testing.assert_array_equal(voc.read_label(path, num_classes=4, image_size=(8, 6)), label)
    with Image.open(path) as img:
        assert img.mode == "P"
        palette = np.asarray(img.getpalette(), np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette[:256], voc_colormap())
        rgb = np.asarray(img.convert("RGB"))
    assert tuple(rgb[1, 2]) == (128, 0, 0)  # class 1
    assert tuple(rgb[0, 0]) == (224, 224, 192)  # 255 stays void
    assert list(tmp_path.joinpath("SegmentationClass").iterdir()) == [path]  # no temp left


def test_read_label_accepts_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "l.png"
    Image.fromarray(_label()).save(path)  # mode "L"
    np.testing.assert_array_equal(voc.read_label(path, 4), _label())


def test_out_of_range_ids_name_file_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    label = _label()
    label[0, 1], label[0, 2] = 7, 12
    voc.write_label(path, label)
    with pytest.raises(LabelError) as err:
        voc.read_label(path, num_classes=4)
    msg = str(err.value)
    assert "bad.png" in msg and "7, 12" in msg and "0..3" in msg
    assert err.value.path == path


def test_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    voc.write_label(path, _label(6, 8))
    with pytest.raises(LabelError, match=r"s\.png.*8x6.*10x6"):
        voc.read_label(path, image_size=(10, 6))


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.int32), np.zeros((2, 2, 3), np.uint8),
                                 np.zeros((0, 3), np.uint8)])
def test_write_label_validates(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(LabelError, match="x.png"):
        voc.write_label(tmp_path / "x.png", bad)
    assert not (tmp_path / "x.png").exists()


# -- class names ---------------------------------------------------------------------------


def test_class_names_and_labelmap_format(tmp_path: Path) -> None:
    names = ["background", "road", "car"]
    voc.write_class_names(tmp_path, names)
    voc.write_labelmap(tmp_path, names)
    assert (tmp_path / "class_names.txt").read_text() == "background\nroad\ncar\n"
    assert (tmp_path / "labelmap.txt").read_text() == (
        "# label:color_rgb:parts:actions\n"
        "background:0,0,0::\n"
        "road:128,0,0::\n"
        "car:0,128,0::\n"
        "ignored:224,224,192::\n"  # void (255), declared as Datumaro does
    )
    assert voc.read_class_names(tmp_path) == names


def test_labelmap_custom_colours_and_read_back(tmp_path: Path) -> None:
    colors = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    voc.write_labelmap(tmp_path, ["a", "b"], colors)
    assert voc.read_class_names(tmp_path) == ["a", "b"]  # no class_names.txt: labelmap used
    names, read_colors = voc.parse_labelmap((tmp_path / "labelmap.txt").read_text(), "x")
    np.testing.assert_array_equal(read_colors, colors)
    with pytest.raises(DataError, match="contains"):
        voc.write_labelmap(tmp_path, ["a:b"])


def test_labelme_class_names(tmp_path: Path) -> None:
    (tmp_path / "class_names.txt").write_text("__ignore__\n_background_\ncat\ndog\n\n")
    assert voc.read_class_names(tmp_path) == ["_background_", "cat", "dog"]


def test_missing_class_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"class_names\.txt.*missing.*one class name per line"):
        voc.read_class_names(tmp_path)


@pytest.mark.parametrize("text,problem", [("", "no class names"), ("\n\n", "no class names"),
                                          ("a\nb\na\n", "duplicate class names: a"),
                                          ("a\n\nb\n", "empty name")])
def test_bad_class_names(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "class_names.txt").write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        voc.read_class_names(tmp_path)
    assert "class_names.txt" in str(err.value)


# -- ids and lists ---------------------------------------------------------------------------


def test_ids_and_paths(tmp_path: Path) -> None:
    _dataset(tmp_path, ["b", "a", "c"], labelled=["a", "c"])
    _write_image(tmp_path / "JPEGImages" / "d.PNG")
    (tmp_path / "JPEGImages" / "notes.txt").write_text("x")
    assert voc.image_ids(tmp_path) == ["a", "b", "c", "d"]
    assert voc.labelled_ids(tmp_path) == ["a", "c"]
    assert voc.image_path(tmp_path, "d") == tmp_path / "JPEGImages" / "d.PNG"
    assert voc.label_path(tmp_path, "b") == tmp_path / "SegmentationClass" / "b.png"
    with pytest.raises(DataError, match="no image for id 'zz'"):
        voc.image_path(tmp_path, "zz")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/b", "a\\b", "..", "", "  ",
                                 "C:x", "C:\\x"])
def test_validate_id_rejects_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataError) as err:
        voc.validate_id(tmp_path, bad, tmp_path / "list.txt")
    assert "list.txt" in str(err.value)
    if bad.strip():
        assert repr(bad.strip()) in str(err.value)


def test_split_round_trip_tolerates_whitespace(tmp_path: Path) -> None:
    _dataset(tmp_path, ["a", "b", "c"])
    voc.write_split(tmp_path, "train", ["b", "a"])
    assert voc.read_split(tmp_path, "train") == ["b", "a"]
    path = tmp_path / "ImageSets" / "Segmentation" / "val.txt"
    path.write_text("\ufeff c \r\n\n  a\n")
    assert voc.read_split(tmp_path, "val") == ["c", "a"]


@pytest.mark.parametrize("line,problem", [("../x", "'..'"), ("/abs/x", "absolute"),
                                          ("ghost", "no image .* for id 'ghost'"),
                                          ("a\na", "listed twice")])
def test_bad_split_lists(tmp_path: Path, line: str, problem: str) -> None:
    _dataset(tmp_path, ["a"])
    path = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    path.parent.mkdir(parents=True)
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=problem) as err:
        voc.read_split(tmp_path, "train")
    assert str(path) in str(err.value)


def test_missing_split_list(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train\.txt.*missing"):
        voc.read_split(tmp_path, "train")


def test_ensure_splits_seeded_disjoint_and_complete(tmp_path: Path) -> None:
    ids = [f"im{i:02d}" for i in range(10)]
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        _dataset(root, ids, labelled=ids[:9])  # im09 has no label: not in any split
    sa, sb = voc.ensure_splits(a, 0.2, seed=3), voc.ensure_splits(b, 0.2, seed=3)
    assert sa == sb
    assert len(sa["val"]) == 2 and not set(sa["train"]) & set(sa["val"])
    assert sorted(sa["train"] + sa["val"]) == ids[:9] == sa["trainval"]
    for split in voc.SPLITS:
        assert voc.read_split(a, split) == sa[split]
    vals = set()
    for seed in range(4):
        _dataset(tmp_path / f"s{seed}", ids)
        vals.add(tuple(voc.ensure_splits(tmp_path / f"s{seed}", 0.2, seed)["val"]))
    assert len(vals) > 1  # the seed matters


def test_ensure_splits_small_and_existing(tmp_path: Path) -> None:
    _dataset(tmp_path / "one", ["x"])
    assert voc.ensure_splits(tmp_path / "one") == {"train": ["x"], "val": [], "trainval": ["x"]}
    _dataset(tmp_path / "two", ["x", "y"])
    two = voc.ensure_splits(tmp_path / "two", 0.01)
    assert len(two["val"]) == 1 and len(two["train"]) == 1
    # Existing lists are left alone, even when they do not cover every label.
    root = tmp_path / "given"
    _dataset(root, ["a", "b", "c"])
    voc.write_split(root, "train", ["a"])
    voc.write_split(root, "val", ["b"])
    before = (root / "ImageSets" / "Segmentation" / "train.txt").stat().st_mtime_ns
    assert voc.ensure_splits(root) == {"train": ["a"], "val": ["b"], "trainval": ["a", "b"]}
    assert (root / "ImageSets" / "Segmentation" / "train.txt").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="no labelled images"):
        voc.ensure_splits(tmp_path / "empty")


def test_labelme2voc_folder_reads(tmp_path: Path) -> None:
    # labelme2voc writes JPEGImages, SegmentationClass and class_names.txt, no ImageSets.
    _dataset(tmp_path, ["p1", "p2", "p3"])
    (tmp_path / "class_names.txt").write_text("__ignore__\n_background_\nA\nB")
    names = voc.read_class_names(tmp_path)
    assert names == ["_background_", "A", "B"]
    splits = voc.ensure_splits(tmp_path)
    assert sorted(splits["train"] + splits["val"]) == ["p1", "p2", "p3"]
    for iid in splits["trainval"]:
        voc.read_label(voc.label_path(tmp_path, iid), len(names) + 1, (8, 6))


def test_export_voc(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _dataset(src, ["a", "b", "c"], labelled=["a", "b"])
    voc.write_split(src, "train", ["a", "c"])
    exported = voc.export_voc(src, out, ["bg", "x", "y", "z"])
    assert exported == ["a", "b"]
    assert voc.image_ids(out) == ["a", "b"] == voc.labelled_ids(out)
    image = "JPEGImages/a.jpg"
    assert (out / image).read_bytes() == (src / image).read_bytes()
    assert voc.read_split(out, "train") == ["a"]
    assert voc.read_split(out, "val") == ["b"]
    assert voc.read_class_names(out) == ["bg", "x", "y", "z"]
    assert (out / "labelmap.txt").read_text().splitlines()[2] == "x:128,0,0::"
    with pytest.raises(DataError, match="export folder is the dataset"):
        voc.export_voc(src, src, ["bg"])


def test_dataset_summary(tmp_path: Path) -> None:
    _dataset(tmp_path, ["a", "b", "c"], labelled=["a"])
    voc.write_class_names(tmp_path, ["bg", "fg"])
    voc.write_split(tmp_path, "train", ["a"])
    s = voc.dataset_summary(tmp_path)
    assert (s.images, s.labelled, s.classes, s.splits) == (3, 1, 2, {"train": 1})
