"""The training dock: progress, live loss and validation charts, the log, Cancel.

The panel is a view of a fine-tuning run and nothing else. The job runner's
signals carry plain dicts (the training child's JSON events), and the main
window connects them to the ``on_*`` slots here; the panel never starts, polls
or owns the job. Its one output is ``cancelRequested``.

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
    QVBoxLayout,
    QWidget,
)

from .icons import icon

MAX_POINTS: Final[int] = 2000
"""Cap on points in a live series; past it, neighbouring points merge (see DecimatedPoints)."""
FLUSH_MS: Final[int] = 100
"""Progress events are shown at most this often: Qt repaints a progress bar synchronously on
every new value and re-lays a whole line series on every appended point, which at a few
hundred microseconds each would make a fast GPU run cost the GUI thread real time."""
MAX_LOG_LINES: Final[int] = 2000
LOG_TAIL_LINES: Final[int] = 40
"""Lines of a failed run's log shown under the result line."""


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


def _axis(title: str, fmt: str) -> QValueAxis:
    axis = QValueAxis()
    axis.setTitleText(title)
    axis.setLabelFormat(fmt)
    return axis


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
        chart, view = _chart("Loss per iteration")
        chart.legend().hide()
        chart.addSeries(self.loss_series)
        self.loss_x, self.loss_y = _axis("iteration", "%d"), _axis("loss", "%.2f")
        chart.addAxis(self.loss_x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.loss_y, Qt.AlignmentFlag.AlignLeft)
        self.loss_series.attachAxis(self.loss_x)
        self.loss_series.attachAxis(self.loss_y)
        splitter.addWidget(view)

        chart, view = _chart("Validation mean IoU per epoch")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.addSeries(self.miou_series)
        chart.addSeries(self.before_series)
        self.miou_x, self.miou_y = _axis("epoch", "%d"), _axis("mIoU (%)", "%d")
        # Half an epoch of margin each side, so the before marker at 0 is not cut
        # in half; dynamic ticks keep the labels on whole epochs.
        self.miou_x.setTickType(QValueAxis.TickType.TicksDynamic)
        self.miou_x.setTickAnchor(0)
        self.miou_y.setRange(0, 100)
        chart.addAxis(self.miou_x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.miou_y, Qt.AlignmentFlag.AlignLeft)
        for series in (self.miou_series, self.before_series):
            series.attachAxis(self.miou_x)
            series.attachAxis(self.miou_y)
        splitter.addWidget(view)

    # -- state ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def reset(self) -> None:
        """Back to the idle, empty state (no run shown)."""
        self._running = False
        self._before = self._best = None
        self._loss_max = 0.0
        self._latest = None
        self.flush_timer.stop()
        self.loss.clear()
        self.loss.changed = False
        self.loss_series.clear()
        self.miou_series.clear()
        self.before_series.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label.setText("No training run yet.")
        self.rate_label.clear()
        self.result_label.clear()
        self.log_view.clear()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setEnabled(False)
        self.loss_x.setRange(0, 1)
        self.loss_y.setRange(0, 1)
        self._epoch_range(1)

    def _epoch_range(self, epochs: int) -> None:
        # The interval first: a wide range with the old interval of 1 would lay out a
        # tick per epoch (100,000 epochs froze the window).
        self.miou_x.setTickInterval(max(1, math.ceil(epochs / 10)))
        self.miou_x.setRange(-0.5, epochs + 0.5)

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
        """The ``start`` event: sizes, device, run folder. Clears any previous run."""
        self.reset()
        self._running = True
        self.cancel_button.setEnabled(True)
        total = max(1, int(d.get("total") or 1))
        epochs = max(1, int(d.get("epochs") or 1))
        self.progress.setRange(0, total)
        self.progress.setValue(min(int(d.get("iteration") or 0), total))
        self.status_label.setText(
            f"Fine-tuning on {d.get('device', '?')}: {d.get('train_images', '?')} training and "
            f"{d.get('val_images', '?')} validation images, {epochs} epochs "
            f"({d.get('iters_per_epoch', '?')} iterations each)."
        )
        self.rate_label.setText("Starting…")
        self.loss_x.setRange(0, total)
        self._epoch_range(epochs)
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
        if self.loss.changed:
            self.loss.changed = False
            self.loss_series.replace(self.loss.points)
            if self._loss_max * 1.1 > self.loss_y.max():
                self.loss_y.setMax(self._loss_max * 1.1)
        d, self._latest = self._latest, None
        if d is None:
            return
        total = int(d.get("total") or self.progress.maximum())
        if total != self.progress.maximum():
            self.progress.setMaximum(max(1, total))
            self.loss_x.setMax(max(1, total))
        self.progress.setValue(min(int(d.get("iteration") or 0), self.progress.maximum()))
        parts = [f"epoch {d.get('epoch', '?')}/{d.get('epochs', '?')}",
                 f"ETA {format_hms(d.get('eta'))}"]
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
                self.on_log(f"epoch {epoch}: train loss {d.get('train_loss', float('nan')):.4f}"
                            " (no validation images)")
            return
        if d.get("before"):
            self._before = float(miou)
            self.before_series.append(0.0, 100 * self._before)
        else:
            best = [x for x in (self._best, d.get("best_mean_iou"), miou) if x is not None]
            self._best = float(max(best))
        # The line starts at the "before" point so it reads as the change from it.
        self.miou_series.append(float(epoch), 100 * float(miou))
        if epoch + 0.5 > self.miou_x.max():
            self._epoch_range(epoch)

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
        if status == "finished":
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
