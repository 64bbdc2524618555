"""Make the README screenshots from the built-in sample project.

    .venv/bin/python scripts/screenshots.py [--out docs] [--train-seconds 60]

Runs the real window headless (Qt's offscreen platform unless a display is set),
on a fresh copy of the sample project in a temporary folder with its own settings,
so nothing of the person's own setup (recent projects, layout, paths) shows:

* ``screenshot.png``: the window as a first start lays it out (canvas first);
* ``screenshot-finetune.png``: a real one-click fine-tune in progress (Training panel);
* ``screenshot-models.png``: the Models panel once the run has made a version.

The training log names the run folder; the temporary folder's path in it is
written as ``~`` so no local path appears in a picture. Takes about as long as
``--train-seconds`` plus a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE = (1400, 900)


def _wait(app, done: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise SystemExit(f"screenshots: timed out after {timeout:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float = 0.5) -> None:
    """Let layouts, deferred dock sizes and repaints happen before a grab."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def _scrub_log(window, tmp: Path) -> None:
    view = window.training_panel.log_view
    text = view.toPlainText()
    for form in {str(tmp), str(tmp.resolve())}:
        text = text.replace(form, "~")
    view.setPlainText(text)
    view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())


def _no_boxes() -> None:
    """A message box would wait, unseen, for a click that never comes: print it instead
    (questions get their default answer)."""
    from PySide6.QtWidgets import QMessageBox

    def say(_parent, title, text, *_a, **_k):
        print(f"screenshots: [{title}] {text}", file=sys.stderr)
        return QMessageBox.StandardButton.Ok

    for name in ("information", "warning", "critical"):
        setattr(QMessageBox, name, staticmethod(say))
    QMessageBox.question = staticmethod(  # type: ignore[method-assign]
        lambda *_a, **_k: QMessageBox.StandardButton.Yes)
    QMessageBox.exec = lambda self: (say(None, self.windowTitle(), self.text()), 0)[1]  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--train-seconds", type=float, default=60.0,
                        help="time budget of the fine-tune shown (default 60)")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))

    from PySide6.QtCore import QRect, QSettings
    from PySide6.QtWidgets import QApplication

    from fcn_studio.models.finetune_plan import FinetuneOptions
    from fcn_studio.resources import sample_project_source
    from fcn_studio.ui.main_window import MainWindow
    from fcn_studio.ui.settings import AppSettings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("FCN Studio")
    _no_boxes()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fcn-screens-") as name:
        tmp = Path(name)
        root = tmp / "sample-project"
        shutil.copytree(sample_project_source(), root,
                        ignore=shutil.ignore_patterns("SOURCE.md"))
        settings = AppSettings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
        w = MainWindow(settings, device="auto")
        w.place_on_screen(QRect(0, 0, SIZE[0] + 100, SIZE[1] + 100), key="screenshots")
        w.show()
        models = []
        w.controller.modelChanged.connect(models.append)
        assert w.ops.open_project(root)
        _wait(app, lambda: bool(models), 300, "the model")
        w.ops.show_image("street_01")  # a labelled street scene
        _settle(app, 1.0)
        w.grab().save(str(args.out / "screenshot.png"))
        canvas = w.canvas.size()
        print(f"screenshot.png: window {w.width()}x{w.height()}, canvas "
              f"{canvas.width()}x{canvas.height()} "
              f"({100 * canvas.width() * canvas.height() / (w.width() * w.height()):.0f} %)")

        progress: list[dict] = []
        finished: list[dict] = []
        w.finetune.job.progress.connect(progress.append)
        w.finetune.job.finished.connect(finished.append)
        if not w.finetune.start(FinetuneOptions(time_limit_s=args.train_seconds)):
            raise SystemExit("screenshots: the fine-tune did not start")
        # The first progress event: the run is under way, its charts and ETA showing. On the
        # sample project's few images a run can end soon after, so nothing waits for more.
        _wait(app, lambda: bool(progress) or bool(finished), args.train_seconds + 300,
              "training progress")
        if finished:
            raise SystemExit(f"screenshots: the fine-tune ended before its first progress "
                             f"event ({finished[0].get('status')})")
        _settle(app, 0.3)
        _scrub_log(w, tmp)
        w.grab().save(str(args.out / "screenshot-finetune.png"))
        print("screenshot-finetune.png: fine-tune in progress")

        _wait(app, lambda: bool(finished), args.train_seconds + 600, "the end of the run")
        _wait(app, lambda: w.models_panel.table.rowCount() > 0, 120, "the new version")
        w.training_dock.hide()
        w.show_panel(w.models_dock)
        _settle(app, 1.5)
        w.grab().save(str(args.out / "screenshot-models.png"))
        print("screenshot-models.png: the Models panel after the run")
        settings.set_value("first_run_done", True)
        w.controller.shutdown()  # not close(): nothing must ask a question here
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
