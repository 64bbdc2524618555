"""The layering rules of ARCHITECTURE.md ("Arrows"), checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import training",
        "import training.cli",
        "import training.model, training.predict, training.train, training.voc",
    ],
)
def test_training_never_loads_qt(statement: str) -> None:
    loaded = _loaded_modules_after(statement)
    qt = sorted(m for m in loaded if m.split(".")[0] in {"PySide6", "shiboken6", "qtawesome"})
    assert not qt, f"{statement!r} loaded Qt modules: {qt}"
    assert not any(m.split(".")[0] == "fcn_studio" for m in loaded)


def test_training_package_import_is_light() -> None:
    # The app imports `training` on the GUI thread; torch must load lazily.
    assert "torch" not in _loaded_modules_after("import training")


def test_app_window_module_loads_without_torch() -> None:
    # The window must appear before torch is imported (it loads on the inference thread).
    loaded = _loaded_modules_after("import fcn_studio.ui.main_window, fcn_studio.ui.app")
    assert "torch" not in loaded and "torchvision" not in loaded


def test_core_loads_neither_qt_nor_torch() -> None:
    loaded = _loaded_modules_after(
        "import fcn_studio.project.project, fcn_studio.labelmap.editing, fcn_studio.labelmap.history,"
        " fcn_studio.project.image_cache,"
        " fcn_studio.models.model_spec, fcn_studio.project.project_io, fcn_studio.project.sample_scenes")
    bad = sorted(m for m in loaded if m.split(".")[0] in {"PySide6", "torch", "qtawesome"})
    assert not bad, bad


def test_the_import_contracts_list_every_core_module() -> None:
    """pyproject's import-linter contract names the core's packages and top-level modules
    (the ui package must be left out); a new one must join the list to be checked."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if "core" in c["name"])
    listed = set(core["source_modules"])
    package = root / "fcn_studio"
    present = {f"fcn_studio.{p.stem}" for p in package.glob("*.py")
               if p.stem not in ("__init__", "__main__")}
    present |= {f"fcn_studio.{p.parent.name}" for p in package.glob("*/__init__.py")
                if p.parent.name != "ui"}
    assert listed == present, f"missing: {sorted(present - listed)}, stale: {sorted(listed - present)}"
    assert "torch" in core["forbidden_modules"] and "PySide6" in core["forbidden_modules"]
