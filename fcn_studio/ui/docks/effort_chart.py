"""Correction effort over time: does the model need fewer corrections after fine-tuning?

Each saved label has a correction effort, the share of its pixels the person
changed from the model's prediction. The chart plots it in save order (one dot
per save) with a trailing moving average, and a line of plain numbers compares
the latest saves with the first ones. Saves without a prediction (effort None)
keep their place in the order but draw no dot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QCursor, QPainter
from PySide6.QtWidgets import QLabel, QStackedWidget, QToolTip, QVBoxLayout, QWidget

from .training_panel import set_nice_range

WINDOW: Final[int] = 10
"""Saves in the moving average (and in the first/last comparison)."""
EMPTY_TEXT: Final[str] = ("No data yet.\nSave corrected labels of predicted images "
                          "to see how much the model still needs correcting.")


def moving_average(values: Sequence[float], window: int = WINDOW) -> list[float]:
    """Trailing mean: element i is the mean of values[max(0, i-window+1) .. i]."""
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class EffortChart(QWidget):
    """Effort (% of pixels changed) per saved label, with a moving average."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._points: list[tuple[int, Any]] = []  # (save number, item) per dot

        self.points_series = QScatterSeries()
        self.points_series.setName("effort per saved label")
        self.points_series.setMarkerSize(7)
        self.points_series.setColor(QColor(70, 130, 180, 160))
        self.points_series.setBorderColor(QColor(0, 0, 0, 0))
        self.average_series = QLineSeries()
        self.average_series.setName(f"moving average ({WINDOW} saves)")
        pen = self.average_series.pen()
        pen.setWidthF(2.5)
        pen.setColor(QColor("#d9822b"))
        self.average_series.setPen(pen)

        chart = QChart()
        chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        chart.layout().setContentsMargins(0, 0, 0, 0)
        chart.setBackgroundRoundness(0)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.addSeries(self.points_series)
        chart.addSeries(self.average_series)
        self.x_axis = QValueAxis()
        self.x_axis.setTitleText("save")
        self.x_axis.setLabelFormat("%d")
        self.y_axis = QValueAxis()
        self.y_axis.setTitleText("pixels corrected (%)")
        self.y_axis.setLabelFormat("%.0f")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        for series in (self.points_series, self.average_series):
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
        self.view = QChartView(chart)
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setMinimumHeight(160)

        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.summary_label)

        self.points_series.hovered.connect(self._on_hover)
        self.set_history([])

    @property
    def empty(self) -> bool:
        return self.stack.currentWidget() is self.empty_label

    def set_history(self, items: Sequence[Any]) -> None:
        """Show ``items`` (``.time``, ``.id``, ``.effort`` share or None), oldest first."""
        self._points = [(n, item) for n, item in enumerate(items, start=1) if item.effort is not None]
        efforts = [100 * float(item.effort) for _, item in self._points]
        xs = [float(n) for n, _ in self._points]
        # One replace() per series: a save adds one item, but a full refresh of a
        # few thousand points is still far below a frame.
        self.points_series.replace([QPointF(x, y) for x, y in zip(xs, efforts, strict=True)])
        averages = moving_average(efforts)
        self.average_series.replace([QPointF(x, y) for x, y in zip(xs, averages, strict=True)])
        if not efforts:
            self.stack.setCurrentWidget(self.empty_label)
            self.summary_label.setText(f"{len(items)} labels saved, none with a prediction to compare."
                                       if items else "")
            return
        self.stack.setCurrentWidget(self.view)
        # Round ticks with whole labels at any range: saves are counted (1, 2, 5, 10 ...),
        # effort is a share, never past 100 %; a half-step margin keeps the end dots whole.
        set_nice_range(self.x_axis, 0, max(xs[-1], 2), integer=True, margin=0.5)
        set_nice_range(self.y_axis, 0, min(100.0, max(5.0, max(efforts) * 1.1)))
        self.summary_label.setText(self.summary(efforts))

    @staticmethod
    def summary(efforts: Sequence[float]) -> str:
        """Plain numbers: the latest saves' mean effort against the first ones'."""
        n = len(efforts)
        if n <= WINDOW:
            return (f"{n} save{'s' * (n != 1)} measured: "
                    f"{_mean(efforts):.1f} % of pixels corrected on average.")
        first, last = _mean(efforts[:WINDOW]), _mean(efforts[-WINDOW:])
        return (f"Last {WINDOW} saves: {last:.1f} % of pixels corrected "
                f"(first {WINDOW}: {first:.1f} %).")

    def _on_hover(self, point: QPointF, state: bool) -> None:
        if not state:
            QToolTip.hideText()
            return
        # Dots sit at whole save numbers; find the one under the mouse.
        hit = min(self._points, key=lambda p: abs(p[0] - point.x()), default=None)
        if hit is not None:
            n, item = hit
            QToolTip.showText(QCursor.pos(), f"save {n}: {item.id}\n{item.time}\n"
                              f"{100 * float(item.effort):.1f} % of pixels corrected")
