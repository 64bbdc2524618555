"""The class set: names, colours, and deletes/reorders that remap saved labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_studio.project.classes import ClassEditRefused, ClassInUse, ClassSet
from fcn_studio.project.project import Project
from training import voc
from training.palette import voc_colormap

NAMES = ["background", "cat", "dog", "bird"]


def _project(root: Path) -> dict[str, np.ndarray]:
    """Three labelled images: 'a' uses cat, 'b' uses dog and bird, 'c' background only."""
    labels = {
        "a": np.array([[0, 1, 255], [1, 0, 0]], np.uint8),
        "b": np.array([[2, 3, 255], [0, 2, 3]], np.uint8),
        "c": np.array([[0, 0, 255], [0, 0, 0]], np.uint8),
    }
    for iid, label in labels.items():
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "JPEGImages" / f"{iid}.png")
        voc.write_label(root / "SegmentationClass" / f"{iid}.png", label)
    voc.write_class_names(root, NAMES)
    return labels


def _read(root: Path, iid: str) -> np.ndarray:
    return voc.read_label(root / "SegmentationClass" / f"{iid}.png")


def test_names_colours_and_edits_that_keep_ids(tmp_path: Path) -> None:
    c = ClassSet(NAMES)
    assert c.color(1) == (128, 0, 0) and c.color(255) == (224, 224, 192)
    assert c.add("fish", (1, 2, 3)) == 4 and c.color(4) == (1, 2, 3)
    c.rename(1, "kitten")
    c.set_color(1, (9, 9, 9))
    assert c.names == ("background", "kitten", "dog", "bird", "fish")
    table = c.color_table()
    assert table.shape == (256, 3) and tuple(table[1]) == (9, 9, 9)
    assert tuple(table[2]) == tuple(voc_colormap()[2])
    c.set_color(1, None)
    assert c.color(1) == (128, 0, 0)
    for bad in ("", "  ", "dog", "a:b", "two\nlines", "__ignore__"):
        with pytest.raises(ClassEditRefused):
            c.rename(3, bad)
    with pytest.raises(ClassEditRefused):
        c.add("dog")
    with pytest.raises(ValueError):
        c.set_color(2, (0, 0, 300))


def test_save_and_load_keep_colours_by_name(tmp_path: Path) -> None:
    c = ClassSet(NAMES)
    c.set_color(2, (10, 20, 30))
    c.save(tmp_path, labelmap=True)
    assert voc.read_class_names(tmp_path) == NAMES
    labelmap = (tmp_path / "labelmap.txt").read_text().splitlines()
    assert labelmap[3] == "dog:0,128,0::"  # export uses the palette the PNGs hold
    back = ClassSet.load(tmp_path)
    assert back.names == tuple(NAMES) and back.color(2) == (10, 20, 30)
    (tmp_path / ".fcn_studio" / "class_colors.json").write_text("garbage")
    assert ClassSet.load(tmp_path).warnings  # colours are cosmetic: a warning, not an error


def test_background_cannot_be_deleted_or_moved(tmp_path: Path) -> None:
    c = ClassSet(NAMES)
    with pytest.raises(ClassEditRefused, match="background"):
        c.delete(0, {})
    with pytest.raises(ClassEditRefused):
        c.move(2, 0, {})


def test_without_a_background_class_0_is_a_class_like_any(tmp_path: Path) -> None:
    # CamVid: class 0 is Sky, a real class, so it can be deleted and moved, and a used
    # class is relabelled as another class or void, never "background".
    c = ClassSet(["Sky", "Building", "Road"], has_background=False)
    plan = c.delete(0, {}, replace_with=255)
    assert plan.new_names == ("Building", "Road") and plan.lut[0] == 255 and plan.lut[1] == 0
    assert c.move(0, 2, {}).new_names == ("Building", "Road", "Sky")
    with pytest.raises(ClassInUse, match="another class or void"):
        c.delete(1, {tmp_path / "a.png": {1}})
    with pytest.raises(ClassEditRefused, match="only class"):
        ClassSet(["Sky"], has_background=False).delete(0, {})


def test_delete_of_a_used_class_is_refused_without_a_remap(tmp_path: Path) -> None:
    labels = _project(tmp_path)
    p = Project.open(tmp_path)
    before = {i: (tmp_path / "SegmentationClass" / f"{i}.png").read_bytes() for i in labels}
    with pytest.raises(ClassInUse, match="'cat' is used by 1 saved label") as err:
        p.classes.delete(1, p.label_usage())
    assert err.value.paths == [tmp_path / "SegmentationClass" / "a.png"]
    assert {i: (tmp_path / "SegmentationClass" / f"{i}.png").read_bytes()
            for i in labels} == before


@pytest.mark.parametrize("fill", [0, 255])
def test_delete_remaps_saved_labels(tmp_path: Path, fill: int) -> None:
    labels = _project(tmp_path)
    p = Project.open(tmp_path)
    plan = p.classes.delete(1, p.label_usage(), replace_with=fill)
    # 'a' holds the deleted class, 'b' holds classes that move down; 'c' is untouched.
    assert {q.stem for q in plan.label_paths} == {"a", "b"}
    c_mtime = (tmp_path / "SegmentationClass" / "c.png").stat().st_mtime_ns
    p.apply_class_change(plan)
    assert p.classes.names == ("background", "dog", "bird")
    assert voc.read_class_names(tmp_path) == ["background", "dog", "bird"]
    expected_a = labels["a"].copy()
    expected_a[labels["a"] == 1] = fill
    np.testing.assert_array_equal(_read(tmp_path, "a"), expected_a)
    np.testing.assert_array_equal(_read(tmp_path, "b"), [[1, 2, 255], [0, 1, 2]])
    assert (tmp_path / "SegmentationClass" / "c.png").stat().st_mtime_ns == c_mtime
    assert not [n for n in os.listdir(tmp_path / "SegmentationClass") if n.endswith(".tmp")]


def test_delete_an_unused_class_needs_no_remap_choice(tmp_path: Path) -> None:
    _project(tmp_path)
    p = Project.open(tmp_path)
    plan = p.classes.delete(3, {q: u - {3} for q, u in p.label_usage().items()})
    assert plan.label_paths == ()
    p.apply_class_change(plan)
    assert p.classes.names == ("background", "cat", "dog")


def test_move_permutes_label_ids_and_void_stays(tmp_path: Path) -> None:
    labels = _project(tmp_path)
    p = Project.open(tmp_path)
    p.classes.set_color(3, (1, 2, 3))  # custom colours follow the class by name
    plan = p.classes.move(3, 1, p.label_usage())  # bird to position 1: cat 1->2, dog 2->3
    assert list(plan.lut[:5]) == [0, 2, 3, 1, 4] and plan.lut[255] == 255
    p.apply_class_change(plan)
    assert p.classes.names == ("background", "bird", "cat", "dog")
    assert p.classes.color(1) == (1, 2, 3)
    lut = np.array([0, 2, 3, 1], np.uint8)
    for iid, label in labels.items():
        expected = np.where(label == 255, 255, lut[np.minimum(label, 3)])
        np.testing.assert_array_equal(_read(tmp_path, iid), expected)
    with pytest.raises(ClassInUse):
        p.classes.move(1, 3, p.label_usage(), refuse_if_used=True)


def test_class_change_also_remaps_stored_predictions(tmp_path: Path) -> None:
    _project(tmp_path)
    p = Project.open(tmp_path)
    p.save_prediction("c", np.array([[3, 3, 3], [0, 0, 255]], np.uint8), "v1")
    p.apply_class_change(p.classes.delete(2, p.label_usage(), replace_with=0))
    np.testing.assert_array_equal(p.load_prediction("c"), [[2, 2, 2], [0, 0, 255]])


def test_failure_part_way_leaves_the_old_labels(tmp_path: Path) -> None:
    labels = _project(tmp_path)
    p = Project.open(tmp_path)
    plan = p.classes.move(3, 1, p.label_usage())
    (tmp_path / "SegmentationClass" / "b.png").write_bytes(b"broken")  # read fails at 'b'
    before = {n: (tmp_path / "SegmentationClass" / n).read_bytes()
              for n in os.listdir(tmp_path / "SegmentationClass")}
    with pytest.raises(Exception, match="b.png"):
        p.apply_class_change(plan)
    assert {n: (tmp_path / "SegmentationClass" / n).read_bytes()
            for n in os.listdir(tmp_path / "SegmentationClass")} == before
    np.testing.assert_array_equal(_read(tmp_path, "a"), labels["a"])
    assert p.classes.names == tuple(NAMES) and voc.read_class_names(tmp_path) == NAMES


def test_a_stale_plan_is_refused(tmp_path: Path) -> None:
    _project(tmp_path)
    p = Project.open(tmp_path)
    plan = p.classes.delete(1, p.label_usage(), replace_with=0)
    p.classes.add("fish")
    with pytest.raises(ClassEditRefused, match="changed"):
        p.apply_class_change(plan)


def test_project_saves_class_edits_that_keep_ids(tmp_path: Path) -> None:
    labels = _project(tmp_path)
    p = Project.open(tmp_path)
    p.classes.add("fish")
    p.classes.rename(1, "kitten")
    p.classes.set_color(2, (5, 6, 7))
    p.save_classes()
    again = Project.open(tmp_path)
    assert again.classes.names == ("background", "kitten", "dog", "bird", "fish")
    assert again.classes.color(2) == (5, 6, 7)
    np.testing.assert_array_equal(again.load_label("a"), labels["a"])  # ids unchanged
