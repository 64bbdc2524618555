"""Safe image reading: every failure becomes an ImageReadError naming the file.

Covers empty files, files that are not images, truncated or corrupt data and
decompression bombs (images whose pixel count is beyond ``MAX_PIXELS``, refused
before their pixels are decoded).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

MAX_PIXELS: int = 200_000_000
"""Largest image accepted (200 MP, about 14000 x 14000). Larger ones are refused as
possible decompression bombs; a 12 MP photo is far below it."""

# Pillow has a bomb guard of its own: it raises for images over twice
# Image.MAX_IMAGE_PIXELS (89.5 MP by default, so 179 MP), which would refuse images
# under our documented limit. Raising its threshold to ours keeps it as a second
# guard (it still raises past 2 x MAX_PIXELS) without cutting the limit short. A
# program that switched Pillow's guard off (None) or raised it further is left alone.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open_checked(path: Path) -> Image.Image:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL warns (and past 2x raises) about large images itself; we apply
            # our own explicit limit below so the message is ours and consistent.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file, or an unsupported format") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused: image too large ({exc})") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open image ({exc})") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageReadError(
            path,
            f"refused: {w}x{h} = {w * h / 1e6:.0f} megapixels is over the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit (possible decompression bomb)",
        )
    return img


def _decode(path: Path, img: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header only, after the same checks."""
    path = Path(path)
    with _open_checked(path) as img:
        return ImageOps.exif_transpose(img).size if _has_rotation(img) else img.size


def _has_rotation(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block is not worth refusing the image for
        return False


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``H x W x 3`` uint8 RGB.

    EXIF orientation is applied, so the array is the image as every viewer shows
    it and label maps drawn on it line up.
    """
    path = Path(path)
    with _open_checked(path) as img:
        _decode(path, img)
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # unusual EXIF: keep the stored orientation
            pass
        if img.mode in _WIDE_MODES:
            img = _to_8_bit(path, img)
        if img.mode != "RGB":
            if img.mode in ("RGBA", "LA") or "transparency" in img.info:
                # Composite onto white so transparent areas do not turn black.
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba).convert("RGB")
            else:
                img = img.convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()


_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
"""Pillow modes of single-channel images with more than 8 bits per pixel."""


def _to_8_bit(path: Path, img: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) grayscale image scaled to 8 bits ("L").

    Pillow's own ``convert("RGB")`` clips such values at 255, which turns a 16-bit
    PNG or TIFF all white. 16 bits map to 8 by their high byte, as every viewer
    shows them. Pillow opens some 16-bit files as 32-bit "I": values up to 255 are
    taken as 8-bit, values up to 65535 as 16-bit. Floating-point images have no
    agreed range and are refused.
    """
    if img.mode == "F":
        raise ImageReadError(path, "32-bit floating-point image: its value range is unknown; "
                                   "convert it to an 8-bit (or 16-bit) image first")
    arr = np.asarray(img)
    if img.mode == "I":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 0xFFFF:
            raise ImageReadError(path, f"32-bit integer image with values {lo}..{hi}; "
                                       "expected 8 or 16 bits per channel (0..65535)")
        if hi <= 0xFF:
            return Image.fromarray(arr.astype(np.uint8), "L")
    return Image.fromarray((arr.astype(np.uint32) >> 8).astype(np.uint8), "L")


def read_label_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a label PNG as stored: ``H x W`` uint8 indices and the PIL mode.

    Palette ("P") images give their indices, grayscale ("L") their values. Any
    other mode is an error: a colour (RGB) label cannot be read as class ids
    without a colour table, which is the "my label PNG is black" trap in reverse.
    """
    path = Path(path)
    with _open_checked(path) as img:
        _decode(path, img)
        if img.mode in ("P", "L"):
            return np.asarray(img, dtype=np.uint8).copy(), img.mode
        if img.mode in ("I;16", "I"):
            arr = np.asarray(img)
            if arr.size and int(arr.max()) > 255:
                raise ImageReadError(path, f"16-bit label with values up to {int(arr.max())}; "
                                           "class ids must be 0..254 or 255 (void)")
            return arr.astype(np.uint8), "L"
        raise ImageReadError(
            path,
            f"label image has mode {img.mode!r}; expected a palette ('P') or grayscale "
            "('L') PNG of class ids",
        )


def list_images(folder: str | Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files in ``folder`` (not recursive), sorted, and the skipped entries.

    Skipped: files whose extension is not an image type, hidden files, and
    sub-folders are ignored silently. Returns (images, skipped) where skipped
    lists (path, reason) for non-image files so a caller can show them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(folder, "not a folder")
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if is_image_path(entry):
            images.append(entry)
        else:
            skipped.append((entry, f"not an image type ({entry.suffix or 'no extension'})"))
    return images, skipped
