"""The fine-tuning loop's widgets: options dialog, training dock, model versions, effort chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from fcn_studio.models.finetune_plan import FinetuneOptions, default_epochs
from fcn_studio.models.versions import format_size
from fcn_studio.ui.docks.effort_chart import EMPTY_TEXT, WINDOW, EffortChart, moving_average
from fcn_studio.ui.docks.models_panel import COL_ID, COL_MIOU, COL_SIZE, ModelsPanel, format_miou
from fcn_studio.ui.docks.training_panel import DecimatedPoints, TrainingPanel, format_hms
from fcn_studio.ui.finetuning.finetune_dialog import FinetuneDialog, class_mismatch, split_counts

CLASSES = ["background", "road", "car", "person"]


# -- finetune dialog ---------------------------------------------------------------------


def make_dialog(qtbot, **kw: Any) -> FinetuneDialog:
    args: dict[str, Any] = {"current_version": "v003", "labelled": 12, "class_names": CLASSES,
                            "base_classes": CLASSES, "devices": ["cpu", "cuda"]}
    args.update(kw)
    dialog = FinetuneDialog(None, **args)
    qtbot.addWidget(dialog)
    return dialog


def test_dialog_defaults_are_one_click_ready(qtbot) -> None:
    dialog = make_dialog(qtbot)
    assert dialog.base_combo.currentText() == "current model (v003)"
    assert dialog.ok_button.isEnabled()
    # The plan's GPU default: epochs that grow as the images get fewer.
    assert dialog.options() == FinetuneOptions(epochs=default_epochs(10), val_share=0.2)
    assert dialog.split_label.text() == "≈ 10 for training, 2 for validation"
    assert dialog.warning_label.isHidden() and dialog.reinit_check.isHidden()
    # Without a current model the base is ImageNet; on a CPU a time budget, not epochs.
    cpu = make_dialog(qtbot, current_version=None, base_classes=None, devices=["cpu"])
    assert [cpu.base_combo.itemData(i) for i in range(cpu.base_combo.count())] == ["imagenet", "file"]
    assert cpu.options().base == "imagenet"
    assert cpu.options().epochs is None and cpu.options().time_limit_s == 600.0
    assert cpu.device_combo.currentText() == "auto (cpu)"
    listed = make_dialog(qtbot, devices=["auto", "cpu", "cuda"])  # "auto" is listed once
    combo = listed.device_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cpu", "cuda"]


def test_ok_disabled_with_no_saved_labels(qtbot) -> None:
    dialog = make_dialog(qtbot, labelled=0)
    assert not dialog.ok_button.isEnabled()
    assert "save at least one corrected label" in dialog.reason_label.text()
    with qtbot.assertNotEmitted(dialog.accepted):
        dialog.accept()


def test_few_images_and_no_validation_warn(qtbot) -> None:
    dialog = make_dialog(qtbot, labelled=3)
    assert not dialog.warning_label.isHidden()
    assert "Only 3 labelled images" in dialog.warning_label.text()
    assert dialog.ok_button.isEnabled()  # a warning, not a blocker
    dialog.val_spin.setValue(0)
    assert "no before/after score" in dialog.warning_label.text()
    assert split_counts(1, 0.5) == (1, 0)  # the only image is never used for validation


def test_class_mismatch_requires_new_score_layers(qtbot) -> None:
    dialog = make_dialog(qtbot, base_classes=["background", "road", "car"])
    assert "new: person" in dialog.warning_label.text()
    assert not dialog.reinit_check.isHidden()
    assert not dialog.ok_button.isEnabled()
    dialog.reinit_check.setChecked(True)
    assert dialog.ok_button.isEnabled()
    assert dialog.options().reinit_classes is True
    with qtbot.waitSignal(dialog.accepted):
        dialog.accept()
    # ImageNet has no class scores to keep: nothing to tick, nothing to reinit.
    dialog.base_combo.setCurrentIndex(dialog.base_combo.findData("imagenet"))
    assert dialog.reinit_check.isHidden() and dialog.ok_button.isEnabled()
    assert dialog.options().reinit_classes is False
    assert class_mismatch(list(reversed(CLASSES)), CLASSES) == (
        "the base model has the project's classes in a different order")


def test_duration_is_epochs_or_time_budget(qtbot) -> None:
    dialog = make_dialog(qtbot)
    dialog.epochs_spin.setValue(7)
    assert (dialog.options().epochs, dialog.options().time_limit_s) == (7, None)
    assert not dialog.minutes_spin.isEnabled()
    dialog.time_radio.setChecked(True)
    dialog.minutes_spin.setValue(25)
    assert (dialog.options().epochs, dialog.options().time_limit_s) == (None, 1500.0)
    assert dialog.minutes_spin.isEnabled() and not dialog.epochs_spin.isEnabled()
    dialog.lr_combo.setCurrentIndex(dialog.lr_combo.findData(3e-4))
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    dialog.val_spin.setValue(35)
    opts = dialog.options()
    assert (opts.lr, opts.device, opts.val_share) == (3e-4, "cpu", 0.35)
    assert [dialog.lr_combo.itemText(i) for i in range(dialog.lr_combo.count())] == [
        "auto", "1e-5", "3e-5", "1e-4", "3e-4", "1e-3"]
    dialog.lr_combo.setCurrentIndex(0)  # auto: the engine picks, by how the backbone started
    assert dialog.options().lr is None


def test_file_base_uses_the_picker_and_checks_its_classes(qtbot) -> None:
    dialog = make_dialog(qtbot, read_classes=lambda path: ["background", "cat"])
    file_index = dialog.base_combo.findData("file")
    dialog.pick_file = lambda parent: None  # cancelled: back to the previous base
    dialog.base_combo.setCurrentIndex(file_index)
    assert dialog.options().base == "current"
    dialog.pick_file = lambda parent: "/runs/gpu/best.pt"
    dialog.base_combo.setCurrentIndex(file_index)
    assert dialog.options().base == "/runs/gpu/best.pt"
    assert dialog.file_label.text() == "/runs/gpu/best.pt"
    assert "not in the project: cat" in dialog.warning_label.text()
    assert not dialog.ok_button.isEnabled()


def test_the_projects_split_is_the_default_validation(qtbot) -> None:
    dialog = make_dialog(qtbot, project_split=(9, 3))
    assert dialog.project_split_check.isChecked() and not dialog.val_spin.isEnabled()
    assert "9 for training, 3 for validation" in dialog.project_split_check.text()
    assert dialog.options().val_share is None  # the plan uses the project's lists
    assert dialog.options().epochs == default_epochs(9)
    dialog.project_split_check.setChecked(False)
    assert dialog.val_spin.isEnabled() and dialog.options().val_share == 0.2
    assert dialog.split_label.text() == "≈ 10 for training, 2 for validation"


# -- training panel ----------------------------------------------------------------------


def scores(miou: float) -> dict[str, Any]:
    return {"pixel_acc": 0.8, "mean_acc": 0.5, "mean_iou": miou, "fw_iou": 0.7,
            "per_class_iou": [0.9, miou, None, 0.1]}


def run_events(epochs: int = 3, per_epoch: int = 10) -> list[tuple[str, dict[str, Any]]]:
    """What the training child emits for a short run with a before score."""
    total = epochs * per_epoch
    events: list[tuple[str, dict[str, Any]]] = [
        ("start", {"epochs": epochs, "total": total, "iters_per_epoch": per_epoch, "iteration": 0,
                   "train_images": 40, "val_images": 10, "classes": CLASSES,
                   "device": "cpu (2 threads)", "run_dir": "/p/.fcn/runs/r1"}),
        ("epoch", {"epoch": 0, "iteration": 0, "epochs": epochs, "before": True, **scores(0.125)}),
    ]
    for i in range(1, total + 1):
        events.append(("progress", {"epoch": (i - 1) // per_epoch + 1, "epochs": epochs, "iteration": i,
                                    "total": total, "loss": 2.0 / i, "lr": 1e-4,
                                    "eta": None if i == 1 else 2.0 * (total - i), "images_per_s": 3.25}))
        if i % per_epoch == 0:
            e = i // per_epoch
            events.append(("epoch", {"epoch": e, "iteration": i, "epochs": epochs, "train_loss": 1.0 / e,
                                     "seconds": 20.0, "best_mean_iou": 0.1 + 0.104 * e,
                                     **scores(0.1 + 0.104 * e)}))
    events.append(("done", {"status": "finished", "best_mean_iou": 0.412, "seconds": 61.0}))
    return events


def feed(panel: TrainingPanel, events: list[tuple[str, dict[str, Any]]], until: str | None = None) -> None:
    for name, d in events:
        if name == until:
            return
        {"start": panel.on_started, "progress": panel.on_progress,
         "epoch": panel.on_epoch}.get(name, lambda d: None)(d)


@pytest.fixture
def panel(qtbot) -> TrainingPanel:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    return panel


def test_training_panel_follows_a_run(qtbot, panel: TrainingPanel) -> None:
    events = run_events()
    feed(panel, events[:12])  # start, before, 10 progress
    # Progress is coalesced: nothing is drawn per event, the next timer tick shows the latest.
    assert panel.progress.value() == 0 and panel.loss_series.count() == 0
    with qtbot.waitSignal(panel.flush_timer.timeout):
        pass
    assert (panel.progress.value(), panel.progress.maximum()) == (10, 30)
    assert panel.loss_series.count() == 10
    assert "ETA 0:00:40" in panel.rate_label.text() and "3.2 images/s" in panel.rate_label.text()
    assert "40 training and 10 validation images" in panel.status_label.text()
    feed(panel, events[12:])
    assert (panel.progress.value(), panel.progress.maximum()) == (30, 30)
    assert panel.loss_series.count() == 30
    assert panel.loss_series.at(0).y() == pytest.approx(2.0)
    # The before point is marked on its own and starts the mean IoU line.
    assert panel.before_series.count() == 1
    assert panel.before_series.at(0).x() == 0 and panel.before_series.at(0).y() == pytest.approx(12.5)
    assert panel.miou_series.count() == 4
    assert panel.miou_series.at(3).y() == pytest.approx(41.2)
    assert panel.running and panel.cancel_button.isEnabled()
    done = events[-1][1]
    panel.on_finished({"status": "finished", "exit_code": 0, "done": done, "error": None,
                       "run_dir": "/p/.fcn/runs/r1", "log": ""})
    assert panel.result_label.text() == "Finished: val mean IoU 41.2 % (before 12.5 %)"
    assert not panel.running and not panel.cancel_button.isEnabled()
    panel.reset()
    assert panel.loss_series.count() == panel.miou_series.count() == 0
    assert panel.result_label.text() == ""


def test_cancel_is_enabled_only_while_running(qtbot, panel: TrainingPanel) -> None:
    assert not panel.cancel_button.isEnabled()
    feed(panel, run_events(), until="done")
    assert panel.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.cancelRequested):
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert not panel.cancel_button.isEnabled()  # requested once; the job ends it
    panel.on_finished({"status": "cancelled", "exit_code": 130,
                       "done": {"status": "cancelled", "best_mean_iou": 0.3}, "error": None,
                       "run_dir": "/r", "log": ""})
    assert panel.result_label.text() == "Cancelled: last checkpoint kept"
    assert not panel.cancel_button.isEnabled()
    with qtbot.assertNotEmitted(panel.cancelRequested):
        panel.cancel_button.click()


def test_failed_run_shows_error_and_log_tail(panel: TrainingPanel) -> None:
    feed(panel, run_events()[:5])
    panel.on_log("loading images")
    log = "\n".join(f"line {i}" for i in range(100)) + "\nRuntimeError: CUDA out of memory"
    panel.on_finished({"status": "crashed", "exit_code": 1, "done": None,
                       "error": "RuntimeError: CUDA out of memory", "run_dir": "/r", "log": log})
    assert panel.result_label.text() == "Failed: RuntimeError: CUDA out of memory"
    text = panel.log_view.toPlainText()
    assert "loading images" in text and text.endswith("RuntimeError: CUDA out of memory")
    assert "line 99" in text and "line 10\n" not in text  # only the tail
    assert not panel.cancel_button.isEnabled()
    assert TrainingPanel.result_text({"status": "failed", "exit_code": 2, "error": None}) == (
        "Failed: the training process ended with exit code 2")
    assert TrainingPanel.result_text({"status": "time_limit", "done": {"best_mean_iou": None}}) == (
        "Time budget used: no validation images, so no score")


def test_loss_series_is_capped_and_covers_the_whole_run(panel: TrainingPanel) -> None:
    total = 10_000
    panel.on_started({"epochs": 1, "total": total, "iters_per_epoch": total})
    for i in range(1, total + 1):
        panel.on_progress({"epoch": 1, "epochs": 1, "iteration": i, "total": total, "loss": 1.0,
                           "eta": 1.0, "images_per_s": 1.0})
    panel.flush()
    count = panel.loss_series.count()
    assert 1000 <= count < 2000
    assert panel.loss_series.at(count - 1).x() > total - 2 * panel.loss.stride
    assert panel.loss_series.at(0).x() < 10
    merged = DecimatedPoints(cap=4)
    for i in range(7):
        merged.add(float(i), float(i))
    # 0..3 fill it and merge pairwise; then buckets of two: (4, 5) -> 4.5, 6 still pending.
    assert [(p.x(), p.y()) for p in merged.points] == [(0.5, 0.5), (2.5, 2.5), (4.5, 4.5)]
    merged.add(7.0, 7.0)  # full again: pairs merge, the stride doubles
    assert [(p.x(), p.y()) for p in merged.points] == [(1.5, 1.5), (5.5, 5.5)]
    assert merged.stride == 4


def test_format_hms() -> None:
    assert format_hms(3725.4) == "1:02:05"
    assert format_hms(59) == "0:00:59"
    assert format_hms(None) == format_hms(float("nan")) == "–"


# -- models panel ------------------------------------------------------------------------


@dataclass
class FakeVersion:
    id: str
    created: str = "2025-11-21T05:13:07"
    status: str = "finished"
    mean_iou: float | None = None
    before_mean_iou: float | None = None
    per_class_iou: list[float | None] = field(default_factory=list)
    broken: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = 537_000_000


def versions() -> list[FakeVersion]:
    meta = {"base": "v001", "train_ids": ["a"] * 8, "val_ids": ["b"] * 2, "duration_s": 754,
            "class_names": CLASSES, "history": [{"epoch": 0, "per_class_iou": [0.8, 0.1, None, 0.0]}]}
    return [
        FakeVersion("v001", status="imported", mean_iou=0.125),
        FakeVersion("v002", mean_iou=0.412, before_mean_iou=0.125,
                    per_class_iou=[0.95, 0.5, None, 0.2], meta=meta),
        FakeVersion("v003", status="time_limit", broken="checkpoint file is missing"),
    ]


@pytest.fixture
def models(qtbot) -> ModelsPanel:
    panel = ModelsPanel()
    qtbot.addWidget(panel)
    panel.set_versions(versions(), "v001")
    return panel


def test_models_panel_rows(models: ModelsPanel) -> None:
    table = models.table
    assert table.rowCount() == 3
    assert [table.item(r, COL_ID).text() for r in range(3)] == ["v001", "v002", "v003"]
    assert table.item(1, COL_MIOU).text() == "12.5 → 41.2 % (+28.7)"
    assert [table.item(1, c).text() for c in (1, 2, 4)] == ["2025-11-21 05:13", "finished", "0:12:34"]
    assert table.item(2, 2).text() == "time limit"
    assert table.item(0, COL_ID).font().weight() == QFont.Weight.Bold  # current
    assert not table.item(0, COL_ID).icon().isNull()
    assert table.item(2, 0).toolTip() == "Cannot be used: checkpoint file is missing"
    assert table.item(2, 0).foreground().color() != table.item(1, 0).foreground().color()
    assert models.selected_id() == "v001"  # the current one is selected at first
    assert not models.use_button.isEnabled()  # already in use
    assert format_miou(None, 0.1) == "–"


def test_broken_version_cannot_be_used(qtbot, models: ModelsPanel) -> None:
    models.select("v003")
    assert "cannot be used: checkpoint file is missing" in models.details_label.text()
    assert not models.use_button.isEnabled()
    with qtbot.assertNotEmitted(models.useRequested):
        models.use_button.click()
        models._use_selected()
    models.select("v002")
    assert models.use_button.isEnabled()
    with qtbot.waitSignal(models.useRequested) as blocker:
        qtbot.mouseClick(models.use_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["v002"]


def test_selection_shows_per_class_iou(models: ModelsPanel) -> None:
    models.select("v002")
    details = models.details_label.text()
    assert "from v001" in details and "trained on 8 images" in details and "validated on 2" in details
    ct = models.class_table
    assert ct.rowCount() == 4
    assert [ct.item(r, 0).text() for r in range(4)] == CLASSES
    assert [ct.item(r, 1).text() for r in range(4)] == ["95.0 %", "50.0 %", "–", "20.0 %"]
    assert [ct.item(r, 2).text() for r in range(4)] == ["80.0 %", "10.0 %", "–", "0.0 %"]
    assert not ct.isColumnHidden(2)
    models.set_versions(versions(), "v002")  # the selection survives a refresh
    assert models.selected_id() == "v002" and not models.use_button.isEnabled()
    models.select("v001")
    assert models.class_table.rowCount() == 0 and models.class_table.isColumnHidden(2)
    models.set_versions([], None)
    assert models.table.rowCount() == 0 and "No model versions yet" in models.details_label.text()


def test_models_panel_buttons_emit(qtbot, models: ModelsPanel) -> None:
    for button, signal in ((models.finetune_button, models.finetuneRequested),
                           (models.import_button, models.importRunRequested),
                           (models.export_button, models.exportJobRequested)):
        with qtbot.waitSignal(signal):
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    models.select("v002")
    with qtbot.waitSignal(models.deleteRequested) as blocker:
        qtbot.mouseClick(models.delete_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["v002"]
    models.table.setFocus()
    with qtbot.waitSignal(models.deleteRequested) as blocker:  # the Delete key does the same
        qtbot.keyClick(models.table, Qt.Key.Key_Delete)
    assert blocker.args == ["v002"]
    assert models.table.item(1, COL_SIZE).text() == "537 MB"
    assert [format_size(n) for n in (None, 512, 45_300, 12_400_000, 2_100_000_000)] == [
        "–", "512 B", "45.3 kB", "12.4 MB", "2.1 GB"]
    models.set_training(True)
    assert not models.finetune_button.isEnabled()
    models.set_training(False)
    assert models.finetune_button.isEnabled()


# -- effort chart ------------------------------------------------------------------------


@dataclass
class FakeItem:
    time: str
    id: str
    effort: float | None


def test_effort_chart_points_and_moving_average(qtbot) -> None:
    chart = EffortChart()
    qtbot.addWidget(chart)
    efforts: list[float | None] = [0.30, None, *[0.30 - 0.01 * i for i in range(1, 20)]]
    chart.set_history([FakeItem(f"2025-11-21T05:{i:02d}:00", f"img{i}", e) for i, e in enumerate(efforts)])
    assert not chart.empty
    pts = chart.points_series.points()
    assert len(pts) == 20 and chart.average_series.count() == 20
    assert (pts[0].x(), pts[0].y()) == (1, pytest.approx(30.0))
    assert pts[1].x() == 3  # the save without a prediction keeps its place in the order
    measured = [100 * e for e in efforts if e is not None]
    assert chart.average_series.at(19).y() == pytest.approx(sum(measured[-WINDOW:]) / WINDOW)
    assert chart.average_series.at(0).y() == pytest.approx(30.0)
    assert chart.summary_label.text() == "Last 10 saves: 15.5 % of pixels corrected (first 10: 25.5 %)."
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]


def test_effort_chart_empty_state(qtbot) -> None:
    chart = EffortChart()
    qtbot.addWidget(chart)
    assert chart.empty and chart.empty_label.text() == EMPTY_TEXT
    chart.set_history([FakeItem("t", "a", 0.2)])
    assert not chart.empty
    assert chart.summary_label.text() == "1 save measured: 20.0 % of pixels corrected on average."
    chart.set_history([FakeItem("t", "a", None), FakeItem("t", "b", None)])
    assert chart.empty and chart.points_series.count() == 0
    assert chart.summary_label.text() == "2 labels saved, none with a prediction to compare."
    chart.set_history([])
    assert chart.empty and chart.summary_label.text() == ""


def test_a_long_run_sets_a_coarse_epoch_axis_quickly(qtbot) -> None:
    # A time-budget run asks for many epochs; one tick per epoch froze the window.
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.on_started({"epochs": 100_000, "total": 100_000, "iters_per_epoch": 1})
    assert panel.miou_x.tickInterval() >= 10_000
    assert panel.miou_x.max() >= 100_000


def test_the_backbone_is_chosen_for_a_new_network_only(qtbot) -> None:
    dialog = make_dialog(qtbot, devices=["cpu"], backbone="vgg16")
    assert not dialog.backbone_combo.isEnabled()  # the current version keeps its own
    assert dialog.options().backbone is None and "own" in dialog.backbone_note.text()
    dialog.base_combo.setCurrentIndex(dialog.base_combo.findData("imagenet"))
    combo = dialog.backbone_combo
    assert combo.isEnabled() and combo.currentData() == "vgg16"
    names = [combo.itemData(i) for i in range(combo.count())]
    assert "mobilenet_v3_large" in names and "alexnet" in names and "googlenet" in names
    assert "recommended here" in combo.itemText(names.index("mobilenet_v3_large"))  # a CPU
    combo.setCurrentIndex(names.index("mobilenet_v3_large"))
    assert dialog.options().backbone == "mobilenet_v3_large"
    assert "CPU" in dialog.backbone_note.text()
    gpu = make_dialog(qtbot, devices=["cpu", "cuda"])
    assert "recommended here" in gpu.backbone_combo.itemText(gpu.backbone_combo.findData("vgg16"))
