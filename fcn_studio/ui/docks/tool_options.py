"""The tool options dock: brush size, overlay opacity and display toggles.

Each control binds one value both ways. A ``set_*`` method shows a value without
emitting (the main window calls it when the value changed elsewhere, e.g. the
``[``/``]`` keys), and a person's change emits the matching ``*Changed`` signal
exactly once. The panel holds no state beyond what its widgets show.
"""

from __future__ import annotations

import math
from typing import Final

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QWidget,
)

from ..canvas.canvas_tools import MAX_RADIUS, MIN_RADIUS  # one range for the canvas and this panel

_SLIDER_STEPS: Final[int] = 1000
# The slider is logarithmic: a linear 0.5..500 slider gives the 1..10 px range,
# where most precise work happens, less than 2 % of its travel.
_LOG_SPAN: Final[float] = math.log(MAX_RADIUS / MIN_RADIUS)


def radius_to_slider(radius: float) -> int:
    """Slider position (0..1000) for a brush radius, on a log scale."""
    radius = min(max(radius, MIN_RADIUS), MAX_RADIUS)
    return round(_SLIDER_STEPS * math.log(radius / MIN_RADIUS) / _LOG_SPAN)


def slider_to_radius(position: int) -> float:
    """Brush radius for a slider position, rounded to a value a person would type."""
    radius = MIN_RADIUS * math.exp(_LOG_SPAN * position / _SLIDER_STEPS)
    # Half pixels matter for thin brushes only; above 10 px whole pixels are enough.
    rounded = round(radius * 2) / 2 if radius < 10 else float(round(radius))
    return min(max(rounded, MIN_RADIUS), MAX_RADIUS)


class ToolOptionsPanel(QWidget):
    """Brush radius, overlay opacity, outline / overlay / uncertainty toggles."""

    brushRadiusChanged = Signal(float)
    """Radius in image pixels, MIN_RADIUS..MAX_RADIUS."""
    opacityChanged = Signal(float)
    """Overlay opacity as a fraction, 0.0..1.0."""
    outlineChanged = Signal(bool)
    overlayVisibleChanged = Signal(bool)
    uncertaintyVisibleChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.radius_slider = QSlider(Qt.Orientation.Horizontal)
        self.radius_slider.setRange(0, _SLIDER_STEPS)
        self.radius_slider.setToolTip("Brush radius in image pixels (log scale); [ and ] "
                                      "change it")
        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(MIN_RADIUS, MAX_RADIUS)
        self.radius_spin.setDecimals(1)
        self.radius_spin.setSingleStep(0.5)
        self.radius_spin.setSuffix(" px")
        self.radius_spin.setKeyboardTracking(False)  # emit on Enter, not per digit

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Opacity of the class overlay")
        self.opacity_label = QLabel()
        self.opacity_label.setMinimumWidth(self.opacity_label.fontMetrics().horizontalAdvance(
            "100 %"))

        self.outline_check = QCheckBox("Outline only")
        self.outline_check.setToolTip("Draw only the borders between classes")
        self.overlay_check = QCheckBox("Show overlay")
        self.overlay_check.setToolTip("Show the class overlay on the image")
        self.uncertainty_check = QCheckBox("Show uncertainty")
        self.uncertainty_check.setToolTip("Shade pixels where the model is unsure")

        radius_row = QHBoxLayout()
        radius_row.addWidget(self.radius_slider, 1)
        radius_row.addWidget(self.radius_spin)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_label)
        form = QFormLayout(self)
        form.addRow("Brush", radius_row)
        form.addRow("Opacity", opacity_row)
        form.addRow(self.overlay_check)
        form.addRow(self.outline_check)
        form.addRow(self.uncertainty_check)

        # Initial values before connecting, so construction emits nothing.
        self.set_brush_radius(5.0)
        self.set_opacity(0.5)
        self.overlay_check.setChecked(True)

        self.radius_slider.valueChanged.connect(self._on_radius_slider)
        self.radius_spin.valueChanged.connect(self._on_radius_spin)
        self.opacity_slider.valueChanged.connect(self._on_opacity_slider)
        self.outline_check.toggled.connect(self.outlineChanged)
        self.overlay_check.toggled.connect(self.overlayVisibleChanged)
        self.uncertainty_check.toggled.connect(self.uncertaintyVisibleChanged)

    # -- getters ---------------------------------------------------------------

    def brush_radius(self) -> float:
        return self.radius_spin.value()

    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def outline(self) -> bool:
        return self.outline_check.isChecked()

    def overlay_visible(self) -> bool:
        return self.overlay_check.isChecked()

    def uncertainty_visible(self) -> bool:
        return self.uncertainty_check.isChecked()

    # -- setters: show a value, never emit ---------------------------------------

    def set_brush_radius(self, radius: float) -> float:
        """Show ``radius`` (clamped to MIN_RADIUS..MAX_RADIUS); returns the value shown."""
        with QSignalBlocker(self.radius_spin), QSignalBlocker(self.radius_slider):
            self.radius_spin.setValue(radius)
            self.radius_slider.setValue(radius_to_slider(self.radius_spin.value()))
        return self.radius_spin.value()

    def set_opacity(self, opacity: float) -> None:
        """Show an opacity given as a fraction 0..1."""
        with QSignalBlocker(self.opacity_slider):
            self.opacity_slider.setValue(round(min(max(opacity, 0.0), 1.0) * 100))
        self._show_opacity()

    def set_outline(self, on: bool) -> None:
        with QSignalBlocker(self.outline_check):
            self.outline_check.setChecked(on)

    def set_overlay_visible(self, on: bool) -> None:
        with QSignalBlocker(self.overlay_check):
            self.overlay_check.setChecked(on)

    def set_uncertainty_visible(self, on: bool) -> None:
        with QSignalBlocker(self.uncertainty_check):
            self.uncertainty_check.setChecked(on)

    # -- a person's changes: sync the twin control, emit once ---------------------

    def _on_radius_slider(self, position: int) -> None:
        radius = slider_to_radius(position)
        with QSignalBlocker(self.radius_spin):
            self.radius_spin.setValue(radius)
        self.brushRadiusChanged.emit(self.radius_spin.value())

    def _on_radius_spin(self, radius: float) -> None:
        with QSignalBlocker(self.radius_slider):
            self.radius_slider.setValue(radius_to_slider(radius))
        self.brushRadiusChanged.emit(radius)

    def _on_opacity_slider(self, _percent: int) -> None:
        self._show_opacity()
        self.opacityChanged.emit(self.opacity())

    def _show_opacity(self) -> None:
        self.opacity_label.setText(f"{self.opacity_slider.value()} %")
