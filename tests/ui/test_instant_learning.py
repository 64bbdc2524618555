"""Instant learning in the window: a save teaches the head; the next prediction carries it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.ui.main_window import MainWindow
from tests.synthetic import CLASS_NAMES, synthetic_pair, write_voc
from tests.ui.conftest import open_window, show_predicted, small_checkpoint


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", seed=1)


def _open(qtbot, root: Path, model_file: Path, isolated_settings, unlabelled: tuple[str, ...]
          ) -> MainWindow:
    write_voc(root, n=4, n_val=1)
    for image_id in unlabelled:
        (root / "SegmentationClass" / f"{image_id}.png").unlink()
    w = open_window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(root, model=ModelSpec.file(model_file, CLASS_NAMES))
    return w


@pytest.fixture
def window(qtbot, tmp_path: Path, model_file: Path, messages, isolated_settings) -> MainWindow:
    """A project with no saved label yet."""
    return _open(qtbot, tmp_path / "proj", model_file, isolated_settings,
                 ("img000", "img001", "img002", "img003"))


@pytest.fixture
def window_with_a_label(qtbot, tmp_path: Path, model_file: Path, messages, isolated_settings
                        ) -> MainWindow:
    """img000's label was saved in an earlier session."""
    return _open(qtbot, tmp_path / "proj", model_file, isolated_settings,
                 ("img001", "img002", "img003"))


def _correct_and_save(qtbot, w: MainWindow, seed: int):
    """Replace the label by the true one (as a person correcting it would) and save."""
    _, truth = synthetic_pair(seed)
    assert w.controller.session.replace(truth, "Correct")
    with qtbot.waitSignal(w.worker.learned, timeout=120_000) as blocker:
        w.controller.save_current(force=True)
    return blocker.args[0]


def test_a_save_teaches_the_head_and_the_next_prediction_carries_the_new_model(qtbot, window) -> None:
    w = window
    before = w.controller.model.id
    show_predicted(qtbot, w, "img001")
    result = _correct_and_save(qtbot, w, seed=1)
    assert result.images == 1 and not result.rolled_back
    assert "learned from 1 image" in result.describe()
    qtbot.waitUntil(lambda: w.controller.model.id == result.model.id, timeout=10_000)
    after = w.controller.model.id
    assert after != before and after.head and after.with_head("") == before
    assert "head learned from 1 image (" in w.status.model_label.text()  # singular, then the device
    # The next image is predicted by the new head (refreshed from its cached features
    # if it was predicted ahead), and that identity is what its stored prediction records.
    show_predicted(qtbot, w, "img002")
    assert w.controller.session.prediction.model == after
    qtbot.waitUntil(lambda: w.controller.project.entry("img002").model_version == after.stored,
                    timeout=10_000)


def test_a_label_saved_before_counts_from_the_first_save(qtbot, window_with_a_label) -> None:
    w = window_with_a_label
    show_predicted(qtbot, w, "img001")
    # The idle worker takes img000's label up (its features: one backbone forward).
    qtbot.waitUntil(w.worker.is_idle, timeout=60_000)
    assert w.worker._learner.labelled == ["img000"] and w.worker._learner.has_features("img000")
    result = _correct_and_save(qtbot, w, seed=1)
    assert result.images == 2 and result.skipped == ()
    qtbot.waitUntil(lambda: w.controller.model.id == result.model.id, timeout=10_000)
    assert "head learned from 2 images" in w.status.model_label.text()
    assert w.worker._learner.labelled == ["img000", "img001"]  # the saved one is the newest


def test_a_label_saved_before_that_does_not_fit_is_named(qtbot, tmp_path, model_file, messages,
                                                         isolated_settings) -> None:
    from training import voc

    root = tmp_path / "proj"
    write_voc(root, n=4, n_val=1)
    voc.write_label(voc.label_path(root, "img002"), np.zeros((5, 5), np.uint8))  # not its size
    w = open_window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.worker.learnFailed, timeout=60_000) as failed:
        w.ops.open_project(root, model=ModelSpec.file(model_file, CLASS_NAMES))
    assert "img002" in failed.args[0] and "left out" in failed.args[0]
    qtbot.waitUntil(w.worker.is_idle, timeout=60_000)
    assert sorted(w.worker._learner.labelled) == ["img000", "img001", "img003"]


def test_undo_last_learning_restores_the_model_before(qtbot, window) -> None:
    w = window
    before = w.controller.model.id
    show_predicted(qtbot, w, "img001")
    _correct_and_save(qtbot, w, seed=1)
    qtbot.waitUntil(lambda: w.controller.model.id != before, timeout=10_000)
    with qtbot.waitSignal(w.worker.learned, timeout=60_000) as blocker:
        w.actions_["undo_learning"].trigger()
    assert blocker.args[0].rolled_back
    qtbot.waitUntil(lambda: w.controller.model.id == before, timeout=10_000)
    # Back to the model as loaded: no learned head is kept for it any more.
    assert not list((w.controller.project.root / ".fcn_studio" / "heads").glob("*.pt"))
    with qtbot.waitSignal(w.worker.learnFailed, timeout=60_000) as failed:
        w.actions_["undo_learning"].trigger()  # nothing left to undo: said, not a crash
    assert "Nothing to undo" in failed.args[0]


def test_turned_off_a_save_queues_no_learning(qtbot, window) -> None:
    w = window
    w.actions_["instant_learning"].setChecked(False)
    assert not w.worker.instant_enabled
    show_predicted(qtbot, w, "img001")
    _, truth = synthetic_pair(1)
    w.controller.session.replace(truth, "Correct")
    with qtbot.waitSignal(w.controller.labelSaved, timeout=60_000):
        w.controller.save_current(force=True)
    assert not w.worker._learn_pending  # nothing was queued for the worker
    assert not w.controller.model.id.head


def test_a_label_with_an_unknown_class_is_refused_with_the_reason(qtbot, window) -> None:
    w = window
    show_predicted(qtbot, w, "img001")
    bad = np.full(w.controller.session.shape, 9, np.uint8)  # the model has 3 classes
    with qtbot.waitSignal(w.worker.learnFailed, timeout=60_000) as failed:
        w.worker.learn("img001", w.controller.project.entry("img001").image_path, bad)
    assert "class id 9" in failed.args[0] and "3 classes" in failed.args[0]
    assert not w.controller.model.id.head


def test_the_learned_head_survives_reopening_the_project(qtbot, window, tmp_path, isolated_settings,
                                                         model_file) -> None:
    w = window
    root = w.controller.project.root
    show_predicted(qtbot, w, "img001")
    result = _correct_and_save(qtbot, w, seed=1)
    learned = result.model.id
    heads = list((root / ".fcn_studio" / "heads").glob("*.pt"))
    assert len(heads) == 1 and heads[0].stat().st_size < 200_000  # kilobytes, not the model
    w.close()
    w2 = MainWindow(isolated_settings, device="cpu")
    qtbot.addWidget(w2)
    with qtbot.waitSignal(w2.controller.modelChanged, timeout=60_000):
        assert w2.ops.open_project(root, model=ModelSpec.file(model_file, CLASS_NAMES))
    assert w2.controller.model.id == learned  # the same head, so the same identity
    assert "head learned from 1 image" in w2.controller.model.description


def test_features_memory_lets_go_of_wait_on_disk_in_the_project(
        qtbot, tmp_path: Path, model_file: Path, messages, isolated_settings, monkeypatch) -> None:
    from fcn_studio.ui.labelling import inference

    monkeypatch.setattr(inference, "FEATURE_CACHE_BYTES", 0)  # every entry goes to disk
    root = tmp_path / "proj"
    write_voc(root, n=3, n_val=1)
    (root / "SegmentationClass" / "img001.png").unlink()
    w = open_window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(root, model=ModelSpec.file(model_file, CLASS_NAMES))
    show_predicted(qtbot, w, "img001")
    features = root / ".fcn_studio" / "features"
    qtbot.waitUntil(lambda: any(features.glob("*.pt")), timeout=30_000)
    # Learning reads them back instead of running the backbone again (nothing in memory).
    result = _correct_and_save(qtbot, w, seed=1)
    assert result.images >= 1 and not result.rolled_back
    assert w.worker._learner.cache.used_bytes == 0
