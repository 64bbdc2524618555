from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import images
from training.errors import ImageReadError


def _save_rgb(path: Path, w: int = 8, h: int = 6) -> np.ndarray:
    arr = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_read_png_round_trip(tmp_path: Path) -> None:
    arr = _save_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.png"), arr)


def test_empty_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg.*empty"):
        images.read_image(p)


def test_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, this is text")
    with pytest.raises(ImageReadError, match="notes.png.*not an image"):
        images.read_image(p)


def test_truncated_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "t.jpg"
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="t.jpg.*(corrupt|truncated|cannot open)"):
        images.read_image(p)


def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    with pytest.raises(ImageReadError, match="big.png.*refused"):
        images.read_image(p)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(p)
    assert images.read_image(p).min() == 255


def test_list_images_skips_and_reports(tmp_path: Path) -> None:
    _save_rgb(tmp_path / "b.jpg")
    _save_rgb(tmp_path / "a.PNG")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    found, skipped = images.list_images(tmp_path)
    assert [p.name for p in found] == ["a.PNG", "b.jpg"]
    assert [p.name for p, _ in skipped] == ["readme.txt"]


def test_rgb_label_refused(tmp_path: Path) -> None:
    p = tmp_path / "l.png"
    _save_rgb(p)
    with pytest.raises(ImageReadError, match="l.png.*mode 'RGB'"):
        images.read_label_image(p)


def test_data_errors_survive_pickling_and_one_argument_rebuild() -> None:
    import pickle

    err = ImageReadError("/x/a.png", "broken")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ImageReadError and str(back) == str(err) and back.path == err.path
    # PyTorch's DataLoader re-raises worker errors as exc_type(message).
    rebuilt = ImageReadError("Caught ImageReadError in DataLoader worker: /x/a.png: broken")
    assert "a.png: broken" in str(rebuilt)
