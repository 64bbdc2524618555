"""A PASCAL VOC segmentation dataset folder: class lists, label PNGs, split lists.

Layout (ARCHITECTURE.md, "Project = dataset folder")::

    JPEGImages/<id>.<ext>                      images (any readable type, usually .jpg)
    SegmentationClass/<id>.png                 palette PNGs, VOC colormap, 255 = void
    ImageSets/Segmentation/{train,val,trainval}.txt   one id per line
    class_names.txt                            line i is class i (labelme2voc)
    labelmap.txt                               name:r,g,b:: lines (CVAT/Datumaro), on export

numpy and Pillow only: the desktop core uses this module without loading torch.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image

from .atomic import atomic_open, atomic_save, atomic_write_text
from .errors import DataError, LabelError
from .images import image_size, is_image_path, read_label_image
from .palette import VOID, palette_bytes, voc_colormap

IMAGES_DIR = "JPEGImages"
LABELS_DIR = "SegmentationClass"
SETS_DIR = Path("ImageSets") / "Segmentation"
CLASS_NAMES_FILE = "class_names.txt"
LABELMAP_FILE = "labelmap.txt"
LABELMAP_HEADER = "# label:color_rgb:parts:actions"
SPLITS: tuple[str, ...] = ("train", "val", "trainval")
MAX_CLASSES = 255  # ids 0..254; 255 is void
IGNORE_NAME = "__ignore__"  # labelme's label for void (-1), never a class of its own
LABELMAP_VOID_NAME = "ignored"
"""Name of void (255) in labelmap.txt, as Datumaro's own VOC export writes it."""

# Probed in this order, so a dataset holding both <id>.jpg and <id>.png resolves
# to the same file every time.
_PROBE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)


# -- class names ------------------------------------------------------------------------


def parse_class_names(text: str, source: str | Path) -> list[str]:
    """Class names from ``class_names.txt`` text; ``source`` names the file in errors.

    Surrounding whitespace and trailing blank lines are tolerated. A leading
    ``__ignore__`` (labelme's labels.txt, where it is id -1 = void) is dropped.
    """
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if lines and lines[0] == IGNORE_NAME:
        lines = lines[1:]
    return _checked_names(lines, source)


def parse_labelmap(text: str, source: str | Path) -> tuple[list[str], np.ndarray]:
    """Names and colours (``N x 3`` uint8) from ``labelmap.txt`` text.

    An empty colour field takes the VOC colormap entry of that id. A last line
    with the void colour (224,224,192; Datumaro's ``ignored:224,224,192::``, which
    :func:`write_labelmap` writes too) declares void, not a class, and is dropped.
    """
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    cmap = voc_colormap()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        color_field = rest.split(":", 1)[0].strip()
        if color_field:
            try:
                rgb = tuple(int(v) for v in color_field.split(","))
            except ValueError:
                rgb = ()
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise DataError(source, f"line {number}: colour {color_field!r} is not 'r,g,b' "
                                        "with values 0..255")
        else:
            rgb = tuple(int(v) for v in cmap[len(names) % 256])
        names.append(name.strip())
        colors.append(rgb)  # type: ignore[arg-type]
    if len(colors) > 1 and colors[-1] == _void_rgb():
        names.pop()
        colors.pop()
    names = _checked_names(names, source)
    return names, np.asarray(colors, dtype=np.uint8).reshape(-1, 3)


def _checked_names(names: list[str], source: str | Path) -> list[str]:
    if not names:
        raise DataError(source, "no class names: expected one class name per line, "
                                "line i is class i")
    for i, name in enumerate(names):
        if not name:
            raise DataError(source, f"class {i} has an empty name (blank line {i + 1})")
        if name == IGNORE_NAME:
            raise DataError(source, f"{IGNORE_NAME!r} may only be the first line (void)")
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    dupes = sorted(n for n, k in counts.items() if k > 1)
    if dupes:
        raise DataError(source, f"duplicate class names: {', '.join(dupes)}")
    if len(names) > MAX_CLASSES:
        raise DataError(source, f"{len(names)} classes; at most {MAX_CLASSES} fit in a "
                                "uint8 label map (255 is void)")
    return names


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: lists saved by Windows editors start with a BOM.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None


def read_class_names(root: str | Path) -> list[str]:
    """Class names of the dataset at ``root``: ``class_names.txt``, else ``labelmap.txt``."""
    root = Path(root)
    path = root / CLASS_NAMES_FILE
    if path.is_file():
        return parse_class_names(_read_text(path), path)
    labelmap = root / LABELMAP_FILE
    if labelmap.is_file():
        return parse_labelmap(_read_text(labelmap), labelmap)[0]
    raise DataError(path, f"missing: the dataset needs {CLASS_NAMES_FILE} with one class name "
                          f"per line, line i is class i (or a CVAT {LABELMAP_FILE})")


def write_class_names(root: str | Path, names: Sequence[str]) -> None:
    """Write ``class_names.txt`` (one name per line, line i is class i)."""
    path = Path(root) / CLASS_NAMES_FILE
    names = _checked_names([str(n) for n in names], path)
    _reject_chars(names, "\n\r", path)
    atomic_write_text(path, "".join(f"{n}\n" for n in names))


def _void_rgb() -> tuple[int, int, int]:
    r, g, b = (int(v) for v in voc_colormap()[VOID])
    return r, g, b


def write_labelmap(root: str | Path, names: Sequence[str],
                   colors: np.ndarray | None = None) -> None:
    """Write ``labelmap.txt`` for CVAT/Datumaro: a header, then ``name:r,g,b::`` lines.

    Colours default to the VOC colormap, which is what the saved PNGs use, so CVAT
    maps each PNG colour to the right label. The last line declares void (255,
    224,224,192) as ``ignored``, as Datumaro's own VOC export does: Datumaro, which
    CVAT imports datasets with, refuses a mask holding a colour the label map does
    not declare ("Undeclared color (224, 224, 192)"), so a label with any void pixel
    could not be imported without it.
    """
    path = Path(root) / LABELMAP_FILE
    names = _checked_names([str(n) for n in names], path)
    _reject_chars(names, "\n\r:", path)
    table = voc_colormap() if colors is None else np.asarray(colors)
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < len(names):
        raise DataError(path, f"colours of shape {table.shape} do not give r,g,b for "
                              f"{len(names)} classes")
    lines = [LABELMAP_HEADER]
    for name, rgb in zip(names, table, strict=False):
        r, g, b = (int(v) for v in rgb)
        lines.append(f"{name}:{r},{g},{b}::")
    void_name, k = LABELMAP_VOID_NAME, 1
    while void_name in names:  # a class of that name: Datumaro refuses a name twice
        void_name, k = f"{LABELMAP_VOID_NAME}{k}", k + 1
    lines.append(f"{void_name}:{','.join(str(v) for v in _void_rgb())}::")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _reject_chars(names: list[str], chars: str, path: Path) -> None:
    for name in names:
        if any(c in name for c in chars):
            raise DataError(path, f"class name {name!r} contains one of {chars!r}")


# -- labels ------------------------------------------------------------------------------


def check_label(label: np.ndarray, path: str | Path, num_classes: int | None = None,
                image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Raise LabelError when ``label`` does not fit its image or its class list."""
    if image_size is not None:
        w, h = image_size
        if label.shape != (h, w):
            lh, lw = label.shape
            raise LabelError(path, f"label is {lw}x{lh} (WxH) but its image is {w}x{h}")
    if num_classes is not None:
        # bincount over uint8 is one pass with no sort, unlike np.unique.
        counts = np.bincount(label.reshape(-1), minlength=256)
        counts[VOID] = 0
        bad = np.flatnonzero(counts[num_classes:]) + num_classes
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
            raise LabelError(path, f"class ids {shown} out of range: {num_classes} classes allow "
                                   f"0..{num_classes - 1} and {VOID} (void)")
    return label


def read_label(path: str | Path, num_classes: int | None = None,
               image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label PNG ("P" or "L") as ``H x W`` uint8 class ids, checked.

    ``image_size`` is (width, height) of the image the label belongs to.
    """
    label, _mode = read_label_image(path)
    return check_label(label, path, num_classes, image_size)


def write_label(path: str | Path, label: np.ndarray) -> None:
    """Save an ``H x W`` uint8 label map atomically as a VOC palette PNG."""
    if not isinstance(label, np.ndarray) or label.ndim != 2 or label.dtype != np.uint8:
        desc = (f"{label.ndim}-D {label.dtype}" if isinstance(label, np.ndarray)
                else type(label).__name__)
        raise LabelError(path, f"a label map must be a 2-D uint8 array, got {desc}")
    if label.size == 0:
        raise LabelError(path, f"a label map must not be empty, got shape {label.shape}")
    img = Image.fromarray(np.ascontiguousarray(label))
    img.putpalette(palette_bytes())  # turns the "L" image into "P" with the same indices
    atomic_save(path, lambda f: img.save(f, format="PNG"))


# -- ids and paths -------------------------------------------------------------------------


def validate_id(root: str | Path, image_id: str, source: str | Path) -> str:
    """Return ``image_id`` stripped, or raise DataError naming ``source`` and the id.

    An id is one file name without extension; anything that could reach outside
    the dataset folder (separators, '..', absolute or drive paths) is refused.
    """
    if not isinstance(image_id, str):
        raise DataError(source, f"image id {image_id!r} is not text")
    iid = image_id.strip()
    problem = None
    if not iid:
        problem = "empty image id"
    elif (PurePosixPath(iid).is_absolute() or PureWindowsPath(iid).is_absolute()
          or PureWindowsPath(iid).drive):
        problem = f"image id {iid!r} is an absolute path"
    elif ".." in iid:
        problem = f"image id {iid!r} contains '..'"
    elif "/" in iid or "\\" in iid:
        problem = f"image id {iid!r} contains a path separator"
    elif any(ord(c) < 32 for c in iid):
        problem = f"image id {iid!r} contains control characters"
    else:
        base = os.path.normpath(os.path.abspath(Path(root) / IMAGES_DIR))
        target = os.path.normpath(os.path.join(base, iid))
        if os.path.dirname(target) != base:
            problem = f"image id {iid!r} resolves outside {Path(root) / IMAGES_DIR}"
    if problem:
        raise DataError(source, problem)
    return iid


def image_path(root: str | Path, image_id: str) -> Path:
    """The image file ``JPEGImages/<id>.<ext>``; DataError when there is none."""
    folder = Path(root) / IMAGES_DIR
    iid = validate_id(root, image_id, folder)
    for ext in _PROBE_EXTENSIONS:
        for candidate in (folder / f"{iid}{ext}", folder / f"{iid}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    # Rare mixed-case extensions (.Jpg): one directory scan, only on this slow path.
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.stem == iid and is_image_path(entry) and entry.is_file():
                return entry
    raise DataError(folder, f"no image for id {iid!r} (looked for {iid}.jpg, .png, ...)")


def label_path(root: str | Path, image_id: str) -> Path:
    """Where the label of ``image_id`` lives: ``SegmentationClass/<id>.png`` (may not exist)."""
    folder = Path(root) / LABELS_DIR
    return folder / f"{validate_id(root, image_id, folder)}.png"


def _ext_key(path: Path) -> tuple[int, bool]:
    ext = path.suffix
    rank = _PROBE_EXTENSIONS.index(ext.lower()) if ext.lower() in _PROBE_EXTENSIONS else 99
    return rank, ext != ext.lower()


def _image_index(root: Path) -> dict[str, Path]:
    """id -> image file for every image in JPEGImages, one directory scan."""
    folder = root / IMAGES_DIR
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not is_image_path(entry) or not entry.is_file():
            continue
        try:
            iid = validate_id(root, entry.stem, folder)
        except DataError:
            continue  # a file name no list could name (e.g. 'a..b.jpg')
        if iid != entry.stem:
            continue  # ' a.jpg' is not the image of id 'a' (image_path would not find it)
        old = index.get(iid)
        # Same preference as image_path, so both agree on which file an id means.
        if old is None or _ext_key(entry) < _ext_key(old):
            index[iid] = entry
    return index


def image_ids(root: str | Path) -> list[str]:
    """Every image id in ``JPEGImages``, sorted."""
    return sorted(_image_index(Path(root)))


def labelled_ids(root: str | Path) -> list[str]:
    """Ids with both an image and a label file, sorted."""
    root = Path(root)
    labels = root / LABELS_DIR
    if not labels.is_dir():
        return []
    have = {p.stem for p in labels.iterdir() if p.suffix == ".png" and p.is_file()}
    return [i for i in image_ids(root) if i in have]


def _checked_labelled_ids(root: Path) -> list[str]:
    """:func:`labelled_ids`, refusing labelled images whose name no list can hold.

    A name with leading or trailing spaces (' a.jpg' with ' a.png') cannot be an
    image id: every VOC reader strips the lines of a split list, so ' a' would be
    read as 'a'. Leaving such an image out of a split would drop training data
    without a word, so it is an error naming the file instead.
    """
    labels, images = root / LABELS_DIR, root / IMAGES_DIR
    if labels.is_dir() and images.is_dir():
        image_stems = {p.stem for p in images.iterdir() if is_image_path(p)}
        for label in sorted(labels.iterdir()):
            stem = label.stem
            if label.suffix == ".png" and stem != stem.strip() and stem in image_stems:
                raise DataError(label, f"labelled image {stem!r} has spaces at the start or "
                                       "end of its name, which a split list cannot hold (VOC "
                                       "readers strip each line): rename the image and its "
                                       f"label to {stem.strip()!r}")
    return labelled_ids(root)


# -- split lists -------------------------------------------------------------------------------


def split_path(root: str | Path, split: str) -> Path:
    """``ImageSets/Segmentation/<split>.txt``."""
    sets = Path(root) / SETS_DIR
    if not split or any(c in split for c in "/\\") or ".." in split:
        raise DataError(sets, f"invalid split name {split!r}")
    return sets / f"{split}.txt"


def read_split(root: str | Path, split: str) -> list[str]:
    """The ids of a split list, checked: valid, unique, each with an image."""
    root = Path(root)
    path = split_path(root, split)
    if not path.is_file():
        raise DataError(path, f"missing: split list {split!r} (one image id per line)")
    return read_id_list(root, path)


def read_id_list(root: str | Path, path: str | Path) -> list[str]:
    """Image ids from any list file (one per line) for the dataset at ``root``, checked
    as split lists are: valid, inside the dataset, unique, each with an image."""
    root, path = Path(root), Path(path)
    if not path.is_file():
        raise DataError(path, "missing: image id list (one image id per line)")
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            iid = validate_id(root, line, path)
        except DataError as exc:
            raise DataError(path, f"line {number}: {exc.problem}") from None
        if iid in seen:
            raise DataError(path, f"line {number}: image id {iid!r} is listed twice")
        seen.add(iid)
        ids.append(iid)
    index = _image_index(root)
    missing = [i for i in ids if i not in index]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(path, f"no image in {root / IMAGES_DIR} for id {shown}{more}")
    return ids


def write_split(root: str | Path, split: str, ids: Iterable[str]) -> None:
    """Write a split list atomically, one id per line."""
    path = split_path(root, split)
    checked = [validate_id(root, i, path) for i in ids]
    if len(set(checked)) != len(checked):
        dupes = sorted({i for i in checked if checked.count(i) > 1})
        raise DataError(path, f"image ids listed twice: {', '.join(dupes)}")
    atomic_write_text(path, "".join(f"{i}\n" for i in checked))


def ensure_splits(root: str | Path, val_fraction: float = 0.2,
                  seed: int = 0) -> dict[str, list[str]]:
    """Return train/val/trainval, writing whichever lists are missing.

    labelme2voc output has no ImageSets; the split is then a seeded shuffle of the
    labelled ids, so the same seed gives the same split on every machine. With
    ``val_fraction > 0`` and at least 2 images, val gets at least 1 and train at
    least 1. Lists that exist are left alone.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    root = Path(root)
    have = {s: split_path(root, s).is_file() for s in SPLITS}
    if have["train"] and have["val"]:
        train, val = read_split(root, "train"), read_split(root, "val")
        trainval = read_split(root, "trainval") if have["trainval"] else _union(train, val)
        return {"train": train, "val": val, "trainval": trainval}

    labelled = _checked_labelled_ids(root)
    if have["trainval"]:
        # An existing trainval bounds the pool: split it, not every labelled image.
        listed = set(read_split(root, "trainval"))
        labelled = [i for i in labelled if i in listed]
    if have["train"] or have["val"]:
        # One list given: the other takes the rest of the labelled images.
        given = "train" if have["train"] else "val"
        other = "val" if given == "train" else "train"
        kept = read_split(root, given)
        taken = set(kept)
        result = {given: kept, other: [i for i in labelled if i not in taken]}
    else:
        if not labelled:
            raise DataError(root, f"no labelled images: no image in {IMAGES_DIR} has a label "
                                  f"in {LABELS_DIR}, so there is nothing to split")
        shuffled = list(labelled)
        random.Random(seed).shuffle(shuffled)
        n = len(shuffled)
        n_val = 0
        if n >= 2 and val_fraction > 0:
            n_val = min(n - 1, max(1, round(n * val_fraction)))
        result = {"train": sorted(shuffled[n_val:]), "val": sorted(shuffled[:n_val])}
    for split in ("train", "val"):
        if not have[split]:
            write_split(root, split, result[split])
    if have["trainval"]:
        result["trainval"] = read_split(root, "trainval")
    else:
        result["trainval"] = _union(result["train"], result["val"])
        write_split(root, "trainval", result["trainval"])
    return result


def _union(a: list[str], b: list[str]) -> list[str]:
    return sorted(set(a) | set(b))


# -- export and summary ------------------------------------------------------------------


def _copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def export_voc(root: str | Path, out_root: str | Path, class_names: Sequence[str],
               ids: Sequence[str] | None = None) -> list[str]:
    """Export labelled images to a clean VOC folder that VOC readers and CVAT import.

    Writes images (bytes as they are), labels (checked, re-saved as palette PNGs),
    ``class_names.txt``, ``labelmap.txt`` and split lists (the source's lists
    restricted to the exported ids, or a fresh seeded split when it has none).
    Returns the exported ids. The source's hidden app state is not copied.
    """
    root, out_root = Path(root), Path(out_root)
    if out_root.resolve() == root.resolve():
        raise DataError(out_root, "export folder is the dataset folder itself")
    names = _checked_names([str(n) for n in class_names], root / CLASS_NAMES_FILE)
    chosen = (_checked_labelled_ids(root) if ids is None
              else [validate_id(root, i, root) for i in ids])
    if not chosen:
        raise DataError(root, "nothing to export: no labelled images")
    for iid in chosen:
        src = image_path(root, iid)
        lab_src = label_path(root, iid)
        if not lab_src.is_file():
            raise DataError(lab_src, f"missing: image {iid!r} has no label to export")
        label = read_label(lab_src, len(names), image_size(src))
        _copy_file(src, out_root / IMAGES_DIR / src.name)
        write_label(label_path(out_root, iid), label)
    write_class_names(out_root, names)
    write_labelmap(out_root, names)
    chosen_set = set(chosen)
    for split in SPLITS:
        if split_path(root, split).is_file():
            write_split(out_root, split, [i for i in read_split(root, split) if i in chosen_set])
    ensure_splits(out_root)  # fills in whichever of train/val/trainval the source lacked
    return list(chosen)


@dataclass(frozen=True)
class DatasetSummary:
    """Counts for a dataset folder, for status lines and reports."""

    images: int
    labelled: int
    classes: int | None  # None when there is no class list
    splits: dict[str, int]  # split name -> ids listed (only the lists that exist)


def dataset_summary(root: str | Path) -> DatasetSummary:
    """Count images, labelled images, classes and split list entries (lists unchecked)."""
    root = Path(root)
    try:
        classes: int | None = len(read_class_names(root))
    except DataError:
        classes = None
    splits: dict[str, int] = {}
    for split in SPLITS:
        path = split_path(root, split)
        if path.is_file():
            splits[split] = sum(1 for line in _read_text(path).splitlines() if line.strip())
    return DatasetSummary(images=len(image_ids(root)), labelled=len(labelled_ids(root)),
                          classes=classes, splits=splits)
