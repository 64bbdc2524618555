"""How long the window can freeze while the model works, and what saving costs the GUI.

1. Longest event-loop stall while the inference worker predicts a 500x375 image
   with the full FCN-8s on the CPU (a 2 ms QTimer records the gaps between its
   ticks), beside the baseline of predicting on the GUI thread itself.
2. GUI-thread time of saving a 12-megapixel label (the copy handed to the
   background saver), beside writing the same palette PNG synchronously.

Run: QT_QPA_PLATFORM=offscreen python benchmarks/bench_ui_stall.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from fcn_studio.models.model_spec import ModelSpec  # noqa: E402
from fcn_studio.ui.labelling.inference import InferenceWorker  # noqa: E402
from fcn_studio.ui.labelling.saver import BackgroundSaver  # noqa: E402


class GapMeter:
    """Largest gap between 2 ms timer ticks: how long the event loop was blocked."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(2)
        self.timer.timeout.connect(self._tick)
        self.last = 0
        self.gaps: list[int] = []

    def start(self) -> None:
        self.clock.start()
        self.last = 0
        self.gaps = []
        self.timer.start()

    def _tick(self) -> None:
        now = self.clock.elapsed()
        self.gaps.append(now - self.last)
        self.last = now

    def stop(self) -> float:
        self.timer.stop()
        return float(max(self.gaps)) if self.gaps else 0.0


def wait_for(signal, timeout_ms: int = 600_000) -> list:
    loop = QEventLoop()
    got: list = []

    def done(*args) -> None:
        got.extend(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    return got


def main() -> None:
    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    image = (rng.integers(0, 255, (375 // 8, 500 // 8, 3), dtype=np.uint8))
    Image.fromarray(image).resize((500, 375)).save(tmp / "frame.jpg")
    names = [f"class{i}" for i in range(21)]

    worker = InferenceWorker("cpu")
    worker.start()
    worker.set_model(ModelSpec.untrained(names))  # full-size FCN-8s, random weights
    info = wait_for(worker.modelReady)
    print(f"model: {info[0].description} on {info[0].device}")
    meter = GapMeter()
    stalls, seconds = [], []
    for i in range(4):
        meter.start()
        worker.request(f"frame{i}", tmp / "frame.jpg")
        result = wait_for(worker.resultReady)[0]
        stalls.append(meter.stop())
        seconds.append(result.seconds)
    worker.shutdown()
    # Baseline: the same prediction on the GUI thread (what a naive app does).
    from training.images import read_image
    from training.model_init import fresh_model
    from training.predict import Predictor

    predictor = Predictor(fresh_model(names, "scratch"), "cpu")
    t0 = time.perf_counter()
    predictor.predict(read_image(tmp / "frame.jpg"), uncertainty="entropy")
    naive = 1000 * (time.perf_counter() - t0)
    worst = max(stalls[1:])  # the first includes one-time warm-up in the worker
    print(f"longest event-loop stall while predicting 500x375: {worst:.1f} ms "
          f"(median prediction {1000 * float(np.median(seconds)):.0f} ms); "
          f"predicting on the GUI thread blocks {naive:.0f} ms -> x{naive / max(worst, 1):.0f}")

    # 2. Saving a 12 MP label.
    from training.voc import write_label

    label = rng.integers(0, 6, (3000, 4000), dtype=np.uint8)
    label[:1500] = 1  # a realistic mix of large regions and detail
    t0 = time.perf_counter()
    write_label(tmp / "sync.png", label)
    sync_ms = 1000 * (time.perf_counter() - t0)
    saver = BackgroundSaver()
    t0 = time.perf_counter()
    copy = label.copy()
    saver.submit("x", lambda: write_label(tmp / "bg.png", copy))
    gui_ms = 1000 * (time.perf_counter() - t0)
    saver.wait()
    print(f"saving a 12 MP label: {gui_ms:.1f} ms on the GUI thread (write continues in the "
          f"background); a synchronous save blocks {sync_ms:.0f} ms -> x{sync_ms / gui_ms:.0f}")
    app.quit()


if __name__ == "__main__":
    main()
