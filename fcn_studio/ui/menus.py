"""Menus and the tool bar, laid out from the action table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QToolBar

from ..models.finetune_plan import AUTO_FINETUNE_CHOICES
from ..models.model_spec import BACKBONE_LABELS, BACKBONE_NOTES
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
BACKBONE_KEY = "new_model_backbone"


def _choice_menu(model_menu: QMenu, before: QAction, title: str, settings: AppSettings,
                 key: str, choices: list[tuple[Any, str, str]], chosen: Any,
                 apply: Callable[[Any], None]) -> QMenu:
    """A submenu of exclusive choices ``(value, text, tooltip)``; picking one stores it
    under ``key`` and applies it. ``chosen`` is applied at once (what was remembered)."""
    menu = QMenu(title, model_menu)
    menu.setToolTipsVisible(True)
    model_menu.insertMenu(before, menu)
    group = QActionGroup(menu)
    for value, text, tip in choices:
        act = menu.addAction(text)
        act.setCheckable(True)
        act.setChecked(value == chosen)
        act.setData(value)
        act.setToolTip(tip)
        group.addAction(act)

        def choose(_checked: bool = False, v: Any = value) -> None:
            settings.set_value(key, v)
            apply(v)

        act.triggered.connect(choose)
    apply(chosen)
    return menu


def build_auto_finetune_menu(model_menu: QMenu, before: QAction, settings: AppSettings,
                             set_count: Callable[[int], None]) -> QMenu:
    """Model > Fine-tune in the Background: off, or a full fine-tune by itself after N new
    saved labels (instant learning keeps going meanwhile). Remembered across starts."""
    try:
        chosen = int(settings.value(AUTO_FINETUNE_KEY, 0) or 0)
    except (TypeError, ValueError):
        chosen = 0
    choices = [(n, "&Off" if n == 0 else f"After {n} New Labels",
                "Only when you click Fine-tune" if n == 0 else
                f"Start a fine-tune with the one-click defaults once {n} labels were saved "
                "since the last run; a better model is used when it ends")
               for n in AUTO_FINETUNE_CHOICES]
    return _choice_menu(model_menu, before, "Fine-tune in the &Background", settings,
                        AUTO_FINETUNE_KEY, choices,
                        chosen if chosen in AUTO_FINETUNE_CHOICES else 0, set_count)


def build_backbone_menu(model_menu: QMenu, before: QAction, settings: AppSettings,
                        recommended: str, set_backbone: Callable[[str], None]) -> QMenu:
    """Model > Backbone for New Models: the network a project without a trained version
    starts from (and an ImageNet fine-tune builds). The device's recommendation is the
    default until the person picks one; the choice is remembered."""
    chosen = str(settings.value(BACKBONE_KEY, "") or "")
    choices = [(name, f"{label} (recommended here)" if name == recommended else label,
                BACKBONE_NOTES[name]) for name, label in BACKBONE_LABELS.items()]
    return _choice_menu(model_menu, before, "&Backbone for New Models", settings, BACKBONE_KEY,
                        choices, chosen if chosen in BACKBONE_LABELS else recommended,
                        set_backbone)
