"""Persistent settings (QSettings), versioned so a future layout can migrate old values."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

SCHEMA_VERSION = 1
MAX_RECENT = 10


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

    def recent_projects(self) -> list[str]:
        value = self._s.value("recent", [])
        if isinstance(value, str):  # QSettings returns a bare string for one-item lists
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self.recent_projects() if p != path]
        self._s.setValue("recent", [path, *recent][:MAX_RECENT])

    def last_project(self) -> str | None:
        recent = [p for p in self.recent_projects() if Path(p).is_dir()]
        return recent[0] if recent else None

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self._s.value("window/geometry"), self._s.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self._s.setValue("window/geometry", geometry)
        self._s.setValue("window/state", state)

    def value(self, key: str, default=None):
        return self._s.value(key, default)

    def set_value(self, key: str, value) -> None:
        self._s.setValue(key, value)

    def first_run_done(self) -> bool:
        return bool(self._s.value("first_run_done", False, type=bool))

    def set_first_run_done(self) -> None:
        self._s.setValue("first_run_done", True)
