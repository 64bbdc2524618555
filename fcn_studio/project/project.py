"""The project: one VOC dataset folder plus the app's hidden state beside it.

Layout (ARCHITECTURE.md, "Project = dataset folder")::

    JPEGImages/<id>.<ext>              images, copied in as they are
    SegmentationClass/<id>.png         saved labels ("final"), VOC palette PNGs
    ImageSets/Segmentation/*.txt       train / val / trainval lists
    class_names.txt                    line i is class i
    .fcn_studio/state.json             statistics (project_state.py)
    .fcn_studio/predictions/<id>.png   the model's own label ("original")
    .fcn_studio/models/                model versions
    .fcn_studio/lock                   lockfile.py

Opening lists file names only (a 10,000-image folder opens in a fraction of a
second) and writes nothing; images, labels and sizes are read when asked for.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np

from training import voc
from training.atomic import atomic_open, remove_stale_temps
from training.errors import DataError, ImageReadError
from training.id_masks import import_id_masks
from training.images import image_size, list_images, read_image
from training.palette import VOC_CLASSES

from .classes import ClassChange, ClassSet
from .project_state import (
    APP_DIR,
    HistoryItem,
    ProjectState,
    SplitLists,
    file_stems,
    now_iso,
    scan_images,
)

State = Literal["new", "predicted", "saved"]
NEW: Final = "new"  # no prediction, no label
PREDICTED: Final = "predicted"  # a model prediction is stored, nobody corrected it yet
SAVED: Final = "saved"  # a label exists in SegmentationClass

STATE_FILE: Final = "state.json"
PREDICTIONS_DIR: Final = "predictions"
MODELS_DIR: Final = "models"

STATE_WRITE_INTERVAL_S: Final = 2.0
"""save_prediction rewrites state.json at most this often (flush() forces it): a
10,000-image state is about a megabyte, too much to rewrite per prediction."""


class NotAProject(DataError):
    """The folder is not a VOC dataset; ``image_count`` images lie directly in it.

    The UI offers :meth:`Project.create_from_images` when the count is not zero.
    """

    def __init__(self, path: str | Path, image_count: int) -> None:
        self.image_count = image_count
        hint = (f"it holds {image_count} image(s); create a project from them"
                if image_count else "it holds no images")
        super().__init__(path, f"not a project folder (no {voc.IMAGES_DIR}/); {hint}")

    def __reduce__(self) -> tuple[type, tuple[Path | None, int]]:
        return (type(self), (self.path, self.image_count))


@dataclass(frozen=True)
class ImageEntry:
    """One image of the project as the image list shows it (a snapshot)."""

    id: str
    image_path: Path
    state: State
    error: str | None  # why the image cannot be read, once a read failed
    correction_effort: float | None  # share of pixels changed at the last save
    mean_uncertainty: float | None  # of the stored prediction
    split: Literal["train", "val"] | None
    model_version: str | None = None  # of the stored prediction


class Project:
    """A VOC dataset folder opened for labelling. Build with :meth:`open` or ``create_*``.

    Methods may be called from a worker thread as well as the GUI thread; the
    in-memory bookkeeping is guarded by one lock.
    """

    def __init__(self, root: Path, images: dict[str, str], classes: ClassSet,
                 warnings: list[str]) -> None:
        self.root = root
        self._images = images
        self._image_dir = root / voc.IMAGES_DIR
        self._paths: dict[str, Path] = {}
        self._ids: tuple[str, ...] = tuple(sorted(images))
        self.classes = classes
        self._lock = threading.RLock()
        self._labelled = file_stems(root / voc.LABELS_DIR, ".png")
        self._predicted = file_stems(self.predictions_dir, ".png")
        self._errors: dict[str, str] = {}
        self._state = ProjectState.load(self.app_dir / STATE_FILE)
        self._splits = SplitLists(root)
        self._state_dirty = False
        self._state_written = 0.0
        self.warnings: list[str] = warnings + self._state.warnings + self._splits.warnings

    # -- opening and creating ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Project:
        """Open the VOC folder ``path``; raises NotAProject for a plain folder of images.

        Nothing is written (a corrupt state.json is the one exception: it is moved
        aside). Temp files that killed saves left behind are removed
        (:func:`remove_stale_temps`). Without ``class_names.txt`` the 21 PASCAL VOC
        classes are assumed and a warning says so.
        """
        root = Path(path)
        if not root.is_dir():
            raise DataError(root, "not a folder")
        if not (root / voc.IMAGES_DIR).is_dir():
            try:
                count = len(list_images(root)[0])
            except (ImageReadError, OSError):
                count = 0
            raise NotAProject(root, count)
        remove_stale_temps_in(root)
        warnings: list[str] = []
        images = scan_images(root, warnings)
        try:
            classes = ClassSet.load(root)
        except DataError as exc:
            if (root / voc.CLASS_NAMES_FILE).exists() or (root / voc.LABELMAP_FILE).exists():
                raise
            warnings.append(f"{exc}; assuming the {len(VOC_CLASSES)} PASCAL VOC classes")
            classes = ClassSet(VOC_CLASSES)
        warnings.extend(classes.warnings)
        legacy = root / "SegmentationClassPNG"
        if legacy.is_dir() and not file_stems(root / voc.LABELS_DIR, ".png"):
            warnings.append(f"{legacy}: labels of an older labelme2voc; FCN Studio reads "
                            f"labels from {voc.LABELS_DIR}/, move the PNGs there to use them")
        return cls(root, images, classes, warnings)

    @classmethod
    def create_from_images(cls, src_folder: str | Path, dest_root: str | Path,
                           class_names: Sequence[str]
                           ) -> tuple[Project, list[tuple[Path, str]]]:
        """Make a VOC project at ``dest_root`` from a plain folder of images.

        Images are copied byte for byte into JPEGImages (``dest_root`` may be
        ``src_folder`` itself). Returns the project and the skipped files with the
        reason each was skipped (not an image type, or a name no VOC list can hold).
        """
        src, dest = Path(src_folder), Path(dest_root)
        if (dest / voc.IMAGES_DIR).exists():
            raise DataError(dest / voc.IMAGES_DIR, "already exists: open the project instead")
        images, skipped = list_images(src)
        chosen: dict[str, Path] = {}
        for image in images:
            try:
                iid = voc.validate_id(dest, image.stem, image)
            except DataError as exc:
                skipped.append((image, exc.problem))
                continue
            if iid != image.stem:
                skipped.append((image, "leading or trailing spaces in the name"))
            elif iid in chosen:
                skipped.append((image, f"same name as {chosen[iid].name}"))
            else:
                chosen[iid] = image
        if not chosen:
            raise DataError(src, "no images to copy")
        names = ClassSet(class_names)  # checks the names before anything is written
        try:
            for image in chosen.values():
                with open(image, "rb") as fin, atomic_open(
                        dest / voc.IMAGES_DIR / image.name, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            names.save(dest)
        except OSError as exc:
            raise DataError(getattr(exc, "filename", None) or dest,
                            f"cannot copy the images ({exc.strerror or exc})") from exc
        return cls.open(dest), skipped

    @classmethod
    def create_from_id_masks(cls, images_dir: str | Path, masks_dir: str | Path,
                             dest_root: str | Path, class_names: Sequence[str],
                             void_id: int | None) -> Project:
        """Make a project from images and grayscale class-id masks (CamVid, Cityscapes).

        ``void_id`` is the mask value meaning "unlabelled"; it becomes 255.
        """
        import_id_masks(images_dir, masks_dir, dest_root, class_names, void_id)
        return cls.open(dest_root)

    # -- paths and entries --------------------------------------------------------------

    @property
    def app_dir(self) -> Path:
        return self.root / APP_DIR

    @property
    def predictions_dir(self) -> Path:
        return self.app_dir / PREDICTIONS_DIR

    @property
    def models_dir(self) -> Path:
        """Where model versions live; not created until something is stored there."""
        return self.app_dir / MODELS_DIR

    @property
    def ids(self) -> tuple[str, ...]:
        """Every image id, sorted (an immutable sequence: index it freely)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._images

    def image_path(self, image_id: str) -> Path:
        path = self._paths.get(image_id)
        if path is None:
            # Built on first use: Path objects for every image would double the open time.
            try:
                path = self._image_dir / self._images[image_id]
            except KeyError:
                raise KeyError(f"no image {image_id!r} in {self.root}") from None
            self._paths[image_id] = path
        return path

    def label_path(self, image_id: str) -> Path:
        return self.root / voc.LABELS_DIR / f"{image_id}.png"

    def prediction_path(self, image_id: str) -> Path:
        return self.predictions_dir / f"{image_id}.png"

    def state_of(self, image_id: str) -> State:
        self.image_path(image_id)
        return self._state_of(image_id)

    def _state_of(self, image_id: str) -> State:
        if image_id in self._labelled:
            return SAVED
        return PREDICTED if image_id in self._predicted else NEW

    def entry(self, image_id: str) -> ImageEntry:
        path = self.image_path(image_id)
        with self._lock:
            rec = self._state.images.get(image_id)
            return ImageEntry(
                id=image_id, image_path=path, state=self._state_of(image_id),
                error=self._errors.get(image_id),
                correction_effort=rec.correction_effort if rec else None,
                mean_uncertainty=(rec.mean_uncertainty
                                  if rec and image_id in self._predicted else None),
                split=self._splits.split_of(image_id),  # type: ignore[arg-type]
                model_version=rec.model_version if rec and image_id in self._predicted else None,
            )

    def mark_unreadable(self, image_id: str, reason: str) -> None:
        """Remember why an image cannot be read, for the image list."""
        self.image_path(image_id)
        with self._lock:
            self._errors[image_id] = reason

    def saved_newest_first(self) -> list[str]:
        """The ids with a saved label, the most recently saved first (by the save
        history; labels it does not know, such as imported ones, last, by id)."""
        with self._lock:
            last = {item.id: n for n, item in enumerate(self._state.history)}
            saved = [i for i in self._ids if i in self._labelled]
        return sorted(saved, key=lambda i: (-last.get(i, -1), i))

    @property
    def history(self) -> list[HistoryItem]:
        """Every save so far, oldest first: (time, id, correction effort)."""
        with self._lock:
            return list(self._state.history)

    # -- reading -------------------------------------------------------------------------

    def load_image(self, image_id: str) -> np.ndarray:
        """The image as ``H x W x 3`` uint8; a failure is remembered by mark_unreadable."""
        path = self.image_path(image_id)
        try:
            image = read_image(path)
        except ImageReadError as exc:
            self.mark_unreadable(image_id, exc.problem)
            raise
        with self._lock:
            self._errors.pop(image_id, None)
        return image

    def image_size(self, image_id: str) -> tuple[int, int]:
        """(width, height) from the image header."""
        return image_size(self.image_path(image_id))

    def load_label(self, image_id: str) -> np.ndarray | None:
        """The saved label, checked against the class list and the image size.

        None when there is none. LabelError (naming both sizes) when its size
        differs from the image, so the UI can offer to resize or discard it.
        """
        return self._read_checked(image_id, self.label_path(image_id))

    def load_prediction(self, image_id: str) -> np.ndarray | None:
        """The stored model prediction ("original"), or None."""
        return self._read_checked(image_id, self.prediction_path(image_id))

    def _read_checked(self, image_id: str, path: Path) -> np.ndarray | None:
        image = self.image_path(image_id)
        if not path.is_file():
            return None
        return voc.read_label(path, len(self.classes), image_size(image))

    def label_usage(self) -> dict[Path, frozenset[int]]:
        """Class ids present in each saved label (reads every label; for class edits)."""
        usage: dict[Path, frozenset[int]] = {}
        for iid in sorted(self._labelled):
            path = self.label_path(iid)
            label = voc.read_label(path)
            usage[path] = frozenset(np.flatnonzero(np.bincount(label.ravel(), minlength=256))
                                    .tolist())
        return usage

    # -- writing ---------------------------------------------------------------------------

    def save_prediction(self, image_id: str, label: np.ndarray, model_version: str,
                        mean_uncertainty: float | None = None) -> None:
        """Store the model's label for ``image_id``, apart from any saved label."""
        size = self.image_size(image_id)
        path = self.prediction_path(image_id)
        voc.check_label(label, path, len(self.classes), size)
        _write(lambda: voc.write_label(path, label), path)
        with self._lock:
            self._predicted.add(image_id)
            rec = self._state.record(image_id)
            rec.model_version = model_version
            rec.mean_uncertainty = None if mean_uncertainty is None else float(mean_uncertainty)
            rec.predicted_at = now_iso()
            self._state_dirty = True
        self.flush(force=False)

    def save_label(self, image_id: str, label: np.ndarray) -> float | None:
        """Save the corrected label; returns its correction effort.

        Writes ``SegmentationClass/<id>.png`` (palette PNG, atomic), adds the image to
        the split lists (:func:`~fcn_studio.project.project_state.split_for`) together with
        any other labelled image not yet listed, and records the effort: the share
        of pixels that differ from the stored prediction (None without one).
        In-memory state changes only once the label file is written.
        """
        path = self.label_path(image_id)
        voc.check_label(label, path, len(self.classes), self.image_size(image_id))
        effort = self._effort(image_id, label)
        if not (self.root / voc.CLASS_NAMES_FILE).is_file():
            self.save_classes()  # a VOC copy without one: make the dataset self-describing
        _write(lambda: voc.write_label(path, label), path)
        with self._lock:
            self._labelled.add(image_id)
            stamp = now_iso()
            rec = self._state.record(image_id)
            rec.correction_effort, rec.saved_at = effort, stamp
            self._state.history.append(HistoryItem(stamp, image_id, effort))
            self._state_dirty = True
            # Every labelled image belongs in the lists, not only this one: after
            # labelme2voc (no ImageSets) the first save lists them all.
            new_lists = self._splits.plan(sorted(i for i in self._labelled if i in self._images))
            if new_lists is not None:
                self._splits.commit(new_lists)
        self.flush()
        return effort

    def _effort(self, image_id: str, label: np.ndarray) -> float | None:
        try:
            prediction = self.load_prediction(image_id)
        except DataError:
            return None  # an unreadable or stale prediction measures nothing
        if prediction is None or prediction.shape != label.shape:
            return None
        return float(np.count_nonzero(prediction != label)) / label.size

    def flush(self, force: bool = True) -> None:
        """Write state.json if it changed (unforced: only every few seconds)."""
        with self._lock:
            if not self._state_dirty:
                return
            if not force and time.monotonic() - self._state_written < STATE_WRITE_INTERVAL_S:
                return
            self._state.save()
            self._state_dirty = False
            self._state_written = time.monotonic()

    def save_classes(self) -> None:
        """Write class_names.txt and the custom colours after add / rename / set_color."""
        _write(lambda: self.classes.save(self.root), self.root / voc.CLASS_NAMES_FILE)

    def apply_class_change(self, plan: ClassChange) -> None:
        """Apply a class delete/move plan: labels and stored predictions are remapped."""
        predictions = [self.prediction_path(i) for i in sorted(self._predicted)]
        self.classes.apply(plan, self.root, extra_paths=predictions)
        self.save_classes()  # the colours file; class_names.txt is already written


def remove_stale_temps_in(root: Path) -> list[Path]:
    """Remove the temp files of killed atomic saves from every folder the app writes
    in (labels, lists, images it copied, its own state, predictions, model versions
    and runs); files still being written are kept. Returns the removed files."""
    removed: list[Path] = []
    for folder in (root, root / voc.IMAGES_DIR, root / voc.LABELS_DIR, root / voc.SETS_DIR):
        removed += remove_stale_temps(folder)
    return removed + remove_stale_temps(root / APP_DIR, recursive=True)


def _write(action: Callable[[], object], path: Path) -> None:
    """Run a write; an OSError (read-only folder, full disk) becomes a DataError naming ``path``."""
    try:
        action()
    except OSError as exc:
        raise DataError(path, f"cannot write ({exc.strerror or exc})") from exc
