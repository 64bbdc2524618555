"""The whole window: open a project, predict in the background, paint, save, switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_studio.models.model_spec import ModelId, ModelSpec
from fcn_studio.ui.labelling.worker_results import InferenceResult
from fcn_studio.ui.main_window import MainWindow
from tests.synthetic import CLASS_NAMES
from tests.ui.mouse import drag
from training.images import read_image
from training.predict import Predictor


@pytest.fixture
def window(qtbot, project: Path, model_file: Path, messages, isolated_settings) -> MainWindow:
    w = MainWindow(isolated_settings, device="cpu")
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    qtbot.waitExposed(w)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(project, model=ModelSpec.file(model_file, CLASS_NAMES))
    return w


def _show(qtbot, w: MainWindow, image_id: str, predicted: bool = False) -> None:
    if predicted:
        with qtbot.waitSignal(w.controller.predictionShown, timeout=60_000):
            w.ops.show_image(image_id)
    else:
        w.ops.show_image(image_id)
    assert w.controller.session.image_id == image_id


def test_open_shows_first_image_with_its_saved_label(window: MainWindow, project: Path) -> None:
    s = window.controller.session
    assert s.image_id == "img000" and s.has_saved_label
    saved = np.asarray(Image.open(project / "SegmentationClass" / "img000.png"))
    np.testing.assert_array_equal(s.label, saved)
    assert window.image_list.visible_ids() == ["img000", "img001", "img002", "img003"]
    assert "model.pt" in window.status.model_label.text()


def test_new_image_starts_from_the_models_prediction(qtbot, window: MainWindow, project: Path,
                                                     model_file: Path) -> None:
    _show(qtbot, window, "img002", predicted=True)
    s = window.controller.session
    expected = Predictor.load(model_file, "cpu").predict(
        read_image(project / "JPEGImages" / "img002.png")).label
    np.testing.assert_array_equal(s.prediction.label, expected)
    np.testing.assert_array_equal(s.label, expected)  # the starting label
    assert not s.dirty  # a prediction is not a correction
    window.controller.prediction_writer.wait()  # stored off the GUI thread
    assert (project / ".fcn_studio" / "predictions" / "img002.png").is_file()
    assert (project / ".fcn_studio" / "uncertainty" / "img002.png").is_file()
    assert window.controller.project.entry("img002").state == "predicted"
    assert not (project / "SegmentationClass" / "img002.png").exists()


def test_paint_save_and_reload_equal(qtbot, window: MainWindow, project: Path) -> None:
    _show(qtbot, window, "img002", predicted=True)
    s = window.controller.session
    before = s.label.copy()
    window.class_panel.set_current(1)
    window.canvas.set_class(1)
    window.canvas.set_brush_radius(3)
    drag(window.canvas, [(10, 10), (40, 12), (60, 30)])
    assert s.dirty and (s.label != before).any() and s.label[10, 10] == 1
    assert window.isWindowModified() and window.windowTitle().startswith("img002")
    window.actions_["save"].trigger()
    window.controller.saver.wait()
    qtbot.waitUntil(lambda: window.controller.project.entry("img002").state == "saved")
    saved = np.asarray(Image.open(project / "SegmentationClass" / "img002.png"))
    np.testing.assert_array_equal(saved, s.label)
    assert Image.open(project / "SegmentationClass" / "img002.png").mode == "P"
    assert "img002" in (project / "ImageSets" / "Segmentation" / "trainval.txt").read_text()
    assert not s.dirty


def test_undo_redo_through_the_actions(qtbot, window: MainWindow) -> None:
    s = window.controller.session
    original = s.label.copy()
    window.canvas.set_class(2)
    drag(window.canvas, [(5, 5), (30, 30)])
    painted = s.label.copy()
    assert (painted != original).any()
    window.actions_["undo"].trigger()
    np.testing.assert_array_equal(s.label, original)
    window.actions_["redo"].trigger()
    np.testing.assert_array_equal(s.label, painted)


def test_switching_images_autosaves(qtbot, window: MainWindow, project: Path) -> None:
    s = window.controller.session
    window.canvas.set_class(2)
    drag(window.canvas, [(2, 2), (20, 3)])
    edited = s.label.copy()
    window.actions_["next"].trigger()
    assert window.controller.session.image_id == "img001"
    window.controller.saver.wait()
    np.testing.assert_array_equal(
        np.asarray(Image.open(project / "SegmentationClass" / "img000.png")), edited)
    # Coming back shows the saved edit, and its undo history still works.
    window.actions_["prev"].trigger()
    np.testing.assert_array_equal(window.controller.session.label, edited)


def test_stale_and_foreign_results_are_ignored(qtbot, window: MainWindow) -> None:
    _show(qtbot, window, "img003", predicted=True)
    s = window.controller.session
    shown = s.label.copy()
    other = np.full(shown.shape, 2, np.uint8)
    unc = np.zeros(shown.shape, np.float32)
    model = window.controller.model.id
    # A late result for another image: stored for that image, not shown here.
    window.controller._on_result(InferenceResult("img002", model, other, unc, 0.1, True))
    np.testing.assert_array_equal(s.label, shown)
    # A result from a model no longer in use (same file name, other bytes): dropped.
    old = ModelId("file", "0" * 64)
    window.controller._on_result(InferenceResult("img003", old, other, unc, 0.1, False))
    np.testing.assert_array_equal(s.label, shown)
    assert not (s.prediction.label == 2).all()


def test_unreadable_image_is_marked_not_fatal(qtbot, window: MainWindow, project: Path,
                                              messages: list[str]) -> None:
    (project / "JPEGImages" / "img003.png").write_bytes(b"\x89PNG broken")
    window.controller._cache.forget("img003")  # noqa: SLF001 - as if never decoded
    assert not window.ops.show_image("img003")
    assert "img003" in window.status.alert_label.toolTip() and messages == []
    assert window.controller.project.entry("img003").error
    assert window.controller.session.image_id == "img000"  # still on the previous image


def test_save_error_keeps_the_edit(qtbot, window: MainWindow, monkeypatch,
                                   messages: list[str]) -> None:
    from training.errors import DataError

    def refuse(image_id, label):
        raise DataError("/readonly/SegmentationClass/x.png", "cannot write (Permission denied)")

    monkeypatch.setattr(window.controller.project, "save_label", refuse)
    s = window.controller.session
    window.canvas.set_class(1)
    drag(window.canvas, [(1, 1), (30, 1)])
    edited = s.label.copy()
    window.actions_["save"].trigger()
    window.controller.saver.wait()
    qtbot.waitUntil(lambda: "Permission denied" in window.status.alert_label.toolTip())
    assert messages == []  # said in the status bar and the list, not in a modal box
    assert "Permission denied" in window.image_list.model.note("img000")
    assert s.dirty  # still marked unsaved
    window.actions_["next"].trigger()  # the save fails again on the switch
    window.controller.saver.wait()
    qtbot.waitUntil(lambda: window.controller.failed_saves() == ["img000"])
    window.actions_["prev"].trigger()
    np.testing.assert_array_equal(window.controller.session.label, edited)  # never lost


def test_a_model_that_fails_to_load_leaves_the_previous_one(qtbot, window: MainWindow,
                                                            tmp_path: Path,
                                                            messages: list[str]) -> None:
    before = window.controller.model
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with qtbot.waitSignal(window.worker.modelFailed, timeout=60_000):
        window.controller.set_model(ModelSpec.file(bad, CLASS_NAMES))
    text = window.status.alert_label.toolTip()
    assert "broken.pt" in text and "stays in use" in text and messages == []
    assert window.controller.model is before
    # ...and it still predicts. Whether img002 was predicted ahead of time already or
    # not, its prediction ends up from that model; Ctrl+R then predicts it once more.
    window.ops.show_image("img002")
    s = window.controller.session
    qtbot.waitUntil(lambda: s.prediction is not None and s.prediction.model == before.id,
                    timeout=60_000)
    with qtbot.waitSignal(window.controller.predictionShown, timeout=60_000):
        window.actions_["predict"].trigger()
    assert s.prediction.model == before.id


def test_device_menu_reloads_the_model_on_the_chosen_device(qtbot, window: MainWindow,
                                                             messages: list[str]) -> None:
    with qtbot.waitSignal(window.controller.modelChanged, timeout=60_000) as got:
        window.set_device("cpu")
    assert got.args[0].device == "cpu"
    import torch

    if not torch.cuda.is_available():
        with qtbot.waitSignal(window.worker.modelFailed, timeout=60_000):
            window.set_device("cuda")
        assert window.controller.model.device == "cpu"  # still working on the CPU


def test_active_learning_order_puts_the_most_uncertain_unsaved_image_next(
        qtbot, window: MainWindow) -> None:
    project = window.controller.project
    # Every prediction ahead is done, delivered and written (in the background), so none
    # lands on top of the ones this test stores.
    version = window.controller.model.version
    qtbot.waitUntil(lambda: window.worker.is_idle() and all(
        project.entry(i).model_version == version for i in ("img002", "img003")),
        timeout=60_000)
    window.controller.prediction_writer.wait()
    rng = np.random.default_rng(0)
    shape = project.load_image("img002").shape[:2]
    for image_id, u in (("img002", 0.2), ("img003", 0.7)):
        project.save_prediction(image_id, rng.integers(0, 3, shape, dtype=np.uint8),
                                window.controller.model.version, u)
        window.controller.entryChanged.emit(image_id)  # as a worker result does
    window.image_list.order_button.setChecked(True)
    order = window.image_list.visible_ids()
    assert order[:2] == ["img003", "img002"]  # unsaved, most uncertain first
    assert set(order[2:]) == {"img000", "img001"}  # saved ones last
    window.ops.show_image("img003")
    window.actions_["next"].trigger()  # Next follows the active-learning order
    assert window.controller.session.image_id == "img002"
    # "Next most uncertain" offers the most uncertain unsaved image other than this one.
    assert window.controller.most_uncertain() == "img003"


def test_background_fine_tune_menu_sets_and_remembers_the_count(
        qtbot, window: MainWindow, isolated_settings) -> None:
    menu = next(a.menu() for a in window.menus["Model"].actions()
                if a.menu() is not None and "Background" in a.text())
    texts = [a.text() for a in menu.actions()]
    assert texts == ["&Off", "After 10 New Labels", "After 25 New Labels", "After 50 New Labels"]
    assert window.finetune.auto_after == 0 and menu.actions()[0].isChecked()
    menu.actions()[2].trigger()
    assert window.finetune.auto_after == 25 and menu.actions()[2].isChecked()
    assert int(isolated_settings.value("auto_finetune_after")) == 25
    # Saving a label is what asks the fine-tune controller (six saved labels here: not 25).
    with qtbot.assertNotEmitted(window.finetune.autoStarted, wait=50):
        window.controller.labelSaved.emit("street_01")


def test_the_backbone_of_new_models_is_chosen_in_the_model_menu(
        qtbot, project: Path, messages, isolated_settings) -> None:
    w = MainWindow(isolated_settings, device="cpu")
    qtbot.addWidget(w)
    menu = next(a.menu() for a in w.menus["Model"].actions()
                if a.menu() is not None and "Backbone" in a.text())
    acts = {a.data(): a for a in menu.actions()}
    assert list(acts) == ["vgg16", "vgg16_bn", "alexnet", "googlenet", "mobilenet_v3_large",
                          "resnet50"]
    # On a CPU the light backbone is recommended and is the default for new models.
    assert acts["mobilenet_v3_large"].isChecked() and "recommended" in acts[
        "mobilenet_v3_large"].text()
    assert w.controller.new_backbone == "mobilenet_v3_large"
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000) as got:
        assert w.ops.open_project(project, model=ModelSpec.untrained(CLASS_NAMES, "vgg16"))
    assert got.args[0].backbone == "vgg16"
    # Choosing another rebuilds a model without trained weights on it, and says so.
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000) as got:
        acts["googlenet"].trigger()
    assert got.args[0].backbone == "googlenet" and got.args[0].spec.kind == "untrained"
    assert "GoogLeNet" in w.status.model_label.text()
    assert isolated_settings.value("new_model_backbone") == "googlenet"
    w.controller.shutdown()
