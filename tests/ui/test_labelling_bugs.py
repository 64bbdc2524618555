"""What a new user hit in the window, each reproduced first (issue 8, "Why").

Every test waits on signals or states, never on timing: the worker may finish
its ahead-of-time predictions before or after any step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.ui.main_window import MainWindow
from tests.synthetic import CLASS_NAMES, write_voc
from tests.ui.conftest import open_window, show_predicted, small_checkpoint
from tests.ui.mouse import drag


@pytest.fixture(scope="module")
def other_model_file(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("model2") / "model.pt", seed=7,
                            random_scores=True)


@pytest.fixture
def no_imagenet(monkeypatch) -> None:
    """The ImageNet VGG16 file is not on disk (whatever this machine's cache holds)."""
    import training.weights

    real = training.weights.imagenet_weights_info

    def info(backbone: str = "vgg16") -> dict:
        return {**real(backbone), "cached": False}

    monkeypatch.setattr(training.weights, "imagenet_weights_info", info)


@pytest.fixture
def window(qtbot, project: Path, model_file: Path, messages, isolated_settings) -> MainWindow:
    w = open_window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(project, model=ModelSpec.file(model_file, CLASS_NAMES))
    return w


def test_undo_survives_switching_away_and_back(qtbot, window: MainWindow,
                                               project: Path) -> None:
    s = window.controller.session
    original = s.label.copy()
    window.canvas.set_class(2)
    drag(window.canvas, [(5, 5), (30, 30)])
    assert (s.label != original).any()
    window.actions_["next"].trigger()
    window.controller.saver.wait()  # the autosave is on disk before coming back
    window.actions_["prev"].trigger()
    back = window.controller.session
    window.actions_["undo"].trigger()
    np.testing.assert_array_equal(back.label, original)
    assert window.canvas.label() is back.label
    # The canvas shows the undone label: its overlay matches a fresh colouring.
    shown = window.canvas.overlay_buffer().copy()
    window.canvas.refresh_overlay(None)
    np.testing.assert_array_equal(shown, window.canvas.overlay_buffer())
    window.actions_["save"].trigger()
    window.controller.saver.wait()
    qtbot.waitUntil(lambda: not back.dirty)
    saved = np.asarray(Image.open(project / "SegmentationClass" / "img000.png"))
    np.testing.assert_array_equal(saved, original)


def test_another_projects_model_is_never_used(qtbot, window: MainWindow, tmp_path: Path,
                                              no_imagenet) -> None:
    other = tmp_path / "voc21"
    write_voc(other, n=3, n_val=1)
    names = [f"class{i}" for i in range(5)]
    (other / "class_names.txt").write_text("\n".join(names) + "\n")
    for p in (other / "SegmentationClass").glob("*.png"):
        p.unlink()
    old = window.controller.model
    with qtbot.waitSignal(window.controller.modelChanged, timeout=60_000):
        assert window.ops.open_project(other)
    model = window.controller.model
    assert model is not old and list(model.class_names) == names
    assert "untrained" in model.description
    qtbot.waitUntil(window.worker.is_idle, timeout=60_000)
    project = window.controller.project
    versions = {project.entry(i).model_version for i in project.ids} - {None}
    assert versions <= {str(model.id)}, versions


def test_prediction_refreshes_after_model_switch_with_an_undone_edit(
        qtbot, window: MainWindow, other_model_file: Path) -> None:
    show_predicted(qtbot, window, "img002")
    s = window.controller.session
    window.canvas.set_class(1)
    drag(window.canvas, [(5, 5), (30, 30)])
    window.actions_["undo"].trigger()  # nothing left done: the label is the prediction
    assert not s.dirty
    window.controller.set_model(ModelSpec.file(other_model_file, CLASS_NAMES))
    qtbot.waitUntil(lambda: s.prediction.model == window.controller.model.id
                    and window.controller.model.id.key != "", timeout=60_000)
    np.testing.assert_array_equal(s.label, s.prediction.label)
    assert not s.dirty


def test_heat_map_shows_for_a_stored_prediction(qtbot, window: MainWindow) -> None:
    show_predicted(qtbot, window, "img002")
    window.actions_["uncertainty"].setChecked(True)
    assert window.canvas.heat_buffer() is not None
    window.ops.show_image("img003")
    window.controller.prediction_writer.wait()  # stored off the GUI thread
    window.ops.show_image("img002")  # its prediction now comes from the project's store
    assert window.controller.session.prediction is not None
    assert window.canvas.heat_buffer() is not None


def test_unreadable_first_image_shows_the_first_readable_one(
        qtbot, project: Path, model_file: Path, messages, isolated_settings) -> None:
    (project / "JPEGImages" / "img000.png").write_bytes(b"\x89PNG broken")
    w = open_window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(project, model=ModelSpec.file(model_file, CLASS_NAMES))
    assert w.controller.session is not None and w.controller.session.image_id == "img001"
    assert w.canvas.has_image()
    assert w.controller.project.entry("img000").error
    assert messages == []  # said in the list and the status bar, not in a modal box


def test_background_prediction_errors_are_not_modal(qtbot, window: MainWindow,
                                                    messages: list[str]) -> None:
    window.worker.predictionFailed.emit("img002", str(window.controller.model.id),
                                        "out of memory")
    qtbot.waitUntil(lambda: "out of memory" in window.status.alert_label.toolTip())
    assert messages == []
    assert "img002" in window.status.alert_label.toolTip()


def test_page_down_and_up_step_past_an_unreadable_image(qtbot, window: MainWindow,
                                                        project: Path) -> None:
    window.ops.show_image("img001")
    (project / "JPEGImages" / "img002.png").write_bytes(b"\x89PNG broken")
    window.controller._cache.forget("img002")  # noqa: SLF001 - as if never decoded
    window.actions_["next"].trigger()
    assert window.controller.session.image_id == "img003"
    assert window.controller.project.entry("img002").error  # the reason is in the list
    window.actions_["prev"].trigger()
    assert window.controller.session.image_id == "img001"


def test_arrow_keys_in_the_image_list_open_the_image(qtbot, window: MainWindow) -> None:
    view = window.image_list.view
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert window.controller.session.image_id == "img001"
    assert window.image_list.current_id() == "img001"
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert window.controller.session.image_id == "img002"
    QTest.keyClick(view, Qt.Key.Key_Up)
    assert window.controller.session.image_id == "img001"


def test_a_model_with_other_classes_never_predicts_in_the_project(
        qtbot, tmp_path: Path, model_file: Path, messages, isolated_settings,
        no_imagenet) -> None:
    root = tmp_path / "four"
    write_voc(root, n=2, n_val=1)
    names = [*CLASS_NAMES, "extra"]
    (root / "class_names.txt").write_text("\n".join(names) + "\n")
    w = open_window(qtbot, isolated_settings)
    # Asked for the 3-class file: refused, then the project's own chain (no ImageNet
    # weights on disk here) ends at an untrained FCN-8s with the project's 4 classes.
    assert w.ops.open_project(root, model=ModelSpec.file(model_file, CLASS_NAMES))
    qtbot.waitUntil(lambda: w.controller.model is not None, timeout=60_000)
    assert list(w.controller.model.class_names) == names
    assert w.controller.model.id.kind == "untrained"
    assert "untrained" in w.status.alert_label.toolTip()  # why it is not the model asked for
    assert messages == []


def test_arrow_keys_move_on_past_an_unreadable_row(qtbot, window: MainWindow,
                                                   project: Path) -> None:
    (project / "JPEGImages" / "img001.png").write_bytes(b"\x89PNG broken")
    window.controller._cache.forget("img001")  # noqa: SLF001 - as if never decoded
    view = window.image_list.view
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert window.controller.session.image_id == "img000"  # could not be shown
    assert window.controller.project.entry("img001").error
    QTest.keyClick(view, Qt.Key.Key_Down)
    assert window.controller.session.image_id == "img002"
    assert window.image_list.current_id() == "img002"
