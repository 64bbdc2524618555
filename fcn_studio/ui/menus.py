"""Menus and the tool bar, laid out from the action table."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMainWindow, QToolBar

MENUS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("&File", ("open", "new_project", "import_masks", "-", "save", "export", "-", "quit")),
    ("&Edit", ("undo", "redo", "-", "use_prediction", "clear_label")),
    ("&Tools", ("brush", "eraser", "void", "fill", "polygon", "eyedropper", "-",
                "brush_smaller", "brush_larger")),
    ("&View", ("zoom_in", "zoom_out", "fit", "actual_size", "-", "toggle_overlay", "outline",
               "uncertainty")),
    ("&Navigate", ("prev", "next", "next_uncertain")),
    ("&Model", ("predict", "-", "finetune", "finetune_dialog", "cancel_training", "-",
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
