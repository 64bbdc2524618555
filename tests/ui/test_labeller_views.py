"""Background semantics per project (VOC vs CamVid), the class-id import dialog and the
correction-effort chart's axes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.project.classes import CAMVID, CITYSCAPES, ClassSet
from fcn_studio.ui.docks.effort_chart import EffortChart
from fcn_studio.ui.main_window import MainWindow
from fcn_studio.ui.project.dialogs import ImportMasksDialog, run_import
from tests.synthetic import CLASS_NAMES, write_voc
from tests.ui.mouse import drag


def _camvid_like(root: Path, n: int = 2, bad: str | None = None) -> tuple[Path, Path]:
    """Frames and class-id masks laid out like CamVid (0 Sky .. 10 Bicyclist, 11 void)."""
    images, masks = root / "train", root / "trainannot"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            images / f"f{i}.png")
        mask = np.zeros((48, 64), np.uint8)  # all Sky
        mask[30:, :] = 3  # Road below
        mask[:4, :4] = 11  # a void corner
        if bad == f"f{i}":
            mask[10, 10] = 12  # no such class
        Image.fromarray(mask, mode="L").save(masks / f"f{i}.png")
    return images, masks


def _window(qtbot, settings) -> MainWindow:
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    qtbot.waitExposed(w)
    return w


# -- the import dialog ------------------------------------------------------------------------

def _fill(dlg: ImportMasksDialog, images: Path, masks: Path, dest: Path) -> None:
    dlg.preset.setCurrentIndex(dlg.preset.findData("camvid"))
    dlg.images.edit.setText(str(images))
    dlg.masks.edit.setText(str(masks))
    dlg.dest.edit.setText(str(dest))


def test_an_import_error_is_shown_in_the_dialog_with_every_input_kept(qtbot, tmp_path) -> None:
    images, masks = _camvid_like(tmp_path / "camvid", bad="f1")
    dest = tmp_path / "project"
    dlg = ImportMasksDialog(run=run_import)
    qtbot.addWidget(dlg)
    dlg.show()
    _fill(dlg, images, masks, dest)
    dlg._check()  # OK
    assert dlg.isVisible() and dlg.result() != ImportMasksDialog.DialogCode.Accepted
    assert "f1.png" in dlg.error.text() and "12" in dlg.error.text()
    assert dlg.images.edit.text() == str(images) and dlg.dest.edit.text() == str(dest)
    assert dlg.preset_key() == "camvid"
    assert not (dest / "SegmentationClass").exists()  # nothing half-imported
    mask = np.asarray(Image.open(masks / "f1.png")).copy()
    mask[mask == 12] = 0
    Image.fromarray(mask, mode="L").save(masks / "f1.png")  # fixed; OK again
    dlg._check()
    assert dlg.result() == ImportMasksDialog.DialogCode.Accepted and dlg.spec is not None


def test_the_camvid_preset_brings_its_classes_colours_and_no_background(tmp_path) -> None:
    images, masks = _camvid_like(tmp_path / "camvid")
    dlg = ImportMasksDialog()
    _fill(dlg, images, masks, tmp_path / "project")
    assert not dlg.background.isChecked() and dlg.void.value() == 11
    assert not dlg.classes.isEnabled()  # the preset gives the class list
    root = run_import(dlg.result_spec())
    classes = ClassSet.load(root)
    assert classes.names == CAMVID.names and not classes.has_background
    assert classes.color(0) == (128, 128, 128)  # CamVid's Sky, not VOC's black
    assert classes.eraser_value == 255 and classes.transparent_ids == frozenset()
    label = np.asarray(Image.open(root / "SegmentationClass" / "f0.png"))
    assert label[0, 0] == 255 and label[10, 10] == 0  # void 11 became 255; Sky stays 0
    saved = json.loads((root / ".fcn_studio" / "class_colors.json").read_text())
    assert saved["has_background"] is False


def test_cityscapes_and_custom_presets(tmp_path) -> None:
    dlg = ImportMasksDialog()
    dlg.preset.setCurrentIndex(dlg.preset.findData("cityscapes"))
    assert dlg.void.value() == 255 and len(CITYSCAPES.names) == 19
    assert CITYSCAPES.class_set().color(0) == (128, 64, 128)  # road
    dlg.preset.setCurrentIndex(dlg.preset.findData("custom"))
    assert dlg.classes.isEnabled() and dlg.background.isEnabled()
    names = tmp_path / "classes.txt"
    names.write_text("Sky\nRoad\n")
    colors = tmp_path / "colors.txt"
    colors.write_text("1 2 3\n4 5\n")
    dlg.classes.edit.setText(str(names))
    dlg.colors.edit.setText(str(colors))
    for field in (dlg.images, dlg.masks, dlg.dest):
        field.edit.setText(str(tmp_path))
    dlg._check()
    assert "colors.txt" in dlg.error.text() and "line 2" in dlg.error.text()


# -- background semantics on the canvas ---------------------------------------------------------

@pytest.fixture
def camvid_project(tmp_path: Path) -> Path:
    images, masks = _camvid_like(tmp_path / "camvid")
    dlg = ImportMasksDialog()
    _fill(dlg, images, masks, tmp_path / "project")
    return run_import(dlg.result_spec())


def test_the_eraser_writes_void_in_a_camvid_project_and_sky_is_drawn(
        qtbot, camvid_project, isolated_settings, messages) -> None:
    w = _window(qtbot, isolated_settings)
    spec = ModelSpec.untrained(list(CAMVID.names))
    with qtbot.waitSignal(w.controller.modelChanged, timeout=120_000):
        assert w.ops.open_project(camvid_project, model=spec)
    label = w.controller.session.label
    assert label[10, 10] == 0  # Sky
    alpha = w.canvas.overlay_buffer()[10, 10] >> 24
    assert alpha > 0  # class 0 is Sky here: drawn, not see-through
    w.actions_["eraser"].trigger()
    drag(w.canvas, [(10, 10), (40, 12)])
    erased = label[label != 0]
    assert erased.size and set(np.unique(erased)) <= {3, 255} and (label == 255).sum() > 16
    assert "void" in w.actions_["eraser"].statusTip()
    w.actions_["clear_label"].trigger()
    assert (w.controller.session.label == 255).all()  # cleared to void, not to Sky


def test_the_eraser_writes_background_in_a_voc_project(qtbot, tmp_path, isolated_settings,
                                                       messages) -> None:
    root = tmp_path / "voc"
    write_voc(root, n=2, n_val=1)
    w = _window(qtbot, isolated_settings)
    with qtbot.waitSignal(w.controller.modelChanged, timeout=120_000):
        assert w.ops.open_project(root, model=ModelSpec.untrained(CLASS_NAMES))
    label = w.controller.session.label
    label[:] = 2
    w.canvas.refresh_overlay(None)
    w.actions_["eraser"].trigger()
    drag(w.canvas, [(10, 10), (40, 12)])
    assert (label == 0).sum() > 16 and not (label == 255).any()
    ys, xs = np.nonzero(label == 0)
    assert w.canvas.overlay_buffer()[ys[0], xs[0]] >> 24 == 0  # background is see-through


# -- the correction-effort chart's axes ------------------------------------------------------------

class _Item:
    def __init__(self, n: int, effort: float) -> None:
        self.time, self.id, self.effort = f"t{n}", f"img{n}", effort


def _labels(axis) -> list[str]:
    """The tick labels the axis draws: multiples of the interval from the anchor."""
    from PySide6.QtCharts import QValueAxis

    step, v, out = axis.tickInterval(), axis.tickAnchor(), []
    assert axis.tickType() == QValueAxis.TickType.TicksDynamic and step > 0
    while v <= axis.max() + 1e-9:
        if v >= axis.min() - 1e-9:
            out.append(axis.labelFormat() % v)
        v += step
    return out


@pytest.mark.parametrize("saves", [1, 2, 7, 23, 150, 2000])
def test_effort_chart_ticks_are_round_and_whole(qtbot, saves: int) -> None:
    chart = EffortChart()
    qtbot.addWidget(chart)
    chart.set_history([_Item(n, 0.9 + 0.1 * (n % 2)) for n in range(saves)])
    xs = _labels(chart.x_axis)
    assert len(set(xs)) == len(xs) and 2 <= len(xs) <= 11
    assert all(x.isdigit() for x in xs)  # whole save numbers
    steps = {int(b) - int(a) for a, b in zip(xs, xs[1:], strict=False)}
    assert len(steps) == 1 and str(steps.pop())[0] in "125"
    ys = _labels(chart.y_axis)
    assert ys[0] == "0" and float(ys[-1]) == 100 and chart.y_axis.max() <= 100.0
    assert all(y.isdigit() for y in ys)


def test_an_empty_effort_chart_says_no_data_yet(qtbot) -> None:
    chart = EffortChart()
    qtbot.addWidget(chart)
    assert chart.empty and chart.empty_label.text().startswith("No data yet")
