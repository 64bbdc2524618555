"""The project's bookkeeping beside the VOC files: ``state.json`` and the split lists.

``<root>/.fcn_studio/state.json`` keeps what the VOC files cannot say: which model
version made each stored prediction, its mean uncertainty, how much of it a person
had to correct, and a history of saves for a trend chart. Whether an image is
"predicted" or "saved" is *not* stored here: it is read from the files
(``predictions/<id>.png``, ``SegmentationClass/<id>.png``) at open, because other
tools may add or delete labels while the app is closed and a cached status would
then lie.

The split lists (``ImageSets/Segmentation/{train,val,trainval}.txt``) are managed
here too: :class:`SplitLists` reads them leniently (opening never fails or
rewrites because of a list) and assigns newly labelled images by a stable rule,
:func:`split_for`.

Last, the directory listings an open needs (:func:`scan_images`, :func:`file_stems`):
names only, no stat per file and no decoding, so 10,000 images open in a blink.

numpy-free and Qt-free; only the standard library and ``training``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training import voc
from training.atomic import atomic_write_text
from training.errors import DataError
from training.images import IMAGE_EXTENSIONS

APP_DIR = ".fcn_studio"
"""The app's hidden folder inside a project; a VOC reader never needs it."""

SCHEMA_VERSION: int = 1
"""Version of the ``state.json`` layout; bump it when a field changes meaning."""

VAL_SHARE: float = 0.2
"""Share of newly labelled images that :func:`split_for` puts into val."""

_SPLIT_SALT = "fcn-studio-split-v1"
"""Hash salt of :func:`split_for`. Changing it would change where *new* ids go
(existing assignments are stored in the lists and never move)."""


def now_iso() -> str:
    """The current time as an ISO 8601 UTC string (what state.json stores)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class ImageRecord:
    """What state.json remembers about one image (every field optional)."""

    model_version: str | None = None  # version of the model that made the stored prediction
    mean_uncertainty: float | None = None  # of that prediction, as the worker measured it
    predicted_at: str | None = None
    correction_effort: float | None = None  # share of pixels changed, at the last save
    saved_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        """A record from its JSON object; ValueError naming the field when a value has
        the wrong type (the image list formats these numbers and would break later)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key, value in known.items():
            if value is None:
                continue
            if key in _SHARES:
                known[key] = _number(value, key, *_SHARES[key])
            elif not isinstance(value, str):
                raise ValueError(f"{key!r} is {value!r}, not text")
        return cls(**known)


_SHARES: dict[str, tuple[float, float]] = {
    "mean_uncertainty": (0.0, float("inf")),  # entropy in nats: >= 0
    "correction_effort": (0.0, 1.0),  # a share of pixels
}
"""The numeric fields of an ImageRecord and the range each must lie in."""


def _number(value: object, key: str, low: float = float("-inf"),
            high: float = float("inf")) -> float:
    """``value`` as a finite float in [low, high]; ValueError naming ``key`` otherwise."""
    # bool is an int to Python, but true/false in state.json is a wrong type.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r} is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{key!r} is {value!r}, outside {low:g}..{high:g}")
    return number


@dataclass(frozen=True)
class HistoryItem:
    """One saved label: when, which image, and its correction effort (None: no prediction)."""

    time: str
    id: str
    effort: float | None


@dataclass
class ProjectState:
    """The contents of ``state.json``, in memory. ``save`` writes it atomically."""

    path: Path
    images: dict[str, ImageRecord] = field(default_factory=dict)
    history: list[HistoryItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # problems found while loading

    def record(self, image_id: str) -> ImageRecord:
        """The record of ``image_id``, created empty on first use."""
        rec = self.images.get(image_id)
        if rec is None:
            rec = self.images[image_id] = ImageRecord()
        return rec

    def to_json(self) -> str:
        data = {
            "schema": SCHEMA_VERSION,
            "images": {
                iid: {k: v for k, v in asdict(rec).items() if v is not None}
                for iid, rec in sorted(self.images.items())
            },
            "history": [[h.time, h.id, h.effort] for h in self.history],
        }
        # Compact separators: at 10,000 images the file stays around a megabyte.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"

    def save(self) -> None:
        """Write state.json atomically; DataError naming the file when it cannot be written."""
        text = self.to_json()
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            raise DataError(self.path, f"cannot write ({exc.strerror or exc})") from exc

    @classmethod
    def load(cls, path: Path) -> ProjectState:
        """Read state.json; a missing file is an empty state.

        A corrupt file is renamed to ``state.json.bad`` and reported in ``warnings``:
        it only holds statistics, so losing it must never stop a person from opening
        their labels. A file written by a newer app version is refused instead, since
        overwriting it would throw away what that version stored.
        """
        state = cls(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return state
        except (OSError, UnicodeDecodeError) as exc:
            state._set_aside(f"cannot read ({exc})")
            return state
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("schema"), int):
                raise ValueError("not a state object with a 'schema' number")
            if data["schema"] > SCHEMA_VERSION:
                raise DataError(path, f"written by a newer FCN Studio (schema {data['schema']}, "
                                      f"this version reads up to {SCHEMA_VERSION}); "
                                      "update the app to open this project")
            state._parse(data)
        except DataError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            state.images.clear()
            state.history.clear()
            state._set_aside(str(exc))
        return state

    def _parse(self, data: dict[str, Any]) -> None:
        images = data.get("images", {})
        if not isinstance(images, dict):
            raise ValueError("'images' is not an object")
        for iid, rec in images.items():
            if not isinstance(rec, dict):
                raise ValueError(f"image {iid!r}: record is not an object")
            try:
                self.images[str(iid)] = ImageRecord.from_json(rec)
            except ValueError as exc:
                raise ValueError(f"image {iid!r}: {exc}") from None
        history = data.get("history", [])
        if not isinstance(history, list):
            raise ValueError("'history' is not a list")
        for number, item in enumerate(history):
            if (not isinstance(item, list) or len(item) != 3
                    or not all(isinstance(v, str) for v in item[:2])):
                raise ValueError(f"history entry {number} is {item!r}, not [time, id, effort]")
            time, iid, effort = item
            self.history.append(HistoryItem(time, iid, None if effort is None else
                                            _number(effort, f"history entry {number} effort",
                                                    *_SHARES["correction_effort"])))

    def _set_aside(self, problem: str) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, bad)
            where = f"moved to {bad.name}"
        except OSError as exc:
            where = f"could not be moved aside ({exc.strerror or exc})"
        self.warnings.append(f"{self.path}: unreadable app state ({problem}); {where}; "
                             "statistics start afresh, labels are not affected")


# -- split lists ------------------------------------------------------------------------


def split_for(image_id: str, train: Iterable[str] = (), val: Iterable[str] = ()) -> str:
    """The split ("train" or "val") a newly labelled image joins.

    Rule: when one side already has images and the other has none, the image goes
    to the empty side, so as soon as two images are labelled there is at least one
    of each. Otherwise a salted SHA-256 of the id decides, putting about
    :data:`VAL_SHARE` of images into val. The hash does not depend on the order of
    saving or on the machine, so the same id always lands on the same side given
    the same lists; an image once listed never moves.
    """
    has_train, has_val = any(True for _ in train), any(True for _ in val)
    if has_train and not has_val:
        return "val"
    if has_val and not has_train:
        return "train"
    return "val" if split_score(image_id) < VAL_SHARE else "train"


def split_score(image_id: str) -> float:
    """A stable number in [0, 1) per id: :func:`split_for` puts ids below
    :data:`VAL_SHARE` into val, and a fine-tune with another validation share takes
    the lowest ones (``fcn_studio.models.finetune_plan``), so both agree as far as they can."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _read_list(path: Path) -> list[str] | None:
    """Ids of a list file, in order, without blanks or repeats; None when absent."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None  # reported by the caller through ``SplitLists.warnings``
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


class SplitLists:
    """train / val / trainval as read at open; :meth:`add` keeps them current.

    Reading is lenient: ids without an image stay in the lists untouched (a VOC
    list may name images this copy lacks), unreadable lists are reported in
    ``warnings`` and left alone.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.warnings: list[str] = []
        self.lists: dict[str, list[str] | None] = {}
        for split in voc.SPLITS:
            path = voc.split_path(root, split)
            ids = _read_list(path)
            if ids is None and path.exists():
                self.warnings.append(f"{path}: cannot read this split list; it is left as is")
            self.lists[split] = ids
        self._train = set(self.lists["train"] or ())
        self._val = set(self.lists["val"] or ())
        both = self._train & self._val
        if both:
            self.warnings.append(f"{voc.split_path(root, 'val')}: {len(both)} image(s) are in "
                                 f"both train and val, e.g. {sorted(both)[0]!r}")

    def split_of(self, image_id: str) -> str | None:
        """"train", "val" or None (in neither list)."""
        if image_id in self._train:
            return "train"
        if image_id in self._val:
            return "val"
        return None

    def plan(self, ids: Iterable[str]) -> dict[str, list[str]] | None:
        """New contents of the lists after adding ``ids`` (in order); None if unchanged.

        Nothing is written and nothing in memory changes: :meth:`commit` does that,
        so a failed write leaves this object as it was.
        """
        train = list(self.lists["train"] or ())
        val = list(self.lists["val"] or ())
        trainval = list(self.lists["trainval"] or ())
        in_trainval = set(trainval)
        train_set, val_set = set(self._train), set(self._val)
        changed = False
        for iid in ids:
            if iid not in train_set and iid not in val_set:
                side = split_for(iid, train_set, val_set)
                (train if side == "train" else val).append(iid)
                (train_set if side == "train" else val_set).add(iid)
                changed = True
            if iid not in in_trainval:
                trainval.append(iid)
                in_trainval.add(iid)
                changed = True
        if not changed and all(self.lists[s] is not None for s in voc.SPLITS):
            return None
        return {"train": train, "val": val, "trainval": trainval}

    def commit(self, new: dict[str, list[str]]) -> None:
        """Write the lists of :meth:`plan` atomically, then adopt them in memory."""
        for split in voc.SPLITS:
            if new[split] == self.lists[split]:
                continue
            path = voc.split_path(self.root, split)
            try:
                # Not voc.write_split: it re-validates every id (about 0.2 s per list at
                # 10,000 ids, on every save); new ids come validated from scan_images
                # and old ones are written back exactly as they were read.
                atomic_write_text(path, "".join(f"{i}\n" for i in new[split]))
            except OSError as exc:
                raise DataError(path, f"cannot write ({exc.strerror or exc})") from exc
            # Adopt each list as soon as it is on disk, so memory matches the files
            # even when a later list fails to write.
            self.lists[split] = list(new[split])
            self._train, self._val = set(self.lists["train"] or ()), set(self.lists["val"] or ())


# -- what the folders hold -----------------------------------------------------------


def file_stems(folder: Path, suffix: str) -> set[str]:
    """Stems of the files in ``folder`` with ``suffix`` (one directory listing, no stat)."""
    try:
        with os.scandir(folder) as it:
            return {e.name[: -len(suffix)] for e in it
                    if e.name.endswith(suffix) and not e.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def scan_images(root: Path, warnings: list[str]) -> dict[str, str]:
    """id -> image file name in JPEGImages, agreeing with ``training.voc.image_path``.

    Plain strings, not Paths: building 10,000 Path objects was most of the open time.
    """
    folder = root / voc.IMAGES_DIR
    found: dict[str, list[str]] = {}
    with os.scandir(folder) as it:
        for e in it:
            stem, ext = os.path.splitext(e.name)
            if e.name.startswith(".") or ext.lower() not in IMAGE_EXTENSIONS or not e.is_file():
                continue
            if not _plain_id(stem):
                # Rare odd names: the full check, and skip what no list could name.
                try:
                    if voc.validate_id(root, stem, folder) != stem:
                        raise DataError(folder, "spaces around the name")
                except DataError:
                    warnings.append(f"{folder / e.name}: skipped, the name cannot be an image id")
                    continue
            found.setdefault(stem, []).append(e.name)
    images: dict[str, str] = {}
    for iid, names in found.items():
        # Two files for one id (a.jpg and a.png): use the one the engine would use.
        images[iid] = names[0] if len(names) == 1 else voc.image_path(root, iid).name
    return images


def _plain_id(stem: str) -> bool:
    """True for names ``voc.validate_id`` accepts unchanged, checked cheaply."""
    return (bool(stem) and stem == stem.strip() and ".." not in stem
            and not any(c in stem for c in "\\/:") and stem.isprintable())
