"""Start-up: the window appears at once; torch loads on the inference thread."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QStandardPaths, QTimer
from PySide6.QtWidgets import QApplication

from ..resources import sample_project_source
from .settings import AppSettings


def sample_project_copy() -> Path | None:
    """A writable copy of the bundled sample project (made once per user)."""
    src = sample_project_source()
    if not src.is_dir():
        return None
    base = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))
    dest = base / "sample-project"
    if not dest.exists():
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / ".sample-project.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("SOURCE.md"))
        tmp.rename(dest)  # whole or nothing
    return dest


def choose_project(arg: str | None, settings: AppSettings) -> tuple[Path | None, bool]:
    """(project to open, is it the sample) from the argument, the last session, or the sample."""
    if arg:
        return Path(arg), False
    last = settings.last_project()
    if last:
        return Path(last), False
    return sample_project_copy(), True


def run(args: argparse.Namespace) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("FCN Studio")
    app.setOrganizationName("FCN Studio")
    from .icons import icon
    from .main_window import MainWindow

    app.setWindowIcon(icon("app"))
    settings = AppSettings()
    window = MainWindow(settings, device=args.device)
    window.show()
    project, is_sample = choose_project(args.project, settings)

    def open_later() -> None:
        if project is not None:
            window.ops.open_project(project)
        if is_sample and not settings.first_run_done():
            window.show_first_run_hint()
            settings.set_first_run_done()

    QTimer.singleShot(0, open_later)  # after the window is on screen
    return app.exec()
