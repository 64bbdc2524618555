"""Opening projects that cannot be opened as asked (issue 11): an empty folder and a
project whose lock cannot be written (a read-only folder or disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog

from fcn_studio.project import lockfile
from fcn_studio.ui.main_window import MainWindow
from tests.synthetic import write_voc
from training.errors import DataError


@pytest.fixture
def window(qtbot, messages, isolated_settings) -> MainWindow:
    w = MainWindow(isolated_settings, device="cpu")
    qtbot.addWidget(w)
    return w


@pytest.fixture
def questions(window: MainWindow, monkeypatch) -> list[tuple[str, list[str]]]:
    """Questions are recorded; the answer is the last entry of ``answers`` (default: none)."""
    asked: list[tuple[str, list[str]]] = []

    def ask(text: str, buttons: list[str], default: int = 0) -> int:
        asked.append((text, buttons))
        return window.answer
    window.answer = -1  # type: ignore[attr-defined]
    monkeypatch.setattr(window.ops, "_ask", ask)
    return asked


@pytest.fixture
def no_folder_dialog(monkeypatch) -> None:
    def fail(*_a, **_k):
        raise AssertionError("a folder was asked for")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(fail))


def test_an_empty_folder_is_not_offered_as_a_new_project(
        window: MainWindow, tmp_path: Path, messages, questions, no_folder_dialog) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert window.ops.open_project(empty) is False
    assert questions == []  # no "create a project from these images?"
    assert len(messages) == 1 and "holds no images" in messages[0] and str(empty) in messages[0]


def test_new_project_from_an_empty_folder_says_so_before_asking_anything(
        window: MainWindow, tmp_path: Path, messages, no_folder_dialog) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert window.ops._create_from_images(empty) is False
    assert len(messages) == 1 and "holds no images" in messages[0]


def test_a_folder_of_images_is_still_offered(window: MainWindow, tmp_path: Path,
                                             questions) -> None:
    write_voc(tmp_path / "voc", n=2, n_val=1)
    images = tmp_path / "voc" / "JPEGImages"
    assert window.ops.open_project(images) is False  # the question is answered "closed"
    assert len(questions) == 1 and "Create project…" in questions[0][1]


def _unwritable_lock(monkeypatch) -> None:
    def refuse(root, **_kwargs):
        raise DataError(lockfile.lock_path(root), "cannot create the lock (Read-only file system)")
    monkeypatch.setattr(lockfile, "acquire", refuse)


@pytest.mark.parametrize("answer, opened", [(0, True), (1, False)])
def test_a_read_only_project_says_why_and_opens_only_if_asked(
        window: MainWindow, tmp_path: Path, monkeypatch, questions, answer: int,
        opened: bool) -> None:
    write_voc(tmp_path / "proj", n=2, n_val=1)
    _unwritable_lock(monkeypatch)
    window.answer = answer  # type: ignore[attr-defined]
    assert window.ops.open_project(tmp_path / "proj") is opened
    (text, buttons), = questions
    assert "Read-only file system" in text and "Nothing can be saved there" in text
    assert buttons == ["Open anyway", "Cancel"]
    assert (window.controller.project is not None) is opened
    assert window.ops._lock is None
