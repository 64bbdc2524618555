"""The dock panels: class list, image list (with lazy thumbnails), tool options, icons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor

from fcn_studio.ui.docks.class_panel import COL_LOCK, COL_NAME, COL_VISIBLE, ClassPanel
from fcn_studio.ui.docks.image_list import ERROR_ROLE, ImageListPanel
from fcn_studio.ui.docks.thumbnails import ThumbnailCache, ThumbnailError, load_thumbnail
from fcn_studio.ui.docks.tool_options import ToolOptionsPanel, radius_to_slider
from fcn_studio.ui.icons import ICON_NAMES, icon
from training.palette import voc_colormap

# -- fakes ---------------------------------------------------------------------------


@dataclass
class FakeEntry:
    id: str
    image_path: Path
    state: str = "new"
    error: str | None = None
    correction_effort: float | None = None
    mean_uncertainty: float | None = None


class FakeProject:
    """The duck type the image list reads: ``ids`` and ``entry(id)``; counts entry calls."""

    def __init__(self, entries: list[FakeEntry]) -> None:
        self.entries = {e.id: e for e in entries}
        self.ids = [e.id for e in entries]
        self.entry_calls = 0

    def entry(self, image_id: str) -> FakeEntry:
        self.entry_calls += 1
        return self.entries[image_id]


STATES = ("new", "predicted", "new", "saved")  # by i % 4


def big_project(n: int, folder: Path) -> FakeProject:
    # Paths point at files that do not exist: any eager read would fail loudly.
    return FakeProject([FakeEntry(f"img_{i:05d}", folder / f"img_{i:05d}.jpg", STATES[i % 4])
                        for i in range(n)])


@pytest.fixture
def image_list(qtbot) -> ImageListPanel:
    panel = ImageListPanel(thumbnails=ThumbnailCache(max_threads=2))
    qtbot.addWidget(panel)
    panel.resize(300, 400)
    yield panel
    panel.thumbnails.clear()
    panel.thumbnails.wait_idle()


# -- icons ------------------------------------------------------------------------------


def test_every_icon_exists_and_is_cached(qapp) -> None:
    for name in ICON_NAMES:
        assert not icon(name).isNull(), name
    assert icon("brush") is icon("brush")
    with pytest.raises(KeyError, match="unknown icon"):
        icon("no_such_action")


# -- class panel ----------------------------------------------------------------------


@pytest.fixture
def classes(qtbot) -> ClassPanel:
    panel = ClassPanel()
    qtbot.addWidget(panel)
    panel.resize(300, 300)
    panel.set_classes(["background", "cat", "dog"], voc_colormap()[:3])
    return panel


def test_set_classes_shows_rows_and_void_last(classes: ClassPanel) -> None:
    tree = classes.tree
    assert tree.topLevelItemCount() == 4
    assert [tree.topLevelItem(r).text(COL_NAME) for r in range(4)] == [
        "background", "cat", "dog", "void"]
    assert classes.class_ids() == [0, 1, 2, 255]
    assert tree.topLevelItem(3).text(0) == "255"
    assert not tree.topLevelItem(3).flags() & Qt.ItemFlag.ItemIsEditable
    assert classes.current() == 0


def test_void_colour_comes_from_a_256_row_table(classes: ClassPanel) -> None:
    table = voc_colormap().copy()
    table[255] = (1, 2, 3)
    classes.set_classes(["background", "cat"], table)
    seen = []
    classes.ask_color = lambda initial: seen.append(initial.getRgb()[:3]) or None
    classes.change_color(255)
    assert seen == [(1, 2, 3)]


def _click_cell(qtbot, panel: ClassPanel, row: int, column: int) -> None:
    tree = panel.tree
    index = tree.model().index(row, column)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton,
                     pos=tree.visualRect(index).center())


def test_eye_and_lock_clicks_emit_sets_without_changing_class(qtbot, classes) -> None:
    classes.show()
    qtbot.waitExposed(classes)
    with qtbot.assertNotEmitted(classes.currentChanged):
        with qtbot.waitSignal(classes.hiddenChanged) as hidden:
            _click_cell(qtbot, classes, 1, COL_VISIBLE)
        with qtbot.waitSignal(classes.lockedChanged) as locked:
            _click_cell(qtbot, classes, 3, COL_LOCK)  # void can be locked
    assert hidden.args == [{1}] and classes.hidden() == {1}
    assert locked.args == [{255}] and classes.locked() == {255}
    with qtbot.waitSignal(classes.hiddenChanged) as hidden:
        _click_cell(qtbot, classes, 1, COL_VISIBLE)
    assert hidden.args == [set()]
    assert classes.current() == 0


def test_clicking_a_row_selects_the_class(qtbot, classes) -> None:
    classes.show()
    qtbot.waitExposed(classes)
    with qtbot.waitSignal(classes.currentChanged) as changed:
        _click_cell(qtbot, classes, 2, COL_NAME)
    assert changed.args == [2] and classes.current() == 2


def test_select_by_number_and_digit_keys(qtbot, classes) -> None:
    with qtbot.waitSignal(classes.currentChanged) as changed:
        assert classes.select_by_number(2)
    assert changed.args == [2]
    with qtbot.assertNotEmitted(classes.currentChanged):
        assert not classes.select_by_number(3)  # only classes 0..2 exist
        assert not classes.select_by_number(0)
    with qtbot.waitSignal(classes.currentChanged) as changed:
        qtbot.keyClick(classes.tree, Qt.Key.Key_1)
    assert changed.args == [1]


def test_setters_do_not_emit(qtbot, classes) -> None:
    with (qtbot.assertNotEmitted(classes.currentChanged),
          qtbot.assertNotEmitted(classes.hiddenChanged),
          qtbot.assertNotEmitted(classes.lockedChanged)):
        classes.set_current(2)
        classes.set_hidden({1, 7})
        classes.set_locked({255})
        classes.set_classes(["background", "cat", "dog"], voc_colormap()[:3])
    assert classes.current() == 2
    assert classes.hidden() == {1} and classes.locked() == {255}
    classes.set_classes(["background", "cat"], [(0, 0, 0), (9, 9, 9)])
    assert classes.current() == 0, "a class that no longer exists is not current"


def test_add_rename_colour_delete_move_emit_requests(qtbot, classes) -> None:
    classes.ask_name = lambda title, initial: "  bird "
    with qtbot.waitSignal(classes.addRequested) as added:
        classes.add_action.trigger()
    assert added.args == ["bird"]

    classes.set_current(1)
    classes.ask_name = lambda title, initial: initial.upper()
    with qtbot.waitSignal(classes.renameRequested) as renamed:
        classes.rename_action.trigger()
    assert renamed.args == [1, "CAT"]
    classes.ask_name = lambda title, initial: None  # cancelled
    with qtbot.assertNotEmitted(classes.renameRequested):
        classes.rename_action.trigger()

    classes.ask_color = lambda initial: QColor(10, 20, 30)
    with qtbot.waitSignal(classes.colorRequested) as coloured:
        classes.color_action.trigger()
    assert coloured.args == [1, (10, 20, 30)]

    with qtbot.waitSignal(classes.deleteRequested) as deleted:
        classes.delete_action.trigger()
    assert deleted.args == [1]
    with qtbot.waitSignal(classes.moveRequested) as moved:
        classes.down_action.trigger()
    assert moved.args == [1, 2]
    with qtbot.waitSignal(classes.moveRequested) as moved:
        classes.up_action.trigger()
    assert moved.args == [1, 0]


def test_void_and_edges_cannot_be_edited(qtbot, classes) -> None:
    classes.set_current(255)
    assert not classes.delete_action.isEnabled()
    assert not classes.rename_action.isEnabled()
    with (qtbot.assertNotEmitted(classes.deleteRequested),
          qtbot.assertNotEmitted(classes.moveRequested)):
        classes.delete_class(255)
        classes.move_class(-1, 255)
    classes.set_current(2)
    assert not classes.down_action.isEnabled() and classes.up_action.isEnabled()


def test_inline_rename_requests_and_shows_the_models_name(qtbot, classes) -> None:
    item = classes.tree.topLevelItem(1)
    with qtbot.waitSignal(classes.renameRequested) as renamed:
        item.setText(COL_NAME, "feline")  # what committing the inline editor does
    assert renamed.args == [1, "feline"]
    assert item.text(COL_NAME) == "cat", "the model decides; set_classes shows the result"
    classes.set_classes(["background", "feline", "dog"], voc_colormap()[:3])
    assert classes.tree.topLevelItem(1).text(COL_NAME) == "feline"


# -- tool options ---------------------------------------------------------------------


def _record(*signals) -> list:
    seen: list = []
    for signal in signals:
        signal.connect(lambda *args, s=signal: seen.append(args))
    return seen


def test_tool_option_setters_do_not_emit(qtbot) -> None:
    panel = ToolOptionsPanel()
    qtbot.addWidget(panel)
    seen = _record(panel.brushRadiusChanged, panel.opacityChanged, panel.outlineChanged,
                   panel.overlayVisibleChanged, panel.uncertaintyVisibleChanged)
    assert panel.set_brush_radius(12.5) == 12.5
    assert panel.radius_slider.value() == radius_to_slider(12.5)
    assert panel.set_brush_radius(1000) == 500.0  # the one range the canvas has too
    assert panel.set_brush_radius(0.1) == 0.5
    panel.set_opacity(0.3)
    panel.set_outline(True)
    panel.set_overlay_visible(False)
    panel.set_uncertainty_visible(True)
    assert seen == []
    assert panel.opacity() == pytest.approx(0.3) and panel.opacity_label.text() == "30 %"
    assert panel.outline() and not panel.overlay_visible() and panel.uncertainty_visible()


def test_tool_option_user_changes_emit_once(qtbot) -> None:
    panel = ToolOptionsPanel()
    qtbot.addWidget(panel)
    radius = _record(panel.brushRadiusChanged)
    panel.radius_spin.setValue(20.0)
    assert radius == [(20.0,)]
    assert panel.radius_slider.value() == radius_to_slider(20.0)
    panel.radius_slider.setValue(radius_to_slider(50.0))
    assert radius[1:] == [(50.0,)] and panel.brush_radius() == 50.0

    opacity = _record(panel.opacityChanged)
    panel.opacity_slider.setValue(30)
    assert opacity == [(pytest.approx(0.3),)]

    toggles = _record(panel.outlineChanged, panel.overlayVisibleChanged,
                      panel.uncertaintyVisibleChanged)
    # click() runs the same path as a mouse click (three real clicks in a row
    # would read as double-clicks to Qt's test mouse).
    panel.outline_check.click()
    panel.overlay_check.click()
    panel.uncertainty_check.click()
    assert toggles == [(True,), (False,), (True,)]


# -- image list -----------------------------------------------------------------------


def test_ten_thousand_images_set_without_reading_files(qtbot, image_list, tmp_path) -> None:
    project = big_project(10_000, tmp_path / "missing")
    image_list.set_project(project)
    assert image_list.model.rowCount() == 10_000
    assert project.entry_calls == 0, "setting a project must not fetch every entry"
    assert image_list.thumbnails.loads_started == 0
    assert image_list.visible_ids()[:2] == ["img_00000", "img_00001"]
    index = image_list.model.index(0)
    assert index.data(ERROR_ROLE) is None, "no error before a thumbnail is asked for"

    image_list.show()
    qtbot.waitExposed(image_list)
    # Painting asks only for the rows on screen; their files are missing.
    qtbot.waitUntil(lambda: image_list.model.index(0).data(ERROR_ROLE) == "file not found")
    assert 0 < image_list.thumbnails.loads_started < 100
    assert project.entry_calls < 200
    assert "cannot read image: file not found" in index.data(Qt.ItemDataRole.ToolTipRole)

    # Jumping to the end reads the rows shown there, not the 9,900 in between.
    before = image_list.thumbnails.loads_started
    image_list.select("img_09999")
    last = image_list.model.index(9_999)
    qtbot.waitUntil(lambda: last.data(ERROR_ROLE) == "file not found")
    assert image_list.thumbnails.loads_started - before < 100


def test_filters_by_text_and_state_keep_order(qtbot, image_list, tmp_path) -> None:
    project = big_project(40, tmp_path)
    project.entries["img_00003"].error = "truncated JPEG"
    image_list.set_project(project)
    image_list.set_filter(text="IMG_0001")
    assert image_list.visible_ids() == [f"img_{i:05d}" for i in range(10, 20)]
    image_list.set_filter(text="0001", state="saved")
    assert image_list.visible_ids() == ["img_00011", "img_00015", "img_00019"]
    assert image_list.count_label.text() == "3 of 40 images"
    image_list.set_filter(state="unreadable")
    assert image_list.visible_ids() == ["img_00003"]
    image_list.set_dirty("img_00007", True)
    image_list.set_dirty("img_00002", True)
    image_list.set_filter(state="unsaved changes")
    assert image_list.visible_ids() == ["img_00002", "img_00007"]
    assert image_list.model.index(0).data().startswith("•")
    image_list.set_filter()
    assert len(image_list.visible_ids()) == 40


def test_select_current_and_refresh(qtbot, image_list, tmp_path) -> None:
    project = big_project(20, tmp_path)
    image_list.set_project(project)
    with qtbot.assertNotEmitted(image_list.imageActivated):
        assert image_list.select("img_00005")
    assert image_list.current_id() == "img_00005"
    image_list.set_filter(text="0000")  # 5 is still shown: stays selected
    assert image_list.current_id() == "img_00005"
    assert not image_list.select("img_00015")

    row = image_list.model.index(5)
    assert "state: predicted" in row.data(Qt.ItemDataRole.ToolTipRole)
    project.entries["img_00005"].state = "saved"
    project.entries["img_00005"].correction_effort = 0.125
    project.entries["img_00005"].mean_uncertainty = 0.25
    with qtbot.waitSignal(image_list.model.dataChanged):
        image_list.refresh_entry("img_00005")
    tip = row.data(Qt.ItemDataRole.ToolTipRole)
    assert "state: saved" in tip and "12.5 %" in tip and "0.250" in tip


def _write_images(folder: Path) -> FakeProject:
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), np.uint8), "RGBA").save(folder / "c.png")
    (folder / "bad.jpg").write_bytes(b"this is not a JPEG")
    (folder / "empty.jpg").write_bytes(b"")
    return FakeProject([FakeEntry(p.stem, p) for p in sorted(folder.iterdir())])


def test_thumbnails_load_lazily_and_errors_show(qtbot, image_list, tmp_path) -> None:
    project = _write_images(tmp_path / "imgs")
    image_list.set_project(project)
    image_list.set_icon_mode(True)
    image_list.show()
    qtbot.waitExposed(image_list)
    cache = image_list.thumbnails
    entries = list(project.entries.values())
    qtbot.waitUntil(lambda: all(cache.peek(e.image_path) is not None for e in entries))
    for name in ("a", "b", "c"):
        thumb = cache.peek(project.entries[name].image_path)
        assert thumb.error is None and not thumb.icon.isNull()
    rows = {image_list.model.index(r).data(): image_list.model.index(r)
            for r in range(image_list.model.rowCount())}
    assert "not an image" in rows["bad"].data(ERROR_ROLE)
    assert "cannot read image: not an image" in rows["bad"].data(Qt.ItemDataRole.ToolTipRole)
    assert rows["empty"].data(ERROR_ROLE) == "file is empty (0 bytes)"
    image_list.set_filter(state="unreadable")
    assert image_list.visible_ids() == ["bad", "empty"]


def test_load_thumbnail_downscales_and_reports(tmp_path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (200, 10, 10)).save(path)
    image = load_thumbnail(path, 96)
    assert (image.width(), image.height()) == (96, 72)
    with pytest.raises(ThumbnailError, match="file not found"):
        load_thumbnail(tmp_path / "nope.jpg", 96)


def test_image_activated_on_click_and_enter(qtbot, image_list, tmp_path) -> None:
    image_list.set_project(big_project(10, tmp_path))
    image_list.show()
    qtbot.waitExposed(image_list)
    view = image_list.view
    with qtbot.waitSignal(image_list.imageActivated) as activated:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                         pos=view.visualRect(image_list.model.index(3)).center())
    assert activated.args == ["img_00003"]
    image_list.select("img_00006")
    view.setFocus()
    with qtbot.waitSignal(image_list.imageActivated) as activated:
        qtbot.keyClick(view, Qt.Key.Key_Return)
    assert activated.args == ["img_00006"]


def test_double_click_activates_once(qtbot, image_list, tmp_path) -> None:
    image_list.set_project(big_project(10, tmp_path))
    image_list.show()
    qtbot.waitExposed(image_list)
    view = image_list.view
    seen = _record(image_list.imageActivated)
    pos: QPoint = view.visualRect(image_list.model.index(2)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert seen == [("img_00002",)]
