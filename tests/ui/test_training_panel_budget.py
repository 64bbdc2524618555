"""The training dock on a time-budget run (the CPU default), a stopped epoch, and its axes."""

from __future__ import annotations

import pytest
from PySide6.QtCharts import QValueAxis

from fcn_studio.ui.docks.training_panel import (
    EMPTY_TEXT,
    TrainingPanel,
    label_format,
    nice_step,
    set_nice_range,
)


@pytest.fixture
def panel(qtbot) -> TrainingPanel:
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    return panel


def start(panel: TrainingPanel, **extra) -> None:
    # What fcn-train --time-limit 600 --epochs 1000 announces for 4 training images.
    panel.on_started({"epochs": 1000, "total": 2000, "iters_per_epoch": 2, "iteration": 0,
                      "train_images": 4, "val_images": 1, "device": "cpu", **extra})


def test_a_time_budget_run_counts_the_budget(panel: TrainingPanel) -> None:
    start(panel, time_limit=600.0)
    assert "for up to 0:10:00" in panel.status_label.text()
    assert "1000 epochs" not in panel.status_label.text()
    panel.on_progress({"epoch": 3, "epochs": 1000, "iteration": 6, "total": 2000, "loss": 0.7,
                       "eta": 450.0, "fraction": 0.25, "images_per_s": 1.5})
    panel.flush()
    assert panel.progress.value() / panel.progress.maximum() == pytest.approx(0.25)
    assert panel.progress.text().startswith("25 %")  # not 6 / 2000
    assert "ETA 0:07:30" in panel.rate_label.text() and "/1000" not in panel.rate_label.text()
    # The axes follow what arrived, not the nominal 1000 epochs.
    assert panel.loss_x.max() < 2000 and panel.miou_x.max() <= 10.5
    panel.on_finished({"status": "time_limit", "exit_code": 0, "done": {"best_mean_iou": 0.5},
                       "error": None, "run_dir": "/r", "log": ""})
    assert panel.progress.value() == panel.progress.maximum()


def test_an_epoch_run_counts_iterations(panel: TrainingPanel) -> None:
    start(panel)
    panel.on_progress({"epoch": 1, "epochs": 1000, "iteration": 6, "total": 2000, "loss": 0.7,
                       "eta": 450.0, "fraction": 0.003})
    panel.flush()
    assert (panel.progress.value(), panel.progress.maximum()) == (6, 2000)


def test_a_stopped_epoch_says_validation_was_skipped(panel: TrainingPanel) -> None:
    start(panel)
    panel.on_epoch({"epoch": 1, "iteration": 1, "epochs": 1000, "train_loss": 0.5})
    log = panel.log_view.toPlainText()
    assert "validation skipped" in log and "no validation images" not in log
    start(panel, val_images=0)
    panel.on_epoch({"epoch": 1, "iteration": 2, "epochs": 1000, "train_loss": 0.5})
    assert "(no validation images)" in panel.log_view.toPlainText()


def test_empty_charts_say_so_until_data_arrives(panel: TrainingPanel) -> None:
    assert panel.loss_stack.currentWidget() is panel.loss_empty
    assert panel.miou_stack.currentWidget() is panel.miou_empty
    assert panel.loss_empty.text() == EMPTY_TEXT
    start(panel)
    panel.on_progress({"epoch": 1, "epochs": 1000, "iteration": 1, "total": 2000, "loss": 2.3})
    panel.flush()
    assert panel.loss_stack.currentWidget() is not panel.loss_empty
    assert panel.miou_stack.currentWidget() is panel.miou_empty
    panel.on_epoch({"epoch": 0, "iteration": 0, "before": True, "mean_iou": 0.1})
    assert panel.miou_stack.currentWidget() is not panel.miou_empty


def tick_labels(axis: QValueAxis) -> list[str]:
    """The labels Qt draws for dynamic ticks: anchor + k * interval within the range."""
    step, fmt = axis.tickInterval(), axis.labelFormat()
    k = int((axis.min() - axis.tickAnchor()) // step)
    out, value = [], axis.tickAnchor() + k * step
    while value <= axis.max() + 1e-9:
        if value >= axis.min() - 1e-9:
            out.append(fmt % value)
        value += step
    return out


@pytest.mark.parametrize("hi, integer, expected", [
    (1, True, ["0", "1"]),  # the empty loss chart read "0 0 0 0 1"
    (30, True, ["0", "10", "20", "30"]),
    (2.31, False, ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5"]),
    (0.07, False, ["0.00", "0.02", "0.04", "0.06", "0.08"]),
    (100_000, True, ["0", "20000", "40000", "60000", "80000", "100000"]),
])
def test_axes_have_round_ticks_and_whole_labels(qtbot, hi: float, integer: bool,
                                                expected: list[str]) -> None:
    axis = QValueAxis()
    set_nice_range(axis, 0, hi, integer=integer)
    labels = tick_labels(axis)
    assert labels == expected
    assert len(set(labels)) == len(labels)  # no two ticks read the same


def test_tick_helpers() -> None:
    assert nice_step(1, integer=True) == 1 and nice_step(0.3) == pytest.approx(0.1)
    assert nice_step(0) == 1.0 and nice_step(float("nan")) == 1.0
    assert label_format(0.25) == "%.2f" and label_format(5) == "%d" and label_format(0.5) == "%.1f"


def test_a_plans_warnings_are_notes_in_the_panel_not_boxes(panel: TrainingPanel) -> None:
    class Plan:
        def warnings(self) -> list[str]:
            return ["Only 3 labelled images: the model will learn a little.",
                    "No validation images: there will be no before/after score."]

    panel.reset(Plan())
    assert not panel.notes_label.isHidden()
    assert "Only 3 labelled images" in panel.notes_label.text()
    assert "No validation images" in panel.log_view.toPlainText()
    start(panel)  # the child's start event comes next: the notes are about this run, they stay
    assert not panel.notes_label.isHidden() and "Only 3" in panel.notes_label.text()
    assert "No validation images" in panel.log_view.toPlainText()
    panel.reset()  # the next run without warnings hides them again
    assert panel.notes_label.isHidden() and panel.notes_label.text() == ""
