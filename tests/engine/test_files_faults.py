"""Files and formats under faults: permissions, 16-bit images, stale temp files,
the image size limit, odd file names and the VOC export CVAT imports (issue 11)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import atomic
from training.atomic import atomic_open, atomic_save, atomic_write_text

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- item 10: atomic writes honour the umask -------------------------------------------


@posix_only
def test_current_umask_follows_the_process_umask() -> None:
    old = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027
    finally:
        os.umask(old)


@posix_only
def test_new_file_gets_0666_less_the_umask(tmp_path: Path, umask_022) -> None:
    atomic_write_text(tmp_path / "class_names.txt", "background\n")
    atomic_save(tmp_path / "label.png", lambda f: f.write(b"png"))
    assert _mode(tmp_path / "class_names.txt") == 0o644
    assert _mode(tmp_path / "label.png") == 0o644


@posix_only
def test_a_stricter_umask_is_honoured_too(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.txt") == 0o600


@posix_only
def test_overwriting_keeps_the_old_files_mode(tmp_path: Path, umask_022) -> None:
    label = tmp_path / "a.png"
    label.write_bytes(b"old")
    os.chmod(label, 0o664)  # group-writable, as a shared project might be
    atomic_save(label, lambda f: f.write(b"new"))
    assert label.read_bytes() == b"new" and _mode(label) == 0o664


@posix_only
def test_label_and_split_list_writers_are_readable_by_others(tmp_path: Path, umask_022) -> None:
    from training import voc

    voc.write_label(tmp_path / "SegmentationClass" / "a.png", np.zeros((4, 6), np.uint8))
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"x")
    voc.write_split(tmp_path, "train", ["a"])
    assert _mode(tmp_path / "SegmentationClass" / "a.png") == 0o644
    assert _mode(voc.split_path(tmp_path, "train")) == 0o644


# -- item 12: temp files of killed saves are removed -----------------------------------


def _killed_writer_temp(folder: Path, name: str) -> Path:
    """A temp file as a save killed mid-write leaves it (the writer really died)."""
    code = ("import sys, os; from training.atomic import make_temp; "
            "fd, tmp = make_temp(sys.argv[1]); os.write(fd, b'half'); print(tmp)")
    out = subprocess.run([sys.executable, "-c", code, str(folder / name)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parents[2]).stdout
    return Path(out.strip())


def test_temp_of_a_dead_writer_is_removed_at_once(tmp_path: Path) -> None:
    temp = _killed_writer_temp(tmp_path, "best.pt")
    (tmp_path / "best.pt").write_bytes(b"good")
    assert temp.exists() and temp.name.startswith(".best.pt.")
    assert atomic.remove_stale_temps(tmp_path) == [temp]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_temp_being_written_by_a_live_writer_is_kept(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def writer() -> None:
        with atomic_open(tmp_path / "state.json", "w") as f:
            f.write("{")
            entered.set()
            release.wait(10)
            f.write("}")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert entered.wait(10)
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1
        assert atomic.remove_stale_temps(tmp_path) == []
        assert temps[0].exists()
    finally:
        release.set()
        thread.join()
    assert (tmp_path / "state.json").read_text() == "{}"


def test_only_the_writers_own_temp_names_are_touched(tmp_path: Path) -> None:
    keep = ["notes.tmp", ".hidden.tmp", "a.png", ".x.1-zzzzzz-abcdefgh.tmp", ".cfg.tmp"]
    for name in keep:
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 10 * atomic.STALE_AGE_S
    for name in keep:
        os.utime(tmp_path / name, (old, old))
    assert atomic.remove_stale_temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_old_or_foreign_temps_go_only_after_the_age_limit(tmp_path: Path) -> None:
    legacy = tmp_path / ".a.png.k2j_9x0q.tmp"  # named as before the pid was in the name
    foreign = tmp_path / ".b.png.123-ffffff-abcdefgh.tmp"  # another host: pid unknowable
    for p in (legacy, foreign):
        p.write_bytes(b"x")
    if atomic._HOST_TAG == "ffffff":  # pragma: no cover - one host in 16 million
        pytest.skip("this host's tag is the one used for 'another host'")
    assert atomic.remove_stale_temps(tmp_path) == []
    old = time.time() - atomic.STALE_AGE_S - 5
    os.utime(legacy, (old, old))
    os.utime(foreign, (old, old))
    assert sorted(atomic.remove_stale_temps(tmp_path)) == sorted([legacy, foreign])


def test_recursive_cleanup_and_unreadable_folders(tmp_path: Path) -> None:
    sub = tmp_path / "models" / "v001"
    sub.mkdir(parents=True)
    temp = _killed_writer_temp(sub, "model.pt")
    assert atomic.remove_stale_temps(tmp_path) == []  # not recursive by default
    assert atomic.remove_stale_temps(tmp_path, recursive=True) == [temp]
    assert atomic.remove_stale_temps(tmp_path / "missing") == []


# -- item 11: 16-bit images are scaled to 8 bits, not read as all white --------------


def _gradient16(h: int = 48, w: int = 64) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint32).reshape(h, w) * 65535 // (h * w - 1)).astype(
        np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_image_is_scaled_to_8_bits(tmp_path: Path, suffix: str) -> None:
    from training.images import read_image

    values = _gradient16()
    path = tmp_path / f"depth{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")  # what Pillow makes of the file
    rgb = read_image(path)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    expected = (values >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)


def test_32_bit_integer_images_holding_16_or_8_bit_values(tmp_path: Path) -> None:
    from training.images import read_image

    wide = _gradient16().astype(np.int32)
    Image.fromarray(wide, "I").save(tmp_path / "wide.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "wide.tif")[..., 0], wide >> 8)
    narrow = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.int32)
    Image.fromarray(narrow, "I").save(tmp_path / "narrow.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "narrow.tif")[..., 0], narrow)


def test_float_and_out_of_range_images_are_refused_by_name(tmp_path: Path) -> None:
    from training.errors import ImageReadError
    from training.images import read_image

    Image.fromarray(np.ones((8, 8), np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(ImageReadError, match=r"float\.tif: 32-bit floating-point"):
        read_image(tmp_path / "float.tif")
    Image.fromarray(np.full((8, 8), 70000, np.int32), "I").save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big\.tif: .*values 70000\.\.70000"):
        read_image(tmp_path / "big.tif")


# -- item 13: the 200 MP limit is 200 MP ----------------------------------------------


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width x height`` pixels (8-bit gray) but holds no data:
    only its header is read, so a test can ask about a huge image cheaply."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_images_up_to_200_megapixels_are_accepted(tmp_path: Path) -> None:
    from training.images import MAX_PIXELS, image_size

    # 190 MP: over Pillow's own default guard (2 x 89.5 MP) but under ours.
    assert image_size(_png_header(tmp_path / "pano.png", 19_000, 10_000)) == (19_000, 10_000)
    side = int(MAX_PIXELS ** 0.5)
    assert image_size(_png_header(tmp_path / "edge.png", side, side)) == (side, side)


def test_images_over_200_megapixels_are_refused_with_the_limit(tmp_path: Path) -> None:
    from training.errors import ImageReadError
    from training.images import image_size

    with pytest.raises(ImageReadError, match=r"20000x10100 = 202 megapixels is over the "
                                             r"200 MP limit"):
        image_size(_png_header(tmp_path / "bomb.png", 20_000, 10_100))
    with pytest.raises(ImageReadError, match=r"bomb2\.png: refused: image too large"):
        image_size(_png_header(tmp_path / "bomb2.png", 40_000, 40_000))  # Pillow's guard


# -- item 14: a labelled image named ' a.jpg' is not left out silently --------------


def _tiny_voc(root: Path, names: list[str]) -> None:
    from training import voc

    (root / "JPEGImages").mkdir(parents=True)
    for name in names:
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        voc.write_label(root / "SegmentationClass" / f"{name}.png", np.ones((48, 64), np.uint8))
    voc.write_class_names(root, ["background", "thing"])


@pytest.mark.parametrize("odd", [" a", "a "])
def test_labelled_image_with_spaces_around_its_name_stops_the_split(tmp_path: Path,
                                                                   odd: str) -> None:
    from training import voc
    from training.errors import DataError

    _tiny_voc(tmp_path, [odd, "b", "c"])
    with pytest.raises(DataError, match=rf"SegmentationClass/{odd}\.png: labelled image "
                                        rf"'{odd}' has spaces .* rename the image and its "
                                        r"label to 'a'"):
        voc.ensure_splits(tmp_path)
    assert not (tmp_path / "ImageSets").exists()  # no list that silently lacks it
    with pytest.raises(DataError, match="rename"):
        voc.export_voc(tmp_path, tmp_path / "export", ["background", "thing"])


def test_an_unlabelled_image_with_an_odd_name_does_not_stop_training(tmp_path: Path) -> None:
    from training import voc

    _tiny_voc(tmp_path, ["b", "c"])
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "JPEGImages" / " x.jpg")
    splits = voc.ensure_splits(tmp_path)
    assert splits["trainval"] == ["b", "c"]
    assert voc.image_ids(tmp_path) == ["b", "c"]  # ' x.jpg' is not the image of id 'x'


# -- item 16b: the VOC export imports into CVAT (Datumaro) and torchvision -----------

EXPORT_CLASSES = ["background", "car", "road"]


def _labelled_project(root: Path) -> dict[str, np.ndarray]:
    """Three labelled 64x48 images, each with void pixels (255) as a brush leaves them."""
    from training import voc

    labels: dict[str, np.ndarray] = {}
    (root / "JPEGImages").mkdir(parents=True)
    for i in range(3):
        iid = f"frame{i}"
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(
            root / "JPEGImages" / f"{iid}.jpg")
        label = np.zeros((48, 64), np.uint8)
        label[5:20, 5 + i:30] = 1
        label[25:40, :] = 2
        label[42:, 50:] = 255  # void
        voc.write_label(voc.label_path(root, iid), label)
        labels[iid] = label
    voc.write_class_names(root, EXPORT_CLASSES)
    return labels


def test_export_declares_void_last_and_reads_back_without_it(tmp_path: Path) -> None:
    from training import voc

    _labelled_project(tmp_path / "src")
    voc.export_voc(tmp_path / "src", tmp_path / "out", EXPORT_CLASSES)
    lines = (tmp_path / "out" / "labelmap.txt").read_text().splitlines()
    assert lines[1:] == ["background:0,0,0::", "car:128,0,0::", "road:0,128,0::",
                         "ignored:224,224,192::"]
    (tmp_path / "out" / "class_names.txt").unlink()  # labelmap.txt alone, as CVAT exports
    assert voc.read_class_names(tmp_path / "out") == EXPORT_CLASSES  # void is not a class


def test_a_class_named_ignored_gets_a_distinct_void_name(tmp_path: Path) -> None:
    from training import voc

    voc.write_labelmap(tmp_path, ["background", "ignored"])
    assert (tmp_path / "labelmap.txt").read_text().splitlines()[-1] == "ignored1:224,224,192::"
    assert voc.read_class_names(tmp_path) == ["background", "ignored"]


def test_cvat_imports_the_export_with_datumaro(tmp_path: Path) -> None:
    """CVAT imports a VOC segmentation folder with Datumaro's VOC segmentation reader."""
    dm = pytest.importorskip("datumaro")
    from training import voc

    labels = _labelled_project(tmp_path / "src")
    voc.export_voc(tmp_path / "src", tmp_path / "out", EXPORT_CLASSES)
    dataset = dm.Dataset.import_from(str(tmp_path / "out"), "voc_segmentation")
    names = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    assert names == [*EXPORT_CLASSES, "ignored"]
    items = {item.id: item for item in dataset if item.subset == "trainval"}
    assert sorted(items) == sorted(labels)
    for iid, label in labels.items():
        masks = {names[a.label]: a.image for a in items[iid].annotations
                 if a.type == dm.AnnotationType.mask}
        for class_id, name in enumerate(EXPORT_CLASSES):
            np.testing.assert_array_equal(masks[name], label == class_id)
        np.testing.assert_array_equal(masks["ignored"], label == 255)


def test_torchvision_reads_the_export(tmp_path: Path) -> None:
    from torchvision.datasets import VOCSegmentation

    from training import voc

    labels = _labelled_project(tmp_path / "src")
    out = tmp_path / "VOCdevkit" / "VOC2012"  # the layout VOCSegmentation expects
    voc.export_voc(tmp_path / "src", out, EXPORT_CLASSES)
    dataset = VOCSegmentation(str(tmp_path), year="2012", image_set="trainval")
    assert len(dataset) == 3
    for (image, target), iid in zip(dataset, sorted(labels), strict=True):
        assert image.size == (64, 48) and target.mode == "P"
        np.testing.assert_array_equal(np.asarray(target), labels[iid])
