"""The class set of a project: names (line i = class i) and display colours.

Saved label PNGs always carry the VOC palette, so every VOC reader shows the
same colours; a custom colour only changes how the app draws a class. Custom
colours are kept by class *name* in ``.fcn_studio/class_colors.json``, so they
follow a class through reorders and survive edits of ``class_names.txt`` made
outside the app.

The same file says whether class 0 is *background*. In a VOC project it is: it is
drawn see-through and the eraser writes it. A CamVid or Cityscapes project has no
background class (CamVid's class 0 is Sky): every class is drawn and the eraser
writes void (255). :data:`PRESETS` holds those datasets' class lists, colours and
void ids for the class-id import.

Deleting or reordering a class changes the ids stored in saved labels. Such an
edit is planned first (:meth:`ClassSet.delete`, :meth:`ClassSet.move` return a
:class:`ClassChange` with an id lookup table and the labels it touches) and then
applied by :meth:`ClassSet.apply`, which writes every remapped label to a temp
file before replacing any, so a failure part way leaves the old labels.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from training import voc
from training.atomic import atomic_write_text, make_temp
from training.errors import DataError
from training.images import read_label_image
from training.palette import VOID, palette_bytes, voc_colormap

from .project_state import APP_DIR

RGB = tuple[int, int, int]
COLORS_FILE = "class_colors.json"
_FORBIDDEN = "\n\r:"  # ':' separates fields of labelmap.txt, which export writes


class ClassEditRefused(ValueError):
    """A class edit that would make the class list or the labels inconsistent."""


class ClassInUse(ClassEditRefused):
    """The class to delete or move is used by saved labels and no remap was chosen."""

    def __init__(self, message: str, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        super().__init__(message)


@dataclass(frozen=True)
class ClassChange:
    """A planned delete or move: apply it with :meth:`ClassSet.apply`.

    ``lut[old_id]`` is the new id of every pixel value (256 entries; 255 stays void,
    values beyond the old class count are left as they are).
    """

    description: str
    old_names: tuple[str, ...]
    new_names: tuple[str, ...]
    lut: np.ndarray
    label_paths: tuple[Path, ...]  # saved labels holding an id that changes
    dropped: str | None = None  # name of a deleted class


class ClassSet:
    """Ordered class names with optional custom display colours.

    ``has_background``: class 0 means "nothing here" (VOC), so it is drawn
    see-through and the eraser writes it; False for datasets whose class 0 is a
    real class, where the eraser writes void.
    """

    def __init__(self, names: Iterable[str], colors: Mapping[str, RGB] | None = None,
                 has_background: bool = True) -> None:
        self.has_background = bool(has_background)
        self._names: list[str] = []
        for name in names:
            self._names.append(self._checked(name, len(self._names)))
        if not self._names:
            raise ClassEditRefused("a class list needs at least the background class")
        if len(self._names) > voc.MAX_CLASSES:
            raise ClassEditRefused(f"{len(self._names)} classes; at most {voc.MAX_CLASSES} fit "
                                   "a uint8 label map (255 is void)")
        self._colors: dict[str, RGB] = {n: _rgb(c) for n, c in (colors or {}).items()
                                        if n in self._names}
        self.warnings: list[str] = []

    # -- reading and writing --------------------------------------------------------------

    @classmethod
    def load(cls, root: str | Path) -> ClassSet:
        """``class_names.txt`` (or ``labelmap.txt``) and the custom colours of ``root``.

        A missing class list is a DataError; an unreadable colours file is only a
        warning (colours are cosmetic).
        """
        root = Path(root)
        names = voc.read_class_names(root)
        path = root / APP_DIR / COLORS_FILE
        colors: dict[str, RGB] = {}
        has_background = True
        problem = None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            colors = {str(n): _rgb(c) for n, c in data.get("colors", {}).items()}
            has_background = _flag(data.get("has_background", True), "has_background")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            problem = f"{path}: custom class colours and background setting ignored ({exc})"
        classes = cls(names, colors, has_background)
        if problem:
            classes.warnings.append(problem)
        return classes

    def save(self, root: str | Path, *, labelmap: bool = False) -> None:
        """Write ``class_names.txt`` and the colours file; ``labelmap.txt`` too on export.

        labelmap.txt gets the VOC palette colours, not the custom ones, because that
        is what the PNGs hold and CVAT maps PNG colours to labels through it.
        """
        root = Path(root)
        voc.write_class_names(root, self._names)
        path = root / APP_DIR / COLORS_FILE
        if self._colors or not self.has_background or path.exists():
            colors = {n: list(c) for n, c in self._colors.items()}
            data = {"schema": 1, "colors": colors, "has_background": self.has_background}
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        if labelmap:
            voc.write_labelmap(root, self._names)

    # -- queries ------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, i: int) -> str:
        return self._names[i]

    def index(self, name: str) -> int:
        return self._names.index(name)

    @property
    def eraser_value(self) -> int:
        """What the eraser (and Clear Label) writes: background, or void without one."""
        return 0 if self.has_background else VOID

    @property
    def transparent_ids(self) -> frozenset[int]:
        """Ids drawn see-through on the canvas: the background class, if there is one."""
        return frozenset({0}) if self.has_background else frozenset()

    def color(self, i: int) -> RGB:
        """Display colour of class ``i`` (or of 255, void)."""
        if i != VOID:
            custom = self._colors.get(self._names[i])
            if custom is not None:
                return custom
        return _rgb(voc_colormap()[i])

    @property
    def custom_colors(self) -> dict[str, RGB]:
        return dict(self._colors)

    def color_table(self) -> np.ndarray:
        """256 x 3 uint8 display colours: the VOC colormap with custom overrides."""
        table = voc_colormap().copy()
        for i, name in enumerate(self._names):
            if name in self._colors:
                table[i] = self._colors[name]
        return table

    # -- edits that keep ids ---------------------------------------------------------------

    def add(self, name: str, color: RGB | None = None) -> int:
        """Append a class; returns its id."""
        if len(self._names) >= voc.MAX_CLASSES:
            raise ClassEditRefused(f"at most {voc.MAX_CLASSES} classes fit a uint8 label map")
        name = self._checked(name, len(self._names))
        self._names.append(name)
        if color is not None:
            self._colors[name] = _rgb(color)
        return len(self._names) - 1

    def rename(self, i: int, name: str) -> None:
        """Rename class ``i``; labels keep their ids, so nothing else changes."""
        self._check_index(i)
        name = self._checked(name, i)
        old = self._names[i]
        self._names[i] = name
        if old in self._colors:
            self._colors[name] = self._colors.pop(old)

    def set_color(self, i: int, rgb: RGB | None) -> None:
        """Set the display colour of class ``i``; None goes back to the VOC colour."""
        self._check_index(i)
        if rgb is None:
            self._colors.pop(self._names[i], None)
        else:
            self._colors[self._names[i]] = _rgb(rgb)

    # -- edits that change ids: plan, then apply -------------------------------------------

    def delete(self, i: int, labels_in_use: Mapping[Path, Collection[int]],
               replace_with: int | None = None) -> ClassChange:
        """Plan deleting class ``i``. ``labels_in_use``: class ids present per label file.

        Its pixels become ``replace_with`` (an old class id, usually 0 background, or
        255 void); with None the delete is refused when a saved label uses class i.
        Classes after ``i`` move down by one, so labels using them are rewritten too.
        """
        self._check_index(i)
        if i == 0 and self.has_background:
            raise ClassEditRefused("class 0 (background) cannot be deleted")
        if len(self._names) == 1:
            raise ClassEditRefused(f"{self._names[i]!r} is the only class; a class list needs "
                                   "at least one")
        if replace_with is not None and replace_with != VOID and (
                replace_with == i or not 0 <= replace_with < len(self._names)):
            raise ClassEditRefused(f"cannot relabel {self._names[i]!r} as {replace_with}: "
                                   f"choose another class id or {VOID} (void)")
        lut = _identity()
        lut[i + 1: len(self._names)] = np.arange(i, len(self._names) - 1, dtype=np.uint8)
        users = _users(labels_in_use, {i})
        if users and replace_with is None:
            into = "background or void" if self.has_background else "another class or void"
            raise ClassInUse(f"class {self._names[i]!r} is used by {_count(users)}; choose to "
                             f"relabel its pixels as {into}", users)
        lut[i] = VOID if replace_with is None else lut[replace_with]
        new = self._names[:i] + self._names[i + 1:]
        target = "void" if lut[i] == VOID else repr(new[lut[i]])
        return self._plan(f"delete class {self._names[i]!r} (its pixels become {target})",
                          new, lut, labels_in_use, dropped=self._names[i])

    def move(self, i: int, j: int, labels_in_use: Mapping[Path, Collection[int]],
             refuse_if_used: bool = False) -> ClassChange:
        """Plan moving class ``i`` to position ``j``; ids in between shift by one.

        Labels using a shifted id are permuted; with ``refuse_if_used`` the move is
        refused instead when any saved label uses one. Background (where the
        project has one) stays class 0.
        """
        self._check_index(i)
        self._check_index(j)
        if self.has_background and 0 in (i, j):
            raise ClassEditRefused("class 0 is background in every VOC dataset; it cannot move")
        order = list(range(len(self._names)))
        order.insert(j, order.pop(i))
        lut = _identity()
        for new_id, old_id in enumerate(order):
            lut[old_id] = new_id
        if refuse_if_used:
            users = _users(labels_in_use, {k for k in order if lut[k] != k})
            if users:
                raise ClassInUse(f"moving {self._names[i]!r} changes class ids used by "
                                 f"{_count(users)}", users)
        new = [self._names[k] for k in order]
        return self._plan(f"move class {self._names[i]!r} to position {j}", new, lut,
                          labels_in_use)

    def _plan(self, description: str, new: list[str], lut: np.ndarray,
              labels_in_use: Mapping[Path, Collection[int]],
              dropped: str | None = None) -> ClassChange:
        changed = {k for k in range(len(self._names)) if lut[k] != k}
        lut.setflags(write=False)
        return ClassChange(description, tuple(self._names), tuple(new), lut,
                           tuple(_users(labels_in_use, changed)), dropped)

    def apply(self, plan: ClassChange, root: str | Path,
              extra_paths: Iterable[Path] = ()) -> None:
        """Rewrite the plan's labels and ``class_names.txt``, then adopt the new names.

        Every file is first written to a temp file beside it; only when all are
        written are they moved into place, so a read or write failure leaves the
        old labels and class list untouched. ``extra_paths`` (the app's stored
        predictions) are remapped in the same step; unreadable ones are skipped,
        being only a cache of model output.
        """
        if tuple(self._names) != plan.old_names:
            raise ClassEditRefused("the class list changed since this edit was planned")
        root = Path(root)
        staged: list[tuple[Path, Path]] = []
        try:
            for path in plan.label_paths:
                label, _mode = read_label_image(path)
                staged.append((_stage(path, _png_writer(plan.lut[label])), path))
            for path in extra_paths:
                try:
                    label, _mode = read_label_image(path)
                except DataError:
                    continue
                remapped = plan.lut[label]
                if not np.array_equal(remapped, label):
                    staged.append((_stage(path, _png_writer(remapped)), path))
            names_file = root / voc.CLASS_NAMES_FILE
            text = "".join(f"{n}\n" for n in plan.new_names).encode()
            staged.append((_stage(names_file, lambda f: f.write(text)), names_file))
        except BaseException as exc:
            for tmp, _dest in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(exc, OSError):
                raise DataError(getattr(exc, "filename", None) or root,
                                f"class edit not applied, nothing changed "
                                f"({exc.strerror or exc})") from exc
            raise
        for tmp, dest in staged:
            os.replace(tmp, dest)  # same folder: a rename, the step least likely to fail
        self._names = list(plan.new_names)
        if plan.dropped is not None:
            self._colors.pop(plan.dropped, None)

    # -- checks ---------------------------------------------------------------------------

    def _check_index(self, i: int) -> None:
        if not 0 <= i < len(self._names):
            raise IndexError(f"no class {i}: there are {len(self._names)} classes")

    def _checked(self, name: str, i: int) -> str:
        name = str(name).strip()
        if not name:
            raise ClassEditRefused("a class name cannot be empty")
        if any(c in name for c in _FORBIDDEN):
            raise ClassEditRefused(f"class name {name!r} cannot contain a line break or ':'")
        if name == voc.IGNORE_NAME:
            raise ClassEditRefused(f"{voc.IGNORE_NAME!r} means void, not a class")
        for k, other in enumerate(self._names):
            if other == name and k != i:
                raise ClassEditRefused(f"class {k} is already called {name!r}")
        return name


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _rgb(color: Iterable[int]) -> RGB:
    values = tuple(int(v) for v in color)
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"a colour is three values 0..255, not {values}")
    return values


def _identity() -> np.ndarray:
    return np.arange(256, dtype=np.uint8)


def _users(labels_in_use: Mapping[Path, Collection[int]], ids: set[int]) -> list[Path]:
    return sorted(p for p, present in labels_in_use.items() if ids.intersection(present))


def _count(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.stem for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
    return f"{len(paths)} saved label(s) ({shown})"


def _png_writer(label: np.ndarray) -> Callable[[IO[bytes]], object]:
    img = Image.fromarray(np.ascontiguousarray(label))
    img.putpalette(palette_bytes())
    return lambda f: img.save(f, format="PNG")


def _stage(dest: Path, writer: Callable[[IO[bytes]], object]) -> Path:
    """Write a temp file beside ``dest`` (fsynced) and return its path."""
    fd, tmp = make_temp(dest)  # the replaced label's mode, and a name cleanup knows
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


# -- dataset presets for the class-id import ------------------------------------------------

@dataclass(frozen=True)
class DatasetPreset:
    """A class-id dataset's own class list, colours and void id."""

    key: str
    title: str
    names: tuple[str, ...]
    colors: tuple[RGB, ...]
    void_id: int | None
    has_background: bool

    def class_set(self) -> ClassSet:
        """The project's class set: these names, colours and background setting."""
        return ClassSet(self.names, dict(zip(self.names, self.colors, strict=True)),
                        self.has_background)


# SegNet's 11-class CamVid (the common benchmark version); 11 is "Unlabelled".
CAMVID = DatasetPreset(
    "camvid", "CamVid (11 classes, void 11)",
    ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
     "Pedestrian", "Bicyclist"),
    ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
     (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    void_id=11, has_background=False)

# Cityscapes trainIds (the 19 evaluated classes, cityscapesScripts' labels.py); 255 ignored.
CITYSCAPES = DatasetPreset(
    "cityscapes", "Cityscapes trainIds (19 classes, void 255)",
    ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
     "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
     "train", "motorcycle", "bicycle"),
    ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
     (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
     (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
     (0, 80, 100), (0, 0, 230), (119, 11, 32)),
    void_id=255, has_background=False)

PRESETS: dict[str, DatasetPreset] = {p.key: p for p in (CAMVID, CITYSCAPES)}
