"""Menus and the tool bar, laid out from the action table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar

from ..models.finetune_plan import AUTO_FINETUNE_CHOICES
from .settings import AppSettings

MENUS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("&File", ("open", "new_project", "import_masks", "-", "save", "export", "-", "quit")),
    ("&Edit", ("undo", "redo", "-", "use_prediction", "clear_label")),
    ("&Tools", ("brush", "eraser", "void", "fill", "polygon", "eyedropper", "-",
                "brush_smaller", "brush_larger")),
    ("&View", ("zoom_in", "zoom_out", "fit", "actual_size", "-", "toggle_overlay", "outline",
               "uncertainty")),
    ("&Navigate", ("prev", "next", "next_uncertain")),
    ("&Model", ("predict", "-", "instant_learning", "undo_learning", "-", "finetune",
                "finetune_dialog", "cancel_training", "-",
                "model_imagenet", "model_file", "-", "import_run", "export_job")),
    ("&Help", ("help_shortcuts",)),
)

TOOLBAR: tuple[str, ...] = (
    "open", "save", "-", "undo", "redo", "-", "brush", "eraser", "void", "fill", "polygon",
    "eyedropper", "-", "zoom_in", "zoom_out", "fit", "-", "prev", "next", "next_uncertain", "-",
    "predict", "use_prediction", "uncertainty", "-", "finetune",
)


def build_menus(window: QMainWindow, actions: dict[str, QAction]) -> dict[str, object]:
    menus = {}
    for title, names in MENUS:
        menu = window.menuBar().addMenu(title)
        for name in names:
            if name == "-":
                menu.addSeparator()
            else:
                menu.addAction(actions[name])
        menus[title.replace("&", "")] = menu
    tools = QActionGroup(window)  # exactly one tool at a time
    for name in ("brush", "eraser", "void", "fill", "polygon", "eyedropper"):
        tools.addAction(actions[name])
    return menus


def build_toolbar(window: QMainWindow, actions: dict[str, QAction]) -> QToolBar:
    bar = QToolBar("Tools", window)
    bar.setObjectName("MainToolBar")
    bar.setIconSize(QSize(22, 22))
    for name in TOOLBAR:
        if name == "-":
            bar.addSeparator()
        else:
            bar.addAction(actions[name])
    window.addToolBar(bar)
    return bar


def build_panels_menu(view: QMenu, docks: list[QDockWidget],
                      reset_layout: Callable[[], None]) -> QMenu:
    """View > Panels: a check item per panel (Qt keeps it in step with the panel) and
    Reset Layout, which puts every panel back where a first start has it."""
    view.addSeparator()
    menu = view.addMenu("&Panels")
    for dock in docks:
        menu.addAction(dock.toggleViewAction())
    menu.addSeparator()
    reset = menu.addAction("&Reset Layout")
    reset.setStatusTip("Put every panel back where it is on a first start")
    reset.triggered.connect(lambda _checked=False: reset_layout())
    return menu


def build_recent_menu(file_menu: QMenu, before: QAction, settings: AppSettings,
                      open_path: Callable[[str], None]) -> QMenu:
    """File > Open Recent, filled from the settings each time it opens (so a project
    opened a moment ago is there, and a folder that went away shows as such)."""
    menu = QMenu("Open &Recent", file_menu)
    file_menu.insertMenu(before, menu)
    file_menu.insertSeparator(before)

    def fill() -> None:
        menu.clear()
        recent = settings.recent_projects()
        for n, path in enumerate(recent, start=1):
            name = Path(path).name or path
            act = menu.addAction(f"&{n % 10} {name}" if n <= 10 else name)
            act.setToolTip(path)
            act.setStatusTip(path)
            act.setData(path)
            act.setEnabled(Path(path).is_dir())
            act.triggered.connect(lambda _checked=False, p=path: open_path(p))
        if not recent:
            empty = menu.addAction("No recent projects")
            empty.setEnabled(False)
        menu.addSeparator()
        clear = menu.addAction("&Clear List")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(lambda _checked=False: settings.clear_recent())

    menu.aboutToShow.connect(fill)
    fill()
    return menu


AUTO_FINETUNE_KEY = "auto_finetune_after"


def build_auto_finetune_menu(model_menu: QMenu, before: QAction, settings: AppSettings,
                             set_count: Callable[[int], None]) -> QMenu:
    """Model > Fine-tune in the Background: off, or a full fine-tune by itself after N new
    saved labels (instant learning keeps going meanwhile). Remembered across starts."""
    menu = QMenu("Fine-tune in the &Background", model_menu)
    menu.setToolTipsVisible(True)
    model_menu.insertMenu(before, menu)
    group = QActionGroup(menu)
    try:
        chosen = int(settings.value(AUTO_FINETUNE_KEY, 0) or 0)
    except (TypeError, ValueError):
        chosen = 0
    if chosen not in AUTO_FINETUNE_CHOICES:
        chosen = 0
    for count in AUTO_FINETUNE_CHOICES:
        act = menu.addAction("&Off" if count == 0 else f"After {count} New Labels")
        act.setCheckable(True)
        act.setChecked(count == chosen)
        act.setData(count)
        act.setToolTip("Only when you click Fine-tune" if count == 0 else
                       f"Start a fine-tune with the one-click defaults once {count} labels "
                       "were saved since the last run; a better model is used when it ends")
        group.addAction(act)

        def choose(_checked: bool = False, n: int = count) -> None:
            settings.set_value(AUTO_FINETUNE_KEY, n)
            set_count(n)

        act.triggered.connect(choose)
    set_count(chosen)
    return menu
