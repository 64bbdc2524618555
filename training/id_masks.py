"""Import grayscale class-id masks (CamVid, Cityscapes trainIds) into a VOC folder.

Such datasets store one mask per image whose pixel values are class ids, with a
class list beside them and one id reserved for "unlabelled". The import copies
the images unchanged, maps the void id to 255 and saves each mask as a VOC
palette PNG, so the result reads like any other project (ARCHITECTURE.md, "Import").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import voc
from .errors import DataError, LabelError
from .images import image_size, list_images, read_label_image
from .palette import VOID


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (line i is class i).

    A CVAT ``labelmap.txt`` (``name:r,g,b::`` lines) is read too, recognised by
    its name; a leading labelme ``__ignore__`` line is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing: class list file (one class name per line, "
                              "line i is class i)")
    text = voc._read_text(path)
    if path.name == voc.LABELMAP_FILE:
        return voc.parse_labelmap(text, path)[0]
    return voc.parse_class_names(text, path)


def convert_id_mask(mask: np.ndarray, path: str | Path, num_classes: int,
                    void_id: int | None) -> np.ndarray:
    """Map ``void_id`` to 255 and check the remaining ids; ``path`` names the mask in errors."""
    counts = np.bincount(mask.reshape(-1), minlength=256)
    present = counts.copy()
    present[VOID] = 0
    if void_id is not None:
        present[void_id] = 0
    bad = np.flatnonzero(present[num_classes:]) + num_classes
    if bad.size:
        voids = " and ".join(str(v) for v in sorted({VOID, VOID if void_id is None else void_id}))
        shown = ", ".join(str(int(v)) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
        raise LabelError(path, f"class ids {shown} out of range: {num_classes} classes allow "
                               f"0..{num_classes - 1} and void {voids}")
    if void_id is None or void_id == VOID or counts[void_id] == 0:
        return mask
    out = mask.copy()
    out[mask == void_id] = VOID
    return out


def import_id_masks(images_dir: str | Path, masks_dir: str | Path, out_root: str | Path,
                    class_names: Sequence[str], void_id: int | None, *,
                    split: str | None = None, mask_suffix: str = "",
                    image_suffix: str = "") -> list[str]:
    """Import images and their class-id masks into the VOC folder ``out_root``.

    Image ``X<image_suffix>.<ext>`` pairs with mask ``X<mask_suffix>.png`` and gets
    the id ``X`` (``image_suffix`` lets Cityscapes' ``_leftImg8bit`` go). Every pair
    is checked before anything is written, so a bad mask leaves ``out_root`` as it
    was. With ``split`` the ids are added to that list and to trainval. Returns the
    imported ids, sorted.
    """
    images_dir, masks_dir, out_root = Path(images_dir), Path(masks_dir), Path(out_root)
    names = voc._checked_names([str(n) for n in class_names], out_root / voc.CLASS_NAMES_FILE)
    if void_id is not None:
        if not 0 <= void_id <= 255:
            raise ValueError(f"void_id must be in 0..255, not {void_id}")
        if void_id < len(names):
            raise ValueError(f"void_id {void_id} is also class {names[void_id]!r}; leave the "
                             "void entry out of the class list")
    existing = out_root / voc.CLASS_NAMES_FILE
    if existing.is_file() and voc.read_class_names(out_root) != names:
        raise DataError(existing, f"the dataset's classes {voc.read_class_names(out_root)} "
                                  f"differ from the imported classes {names}")

    pairs = _pairs(images_dir, masks_dir, out_root, image_suffix, mask_suffix)
    # Check every pair before writing: a half-imported folder is worse than a clear
    # error. Masks are read twice rather than held, so a Cityscapes-sized import
    # does not need gigabytes of memory.
    for _iid, image, mask_path in pairs:
        _checked_mask(image, mask_path, len(names), void_id)
    for iid, image, mask_path in pairs:
        label = _checked_mask(image, mask_path, len(names), void_id)
        voc._copy_file(image, out_root / voc.IMAGES_DIR / f"{iid}{image.suffix}")
        voc.write_label(voc.label_path(out_root, iid), label)
    voc.write_class_names(out_root, names)
    ids = sorted(iid for iid, _, _ in pairs)
    if split is not None:
        for name in dict.fromkeys((split, "trainval")):
            _append_split(out_root, name, ids)
    return ids


def _checked_mask(image: Path, mask_path: Path, num_classes: int,
                  void_id: int | None) -> np.ndarray:
    mask, _mode = read_label_image(mask_path)
    w, h = image_size(image)
    if mask.shape != (h, w):
        raise LabelError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but "
                                    f"its image {image.name} is {w}x{h}")
    return convert_id_mask(mask, mask_path, num_classes, void_id)


def _pairs(images_dir: Path, masks_dir: Path, out_root: Path, image_suffix: str,
           mask_suffix: str) -> list[tuple[str, Path, Path]]:
    if not masks_dir.is_dir():
        raise DataError(masks_dir, "not a folder (expected the class-id masks)")
    images, _skipped = list_images(images_dir)  # non-image files are skipped, not errors
    pairs: list[tuple[str, Path, Path]] = []
    seen: dict[str, Path] = {}
    for image in images:
        stem = image.stem
        if image_suffix:
            if not stem.endswith(image_suffix):
                continue  # not one of this dataset's frames (e.g. a stray thumbnail)
            stem = stem[: -len(image_suffix)]
        iid = voc.validate_id(out_root, stem, image)
        if iid in seen:
            raise DataError(image, f"same id {iid!r} as {seen[iid].name}")
        seen[iid] = image
        try:
            present = voc.image_path(out_root, iid)
        except DataError:
            present = None
        if present is not None and present.name != f"{iid}{image.suffix}":
            # Two files for one id would make the id ambiguous in the dataset.
            raise DataError(image, f"the dataset already has {present.name} for id {iid!r}")
        mask = masks_dir / f"{stem}{mask_suffix}.png"
        if not mask.is_file():
            raise DataError(image, f"no mask for this image: {mask} is missing")
        pairs.append((iid, image, mask))
    if not pairs:
        raise DataError(images_dir, "no images to import")
    return pairs


def _append_split(root: Path, split: str, ids: list[str]) -> None:
    path = voc.split_path(root, split)
    current = voc.read_split(root, split) if path.is_file() else []
    have = set(current)
    voc.write_split(root, split, current + [i for i in ids if i not in have])


def import_camvid(camvid_root: str | Path, out_root: str | Path) -> dict[str, list[str]]:
    """Import a CamVid folder (train/ trainannot/ val/ valannot/ classes.txt, void 11).

    Returns the imported ids per split; the VOC folder gets train, val and trainval lists.
    """
    camvid_root = Path(camvid_root)
    names = read_class_list(camvid_root / "classes.txt")
    result: dict[str, list[str]] = {}
    for split in ("train", "val"):
        if (camvid_root / split).is_dir():
            result[split] = import_id_masks(camvid_root / split, camvid_root / f"{split}annot",
                                            out_root, names, 11, split=split)
    if not result:
        raise DataError(camvid_root, "no train/ or val/ folder: not a CamVid layout")
    return result
