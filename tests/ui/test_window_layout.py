"""The window a labeller lives in: canvas first, fits the screen, remembers its layout,
no box waiting for a click on a first start, brush keys, recent projects."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QRect, QSettings
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox

from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.ui.canvas import canvas_tools
from fcn_studio.ui.main_window import NOTICE_FIRST_RUN, MainWindow
from fcn_studio.ui.settings import AppSettings
from fcn_studio.ui.window_layout import SIDE_PANEL_MIN, default_rect, fit_rect
from tests.synthetic import CLASS_NAMES, write_voc
from tests.ui.conftest import small_checkpoint


@pytest.fixture(autouse=True)
def no_blocking_boxes(messages, monkeypatch) -> list[str]:
    """A box asked with exec() would wait for a click no test gives: record it instead."""
    monkeypatch.setattr(QMessageBox, "exec", lambda box: messages.append(box.text()) or 0)
    return messages


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write_voc(root, n=4, n_val=1)
    return root


def _settings(path: Path) -> AppSettings:
    return AppSettings(QSettings(str(path), QSettings.Format.IniFormat))


def _window(qtbot, settings: AppSettings, available: QRect | None = None) -> MainWindow:
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    if available is not None:
        w.place_on_screen(available, key="test-screen")
    w.show()
    qtbot.waitExposed(w)
    return w


def _open(qtbot, w: MainWindow, project: Path, model_file: Path) -> None:
    with qtbot.waitSignal(w.controller.modelChanged, timeout=60_000):
        assert w.ops.open_project(project, model=ModelSpec.file(model_file, CLASS_NAMES))


def _canvas_share(qtbot, w: MainWindow) -> float:
    qtbot.wait(50)  # the default dock sizes are set once more after the first layout pass
    QApplication.processEvents()
    c = w.canvas.size()
    return c.width() * c.height() / (w.width() * w.height())


# -- placement ----------------------------------------------------------------------------

@pytest.mark.parametrize("screen", [QRect(0, 0, 1280, 720), QRect(0, 0, 1600, 1000),
                                    QRect(0, 0, 1400, 900), QRect(1920, 0, 1024, 600)])
def test_the_default_window_fits_the_screen_with_its_frame(screen: QRect) -> None:
    rect = default_rect(screen)
    assert screen.contains(rect.adjusted(-8, -32, 8, 8))  # frame and title bar included
    assert rect.width() <= 1400 and rect.height() <= 900


def test_a_window_saved_on_a_big_screen_is_shrunk_onto_a_small_one() -> None:
    small = QRect(0, 0, 1280, 720)
    rect = fit_rect(QRect(300, 200, 1800, 1100), small)
    assert small.contains(rect.adjusted(-8, -32, 8, 8))
    fitting = QRect(100, 100, 800, 500)
    assert fit_rect(fitting, small) == fitting  # one that fits stays where it was


def test_the_window_can_shrink_to_a_small_screen(qtbot, isolated_settings) -> None:
    w = _window(qtbot, isolated_settings, QRect(0, 0, 1024, 600))
    hint = w.minimumSizeHint()
    assert hint.width() <= 1024 - 16 and hint.height() <= 600 - 40
    assert QRect(0, 0, 1024, 600).contains(w.geometry())


@pytest.mark.parametrize("screen", [QRect(0, 0, 1280, 720), QRect(0, 0, 1600, 1000)])
def test_the_canvas_takes_more_than_half_the_window(qtbot, isolated_settings, project,
                                                     model_file, screen) -> None:
    w = _window(qtbot, isolated_settings, screen)
    _open(qtbot, w, project, model_file)
    w.show_first_run_hint()  # the first start has the hint showing
    assert w.notices.is_shown(NOTICE_FIRST_RUN)
    assert _canvas_share(qtbot, w) >= 0.5
    assert not w.training_dock.isVisible() and not w.models_dock.isVisible()
    assert w.images_dock.isVisible() and w.classes_dock.isVisible()


def test_size_and_place_are_remembered_per_screen(qtbot, tmp_path) -> None:
    settings = _settings(tmp_path / "s.ini")
    w = _window(qtbot, settings, QRect(0, 0, 1600, 1000))
    w.setGeometry(QRect(120, 90, 1000, 700))
    settings.save_screen_geometry("test-screen", w.geometry(), False)
    w.close()
    again = MainWindow(settings, device="cpu")
    qtbot.addWidget(again)
    again.place_on_screen(QRect(0, 0, 1600, 1000), key="test-screen")
    assert again.geometry() == QRect(120, 90, 1000, 700)
    other = MainWindow(settings, device="cpu")  # another screen: its own default
    qtbot.addWidget(other)
    other.place_on_screen(QRect(0, 0, 1280, 720), key="another-screen")
    assert other.geometry() == default_rect(QRect(0, 0, 1280, 720))
    small = MainWindow(settings, device="cpu")  # the same screen, now smaller (new scaling)
    qtbot.addWidget(small)
    small.place_on_screen(QRect(0, 0, 800, 600), key="test-screen")
    assert QRect(0, 0, 800, 600).contains(small.geometry().adjusted(-8, -32, 8, 8))


# -- panels -----------------------------------------------------------------------------

def _panel_actions(w: MainWindow) -> dict[str, object]:
    view = w.menus["View"]
    panels = next(a.menu() for a in view.actions() if a.menu() and "Panels" in a.text())
    return {a.text().replace("&", ""): a for a in panels.actions() if a.text()}


def test_view_panels_toggles_each_panel_and_reset_restores_the_default(qtbot, tmp_path) -> None:
    settings = _settings(tmp_path / "s.ini")
    w = _window(qtbot, settings, QRect(0, 0, 1600, 1000))
    actions = _panel_actions(w)
    assert {"Images", "Classes", "Tool Options", "Training", "Models",
            "Correction Effort", "Reset Layout"} <= set(actions)
    actions["Models"].trigger()
    actions["Images"].trigger()
    assert w.models_dock.isVisible() and not w.images_dock.isVisible()
    w.save_layout()
    again = _window(qtbot, settings)  # the layout is remembered
    assert again.models_dock.isVisible() and not again.images_dock.isVisible()
    _panel_actions(again)["Reset Layout"].trigger()
    assert not again.models_dock.isVisible() and again.images_dock.isVisible()
    assert settings.dock_state() is None  # the next start uses the default too


def test_a_layout_saved_by_the_old_version_is_not_restored(qtbot, tmp_path) -> None:
    settings = _settings(tmp_path / "s.ini")
    w = _window(qtbot, settings)
    w.models_dock.show()
    settings.save_dock_state(w.saveState(1))  # the layout with the panels below the canvas
    again = _window(qtbot, settings)
    assert not again.models_dock.isVisible()


def test_a_training_run_shows_its_panel_and_progress_in_the_status_bar(qtbot,
                                                                        isolated_settings) -> None:
    w = _window(qtbot, isolated_settings, QRect(0, 0, 1600, 1000))
    w.show_training_dock()
    w._training_running(True)
    w.status.training_status({"iteration": 30, "total": 120, "eta": 90})
    qtbot.wait(50)  # the panel is sized once more after its first layout pass
    assert w.training_dock.isVisible()
    assert w.training_dock.height() <= 0.4 * w.height()
    assert w.status.training_progress.isVisible() and w.status.training_progress.value() == 30
    w._training_running(False)
    assert not w.status.training_progress.isVisible()


# -- no box on a first start -------------------------------------------------------------

def test_a_first_offline_start_waits_for_no_click(qtbot, tmp_path, monkeypatch, project,
                                                  messages) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet weights there
    w = _window(qtbot, _settings(tmp_path / "s.ini"), QRect(0, 0, 1280, 720))
    with qtbot.waitSignal(w.controller.modelChanged, timeout=120_000) as blocker:
        assert w.ops.open_project(project)  # ImageNet asked for, untrained used
        w.show_first_run_hint()
    assert blocker.args[0].spec.kind == "untrained"
    QApplication.processEvents()
    boxes = [t for t in QApplication.topLevelWidgets()
             if isinstance(t, (QMessageBox, QDialog)) and t.isVisible()]
    assert boxes == [] and messages == []
    assert w.notices.is_shown(NOTICE_FIRST_RUN)
    assert w.status.weights_link.isVisible() and "download" in w.status.weights_link.text()


def test_dismissed_notices_stay_dismissed(qtbot, tmp_path) -> None:
    settings = _settings(tmp_path / "s.ini")
    w = _window(qtbot, settings)
    w.show_first_run_hint()
    w.notices.notice(NOTICE_FIRST_RUN).close_button.click()
    assert not w.notices.is_shown(NOTICE_FIRST_RUN) and not w.notices.isVisible()
    again = _window(qtbot, settings)
    again.show_first_run_hint()
    assert not again.notices.is_shown(NOTICE_FIRST_RUN)


# -- brush keys -----------------------------------------------------------------------------

def test_bracket_keys_step_evenly_and_agree_with_the_tool_panel(qtbot, isolated_settings) -> None:
    w = _window(qtbot, isolated_settings)
    larger, smaller = w.actions_["brush_larger"], w.actions_["brush_smaller"]
    w.canvas.set_brush_radius(5)
    seen = [5.0]
    for _ in range(30):
        larger.trigger()
        seen.append(w.canvas.brush_radius())
        assert w.tool_options.brush_radius() == w.canvas.brush_radius()
    assert seen[-1] == canvas_tools.MAX_RADIUS
    steps = [b / a for a, b in zip(seen, seen[1:], strict=False) if b != a]
    assert all(1.15 <= r <= 1.34 for r in steps)  # even steps from 5 px up to the limit
    for _ in range(40):
        smaller.trigger()
    assert w.canvas.brush_radius() == canvas_tools.MIN_RADIUS
    # One range: what the panel accepts is what the canvas accepts.
    assert w.tool_options.radius_spin.maximum() == canvas_tools.MAX_RADIUS
    assert w.tool_options.radius_spin.minimum() == canvas_tools.MIN_RADIUS
    w.tool_options.radius_spin.setValue(7)  # between steps: ] goes to the next one up
    larger.trigger()
    assert w.canvas.brush_radius() == 8 and "17 px" in w.status.brush_label.text()


def test_the_brush_circle_is_the_cursor_over_an_image(qtbot, isolated_settings, project,
                                                      model_file) -> None:
    from PySide6.QtCore import Qt

    w = _window(qtbot, isolated_settings)
    assert w.canvas.cursor().shape() == Qt.CursorShape.CrossCursor  # nothing to paint yet
    _open(qtbot, w, project, model_file)
    assert w.canvas.cursor().shape() == Qt.CursorShape.BlankCursor
    w.actions_["fill"].trigger()
    assert w.canvas.cursor().shape() != Qt.CursorShape.BlankCursor


# -- recent projects, and where the person was -------------------------------------------------

def test_open_recent_lists_projects_and_opens_one(qtbot, tmp_path, model_file) -> None:
    settings = _settings(tmp_path / "s.ini")
    a, b = tmp_path / "a", tmp_path / "b"
    write_voc(a, n=2, n_val=1)
    write_voc(b, n=2, n_val=1)
    w = _window(qtbot, settings)
    _open(qtbot, w, a, model_file)
    _open(qtbot, w, b, model_file)
    file_menu = w.menus["File"]
    recent = next(x.menu() for x in file_menu.actions() if x.menu() and "Recent" in x.text())
    recent.aboutToShow.emit()
    items = [x for x in recent.actions() if x.data()]
    assert [Path(x.data()).name for x in items] == ["b", "a"]
    with qtbot.waitSignal(w.controller.projectChanged, timeout=10_000):
        items[1].trigger()
    assert w.controller.project.root == a.resolve()


def test_reopening_a_project_restores_image_tool_class_and_brush(qtbot, tmp_path, project,
                                                                 model_file) -> None:
    settings = _settings(tmp_path / "s.ini")
    w = _window(qtbot, settings)
    _open(qtbot, w, project, model_file)
    w.ops.show_image("img002")
    w.actions_["fill"].trigger()
    w.class_panel.select_by_number(2)
    w.canvas.set_brush_radius(12)
    w.controller.flush()
    w.ops.release_lock()  # as closing the window does
    again = _window(qtbot, settings)
    _open(qtbot, again, project, model_file)
    assert again.controller.session.image_id == "img002"
    assert again.canvas.tool() == "fill" and again.actions_["fill"].isChecked()
    assert again.canvas.class_value() == 2 and again.class_panel.current() == 2
    assert again.canvas.brush_radius() == 12 and again.tool_options.brush_radius() == 12


def test_the_side_panels_narrow_to_the_default_side_width(qtbot, isolated_settings) -> None:
    # The Images panel was held at 228 px by its state filter's longest entry.
    w = _window(qtbot, isolated_settings, QRect(0, 0, 1280, 720))
    for dock in (w.images_dock, w.classes_dock):
        assert dock.widget().minimumSizeHint().width() <= SIDE_PANEL_MIN, dock.windowTitle()


def test_long_status_texts_never_widen_the_window_past_the_screen(qtbot, isolated_settings) -> None:
    # Seen under Xvfb at 1600x1000: a long model name and the download link made the status
    # bar's minimum wider than the window, which grew 110 px past the screen.
    w = _window(qtbot, isolated_settings, QRect(0, 0, 1280, 720))
    w.status.show_model("project model v012 + head learned from 123 images, a long name " * 3,
                        "MobileNetV3-Large, cpu", "v012", ["a"])
    w.status.show_untrained_link(True, "MobileNetV3-Large", 21)
    w.status.show_problem("Prediction failed for street_03b: " + "x" * 300)
    assert w.status.minimumSizeHint().width() <= 1280 - 16
    assert w.minimumSizeHint().width() <= 1280 - 16
    assert "a long name" in w.status.model_label.toolTip()
