"""The project model: opening VOC folders, entry states, labels, predictions, lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_studio.project import project_state
from fcn_studio.project.project import NotAProject, Project
from fcn_studio.project.project_state import VAL_SHARE, split_for
from training import voc
from training.errors import DataError, ImageReadError, LabelError
from training.palette import voc_colormap

W, H = 8, 6
NAMES = ["background", "box", "disc"]


def _label(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(NAMES), (H, W)).astype(np.uint8)
    label[0, 0] = 255
    return label


def _image(path: Path, w: int = W, h: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path)


def _voc(root: Path, n: int = 5, labelled: int = 3, lists: bool = True) -> list[str]:
    """A VOC folder with n images, the first ``labelled`` with labels."""
    ids = [f"im{i:02d}" for i in range(n)]
    for iid in ids:
        _image(root / "JPEGImages" / f"{iid}.jpg")
    for i, iid in enumerate(ids[:labelled]):
        voc.write_label(root / "SegmentationClass" / f"{iid}.png", _label(i))
    if lists:
        voc.write_split(root, "train", ids[: labelled - 1])
        voc.write_split(root, "val", ids[labelled - 1: labelled])
        voc.write_split(root, "trainval", ids[:labelled])
    # labelme2voc writes no trailing newline
    (root / "class_names.txt").write_text("\n".join(NAMES))
    return ids


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


# -- opening ------------------------------------------------------------------------------


def test_open_voc_folder(tmp_path: Path) -> None:
    ids = _voc(tmp_path)
    p = Project.open(tmp_path)
    assert p.ids == tuple(ids) and len(p) == 5
    assert p.classes.names == tuple(NAMES)
    assert [p.entry(i).state for i in ids] == ["saved"] * 3 + ["new"] * 2
    assert [p.entry(i).split for i in ids] == ["train", "train", "val", None, None]
    e = p.entry(ids[0])
    assert e.image_path == tmp_path / "JPEGImages" / "im00.jpg" and e.error is None
    assert p.warnings == []


def test_open_labelme2voc_output_without_imagesets(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=4, labelled=3, lists=False)
    p = Project.open(tmp_path)
    assert [p.entry(i).split for i in ids] == [None] * 4
    assert not (tmp_path / "ImageSets").exists()
    # The first save lists every labelled image, not only the saved one.
    p.save_label(ids[3], _label(9))
    train, val = voc.read_split(tmp_path, "train"), voc.read_split(tmp_path, "val")
    assert sorted(train + val) == ids and train and val
    assert voc.read_split(tmp_path, "trainval") == ids


def test_plain_folder_is_not_a_project(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png"):
        _image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NotAProject) as err:
        Project.open(tmp_path)
    assert err.value.image_count == 2 and "2 image" in str(err.value)
    with pytest.raises(DataError, match="not a folder"):
        Project.open(tmp_path / "missing")


def test_open_never_modifies_files(tmp_path: Path) -> None:
    ids = _voc(tmp_path)
    (tmp_path / "SegmentationClassVisualization").mkdir()  # foreign folders are left alone
    before = _snapshot(tmp_path)
    p = Project.open(tmp_path)
    for iid in ids:
        p.entry(iid)
        p.load_image(iid)
        p.load_label(iid)
        p.load_prediction(iid)
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / ".fcn_studio").exists()


def test_open_without_class_names_assumes_voc_classes(tmp_path: Path) -> None:
    _voc(tmp_path)
    (tmp_path / "class_names.txt").unlink()
    p = Project.open(tmp_path)
    assert len(p.classes) == 21 and "PASCAL VOC" in p.warnings[0]


def test_open_ten_thousand_images(tmp_path: Path) -> None:
    # Hard links to one 1x1 PNG: real files, made in a fraction of a second.
    # Timing is the benchmark's job (benchmarks/bench_project.py); this checks it works.
    folder = tmp_path / "JPEGImages"
    _image(folder / "seed.png", 1, 1)
    for i in range(10_000):
        os.link(folder / "seed.png", folder / f"f{i:05d}.png")
    (tmp_path / "class_names.txt").write_text("background\nthing\n")
    p = Project.open(tmp_path)
    assert len(p) == 10_001 and p.entry("f09999").state == "new"


def test_odd_file_names_are_skipped_with_a_warning(tmp_path: Path) -> None:
    _voc(tmp_path, n=1, labelled=0, lists=False)
    _image(tmp_path / "JPEGImages" / "a..b.jpg")
    _image(tmp_path / "JPEGImages" / ".hidden.jpg")
    (tmp_path / "JPEGImages" / "readme.txt").write_text("x")
    p = Project.open(tmp_path)
    assert p.ids == ("im00",) and "a..b.jpg" in p.warnings[0]


# -- creating --------------------------------------------------------------------------------


def test_create_from_images_copies_bytes_and_skips_non_images(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    for name in ("b.jpg", "a.png", "a.jpg"):
        _image(src / name)
    (src / "notes.txt").write_text("not an image")
    p, skipped = Project.create_from_images(src, tmp_path / "proj", NAMES)
    assert p.ids == ("a", "b")
    assert {(q.name, "not an image" in why or "same name" in why) for q, why in skipped} == {
        ("notes.txt", True), ("a.png", True)}
    for iid in p.ids:
        assert p.image_path(iid).read_bytes() == (src / p.image_path(iid).name).read_bytes()
    assert voc.read_class_names(tmp_path / "proj") == NAMES
    assert {p.entry(i).state for i in p.ids} == {"new"}
    with pytest.raises(DataError, match="already exists"):
        Project.create_from_images(src, tmp_path / "proj", NAMES)


def test_create_in_place_from_a_plain_folder(tmp_path: Path) -> None:
    _image(tmp_path / "x.jpg")
    p, skipped = Project.create_from_images(tmp_path, tmp_path, NAMES)
    assert p.ids == ("x",) and skipped == [] and (tmp_path / "x.jpg").is_file()


def test_create_from_id_masks(tmp_path: Path) -> None:
    images, masks = tmp_path / "img", tmp_path / "mask"
    _image(images / "f1.png")
    masks.mkdir()
    mask = np.zeros((H, W), np.uint8)
    mask[0, :] = 3  # the void id of this dataset
    mask[1, :] = 2
    Image.fromarray(mask).save(masks / "f1.png")
    p = Project.create_from_id_masks(images, masks, tmp_path / "proj", NAMES, void_id=3)
    assert p.entry("f1").state == "saved"
    label = p.load_label("f1")
    assert (label[0] == 255).all() and (label[1] == 2).all()


# -- states, labels, predictions ------------------------------------------------------------


def test_states(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=3, labelled=0, lists=False)
    p = Project.open(tmp_path)
    assert p.state_of(ids[0]) == "new"
    p.save_prediction(ids[0], _label(1), "v1", 0.25)
    assert p.state_of(ids[0]) == "predicted"
    p.save_label(ids[0], _label(2))
    # Unsaved edits are the labelling session's to know (fcn_studio.session), not the
    # project's: on disk an image is new, predicted or saved.
    assert p.state_of(ids[0]) == "saved"
    with pytest.raises(KeyError):
        p.entry("nope")


def test_save_label_round_trip_is_a_palette_png(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=2, labelled=0, lists=False)
    p = Project.open(tmp_path)
    label = _label(4)
    p.save_label(ids[1], label)
    np.testing.assert_array_equal(p.load_label(ids[1]), label)
    with Image.open(tmp_path / "SegmentationClass" / f"{ids[1]}.png") as img:
        assert img.mode == "P"
        palette = np.asarray(img.getpalette(), np.uint8).reshape(-1, 3)[:256]
    np.testing.assert_array_equal(palette, voc_colormap())
    assert sorted(os.listdir(tmp_path / "SegmentationClass")) == [f"{ids[1]}.png"]


def test_lists_are_updated_and_stable(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=12, labelled=0, lists=False)
    p = Project.open(tmp_path)
    seen: dict[str, str] = {}
    for k, iid in enumerate(ids):
        p.save_label(iid, _label(k))
        now = {i: p.entry(i).split for i in ids[: k + 1]}
        assert all(now[i] == s for i, s in seen.items())  # nobody moved
        seen = now  # type: ignore[assignment]
        train, val = voc.read_split(tmp_path, "train"), voc.read_split(tmp_path, "val")
        assert set(train) | set(val) == set(ids[: k + 1]) and not set(train) & set(val)
        assert set(voc.read_split(tmp_path, "trainval")) == set(ids[: k + 1])
        if k >= 1:
            assert train and val
    again = Project.open(tmp_path)
    assert {i: again.entry(i).split for i in ids} == seen


def test_existing_assignments_never_move(tmp_path: Path) -> None:
    ids = _voc(tmp_path)  # im00, im01 train; im02 val
    p = Project.open(tmp_path)
    p.save_label("im02", _label(7))  # re-saving a val image keeps it in val
    p.save_label("im03", _label(8))
    assert voc.read_split(tmp_path, "val")[0] == "im02"
    assert voc.read_split(tmp_path, "train")[:2] == ids[:2]


def test_split_rule_is_stable_and_near_the_share() -> None:
    ids = [f"x{i}" for i in range(2000)]
    sides = [split_for(i, ["t"], ["v"]) for i in ids]
    assert sides == [split_for(i, ["t"], ["v"]) for i in ids]
    assert abs(sides.count("val") / len(ids) - VAL_SHARE) < 0.04
    assert split_for("a", ["t"], []) == "val" and split_for("a", [], ["v"]) == "train"


def test_read_only_folder_error_keeps_memory_state(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=2, labelled=0, lists=False)
    p = Project.open(tmp_path)
    for d in (tmp_path, tmp_path / "JPEGImages"):
        d.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(DataError) as err:
            p.save_label(ids[0], _label())
        assert isinstance(err.value.__cause__, PermissionError)
        assert p.state_of(ids[0]) == "new" and p.history == []
    finally:
        for d in (tmp_path, tmp_path / "JPEGImages"):
            d.chmod(0o755)


def test_failed_label_write_is_a_data_error_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path as a read-only folder, reached even when running as root.
    ids = _voc(tmp_path, n=2, labelled=0, lists=False)
    p = Project.open(tmp_path)

    def refuse(path: Path, _writer: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(voc, "atomic_save", refuse)
    with pytest.raises(DataError, match=rf"{ids[0]}\.png.*Permission denied"):
        p.save_label(ids[0], _label())
    assert p.state_of(ids[0]) == "new" and p.history == []
    assert p.entry(ids[0]).split is None
    assert not (tmp_path / "ImageSets").exists() and not (tmp_path / ".fcn_studio").exists()


def test_label_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=1, labelled=0, lists=False)
    voc.write_label(tmp_path / "SegmentationClass" / f"{ids[0]}.png", np.zeros((4, 5), np.uint8))
    p = Project.open(tmp_path)
    with pytest.raises(LabelError, match=r"5x4.*8x6"):
        p.load_label(ids[0])
    with pytest.raises(LabelError, match=r"5x4.*8x6"):
        p.save_label(ids[0], np.zeros((4, 5), np.uint8))


def test_label_with_unknown_class_is_refused(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=1, labelled=0, lists=False)
    p = Project.open(tmp_path)
    bad = _label()
    bad[2, 2] = 7
    with pytest.raises(LabelError, match="7"):
        p.save_label(ids[0], bad)


def test_prediction_is_stored_apart_from_the_label(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=2, labelled=1, lists=False)
    p = Project.open(tmp_path)
    label_bytes = (tmp_path / "SegmentationClass" / f"{ids[0]}.png").read_bytes()
    prediction = _label(5)
    p.save_prediction(ids[0], prediction, "v3", 0.4)
    assert (tmp_path / ".fcn_studio" / "predictions" / f"{ids[0]}.png").is_file()
    assert (tmp_path / "SegmentationClass" / f"{ids[0]}.png").read_bytes() == label_bytes
    np.testing.assert_array_equal(p.load_prediction(ids[0]), prediction)
    np.testing.assert_array_equal(p.load_label(ids[0]), _label(0))
    assert p.load_prediction(ids[1]) is None and p.load_label(ids[1]) is None
    e = p.entry(ids[0])
    assert (e.state, e.model_version, e.mean_uncertainty) == ("saved", "v3", 0.4)
    assert p.models_dir == tmp_path / ".fcn_studio" / "models"


def test_correction_effort_and_history(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=2, labelled=0, lists=False)
    p = Project.open(tmp_path)
    prediction = np.zeros((H, W), np.uint8)
    p.save_prediction(ids[0], prediction, "v1", None)
    corrected = prediction.copy()
    corrected[:2, :3] = 1  # 6 of 48 pixels
    assert p.save_label(ids[0], corrected) == pytest.approx(6 / 48)
    assert p.save_label(ids[1], corrected) is None  # no prediction: nothing to compare
    assert [(h.id, h.effort) for h in p.history] == [(ids[0], 6 / 48), (ids[1], None)]
    again = Project.open(tmp_path)  # persisted in state.json
    assert again.entry(ids[0]).correction_effort == pytest.approx(6 / 48)
    assert again.entry(ids[0]).model_version == "v1"
    assert len(again.history) == 2


def test_prediction_state_is_written_lazily_and_flushed(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=3, labelled=0, lists=False)
    p = Project.open(tmp_path)
    for iid in ids:
        p.save_prediction(iid, _label(), "v2", 0.5)
    p.flush()
    data = json.loads((tmp_path / ".fcn_studio" / "state.json").read_text())
    assert data["schema"] == project_state.SCHEMA_VERSION
    assert {i: r["model_version"] for i, r in data["images"].items()} == dict.fromkeys(ids, "v2")


def test_corrupt_state_json_is_set_aside(tmp_path: Path) -> None:
    ids = _voc(tmp_path)
    app = tmp_path / ".fcn_studio"
    app.mkdir()
    (app / "state.json").write_text("{not json")
    p = Project.open(tmp_path)
    assert (app / "state.json.bad").read_text() == "{not json"
    assert not (app / "state.json").exists()
    assert any("state.json" in w for w in p.warnings)
    assert p.entry(ids[0]).state == "saved"  # labels are not affected


def test_state_json_from_a_newer_app_is_refused(tmp_path: Path) -> None:
    _voc(tmp_path)
    (tmp_path / ".fcn_studio").mkdir()
    (tmp_path / ".fcn_studio" / "state.json").write_text('{"schema": 99}')
    with pytest.raises(DataError, match="newer"):
        Project.open(tmp_path)


def test_unreadable_image_is_marked(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=2, labelled=0, lists=False)
    (tmp_path / "JPEGImages" / f"{ids[0]}.jpg").write_bytes(b"")
    p = Project.open(tmp_path)
    with pytest.raises(ImageReadError):
        p.load_image(ids[0])
    assert "empty" in (p.entry(ids[0]).error or "")
    p.mark_unreadable(ids[1], "too dark to label")
    assert p.entry(ids[1]).error == "too dark to label"


def test_core_imports_neither_qt_nor_torch() -> None:
    code = ("import sys, fcn_studio.project.project, fcn_studio.project.classes, "
            "fcn_studio.project.lockfile\n"
            "print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert not {m.split(".")[0] for m in out} & {"PySide6", "shiboken6", "torch"}


def test_saved_labels_are_listed_the_most_recently_saved_first(tmp_path: Path) -> None:
    ids = _voc(tmp_path, n=5, labelled=3)  # im00-im02 labelled before: no save history
    p = Project.open(tmp_path)
    assert p.saved_newest_first() == ["im00", "im01", "im02"]  # unknown order: by id
    p.save_label(ids[4], _label(4))
    p.save_label(ids[1], _label(5))
    assert p.saved_newest_first() == ["im01", "im04", "im00", "im02"]
    p.flush()
    assert Project.open(tmp_path).saved_newest_first() == ["im01", "im04", "im00", "im02"]
