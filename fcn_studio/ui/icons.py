"""Icons for FCN Studio's actions, from qtawesome's Material Design Icons (mdi6).

One table maps our action names to icon-font glyphs, so a toolbar, a menu and a
panel button for the same action always look the same, and changing an icon is
a one-line edit. Icons are made lazily and cached: qtawesome can only build an
icon once a ``QApplication`` exists, so nothing here runs at import time.
"""

from __future__ import annotations

from typing import Final

from PySide6.QtGui import QGuiApplication, QIcon

ICON_NAMES: Final[dict[str, str]] = {
    # Tools
    "brush": "mdi6.brush",
    "eraser": "mdi6.eraser",
    "void": "mdi6.select-off",
    "fill": "mdi6.format-color-fill",
    "polygon": "mdi6.vector-polygon",
    "eyedropper": "mdi6.eyedropper",
    # Edit and file
    "undo": "mdi6.undo",
    "redo": "mdi6.redo",
    "save": "mdi6.content-save",
    "open": "mdi6.folder-open",
    "new_project": "mdi6.folder-plus-outline",
    "import": "mdi6.import",
    "export": "mdi6.export",
    # View
    "zoom_in": "mdi6.magnify-plus-outline",
    "zoom_out": "mdi6.magnify-minus-outline",
    "fit": "mdi6.fit-to-screen-outline",
    "actual_size": "mdi6.numeric-1-box-outline",
    "outline": "mdi6.vector-square-edit",
    "overlay": "mdi6.layers",
    # Navigation
    "prev": "mdi6.chevron-left",
    "next": "mdi6.chevron-right",
    # Model
    "predict": "mdi6.auto-fix",
    "use_prediction": "mdi6.check-all",
    "uncertainty": "mdi6.blur",
    "next_uncertain": "mdi6.target-variant",
    "model": "mdi6.brain",
    "finetune": "mdi6.school-outline",
    "cancel": "mdi6.cancel",
    # Class list
    "add": "mdi6.plus",
    "remove": "mdi6.minus",
    "rename": "mdi6.rename-box",
    "color": "mdi6.palette",
    "up": "mdi6.arrow-up",
    "down": "mdi6.arrow-down",
    "visible": "mdi6.eye",
    "hidden": "mdi6.eye-off",
    "locked": "mdi6.lock",
    "unlocked": "mdi6.lock-open-variant",
    # Image list
    "image": "mdi6.image-outline",
    "image_error": "mdi6.image-broken-variant",
    "list_mode": "mdi6.view-list",
    "icon_mode": "mdi6.view-grid",
    # Misc
    "app": "mdi6.brush-variant",
    "settings": "mdi6.cog",
    "help": "mdi6.help-circle-outline",
}
"""Action name -> qtawesome glyph name."""

_cache: dict[str, QIcon] = {}


def icon(name: str) -> QIcon:
    """The cached icon for action ``name`` (a key of ``ICON_NAMES``).

    Raises ``KeyError`` for an unknown name (a typo should fail loudly in tests,
    not show a blank button) and ``RuntimeError`` before a QApplication exists.
    """
    cached = _cache.get(name)
    if cached is not None:
        return cached
    glyph = ICON_NAMES.get(name)
    if glyph is None:
        raise KeyError(f"unknown icon name {name!r}; known: {', '.join(sorted(ICON_NAMES))}")
    if QGuiApplication.instance() is None:
        raise RuntimeError("icons need a QApplication; create it before asking for icons")
    # Imported here, not at module level: importing qtawesome is slow-ish and
    # pointless for code paths (tests, benchmarks) that never show an icon.
    import qtawesome

    made = qtawesome.icon(glyph)
    _cache[name] = made
    return made
