"""Shared test set-up: headless Qt, deterministic torch, the optional CamVid data."""

from __future__ import annotations

import os
from pathlib import Path

# Qt must pick the offscreen platform before any QApplication exists.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Keep torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CAMVID = REPO.parent / "shared" / "data" / "camvid-mini"


@pytest.fixture
def camvid_dir() -> Path:
    """The real CamVid subset beside the repo; tests using it skip when it is absent."""
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"{CAMVID} not present")
    return CAMVID
