"""Persistent settings (QSettings), versioned so a future layout can migrate old values."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QRect, QSettings

SCHEMA_VERSION = 1
MAX_RECENT = 10
# What is remembered per project and restored when it is opened again.
PROJECT_KEYS = ("image", "tool", "class", "brush")


class AppSettings:
    """Typed access to the few values the app keeps between runs."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self._s = settings or QSettings("FCN Studio", "FCN Studio")
        if int(self._s.value("schema", 0) or 0) != SCHEMA_VERSION:
            # Unknown or older layout: keep only what still means the same.
            recent = self.recent_projects()
            self._s.clear()
            self._s.setValue("schema", SCHEMA_VERSION)
            self._s.setValue("recent", recent)

    def sync(self) -> None:
        self._s.sync()

    # -- recent projects --------------------------------------------------------------
    def recent_projects(self) -> list[str]:
        value = self._s.value("recent", [])
        if isinstance(value, str):  # QSettings returns a bare string for one-item lists
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self.recent_projects() if p != path]
        self._s.setValue("recent", [path, *recent][:MAX_RECENT])

    def remove_recent(self, path: str | Path) -> None:
        gone = {str(path), str(Path(path).resolve())}
        self._s.setValue("recent", [p for p in self.recent_projects() if p not in gone])

    def clear_recent(self) -> None:
        self._s.setValue("recent", [])

    def last_project(self) -> str | None:
        recent = [p for p in self.recent_projects() if Path(p).is_dir()]
        return recent[0] if recent else None

    # -- window -------------------------------------------------------------------------
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        """(geometry saved without a screen, dock layout)."""
        return self._s.value("window/geometry"), self._s.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)

    def screen_geometry(self, screen_key: str) -> tuple[QRect, bool] | None:
        """(client rectangle, maximized) the window last had on the screen ``screen_key``."""
        value = self._s.value(f"window/screens/{_safe_key(screen_key)}")
        if isinstance(value, str):
            value = value.split(",")
        try:
            x, y, w, h, maximized = (int(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return None  # absent, or written by hand: the default placement is used
        if w <= 0 or h <= 0:
            return None
        return QRect(x, y, w, h), bool(maximized)

    def save_screen_geometry(self, screen_key: str, rect: QRect, maximized: bool) -> None:
        # One entry per screen: a laptop screen and an external monitor each keep
        # the size and place the person chose there. Plain numbers rather than
        # Qt's saveGeometry(), whose restore moves the window by the screen Qt
        # finds rather than the one we place it on.
        self._s.setValue(f"window/screens/{_safe_key(screen_key)}",
                         [str(v) for v in (rect.x(), rect.y(), rect.width(), rect.height(),
                                           int(maximized))])

    def dock_state(self) -> QByteArray | None:
        value = self._s.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_dock_state(self, state: QByteArray) -> None:
        self._s.setValue("window/state", state)

    def clear_dock_state(self) -> None:
        self._s.remove("window/state")

    # -- per project ----------------------------------------------------------------------
    def project_state(self, root: str | Path) -> dict[str, Any]:
        """What was last shown in the project at ``root``: image, tool, class, brush."""
        group = _project_group(root)
        out: dict[str, Any] = {}
        for key in PROJECT_KEYS:
            value = self._s.value(f"{group}/{key}")
            if value is not None:
                out[key] = value
        # Typed back: INI files return strings.
        for key, kind in (("class", int), ("brush", float)):
            if key in out:
                try:
                    out[key] = kind(out[key])
                except (TypeError, ValueError):
                    del out[key]
        return out

    def set_project_value(self, root: str | Path, key: str, value: Any) -> None:
        if key not in PROJECT_KEYS:
            raise KeyError(f"unknown per-project setting {key!r}; expected one of {PROJECT_KEYS}")
        group = _project_group(root)
        self._s.setValue(f"{group}/path", str(Path(root).resolve()))
        self._s.setValue(f"{group}/{key}", value)

    # -- notices ----------------------------------------------------------------------------
    def notice_dismissed(self, key: str) -> bool:
        return bool(self._s.value(f"notices/{_safe_key(key)}", False, type=bool))

    def set_notice_dismissed(self, key: str) -> None:
        self._s.setValue(f"notices/{_safe_key(key)}", True)

    # -- anything else ------------------------------------------------------------------------
    def value(self, key: str, default=None):
        return self._s.value(key, default)

    def set_value(self, key: str, value) -> None:
        self._s.setValue(key, value)

    def first_run_done(self) -> bool:
        return bool(self._s.value("first_run_done", False, type=bool))

    def set_first_run_done(self) -> None:
        self._s.setValue("first_run_done", True)


def _safe_key(text: str) -> str:
    """A settings key part: QSettings treats '/' and '\\' as group separators."""
    return "".join(c if c.isalnum() or c in "-_.x" else "_" for c in text)


def _project_group(root: str | Path) -> str:
    # A digest, not the path itself: paths hold separators and characters that
    # INI keys cannot; the path is stored inside the group for people reading it.
    digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return f"projects/{digest}"
