"""Benchmark the canvas on a 4000 x 3000 (12 MP) image with its label map.

A plain script, not a test: ``.venv/bin/python benchmarks/bench_canvas.py``
(runs offscreen unless ``QT_QPA_PLATFORM`` says otherwise). Prints each figure
beside a naive baseline measured in the same run, as a ratio:

- brush segment: one mouse move through the path the mouse uses (a
  ``QMouseEvent`` sent to the canvas: stroke segment, dirty-box recolour,
  partial repaint), then ``processEvents()`` so the repaint really happens.
  Baseline: the same canvas recolouring the whole overlay and repainting the
  whole widget per segment. At fit-to-window and at 1:1, radius 10 and 50,
  filled and outline view. Target <= 8 ms.
- switching to a 12 MP image with its mask: ``set_image`` plus the first
  paint. Baseline: blending image and colour mask into one RGB array per
  switch and uploading it as a ``QPixmap`` (a blend-on-CPU canvas); and the
  QGraphicsView design the canvas did not take (image and overlay as two
  ``QGraphicsPixmapItem``: two 12 MP pixmap uploads per switch, and per edit
  either another upload or the same QImage painting the canvas does, with a
  scene in between). Target <= 300 ms.
- panning: one middle-drag mouse move (the canvas scrolls what is on screen
  and paints the strip that comes into view), against a whole-widget repaint.
- undo / redo of a long stroke (command + dirty-box redraw).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QMouseEvent, QPixmap  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fcn_studio.session import LabelSession  # noqa: E402
from fcn_studio.ui.canvas import overlay  # noqa: E402
from fcn_studio.ui.canvas.canvas import Canvas  # noqa: E402
from training.palette import voc_colormap  # noqa: E402

H, W = 3000, 4000
VIEW = (1600, 1000)


def blobby_label(seed: int) -> np.ndarray:
    """Background with 400 discs of 20 classes: like a corrected FCN prediction."""
    rng = np.random.default_rng(seed)
    label = np.zeros((H, W), np.uint8)
    for _ in range(400):
        cy, cx, r = int(rng.integers(0, H)), int(rng.integers(0, W)), int(rng.integers(5, 90))
        y0, y1, x0, x1 = max(0, cy - r), min(H, cy + r + 1), max(0, cx - r), min(W, cx + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        label[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, 21)
    return label


def photo(seed: int) -> np.ndarray:
    """A 12 MP RGB image with gradients and noise (no compression-friendly flat areas)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[..., 0] = (xx * 255 // W).astype(np.uint8)
    rgb[..., 1] = (yy * 255 // H).astype(np.uint8)
    rgb[..., 2] = rng.integers(0, 256, (H, W), dtype=np.uint8)
    return rgb


def send_move(canvas: Canvas, x: float, y: float, buttons: Qt.MouseButton) -> None:
    pos = canvas.image_to_widget(x, y)
    QApplication.sendEvent(canvas, QMouseEvent(
        QEvent.Type.MouseMove, pos, QPointF(canvas.mapToGlobal(pos)), Qt.MouseButton.NoButton,
        buttons, Qt.KeyboardModifier.NoModifier))


def send_button(canvas: Canvas, kind: QEvent.Type, x: float, y: float) -> None:
    pos = canvas.image_to_widget(x, y)
    buttons = Qt.MouseButton.LeftButton if kind == QEvent.Type.MouseButtonPress \
        else Qt.MouseButton.NoButton
    QApplication.sendEvent(canvas, QMouseEvent(
        kind, pos, QPointF(canvas.mapToGlobal(pos)), Qt.MouseButton.LeftButton, buttons,
        Qt.KeyboardModifier.NoModifier))


def visible_drag(canvas: Canvas, n: int, step: float, seed: int) -> list[tuple[float, float]]:
    """A wandering drag of ``n`` mouse events ``step`` image pixels apart, kept on screen."""
    tl = canvas.widget_to_image(QPointF(20, 20))
    br = canvas.widget_to_image(QPointF(canvas.width() - 20, canvas.height() - 20))
    lo_x, lo_y = max(0.0, tl.x()), max(0.0, tl.y())
    hi_x, hi_y = min(W - 1.0, br.x()), min(H - 1.0, br.y())
    rng = np.random.default_rng(seed)
    x, y, heading = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2, 0.3
    points = []
    for _ in range(n):
        heading += float(rng.normal(0, 0.3))
        nx, ny = x + step * np.cos(heading), y + step * np.sin(heading)
        if not (lo_x <= nx <= hi_x and lo_y <= ny <= hi_y):
            heading += np.pi  # bounce off the edge of the view
            nx, ny = x + step * np.cos(heading), y + step * np.sin(heading)
        x, y = min(max(nx, lo_x), hi_x), min(max(ny, lo_y), hi_y)
        points.append((x, y))
    return points


def time_segments(canvas: Canvas, points: list[tuple[float, float]]) -> list[float]:
    """Milliseconds per mouse move of one stroke, each including its repaint."""
    app = QApplication.instance()
    send_button(canvas, QEvent.Type.MouseButtonPress, *points[0])
    app.processEvents()
    times = []
    for x, y in points[1:]:
        t0 = time.perf_counter()
        send_move(canvas, x, y, Qt.MouseButton.LeftButton)
        app.processEvents()  # runs the pending partial repaint
        times.append((time.perf_counter() - t0) * 1e3)
    send_button(canvas, QEvent.Type.MouseButtonRelease, *points[-1])
    app.processEvents()
    return times


def naive(canvas: Canvas) -> Callable[[], None]:
    """Make the canvas recolour everything and repaint the whole widget per edit."""
    real = canvas.refresh_overlay

    def whole(bbox: object = None) -> None:
        real(None)
        canvas.update()

    canvas.refresh_overlay = whole  # type: ignore[method-assign]
    return lambda: setattr(canvas, "refresh_overlay", real)


def stats(times: list[float]) -> str:
    s = sorted(times)
    return (f"median {statistics.median(s):6.2f} ms  p95 {s[int(0.95 * (len(s) - 1))]:6.2f} ms  "
            f"max {s[-1]:6.2f} ms")


def bench_brush(canvas: Canvas, n: int, naive_n: int) -> None:
    print(f"\nBrush segment on {W} x {H}, widget {VIEW[0]} x {VIEW[1]} (target <= 8 ms)")
    run = 0
    for zoom_name in ("fit", "1:1"):
        canvas.fit() if zoom_name == "fit" else canvas.actual_size()
        for outline in (False, True):
            canvas.set_outline(outline)
            for radius in (10.0, 50.0):
                canvas.set_brush_radius(radius)
                step = max(2.0, radius / 2)
                # A new class per run, so every segment really changes pixels.
                run += 1
                canvas.set_class(1 + run % 20)
                ours = time_segments(canvas, visible_drag(canvas, n, step, seed=run))
                restore = naive(canvas)
                canvas.set_class(1 + (run + 10) % 20)
                base = time_segments(canvas, visible_drag(canvas, naive_n, step, seed=100 + run))
                restore()
                view = "outline" if outline else "filled "
                ratio = statistics.median(base) / statistics.median(ours)
                print(f"  {zoom_name:>3} {view} r={radius:4.0f}: {stats(ours)} | naive "
                      f"median {statistics.median(base):7.2f} ms | {ratio:5.1f}x faster")
    canvas.set_outline(False)


def naive_switch(rgb: np.ndarray, label: np.ndarray, colors: np.ndarray) -> QPixmap:
    """Blend image and colour mask on the CPU and upload one pixmap."""
    alpha = np.where(label[..., None] == 0, 0.0, 0.5).astype(np.float32)
    blend = (rgb * (1 - alpha) + colors[label] * alpha).astype(np.uint8)
    return QPixmap.fromImage(QImage(blend.data, W, H, 3 * W, QImage.Format.Format_RGB888))


def graphics_view_switch(view: QGraphicsView, items: list[QGraphicsPixmapItem],
                         rgb: np.ndarray, overlay_buf: np.ndarray) -> None:
    """The QGraphicsView alternative: two pixmap items, uploaded per switch."""
    h, w = overlay_buf.shape
    items[0].setPixmap(QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w,
                                                QImage.Format.Format_RGB888)))
    items[1].setPixmap(QPixmap.fromImage(QImage(overlay_buf.data, w, h, 4 * w,
                                                QImage.Format.Format_ARGB32_Premultiplied)))
    view.fitInView(items[0], Qt.AspectRatioMode.KeepAspectRatio)
    view.viewport().repaint()


def bench_switch(canvas: Canvas, images: list[tuple[np.ndarray, np.ndarray]], rounds: int) -> None:
    print(f"\nSwitch to a {W} x {H} image with its mask: set_image + set_uncertainty (hidden) + "
          "first paint (target <= 300 ms)")
    canvas.fit()
    uncertainty = np.random.default_rng(0).random((H, W), dtype=np.float32)
    ours, base, gv = [], [], []
    for i in range(rounds):
        rgb, label = images[i % len(images)]
        t0 = time.perf_counter()
        canvas.set_image(rgb, opened(label))
        canvas.set_uncertainty(uncertainty)  # what the main window does on a switch
        canvas.repaint()
        ours.append((time.perf_counter() - t0) * 1e3)
    colors = np.array(voc_colormap())
    for i in range(max(2, rounds // 2)):
        rgb, label = images[i % len(images)]
        t0 = time.perf_counter()
        naive_switch(rgb, label, colors)
        base.append((time.perf_counter() - t0) * 1e3)
    scene = QGraphicsScene()
    items = [scene.addPixmap(QPixmap()), scene.addPixmap(QPixmap())]
    items[0].setTransformationMode(Qt.TransformationMode.SmoothTransformation)
    view = QGraphicsView(scene)
    view.resize(*VIEW)
    view.show()
    for i in range(max(2, rounds // 2)):
        rgb, label = images[i % len(images)]
        t0 = time.perf_counter()
        buf = np.take(overlay.label_lut(colors), label)  # the same colour lookup as ours
        graphics_view_switch(view, items, rgb, buf)
        gv.append((time.perf_counter() - t0) * 1e3)
    view.close()
    ours_med = statistics.median(ours)
    print(f"  canvas: {stats(ours)}")
    print(f"  naive blend+pixmap: median {statistics.median(base):7.1f} ms | "
          f"{statistics.median(base) / ours_med:5.1f}x slower than the canvas")
    print(f"  QGraphicsView, 2 pixmap items: median "
          f"{statistics.median(gv):7.1f} ms | {statistics.median(gv) / ours_med:5.1f}x slower")
    t0 = time.perf_counter()
    canvas.set_uncertainty_visible(True)
    canvas.repaint()
    print(f"  showing the uncertainty heat map the first time: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    canvas.set_uncertainty_visible(False)
    rgb, label = images[0]
    t0 = time.perf_counter()
    canvas.set_image(rgb, opened(label))
    canvas.set_outline(True)
    canvas.repaint()
    print(f"  switch in outline view: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    canvas.set_outline(False)


def bench_pan(canvas: Canvas, n: int) -> None:
    print("\nPan (middle-drag), per mouse move of 6 px incl. repaint")
    app = QApplication.instance()
    mid = Qt.MouseButton.MiddleButton
    for zoom_name in ("fit", "1:1"):
        canvas.fit() if zoom_name == "fit" else canvas.actual_size()
        app.processEvents()
        pos = QPointF(canvas.width() / 2, canvas.height() / 2)
        QApplication.sendEvent(canvas, QMouseEvent(
            QEvent.Type.MouseButtonPress, pos, QPointF(canvas.mapToGlobal(pos)), mid, mid,
            Qt.KeyboardModifier.NoModifier))
        ours = []
        for i in range(n):
            pos = pos + QPointF(6 if (i // 20) % 2 == 0 else -6, 0)
            t0 = time.perf_counter()
            QApplication.sendEvent(canvas, QMouseEvent(
                QEvent.Type.MouseMove, pos, QPointF(canvas.mapToGlobal(pos)),
                Qt.MouseButton.NoButton, mid, Qt.KeyboardModifier.NoModifier))
            app.processEvents()
            ours.append((time.perf_counter() - t0) * 1e3)
        QApplication.sendEvent(canvas, QMouseEvent(
            QEvent.Type.MouseButtonRelease, pos, QPointF(canvas.mapToGlobal(pos)), mid,
            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
        base = []
        for _ in range(max(5, n // 4)):  # naive: repaint the whole widget per move
            t0 = time.perf_counter()
            canvas.update()
            app.processEvents()
            base.append((time.perf_counter() - t0) * 1e3)
        ratio = statistics.median(base) / statistics.median(ours)
        print(f"  {zoom_name:>3}: {stats(ours)} | full repaint median "
              f"{statistics.median(base):6.2f} ms | {ratio:5.1f}x faster")


def opened(label: np.ndarray) -> LabelSession:
    """A labelling session holding ``label``, as the app opens one."""
    s = LabelSession("bench")
    s.open(label, has_saved_label=False)
    return s


def bench_undo(canvas: Canvas, images: list[tuple[np.ndarray, np.ndarray]]) -> None:
    print("\nUndo / redo of one long stroke (radius 20, 400 segments), incl. repaint")
    rgb, label = images[0]
    stack = opened(label)
    canvas.set_image(rgb, stack)
    canvas.set_brush_radius(20)
    time_segments(canvas, visible_drag(canvas, 400, 10.0, seed=3))
    app = QApplication.instance()
    for name, action in (("undo", stack.undo), ("redo", stack.redo)):
        t0 = time.perf_counter()
        action()
        app.processEvents()
        print(f"  {name}: {(time.perf_counter() - t0) * 1e3:.1f} ms "
              f"(delta {stack.history.nbytes / 1e3:.0f} kB)")


def guard_refcount_bug() -> None:
    """Survive PySide6 6.12.0 on CPython 3.11, whose void methods decref None.

    Every ``widget.update()``, ``painter.setPen()``... drops None's reference
    count by one, and Python aborts ("none_dealloc") after ~8000 such calls: a
    few seconds of painting. 6.11 does not do this; the project pin should
    exclude 6.12.0. Until then the benchmark raises None's count out of reach
    (what CPython >= 3.12 does by making None immortal), so it can finish.
    """
    import ctypes

    if sys.version_info >= (3, 12):
        return
    before = sys.getrefcount(None)
    probe = QImage(1, 1, QImage.Format.Format_RGB32)
    for _ in range(10):
        probe.fill(0)
    if sys.getrefcount(None) < before:
        print("warning: this PySide6 leaks references to None (6.12.0 on Python 3.11); "
              "pinning None/True/False so the benchmark can run")
        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    n = 60 if args.quick else args.segments
    app = QApplication.instance() or QApplication([])
    guard_refcount_bug()
    canvas = Canvas()
    canvas.resize(*VIEW)
    canvas.show()
    app.processEvents()
    print(f"platform {app.platformName()}, devicePixelRatio {canvas.devicePixelRatioF()}")
    images = [(photo(i), blobby_label(i)) for i in range(2)]
    bench_switch(canvas, images, rounds=4 if args.quick else 10)
    canvas.set_image(images[0][0], opened(images[0][1].copy()))
    bench_brush(canvas, n, naive_n=15 if args.quick else 30)
    bench_pan(canvas, n)
    bench_undo(canvas, images)


if __name__ == "__main__":
    main()
