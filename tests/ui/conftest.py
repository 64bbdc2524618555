"""Fixtures shared by the window-level UI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from fcn_studio.ui.settings import AppSettings
from tests.synthetic import CLASS_NAMES
from training import preprocess
from training.checkpoint import make_checkpoint, save_checkpoint
from training.model import ModelConfig, build_model


@pytest.fixture
def messages(monkeypatch) -> list[str]:
    """Message boxes are recorded instead of blocking the test; questions answer Yes."""
    seen: list[str] = []
    for name in ("information", "warning", "critical"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(
            lambda _p, _t, text, *a, **k: seen.append(text)))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda *a, **k: QMessageBox.StandardButton.Yes))
    return seen


@pytest.fixture
def isolated_settings(tmp_path: Path) -> AppSettings:
    """Each window test gets its own settings file, never the user's."""
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


def small_checkpoint(path: Path, backbone: str = "vgg16", seed: int = 0,
                     random_scores: bool = False) -> Path:
    """A 3-class FCN-8s with a narrow head, saved as an FCN Studio checkpoint."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(num_classes=3, backbone=backbone, fc_channels=64))
    if random_scores:  # non-zero scores so predictions are not all background
        with torch.no_grad():
            for name in ("score_fr", "score_pool4", "score_pool3"):
                getattr(model, name).weight.normal_(0, 0.05)
    save_checkpoint(path, make_checkpoint(model, CLASS_NAMES, preprocess.TORCHVISION))
    return path


def open_window(qtbot, settings: AppSettings, size: tuple[int, int] = (900, 600)):
    """A shown main window on the CPU with its own settings (closed with the test)."""
    from fcn_studio.ui.main_window import MainWindow

    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


def show_predicted(qtbot, w, image_id: str) -> None:
    """Show ``image_id`` and wait until the current model's prediction is on it (the
    worker may have predicted it ahead of time, or not yet: the state decides)."""
    w.ops.show_image(image_id)
    qtbot.waitUntil(lambda: w.controller.session.prediction is not None
                    and w.controller.session.prediction.model == w.controller.model.id,
                    timeout=60_000)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small checkpoint with non-zero scores (predictions are not all background)."""
    return small_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", seed=1,
                            random_scores=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A 4-image VOC project; img002 and img003 have no label yet."""
    from tests.synthetic import write_voc

    root = tmp_path / "proj"
    write_voc(root, n=4, n_val=1)
    for image_id in ("img002", "img003"):
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    return root
