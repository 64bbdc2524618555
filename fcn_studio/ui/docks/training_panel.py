"""The training dock: progress, live loss and validation charts, the log, Cancel.

The panel is a view of a fine-tuning run and nothing else. The job runner's
signals carry plain dicts (the training child's JSON events), and the main
window connects them to the ``on_*`` slots here; the panel never starts, polls
or owns the job. Its one output is ``cancelRequested``.

With a time budget (the default fine-tune on a CPU) the bar and the ETA count
the budget: the child reports ``time_limit`` in its ``start`` event and the
share of the run done, ``fraction``, in every ``progress`` event. The axes
keep round ticks with whole labels at any range, and a chart with nothing to
show yet says so.

Progress events arrive once per iteration, so handling one is cheap: the dict
is kept and its loss sample goes into a capped point buffer. A timer shows the
latest state at most every ``FLUSH_MS`` (one bar value, one label text, one
series ``replace``); ``flush()`` shows it at once. Nothing is rebuilt per event.
"""

from __future__ import annotations

import math
from typing import Any, Final

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..icons import icon

MAX_POINTS: Final[int] = 2000
"""Cap on points in a live series; past it, neighbouring points merge (see DecimatedPoints)."""
FLUSH_MS: Final[int] = 100
"""Progress events are shown at most this often: Qt repaints a progress bar synchronously on
every new value and re-lays a whole line series on every appended point, which at a few
hundred microseconds each would make a fast GPU run cost the GUI thread real time."""
MAX_LOG_LINES: Final[int] = 2000
LOG_TAIL_LINES: Final[int] = 40
"""Lines of a failed run's log shown under the result line."""
BUDGET_STEPS: Final[int] = 1000
"""Steps of the progress bar of a time-budget run (it shows a percentage)."""
EMPTY_TEXT: Final[str] = "No data yet"
TICKS: Final[int] = 5
"""About this many tick intervals per axis."""


def format_hms(seconds: float | None) -> str:
    """``3725.4`` -> ``"1:02:05"``; ``None`` or a non-finite value -> ``"–"``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    total = max(0, round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def format_percent(fraction: float | None) -> str:
    """``0.4123`` -> ``"41.2 %"``; ``None`` -> ``"–"``."""
    if fraction is None or not math.isfinite(fraction):
        return "–"
    return f"{100 * fraction:.1f} %"


class DecimatedPoints:
    """A point list capped at ``cap`` points, fed one sample at a time in O(1).

    When the list fills up, neighbouring pairs merge into their mean and from
    then on every point is the mean of twice as many samples, so an arbitrarily
    long run shows its whole history in at most ``cap`` points, smoothed rather
    than truncated. Plain Python: the panel copies it into its chart series in
    one ``replace`` per repaint tick.
    """

    def __init__(self, cap: int = MAX_POINTS) -> None:
        self.cap = max(4, cap - cap % 2)
        self.points: list[QPointF] = []
        self.stride = 1
        self.changed = False
        """True when ``points`` changed since the flag was last cleared."""
        self._sx = self._sy = 0.0
        self._n = 0

    def add(self, x: float, y: float) -> bool:
        """Take one sample; True when a point was appended."""
        self._sx += x
        self._sy += y
        self._n += 1
        if self._n < self.stride:
            return False
        self.points.append(QPointF(self._sx / self._n, self._sy / self._n))
        self._sx = self._sy = 0.0
        self._n = 0
        self.changed = True
        if len(self.points) >= self.cap:
            pts = self.points
            self.points = [QPointF((a.x() + b.x()) / 2, (a.y() + b.y()) / 2)
                           for a, b in zip(pts[0::2], pts[1::2], strict=True)]
            self.stride *= 2
        return True

    def clear(self) -> None:
        self.points = []
        self.stride = 1
        self.changed = True
        self._sx = self._sy = 0.0
        self._n = 0


def nice_step(span: float, ticks: int = TICKS, integer: bool = False) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving about ``ticks``
    intervals over ``span``; at least 1 on an ``integer`` axis (iterations, epochs)."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(ticks, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return max(1.0, round(step)) if integer else step


def label_format(step: float) -> str:
    """A printf format that shows every multiple of ``step`` whole: ``%d`` for whole
    steps, else as many decimals as the step needs (0.25 -> ``%.2f``)."""
    if step >= 1 and float(step).is_integer():
        return "%d"
    decimals = 0
    while decimals < 6 and not math.isclose(round(step, decimals), step, rel_tol=1e-9):
        decimals += 1
    return f"%.{decimals}f"


def set_nice_range(axis: QValueAxis, lo: float, hi: float, *, integer: bool = False,
                   margin: float = 0.0) -> float:
    """Show [lo, hi] (hi rounded up to a whole tick) with round ticks anchored at ``lo``
    and labels that read whole; ``margin`` widens the range on both sides without
    moving the ticks. Returns the tick interval."""
    step = nice_step(hi - lo, integer=integer)
    top = lo + max(1, math.ceil((hi - lo) / step - 1e-9)) * step
    axis.setTickType(QValueAxis.TickType.TicksDynamic)
    axis.setTickAnchor(lo)
    # Interval and range in the order that never lays out more ticks than either needs:
    # a wide range with a fine interval lays out a tick per unit (100,000 froze the window).
    if step >= axis.tickInterval():
        axis.setTickInterval(step)
        axis.setRange(lo - margin, top + margin)
    else:
        axis.setRange(lo - margin, top + margin)
        axis.setTickInterval(step)
    axis.setLabelFormat(label_format(step))
    return step


def _axis(title: str) -> QValueAxis:
    axis = QValueAxis()
    axis.setTitleText(title)
    return axis


def _with_empty_text(view: QChartView) -> tuple[QStackedWidget, QLabel]:
    """``view`` behind a "no data yet" page, shown until the chart has a point."""
    label = QLabel(EMPTY_TEXT)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setStyleSheet("color: palette(mid);")
    stack = QStackedWidget()
    stack.addWidget(label)
    stack.addWidget(view)
    return stack, label


def _chart(title: str) -> tuple[QChart, QChartView]:
    chart = QChart()
    chart.setTitle(title)
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.layout().setContentsMargins(0, 0, 0, 0)
    chart.setBackgroundRoundness(0)
    view = QChartView(chart)
    view.setRenderHint(QPainter.RenderHint.Antialiasing)
    view.setMinimumHeight(200)  # room for the axis labels
    return chart, view


class TrainingPanel(QWidget):
    """Progress bar, ETA, live loss / validation mean IoU charts, log, Cancel, result."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._running = False
        self._before: float | None = None
        self._best: float | None = None
        self._loss_max = 0.0
        self._latest: dict[str, Any] | None = None
        """The newest progress event not yet shown."""
        self.flush_timer = QTimer(self)
        self.flush_timer.setSingleShot(True)
        self.flush_timer.setInterval(FLUSH_MS)
        self.flush_timer.timeout.connect(self.flush)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.rate_label = QLabel()
        """ETA, images/s, epoch and loss of the latest progress event."""
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setToolTip("Stop training; the last checkpoint is kept")
        self.cancel_button.clicked.connect(self._cancel)
        self.notes_label = QLabel()
        """What the person should know about the run (few images, no validation...): shown
        in the panel rather than in boxes that hold the start back until clicked."""
        self.notes_label.setWordWrap(True)
        self.notes_label.setObjectName("trainingNotes")
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)

        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress, 1)
        bar_row.addWidget(self.cancel_button)
        # Charts side by side (a dock at the bottom is wide and short), the log below.
        charts = QSplitter(Qt.Orientation.Horizontal)
        self._build_charts(charts)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(charts)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 100])
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addWidget(self.notes_label)
        layout.addLayout(bar_row)
        layout.addWidget(self.rate_label)
        layout.addWidget(self.result_label)
        layout.addWidget(splitter, 1)
        self.reset()

    def _build_charts(self, splitter: QSplitter) -> None:
        self.loss_series = QLineSeries()
        self.loss_series.setName("training loss")
        self.miou_series = QLineSeries()
        self.miou_series.setName("val mean IoU")
        self.miou_series.setPointsVisible(True)
        self.before_series = QScatterSeries()
        self.before_series.setName("before (starting model)")
        self.before_series.setMarkerShape(QScatterSeries.MarkerShape.MarkerShapeRectangle)
        self.before_series.setMarkerSize(11)
        self.before_series.setColor(QColor("#d9822b"))
        self.loss = DecimatedPoints()
        # The units are in the chart titles: a y-axis title is cut to "mIoU..." in a
        # short dock, and the chart title has the room.
        chart, view = _chart("Training loss per iteration")
        chart.legend().hide()
        chart.addSeries(self.loss_series)
        self.loss_x, self.loss_y = _axis("iteration"), _axis("")
        chart.addAxis(self.loss_x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.loss_y, Qt.AlignmentFlag.AlignLeft)
        self.loss_series.attachAxis(self.loss_x)
        self.loss_series.attachAxis(self.loss_y)
        self.loss_stack, self.loss_empty = _with_empty_text(view)
        splitter.addWidget(self.loss_stack)

        chart, view = _chart("Validation mean IoU (%) per epoch")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.addSeries(self.miou_series)
        chart.addSeries(self.before_series)
        self.miou_x, self.miou_y = _axis("epoch"), _axis("")
        set_nice_range(self.miou_y, 0, 100)
        chart.addAxis(self.miou_x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.miou_y, Qt.AlignmentFlag.AlignLeft)
        for series in (self.miou_series, self.before_series):
            series.attachAxis(self.miou_x)
            series.attachAxis(self.miou_y)
        self.miou_stack, self.miou_empty = _with_empty_text(view)
        splitter.addWidget(self.miou_stack)

    # -- state ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def reset(self, plan: object = None) -> None:
        """Back to the idle, empty state (no run shown); ``plan``: the run about to start,
        whose warnings are shown as notes."""
        self._running = False
        self._before = self._best = None
        self._loss_max = 0.0
        self._latest = None
        self._budget: float | None = None
        self._val_images = 0
        self._total = 1
        self.flush_timer.stop()
        self.loss.clear()
        self.loss.changed = False
        self.loss_series.clear()
        self.miou_series.clear()
        self.before_series.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        self.status_label.setText("No training run yet.")
        self.rate_label.clear()
        self.result_label.clear()
        self.log_view.clear()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setEnabled(False)
        self._loss_range(1, 1.0)
        self._epoch_range(1)
        self.loss_stack.setCurrentWidget(self.loss_empty)
        self.miou_stack.setCurrentWidget(self.miou_empty)
        self._show_notes(plan.warnings() if hasattr(plan, "warnings") else [])

    def _show_notes(self, notes: list[str]) -> None:
        self._notes = list(notes)
        self.notes_label.setText("\n".join(f"Note: {text}" for text in notes))
        self.notes_label.setVisible(bool(notes))
        for text in notes:
            self.log_view.appendPlainText(f"Note: {text}")

    def _epoch_range(self, epochs: int) -> None:
        # Half an epoch of margin each side, so the before marker at 0 is not cut in half.
        set_nice_range(self.miou_x, 0, max(1, epochs), integer=True, margin=0.5)

    def _loss_range(self, iterations: int, loss: float) -> None:
        set_nice_range(self.loss_x, 0, max(1, iterations), integer=True)
        set_nice_range(self.loss_y, 0, loss if loss > 0 else 1.0)

    def _cancel(self) -> None:
        if not self._running:
            return
        # Disabled until the job ends: a second click could not make it stop faster.
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        self.status_label.setText(self.status_label.text() + " Cancelling…")
        self.cancelRequested.emit()

    # -- slots: the job runner's dicts -----------------------------------------------

    def on_started(self, d: dict[str, Any]) -> None:
        """The ``start`` event: sizes, device, run folder, time budget. Clears any previous run
        (its plan's notes stay: they are about this run)."""
        notes = self._notes
        self.reset()
        self._show_notes(notes)
        self._running = True
        self.cancel_button.setEnabled(True)
        total = max(1, int(d.get("total") or 1))
        epochs = max(1, int(d.get("epochs") or 1))
        budget = d.get("time_limit")
        self._budget = float(budget) if isinstance(budget, (int, float)) and budget > 0 else None
        self._val_images = int(d.get("val_images") or 0)
        self._total = total
        if self._budget is not None:
            # The budget ends the run long before its nominal epochs: count the budget.
            self.progress.setRange(0, BUDGET_STEPS)
            self.progress.setFormat(f"%p % of {format_hms(self._budget)}")
            self.progress.setValue(0)
            length = f"for up to {format_hms(self._budget)} (a time budget)"
        else:
            self.progress.setRange(0, total)
            self.progress.setValue(min(int(d.get("iteration") or 0), total))
            length = f"{epochs} epochs ({d.get('iters_per_epoch', '?')} iterations each)"
        self.status_label.setText(
            f"Fine-tuning on {d.get('device', '?')}: {d.get('train_images', '?')} training and "
            f"{d.get('val_images', '?')} validation images, {length}."
        )
        self.rate_label.setText("Starting…")
        if self._budget is None:
            self._loss_range(total, 1.0)
            self._epoch_range(epochs)
        else:  # the axes grow with what arrives
            per_epoch = max(1, int(d.get("iters_per_epoch") or 1))
            self._loss_range(min(total, 10 * per_epoch), 1.0)
            self._epoch_range(min(epochs, 10))
        if d.get("run_dir"):
            self.on_log(f"run folder: {d['run_dir']}")

    def on_progress(self, d: dict[str, Any]) -> None:
        """One ``progress`` event per iteration: kept, and its loss sampled; shown on the next tick."""
        self._latest = d
        loss = d.get("loss")
        if loss is not None and math.isfinite(loss):
            self.loss.add(float(d.get("iteration") or 0), float(loss))
            self._loss_max = max(self._loss_max, float(loss))
        if not self.flush_timer.isActive():
            self.flush_timer.start()

    def flush(self) -> None:
        """Show the latest progress now: bar, ETA, images/s, loss chart."""
        self.flush_timer.stop()
        d, self._latest = self._latest, None
        if d is not None and self._budget is None:
            total = int(d.get("total") or self.progress.maximum())
            if total != self.progress.maximum():
                self.progress.setMaximum(max(1, total))
                self._total = max(1, total)
        if self.loss.changed:
            self.loss.changed = False
            self.loss_series.replace(self.loss.points)
            self.loss_stack.setCurrentWidget(self.loss_stack.widget(1))
            last_x = self.loss.points[-1].x() if self.loss.points else 1
            if self._loss_max * 1.05 > self.loss_y.max() or last_x > self.loss_x.max():
                span = self._total if self._budget is None else max(last_x * 2, self.loss_x.max())
                self._loss_range(int(min(span, self._total)), self._loss_max * 1.05)
        if d is None:
            return
        iteration = int(d.get("iteration") or 0)
        if self._budget is not None:
            fraction = d.get("fraction")
            if not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
                fraction = iteration / max(int(d.get("total") or 1), 1)
            self.progress.setValue(round(BUDGET_STEPS * min(max(float(fraction), 0.0), 1.0)))
            parts = [f"epoch {d.get('epoch', '?')}"]
        else:
            self.progress.setValue(min(iteration, self.progress.maximum()))
            parts = [f"epoch {d.get('epoch', '?')}/{d.get('epochs', '?')}"]
        parts.append(f"ETA {format_hms(d.get('eta'))}")
        if d.get("images_per_s") is not None:
            parts.append(f"{float(d['images_per_s']):.1f} images/s")
        loss = d.get("loss")
        if loss is not None and math.isfinite(loss):
            parts.append(f"loss {float(loss):.3f}")
        self.rate_label.setText(" · ".join(parts))

    def on_epoch(self, d: dict[str, Any]) -> None:
        """An ``epoch`` event: a validation point (epoch 0 with ``before`` is the starting model)."""
        self.flush()
        miou = d.get("mean_iou")
        epoch = int(d.get("epoch") or 0)
        if miou is None:
            if not d.get("before"):
                # Validation is skipped when the run is stopped mid-epoch: say that,
                # not that there are no validation images.
                why = ("validation skipped: the run was stopped" if self._val_images
                       else "no validation images")
                self.on_log(f"epoch {epoch}: train loss {d.get('train_loss', float('nan')):.4f}"
                            f" ({why})")
            return
        self.miou_stack.setCurrentWidget(self.miou_stack.widget(1))
        if d.get("before"):
            self._before = float(miou)
            self.before_series.append(0.0, 100 * self._before)
        else:
            best = [x for x in (self._best, d.get("best_mean_iou"), miou) if x is not None]
            self._best = float(max(best))
        # The line starts at the "before" point so it reads as the change from it.
        self.miou_series.append(float(epoch), 100 * float(miou))
        if epoch + 0.5 > self.miou_x.max():
            self._epoch_range(epoch if self._budget is None else 2 * epoch)

    def on_log(self, line: str) -> None:
        """One line of the child's log (stderr text, a non-JSON stdout line)."""
        self.log_view.appendPlainText(line.rstrip("\n"))

    def on_finished(self, d: dict[str, Any]) -> None:
        """The runner's ``finished`` dict: the result line, and the log tail on failure."""
        self.flush()
        self._running = False
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        text = self.result_text(d, before=self._before, best=self._best)
        self.result_label.setText(text)
        status = d.get("status")
        failed = status not in ("finished", "cancelled", "time_limit")
        self.result_label.setStyleSheet("color: #c0392b;" if failed else "")
        self.status_label.setText("Training failed." if failed else "Training ended.")
        self.rate_label.clear()
        if status in ("finished", "time_limit"):
            self.progress.setValue(self.progress.maximum())
        if failed:
            tail = _log_tail(d.get("log"))
            if tail:
                self.on_log("--- log tail ---")
                for line in tail:
                    self.on_log(line)

    @staticmethod
    def result_text(d: dict[str, Any], *, before: float | None = None,
                    best: float | None = None) -> str:
        """The one-line result for a ``finished`` dict.

        E.g. ``Finished: val mean IoU 41.2 % (before 12.5 %)``; ``before`` and
        ``best`` are the scores seen in epoch events, used when ``done`` lacks one.
        """
        status = d.get("status")
        done = d.get("done") or {}
        after = done.get("best_mean_iou", best) if done else best
        score = "no validation images, so no score"
        if after is not None:
            score = f"val mean IoU {format_percent(after)}"
            if before is not None:
                score += f" (before {format_percent(before)})"
        if status == "finished":
            return f"Finished: {score}"
        if status == "time_limit":
            return f"Time budget used: {score}"
        if status == "cancelled":
            return "Cancelled: last checkpoint kept" if done else "Cancelled before the first checkpoint"
        message = d.get("error") or f"the training process ended with exit code {d.get('exit_code')}"
        return f"Failed: {message}"


def _log_tail(log: Any) -> list[str]:
    """The last lines of a log given as text or as a list of lines."""
    if not log:
        return []
    lines = str(log).splitlines() if isinstance(log, str) else [str(line) for line in log]
    return lines[-LOG_TAIL_LINES:]
