"""The window's status bar: what the model and the worker are doing, where the cursor
is, the brush size, training progress while a run goes, and the last background
problem. It only shows what it is given; the window decides what to say."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from .canvas.canvas_tools import brush_width_px

SHRINKABLE_MIN_WIDTH = 40  # px
PROBLEM_CHARS = 90  # longer first lines are cut; the tooltip has the whole text


class StatusBar(QStatusBar):
    weightsLinkActivated = Signal(str)
    """The untrained-model link: "download" or "dismiss"."""

    def __init__(self) -> None:
        super().__init__()
        self.model_label = QLabel("Model: loading…")
        self.worker_label = QLabel("")
        self.cursor_label = QLabel("")
        self.zoom_label = QLabel("")
        self.brush_label = QLabel("")
        self.brush_label.setToolTip("Brush size in image pixels ([ and ] change it)")
        # Training progress while a run goes, so the Training panel can stay closed.
        self.training_progress = QProgressBar()
        self.training_progress.setMaximumWidth(160)
        self.training_progress.setMaximumHeight(16)
        self.training_progress.setTextVisible(True)
        self.training_progress.setToolTip("Fine-tuning: View > Panels > Training shows the "
                                          "charts and the log")
        self.training_progress.hide()
        self.weights_link = QLabel()
        self.weights_link.linkActivated.connect(self.weightsLinkActivated)
        self.weights_link.hide()
        # The last background problem (a prediction, save or model load that failed):
        # shown here and in the image list, never in a modal box that stops the work.
        self.alert_label = QLabel("")
        self.alert_label.setStyleSheet("color: #b00020;")
        self.addWidget(self.worker_label, 1)
        for widget in (self.alert_label, self.training_progress, self.cursor_label,
                       self.brush_label, self.zoom_label, self.model_label, self.weights_link):
            self.addPermanentWidget(widget)
        # Texts whose length varies (a model's name, a problem) may be cut short rather than
        # widen the window past the screen; their tooltips keep the whole text.
        for label in (self.worker_label, self.alert_label, self.model_label, self.weights_link):
            label.setMinimumWidth(SHRINKABLE_MIN_WIDTH)

    def show_model(self, description: str, device: str, version: str,
                   class_names: list[str]) -> None:
        self.model_label.setText(f"Model: {description} ({device})")
        self.model_label.setToolTip(f"{description} ({device})\nversion {version}\n"
                                    f"classes: {', '.join(class_names)}")

    def show_untrained_link(self, shown: bool, backbone: str = "VGG16", size_mb: int = 528) -> None:
        """The model is untrained for want of ``backbone``'s ImageNet weights: a link to
        download them (``size_mb``), and one to dismiss it."""
        self.weights_link.setText(
            f'⚠ untrained: <a href="download">download the ImageNet weights</a> ({size_mb} MB)'
            ' &nbsp;<a href="dismiss" style="text-decoration:none">✕</a>')
        self.weights_link.setToolTip(
            f"The model is an untrained FCN-8s: the ImageNet {backbone} weights are not "
            "downloaded yet, so its first predictions are noise. Download them (Model > "
            "ImageNet FCN-8s), or fine-tune on your saved labels (Ctrl+T), which trains it.")
        self.weights_link.setVisible(shown)
        if shown and "weights" in self.alert_label.toolTip():
            self.alert_label.setText("")  # the link says it, with the way out

    def show_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{100 * zoom:.0f} %")

    def show_brush_size(self, radius: float) -> None:
        """The brush size in image pixels (the circle on the canvas is in screen pixels)."""
        self.brush_label.setText(f"brush {brush_width_px(radius)} px")

    def show_cursor(self, x: int, y: int, class_id: int, names: tuple[str, ...] | None) -> None:
        if x < 0 or names is None:
            self.cursor_label.setText("")
            return
        name = "void" if class_id == 255 else (names[class_id] if class_id < len(names) else "?")
        self.cursor_label.setText(f"x {x}  y {y}  {name} ({class_id})")

    def show_problem(self, text: str) -> None:
        """The last background problem: its first line stays, the whole text is the tooltip."""
        first = text.strip().splitlines()[0] if text.strip() else text
        cut = first if len(first) <= PROBLEM_CHARS else first[:PROBLEM_CHARS - 3] + "…"
        self.alert_label.setText(cut)
        self.alert_label.setToolTip(text)
        self.showMessage(first, 10_000)

    def training_running(self, running: bool) -> None:
        self.training_progress.setVisible(running)
        if running:
            self.training_progress.setRange(0, 0)  # busy until the first progress line
        else:
            self.worker_label.setText("")

    def training_status(self, d: dict[str, Any]) -> None:
        """A progress event of the run: iterations done and the ETA."""
        from training.progress import format_duration

        done, total = d.get("iteration"), d.get("total")
        eta = format_duration(d.get("eta"))
        self.worker_label.setText(f"training: {done}/{total}, eta {eta}")
        if isinstance(done, int) and isinstance(total, int) and total > 0:
            self.training_progress.setRange(0, total)
            self.training_progress.setValue(min(done, total))
            self.training_progress.setFormat(f"training %p%  eta {eta}")
