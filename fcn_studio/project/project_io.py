"""Project operations beyond open/save: adding images, exporting, fitting a label.

Kept apart from project.py so that module stays about reading and writing one
project's state.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from training import voc
from training.atomic import atomic_open
from training.errors import DataError
from training.images import is_image_path

from .project import Project


def add_images(project: Project, paths: Iterable[Path]) -> tuple[Project, list[str],
                                                                  list[tuple[Path, str]]]:
    """Copy image files into the project's JPEGImages; returns the reopened project,
    the new ids and the skipped files with reasons (not an image, name taken)."""
    added: list[str] = []
    skipped: list[tuple[Path, str]] = []
    dest_dir = project.root / voc.IMAGES_DIR
    for path in paths:
        path = Path(path)
        if not path.is_file() or not is_image_path(path):
            skipped.append((path, "not an image file"))
            continue
        try:
            image_id = voc.validate_id(project.root, path.stem, path)
        except DataError as exc:
            skipped.append((path, exc.problem))
            continue
        if image_id != path.stem:
            # ' a.jpg' would be copied but never listed: split lists strip each line.
            skipped.append((path, "leading or trailing spaces in the name"))
            continue
        if image_id in project or image_id in added:
            skipped.append((path, f"the project already has an image named {image_id}"))
            continue
        try:
            with open(path, "rb") as fin, atomic_open(dest_dir / path.name, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except OSError as exc:
            raise DataError(dest_dir / path.name, f"cannot copy ({exc.strerror or exc})") from exc
        added.append(image_id)
    project.flush()
    return (Project.open(project.root) if added else project), added, skipped


def export_labelled(project: Project, dest: Path) -> list[str]:
    """A clean VOC dataset of the saved labels at ``dest`` (labelmap.txt included)."""
    ids = [i for i in project.ids if project.state_of(i) == "saved"]
    if not ids:
        raise DataError(project.root, "no saved labels to export")
    project.flush()
    return voc.export_voc(project.root, dest, list(project.classes.names), ids)


def resized_label(project: Project, image_id: str) -> np.ndarray:
    """The saved label scaled (nearest neighbour) to its image's size, unchecked size-wise."""
    from training.images import read_label_image

    label, _ = read_label_image(project.label_path(image_id))
    w, h = project.image_size(image_id)
    out = np.asarray(Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST))
    voc.check_label(out, project.label_path(image_id), len(project.classes))
    return out
