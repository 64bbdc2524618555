"""The canvas: tools driven by synthesized mouse/key events, undo, overlay buffer, view."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from fcn_studio.labelmap.editing import PaintPolicy, Stroke, fill_polygon
from fcn_studio.labelmap.history import HistoryBudget
from fcn_studio.session import LabelSession
from fcn_studio.ui.canvas import overlay
from fcn_studio.ui.canvas.canvas import Canvas
from tests.ui.mouse import LEFT, NOB, NOMOD, click, drag, key, send_mouse
from training.palette import voc_colormap

H, W = 60, 80


def opened(label: np.ndarray, budget: HistoryBudget | None = None) -> LabelSession:
    """A session holding ``label``, as the controller opens one."""
    s = LabelSession("test", budget)
    s.open(label, has_saved_label=False)
    return s


@pytest.fixture
def canvas(qtbot) -> Canvas:
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.show()
    qtbot.waitExposed(c)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = np.zeros((H, W), dtype=np.uint8)
    c.set_image(rgb, opened(label))
    c.set_zoom(4.0)
    return c


def expected_stroke(label: np.ndarray, points, value: int, radius: float,
                    locked: frozenset[int] = frozenset()) -> np.ndarray:
    out = label.copy()
    stroke = Stroke(out, value, radius, PaintPolicy(locked))
    for x, y in points:
        stroke.add_point(x, y)
    stroke.finish()
    return out


def full_overlay(c: Canvas) -> np.ndarray:
    """What the overlay buffer should hold, recomputed from scratch."""
    label = c.label()
    out = np.empty(label.shape, np.uint32)
    lut = overlay.label_lut(voc_colormap())  # the default palette, nothing hidden
    overlay.colorize_box(out, label, lut, (0, 0, *label.shape), c.outline())
    return out


# ----------------------------------------------------------------- painting
def test_pixel_brush_paints_exactly_the_path(canvas):
    canvas.set_brush_radius(0.5)
    canvas.set_class(3)
    drag(canvas, [(10.5, 10.5), (20.5, 10.5), (30.5, 10.5), (30.5, 20.5)])
    expected = np.zeros((H, W), np.uint8)
    expected[10, 10:31] = 3
    expected[10:21, 30] = 3
    np.testing.assert_array_equal(canvas.label(), expected)


def test_stroke_matches_core_and_is_one_command(canvas, qtbot):
    canvas.set_brush_radius(3)
    canvas.set_class(5)
    path = [(12.3, 40.1), (25.7, 31.0), (60.2, 8.4), (70.0, 50.0)]
    before = canvas.label().copy()
    with qtbot.waitSignal(canvas.labelEdited) as edited:
        drag(canvas, path)
    np.testing.assert_array_equal(canvas.label(), expected_stroke(before, path, 5, 3))
    assert len(canvas.session().history) == 1
    y0, x0, y1, x1 = edited.args[0]
    changed = np.argwhere(canvas.label() != before)
    assert (y0, x0) == tuple(changed.min(0)) and (y1 - 1, x1 - 1) == tuple(changed.max(0))
    # The live, box-wise overlay updates add up to a full recolour.
    np.testing.assert_array_equal(canvas.overlay_buffer(), full_overlay(canvas))


def test_undo_restores_exactly_and_redo_reapplies(canvas, qtbot):
    canvas.label()[20:40, 20:60] = 7  # the stroke goes over a region painted with 7
    canvas.refresh_overlay()
    original = canvas.label().copy()
    canvas.set_class(2)
    canvas.set_brush_radius(4)
    drag(canvas, [(5.5, 30.5), (75.5, 30.5)])
    painted = canvas.label().copy()
    assert (painted[28:33, 20:60] == 2).all()
    stack = canvas.session()
    with qtbot.waitSignal(canvas.labelEdited):
        stack.undo()
    np.testing.assert_array_equal(canvas.label(), original)  # 7 comes back, not 2 or 0
    np.testing.assert_array_equal(canvas.overlay_buffer(), full_overlay(canvas))
    with qtbot.waitSignal(canvas.labelEdited):
        stack.redo()
    np.testing.assert_array_equal(canvas.label(), painted)
    np.testing.assert_array_equal(canvas.overlay_buffer(), full_overlay(canvas))


class CountingDelta:
    """A delta that counts how often it is applied."""

    bbox = (1, 2, 3, 4)
    nbytes = 10

    def __init__(self) -> None:
        self.redos = self.undos = 0

    def redo(self, label):
        self.redos += 1

    def undo(self, label):
        self.undos += 1


def test_push_does_not_apply_a_live_edit_twice(canvas, qtbot):
    delta = CountingDelta()
    with qtbot.waitSignal(canvas.labelEdited) as edited:
        canvas.push_edit(delta, "x")
    assert delta.redos == 0 and edited.args == [(1, 2, 3, 4)]
    canvas.session().undo()
    canvas.session().redo()
    assert (delta.undos, delta.redos) == (1, 1)


def test_fill(canvas):
    label = canvas.label()
    label[10:20, :] = 4  # a band splitting the background in two
    canvas.refresh_overlay()
    canvas.set_tool("fill")
    canvas.set_class(6)
    click(canvas, 5.5, 30.5)
    assert (label[30:, :] == 6).all() and (label[:10, :] == 0).all() and (label[10:20] == 4).all()
    assert len(canvas.session().history) == 1
    canvas.session().undo()
    assert (label[20:, :] == 0).all()


def test_polygon_clicks_and_enter(canvas):
    canvas.set_tool("polygon")
    canvas.set_class(9)
    pts = [(10.0, 10.0), (50.0, 12.0), (40.0, 45.0)]
    for p in pts:
        click(canvas, *p)
    assert canvas.label().max() == 0  # nothing until closed
    assert len(canvas.tool_object().points) == 3
    key(canvas, Qt.Key.Key_Return)
    expected = np.zeros((H, W), np.uint8)
    fill_polygon(expected, pts, 9)
    np.testing.assert_array_equal(canvas.label(), expected)
    assert len(canvas.session().history) == 1
    assert canvas.tool_object().points == []


def test_polygon_backspace_escape_and_double_click(canvas):
    canvas.set_tool("polygon")
    canvas.set_class(2)
    for p in [(5.0, 5.0), (30.0, 5.0), (70.0, 55.0)]:
        click(canvas, *p)
    key(canvas, Qt.Key.Key_Backspace)
    assert len(canvas.tool_object().points) == 2
    key(canvas, Qt.Key.Key_Escape)
    assert canvas.tool_object().points == [] and canvas.label().max() == 0
    for p in [(5.0, 5.0), (30.0, 5.0)]:
        click(canvas, *p)
    click(canvas, 30.0, 30.0)  # a double click is press, release, double-click, release
    send_mouse(canvas, QEvent.Type.MouseButtonDblClick, 30.0, 30.0)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, 30.0, 30.0)
    expected = np.zeros((H, W), np.uint8)
    fill_polygon(expected, [(5.0, 5.0), (30.0, 5.0), (30.0, 30.0)], 2)
    np.testing.assert_array_equal(canvas.label(), expected)


def test_polygon_closes_on_first_vertex(canvas):
    canvas.set_tool("polygon")
    for p in [(5.0, 5.0), (30.0, 5.0), (30.0, 30.0), (5.2, 5.1)]:
        click(canvas, *p)
    assert len(canvas.session().history) == 1 and canvas.tool_object().points == []


def test_eyedropper_emits_class(canvas, qtbot):
    canvas.label()[33, 44] = 12
    canvas.set_tool("eyedropper")
    with qtbot.waitSignal(canvas.classPicked) as picked:
        click(canvas, 44.5, 33.5)
    assert picked.args == [12] and canvas.class_value() == 12
    assert len(canvas.session().history) == 0


def test_locked_class_is_not_painted(canvas):
    label = canvas.label()
    label[:, 40:] = 8
    canvas.set_locked_classes({8})
    canvas.set_class(1)
    canvas.set_brush_radius(5)
    drag(canvas, [(10.5, 30.5), (75.5, 30.5)])
    assert (label[:, 40:] == 8).all() and (label[30, 10:40] == 1).all()
    canvas.set_tool("eraser")
    drag(canvas, [(75.5, 30.5), (5.5, 30.5)])
    assert (label[:, 40:] == 8).all() and label[:, :40].max() == 0


def test_eraser_and_void_brush(canvas):
    canvas.label()[:] = 3
    canvas.set_brush_radius(0.5)
    canvas.set_tool("eraser")
    drag(canvas, [(1.5, 1.5)])
    canvas.set_tool("void")
    drag(canvas, [(2.5, 1.5)])
    assert canvas.label()[1, 1] == 0 and canvas.label()[1, 2] == 255
    assert len(canvas.session().history) == 2


def test_escape_cancels_stroke_and_shift_click_draws_line(canvas):
    canvas.set_brush_radius(0.5)
    send_mouse(canvas, QEvent.Type.MouseButtonPress, 5.5, 5.5)
    send_mouse(canvas, QEvent.Type.MouseMove, 15.5, 5.5, button=NOB, buttons=LEFT)
    key(canvas, Qt.Key.Key_Escape)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, 15.5, 5.5)
    assert canvas.label().max() == 0 and len(canvas.session().history) == 0
    click(canvas, 5.5, 40.5)
    click(canvas, 25.5, 40.5, modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert (canvas.label()[40, 5:26] == 1).all() and len(canvas.session().history) == 2


def test_hundred_fifty_strokes_all_undoable(canvas):
    stack = canvas.session()
    assert stack.history.budget.max_steps >= 100
    original = canvas.label().copy()
    canvas.set_brush_radius(1.5)
    for i in range(150):
        canvas.set_class(1 + i % 20)
        drag(canvas, [(2.5 + (i % 75), 2.5), (2.5 + (i * 7) % 75, 55.5)])
    assert len(stack.history) == 150
    for _ in range(150):
        stack.undo()
    assert not stack.history.can_undo()
    np.testing.assert_array_equal(canvas.label(), original)


def test_byte_budget_drops_oldest_steps(canvas):
    stack = opened(canvas.label(), HistoryBudget(max_bytes=3000, max_steps=100))
    canvas.set_image(np.zeros((H, W, 3), np.uint8), stack)
    canvas.set_brush_radius(6)
    for i in range(8):
        drag(canvas, [(5.5 + 9 * i, 5.5), (5.5 + 9 * i, 50.5)])
    assert stack.history.nbytes <= 3000
    after = canvas.label().copy()
    while stack.history.can_undo():
        stack.undo()
    # Dropped steps stay in the label; the kept ones were undone.
    assert (canvas.label()[:, :10] != 0).any() and (canvas.label()[:, 70:] == 0).all()
    assert len(stack.history) < 8
    while stack.history.can_redo():
        stack.redo()
    np.testing.assert_array_equal(canvas.label(), after)


def test_replace_label_is_one_undoable_step(canvas, qtbot):
    prediction = np.full((H, W), 4, np.uint8)
    prediction[:10] = 255
    with qtbot.waitSignal(canvas.labelEdited) as edited:
        assert canvas.replace_label(prediction, "Use prediction")
    assert edited.args == [(0, 0, H, W)]
    np.testing.assert_array_equal(canvas.label(), prediction)
    np.testing.assert_array_equal(canvas.overlay_buffer(), full_overlay(canvas))
    canvas.session().undo()
    assert canvas.label().max() == 0
    assert not canvas.replace_label(canvas.label().copy())  # no change: no step


# ------------------------------------------------------------------ overlay
def test_hidden_class_has_zero_alpha_but_label_kept(canvas):
    label = canvas.label()
    label[5:10, 5:10] = 3
    label[20:25, 20:25] = 4
    canvas.refresh_overlay()
    buf = canvas.overlay_buffer()
    assert (buf[5:10, 5:10] >> 24 == 255).all()
    canvas.set_hidden_classes({3})
    assert (buf[5:10, 5:10] >> 24 == 0).all() and (buf[20:25, 20:25] >> 24 == 255).all()
    assert (label[5:10, 5:10] == 3).all()
    assert (buf[0, 0] >> 24) == 0  # background is transparent
    canvas.set_hidden_classes(set())
    assert (buf[5:10, 5:10] >> 24 == 255).all()


def test_palette_and_void_colour(canvas):
    canvas.label()[0, 0] = 255
    canvas.label()[0, 1] = 2
    canvas.set_palette(np.array([[0, 0, 0], [10, 20, 30], [40, 50, 60]], np.uint8))
    assert canvas.overlay_buffer()[0, 1] == 0xFF28323C  # class 2's new colour
    assert canvas.overlay_buffer()[0, 0] == 0xFFE0E0C0  # void keeps the VOC colour
    with pytest.raises(ValueError):
        canvas.set_palette(np.zeros((300, 3), np.uint8))


def test_outline_mode_shows_boundaries_only(canvas):
    label = canvas.label()
    label[10:30, 10:40] = 5
    canvas.set_outline(True)
    buf = canvas.overlay_buffer()
    assert (buf[15:25, 15:35] == 0).all()  # interior is clear
    assert (buf[10, 10:40] >> 24 == 255).all() and (buf[10:30, 39] >> 24 == 255).all()
    canvas.set_brush_radius(3)
    canvas.set_class(6)
    drag(canvas, [(25.5, 20.5), (60.5, 45.5)])  # painting keeps outlines right at edges
    np.testing.assert_array_equal(buf, full_overlay(canvas))
    canvas.set_outline(False)
    assert (buf[15:18, 15:18] >> 24 == 255).all()


def test_boundary_mask_box_equals_whole_image_window():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, (40, 50)).astype(np.uint8)
    whole = overlay.boundary_mask(label, (0, 0, 40, 50))
    np.testing.assert_array_equal(overlay.boundary_mask(label, (7, 9, 23, 31)), whole[7:23, 9:31])


def test_pack_argb_premultiplies():
    assert overlay.pack_argb(np.array([200, 100, 0], np.uint8), 128) == (
        (128 << 24) | (100 << 16) | (50 << 8))
    lut = overlay.label_lut(np.full((256, 3), 255, np.uint8), hidden={2})
    assert lut[0] == 0 and lut[2] == 0 and lut[1] == 0xFFFFFFFF


def test_uncertainty_heat(canvas):
    u = np.zeros((H, W), np.float32)
    u[:, 40:] = 1.0
    canvas.set_uncertainty(u)
    canvas.set_uncertainty_visible(True)
    heat = canvas.heat_buffer()
    assert (heat[:, :40] == 0).all() and (heat[:, 40:] >> 24 > 100).all()
    with pytest.raises(ValueError):
        canvas.set_uncertainty(np.zeros((3, 3), np.float32))
    canvas.grab()  # paints with the heat layer without error


# --------------------------------------------------------------------- view
def test_zoom_controls_change_the_scale(canvas, qtbot):
    with qtbot.waitSignal(canvas.zoomChanged):
        canvas.zoom_in()
    assert canvas.zoom() == pytest.approx(5.0)
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.zoom() == pytest.approx(3.2)
    canvas.actual_size()
    assert canvas.zoom() == pytest.approx(1.0)
    canvas.fit()
    assert canvas.zoom() == pytest.approx(min(400 / W, 300 / H))
    tl, br = canvas.image_to_widget(0, 0), canvas.image_to_widget(W, H)
    assert tl.x() >= -0.5 and tl.y() >= -0.5 and br.x() <= 400.5 and br.y() <= 300.5


def test_wheel_zooms_around_the_cursor(canvas):
    anchor = canvas.image_to_widget(20.0, 15.0)
    event = QWheelEvent(anchor, QPointF(canvas.mapToGlobal(anchor)), QPoint(0, 0),
                        QPoint(0, 120), NOB, NOMOD, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, event)
    assert canvas.zoom() == pytest.approx(5.0)
    after = canvas.widget_to_image(anchor)
    assert after.x() == pytest.approx(20.0, abs=0.3) and after.y() == pytest.approx(15.0, abs=0.3)


def test_middle_drag_pans(canvas):
    before = canvas.image_to_widget(0, 0)
    send_mouse(canvas, QEvent.Type.MouseButtonPress, 10, 10, button=Qt.MouseButton.MiddleButton)
    pos = canvas.image_to_widget(10, 10) + QPointF(30, -20)
    QApplication.sendEvent(canvas, QMouseEvent(
        QEvent.Type.MouseMove, pos, QPointF(canvas.mapToGlobal(pos)), NOB,
        Qt.MouseButton.MiddleButton, NOMOD))
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, 10, 10, button=Qt.MouseButton.MiddleButton)
    assert canvas.image_to_widget(0, 0) - before == QPointF(30, -20)
    assert canvas.label().max() == 0 and len(canvas.session().history) == 0


def test_crisp_pixels_when_zoomed_in(canvas):
    canvas.label()[:] = 0
    canvas.refresh_overlay()
    img = canvas.grab().toImage()
    tl = canvas.image_to_widget(10, 10).toPoint()
    # Every screen pixel inside one 4x4 image pixel has the same colour.
    colours = {img.pixel(tl.x() + dx, tl.y() + dy) for dx in range(4) for dy in range(4)}
    assert len(colours) == 1


def test_same_size_image_keeps_view_new_size_fits(canvas):
    canvas.set_zoom(6.0)
    canvas.set_image(np.zeros((H, W, 3), np.uint8), opened(np.zeros((H, W), np.uint8)))
    assert canvas.zoom() == pytest.approx(6.0)
    canvas.set_image(np.zeros((30, 20, 3), np.uint8), opened(np.zeros((30, 20), np.uint8)))
    assert canvas.zoom() == pytest.approx(10.0)  # fitted: 300 / 30


def test_brush_steps_and_cursor_info(canvas, qtbot):
    # [ and ] are the window's actions (tests/ui/test_window_layout.py); they call these.
    canvas.set_brush_radius(2.0)
    canvas.grow_brush()
    assert canvas.brush_radius() == 3
    canvas.shrink_brush()
    canvas.shrink_brush()
    assert canvas.brush_radius() == 1.5
    canvas.label()[7, 9] = 3
    with qtbot.waitSignal(canvas.cursorInfo) as info:
        send_mouse(canvas, QEvent.Type.MouseMove, 9.5, 7.5, button=NOB, buttons=NOB)
    assert info.args == [9, 7, 3]
    with qtbot.waitSignal(canvas.cursorInfo) as info:
        send_mouse(canvas, QEvent.Type.MouseMove, -3.0, 7.5, button=NOB, buttons=NOB)
    assert info.args == [-1, -1, -1]


def test_tool_switch_commits_live_stroke_and_clear(canvas):
    canvas.set_brush_radius(0.5)
    send_mouse(canvas, QEvent.Type.MouseButtonPress, 5.5, 5.5)
    send_mouse(canvas, QEvent.Type.MouseMove, 9.5, 5.5, button=NOB, buttons=LEFT)
    canvas.set_tool("fill")
    assert len(canvas.session().history) == 1
    canvas.session().undo()
    assert canvas.label().max() == 0
    with pytest.raises(ValueError):
        canvas.set_tool("lasso")
    canvas.clear()
    assert not canvas.has_image()
    click(canvas, 5.5, 5.5)  # no image: ignored
    canvas.grab()


def test_space_drag_pans_without_painting(canvas):
    QApplication.sendEvent(canvas, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Space, NOMOD, " "))
    before = canvas.image_to_widget(0, 0)
    drag(canvas, [(10.0, 10.0), (15.0, 12.0)])  # 5 x 2 image px = 20 x 8 widget px at zoom 4
    QApplication.sendEvent(canvas, QKeyEvent(QEvent.Type.KeyRelease, Qt.Key.Key_Space, NOMOD, " "))
    assert canvas.image_to_widget(0, 0) - before == QPointF(20, 8)
    assert canvas.label().max() == 0 and len(canvas.session().history) == 0
    drag(canvas, [(10.5, 10.5)])  # Space released: the brush paints again
    assert canvas.label().max() == 1


def test_panned_screen_equals_a_full_repaint(canvas, qtbot):
    """Panning scrolls the pixels on screen; the result must match a fresh paint."""
    canvas.label()[10:40, 10:50] = 3
    canvas.refresh_overlay()
    canvas.set_zoom(2.5)
    mid = Qt.MouseButton.MiddleButton
    send_mouse(canvas, QEvent.Type.MouseButtonPress, 30, 30, button=mid)
    for _ in range(14):
        pos = canvas.image_to_widget(30, 30) + QPointF(7, -3)
        QApplication.sendEvent(canvas, QMouseEvent(
            QEvent.Type.MouseMove, pos, QPointF(canvas.mapToGlobal(pos)), NOB, mid, NOMOD))
        QApplication.processEvents()
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, 30, 30, button=mid)
    QApplication.processEvents()
    on_screen = QApplication.primaryScreen().grabWindow(canvas.winId()).toImage()
    fresh = canvas.grab().toImage()
    assert on_screen.convertToFormat(fresh.format()) == fresh


def test_undo_of_a_previous_image_edits_only_that_label(canvas):
    label_a, stack_a = canvas.label(), canvas.session()
    canvas.set_brush_radius(2)
    drag(canvas, [(10.5, 10.5), (40.5, 20.5)])
    label_b = np.full((H, W), 2, np.uint8)
    canvas.set_image(np.zeros((H, W, 3), np.uint8), opened(label_b))
    overlay_b = canvas.overlay_buffer().copy()
    edited: list[tuple] = []
    canvas.labelEdited.connect(edited.append)
    stack_a.undo()
    assert label_a.max() == 0 and (label_b == 2).all()
    assert edited == [] and (canvas.overlay_buffer() == overlay_b).all()


def test_heat_map_is_built_only_when_shown(canvas):
    u = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    u[0, 0] = np.nan
    canvas.set_uncertainty(u)
    assert canvas._layers._heat is None  # a switch does not pay for a hidden heat map
    canvas.set_uncertainty_visible(True)
    canvas.grab()
    heat = canvas.heat_buffer()
    assert heat[0, 0] == 0 and heat[-1, -1] >> 24 == 200


def test_undo_mid_gesture(canvas):
    canvas.label()[:, :] = 4
    canvas.set_brush_radius(0.5)
    drag(canvas, [(2.5, 2.5), (8.5, 2.5)])  # an earlier step
    send_mouse(canvas, QEvent.Type.MouseButtonPress, 2.5, 20.5)
    send_mouse(canvas, QEvent.Type.MouseMove, 30.5, 20.5, button=NOB, buttons=LEFT)
    canvas.undo()  # Ctrl+Z with the button still down takes back the live stroke
    assert (canvas.label()[20] == 4).all() and (canvas.label()[2, 2:9] == 1).all()
    send_mouse(canvas, QEvent.Type.MouseMove, 40.5, 20.5, button=NOB, buttons=LEFT)
    send_mouse(canvas, QEvent.Type.MouseButtonRelease, 40.5, 20.5)
    assert (canvas.label()[20] == 4).all()  # the rest of that drag paints nothing
    canvas.redo()
    assert (canvas.label()[20, 2:31] == 1).all()
    canvas.set_tool("polygon")
    for p in [(5.0, 5.0), (30.0, 5.0), (30.0, 30.0)]:
        click(canvas, *p)
    canvas.undo()
    assert len(canvas.tool_object().points) == 2 and canvas.session().history.index == 2
