"""Fine-tuning from the window: correct, train in a child process, get a better version."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.ui.main_window import MainWindow
from tests.synthetic import CLASS_NAMES, synthetic_pair, write_voc
from tests.ui.conftest import small_checkpoint

# Small and fast: a BN backbone with a narrow head on 64x80 images, 64-pixel crops.
FAST = ["--crop", "64", "--batch-size", "2", "--lr", "1e-3", "--workers", "0"]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("base") / "base.pt", backbone="vgg16_bn")


@pytest.fixture
def window(qtbot, tmp_path: Path, base_model: Path, messages, isolated_settings) -> MainWindow:
    root = tmp_path / "proj"
    write_voc(root, n=6, n_val=2)
    for i in range(2, 6):  # only img000 and img001 start labelled
        (root / "SegmentationClass" / f"img{i:03d}.png").unlink()
    w = MainWindow(isolated_settings, device="cpu")
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        w.ops.open_project(root, model=ModelSpec.file(base_model, CLASS_NAMES))
    yield w
    w.finetune.job.shutdown(30_000)


def _correct(w: MainWindow, index: int) -> None:
    """What a person does: open the image, paint the true mask, save."""
    w.ops.show_image(f"img{index:03d}")
    _, truth = synthetic_pair(index)
    assert w.canvas.replace_label(truth, "correct")
    w.actions_["save"].trigger()
    w.controller.saver.wait()


def test_correct_finetune_and_use_the_better_version(qtbot, window: MainWindow) -> None:
    _correct(window, 2)
    _correct(window, 3)
    ft = window.finetune
    opts = {"base": "current", "epochs": None, "time_limit_s": None, "lr": 1e-3,
            "device": "cpu", "val_share": 0.5, "reinit_classes": False,
            "iters": 40, "extra_args": FAST}
    with qtbot.waitSignal(ft.job.finished, timeout=300_000) as done:
        # "current" is the model in use: here the file the project was opened with.
        assert ft.start(opts)
        assert not ft.start(opts)  # a second start while one runs is refused
    assert done.args[0]["status"] == "finished", done.args[0]
    versions = ft.versions()
    assert [v.id for v in versions] == ["v001"]
    v = versions[0]
    assert v.meta["train_ids"] and v.meta["val_ids"]
    assert set(v.meta["train_ids"]) | set(v.meta["val_ids"]) == {"img000", "img001", "img002",
                                                                 "img003"}
    assert v.before_mean_iou is not None and v.mean_iou is not None
    # The synthetic pattern is predicted better than before on the same val images.
    assert v.mean_iou > v.before_mean_iou
    qtbot.waitUntil(lambda: window.controller.model.version == "v001", timeout=60_000)
    assert ft.current_id() == "v001"
    assert window.models_panel is not None


def test_cancel_keeps_the_last_checkpoint_as_a_version(qtbot, window: MainWindow,
                                                       base_model: Path) -> None:
    ft = window.finetune
    with qtbot.waitSignal(ft.job.progress, timeout=120_000):
        assert ft.start({"base": str(base_model), "val_share": 0.5, "device": "cpu",
                         "iters": 5000, "extra_args": FAST})
    with qtbot.waitSignal(ft.job.finished, timeout=120_000) as done:
        ft.job.cancel()
    assert done.args[0]["status"] == "cancelled"
    (v,) = ft.versions()
    assert v.status == "cancelled" and v.broken is None


def test_crashing_child_is_reported_and_the_app_carries_on(qtbot, window: MainWindow,
                                                           base_model: Path,
                                                           messages: list[str]) -> None:
    ft = window.finetune
    crash = "import os, sys; print('{\"event\": \"start\"}', flush=True); os._exit(9)"
    ft.job._program = [sys.executable, "-c", crash]
    with qtbot.waitSignal(ft.job.finished, timeout=60_000) as done:
        assert ft.start({"base": str(base_model), "val_share": 0.5, "device": "cpu"})
    assert done.args[0]["status"] in ("crashed", "failed")
    assert ft.versions() == []
    assert not ft.job.is_running()
    assert window.isVisible()  # still here
