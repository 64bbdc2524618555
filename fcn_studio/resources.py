"""Where the bundled resources live: the repo's resources/ in a source install,
the bundle's copy in a PyInstaller build."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def sample_project_source() -> Path:
    return resources_dir() / "sample_project"
