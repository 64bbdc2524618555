"""The project and its files under faults (issue 11): the lock race, wrong types in
state.json, stale temp files, odd image names and empty folders."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcn_studio.project import lockfile

REPO = Path(__file__).parents[2]

# A child that tries to take the lock each time it reads "go", reports the result,
# and gives the lock up when it reads "release".
_CONTENDER = """
import sys, time
from fcn_studio.project import lockfile
root = sys.argv[1]
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("go"):
        start = float(line.split()[1])
        while time.time() < start:  # all contenders leave this spin together
            pass
        try:
            lock = lockfile.acquire(root)
            print("won", flush=True)
        except lockfile.ProjectLocked:
            lock = None
            print("locked", flush=True)
    elif line.strip() == "release":
        if lock is not None:
            lock.release()
        print("released", flush=True)
"""


def test_two_apps_opening_at_the_same_moment_never_both_hold_the_lock(tmp_path: Path) -> None:
    contenders = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(tmp_path)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   cwd=REPO) for _ in range(2)]
    try:
        for p in contenders:
            assert p.stdout.readline().strip() == "ready"
        for trial in range(30):
            start = time.time() + 0.05
            for p in contenders:  # all race for a free lock at the same instant
                p.stdin.write(f"go {start}\n")
                p.stdin.flush()
            results = [p.stdout.readline().strip() for p in contenders]
            assert sorted(results) == ["locked", "won"], f"trial {trial}: {results}"
            for p in contenders:
                p.stdin.write("release\n")
                p.stdin.flush()
            assert [p.stdout.readline().strip() for p in contenders] == ["released"] * 2
            assert lockfile.read_lock(tmp_path) is None
    finally:
        for p in contenders:
            p.stdin.close()
            p.wait(30)


def test_the_lock_file_is_never_visible_half_written(tmp_path: Path, monkeypatch) -> None:
    """Between creating the lock and writing it, another app must not see an empty file."""
    seen: list[str | None] = []
    real_dump = lockfile.json.dump

    def spying_dump(obj, f, *args, **kwargs):
        path = lockfile.lock_path(tmp_path)
        seen.append(path.read_text() if path.exists() else None)
        return real_dump(obj, f, *args, **kwargs)

    monkeypatch.setattr(lockfile.json, "dump", spying_dump)
    lockfile.acquire(tmp_path).release()
    assert seen == [None]  # the lock did not exist yet while its content was written


def test_a_lock_being_written_is_waited_for_not_taken_over(tmp_path: Path, monkeypatch) -> None:
    """Where there are no hard links a lock is created empty, then written: a second app
    that finds it empty and fresh waits for the content instead of taking it over."""
    path = lockfile.lock_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("")  # the other app is between creating and writing its lock
    theirs = {"pid": os.getppid(), "host": socket.gethostname(), "time": "now", "token": "theirs"}

    def other_app_finishes_writing(_seconds: float) -> None:
        path.write_text(json.dumps(theirs))

    monkeypatch.setattr(lockfile, "_pause", other_app_finishes_writing)
    with pytest.raises(lockfile.ProjectLocked) as err:
        lockfile.acquire(tmp_path)
    assert err.value.info.token == "theirs" and lockfile.read_lock(tmp_path).token == "theirs"


def test_without_hard_links_the_lock_still_works(tmp_path: Path, monkeypatch) -> None:
    def no_links(_src, _dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(lockfile.os, "link", no_links)
    with lockfile.acquire(tmp_path) as lock:
        assert lockfile.read_lock(tmp_path) == lock.info
        with pytest.raises(lockfile.ProjectLocked):
            lockfile.acquire(tmp_path)
    assert sorted(os.listdir(tmp_path / ".fcn_studio")) == []


# -- item 10: the project's own writers honour the umask --------------------------------

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_labels_state_lists_and_remapped_labels_are_readable_by_others(tmp_path: Path,
                                                                      umask_022) -> None:
    import numpy as np

    from fcn_studio.project.project import Project
    from tests.synthetic import write_voc

    ids = write_voc(tmp_path, n=3, n_val=1)
    for label in (tmp_path / "SegmentationClass").iterdir():
        label.unlink()  # no labels yet: the app makes them
    project = Project.open(tmp_path)
    w, h = project.image_size(ids[0])
    label = np.zeros((h, w), np.uint8)
    label[:4, :4] = 1
    project.save_label(ids[0], label)
    written = [project.label_path(ids[0]), project.app_dir / "state.json",
               tmp_path / "ImageSets" / "Segmentation" / "train.txt"]
    assert {p: _mode(p) for p in written} == {p: 0o644 for p in written}
    # Deleting class 1 rewrites the labels that use it (classes.py's own temp files).
    project.apply_class_change(project.classes.delete(1, project.label_usage(), replace_with=0))
    assert _mode(project.label_path(ids[0])) == 0o644


@posix_only
def test_a_published_model_version_is_readable_by_others(tmp_path: Path, umask_022) -> None:
    from fcn_studio.models.versions import VersionStore
    from tests.core.test_versions import NAMES, epoch, fake_run

    store = VersionStore(tmp_path / "project" / ".fcn_studio" / "models")
    version = store.publish(fake_run(tmp_path / "run", [epoch(0, 0.2), epoch(1, 0.5)]),
                            "imagenet", "finished", NAMES)
    assert _mode(version.dir) == 0o755
    assert _mode(version.dir / "meta.json") == 0o644


# -- item 12: opening a project removes the temp files of killed saves ----------------


def _killed_save(target: Path) -> Path:
    """Start an atomic save of ``target`` in a child and kill it mid-write."""
    target.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from training.atomic import atomic_open\n"
         "with atomic_open(sys.argv[1]) as f:\n"
         "    f.write(b'half a label'); f.flush(); print('writing', flush=True); sys.stdin.read()\n",
         str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert child.stdout.readline().strip() == "writing"
    child.kill()  # SIGKILL: no clean-up code runs
    child.wait(30)
    child.stdin.close()
    child.stdout.close()
    (temp,) = target.parent.glob(f".{target.name}.*.tmp")
    return temp


def test_opening_a_project_removes_temp_files_of_killed_saves(tmp_path: Path) -> None:
    from fcn_studio.project.project import Project
    from tests.synthetic import write_voc

    ids = write_voc(tmp_path, n=2, n_val=1)
    killed = [_killed_save(tmp_path / "SegmentationClass" / f"{ids[0]}.png"),
              _killed_save(tmp_path / "ImageSets" / "Segmentation" / "train.txt"),
              _killed_save(tmp_path / ".fcn_studio" / "state.json"),
              _killed_save(tmp_path / ".fcn_studio" / "runs" / "r1" / "best.pt")]
    users_file = tmp_path / "SegmentationClass" / "notes.tmp"
    users_file.write_text("not ours")
    project = Project.open(tmp_path)
    assert [p for p in killed if p.exists()] == []
    assert users_file.exists() and project.load_label(ids[0]) is not None


# -- item 14: an image named ' a.jpg' is refused when added, with the reason ---------


def test_adding_an_image_with_a_leading_space_says_why_it_is_skipped(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from fcn_studio.project.project import Project
    from fcn_studio.project.project_io import add_images
    from tests.synthetic import write_voc

    write_voc(tmp_path / "p", n=2, n_val=1)
    odd = tmp_path / " a.jpg"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(odd)
    project, added, skipped = add_images(Project.open(tmp_path / "p"), [odd])
    assert added == [] and skipped == [(odd, "leading or trailing spaces in the name")]
    assert not (tmp_path / "p" / "JPEGImages" / " a.jpg").exists()


# -- item 19: wrong value types in state.json are caught on read ---------------------


@pytest.mark.parametrize("record, field", [
    ({"mean_uncertainty": "high"}, "mean_uncertainty"),
    ({"correction_effort": [0.5]}, "correction_effort"),
    ({"correction_effort": True}, "correction_effort"),
    ({"correction_effort": 7.0}, "correction_effort"),
    ({"model_version": 3}, "model_version"),
    ({"saved_at": {"when": "today"}}, "saved_at"),
])
def test_state_with_a_wrong_value_type_is_set_aside_with_a_warning(
        tmp_path: Path, record: dict, field: str) -> None:
    from fcn_studio.project.project import Project
    from tests.synthetic import write_voc

    ids = write_voc(tmp_path, n=2, n_val=1)
    state = tmp_path / ".fcn_studio" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"schema": 1, "images": {ids[0]: record}, "history": []}))
    project = Project.open(tmp_path)
    assert any(field in w and "state.json" in w and ids[0] in w for w in project.warnings), \
        project.warnings
    assert (tmp_path / ".fcn_studio" / "state.json.bad").exists()
    entry = project.entry(ids[0])
    assert entry.mean_uncertainty is None and entry.correction_effort is None


@pytest.mark.parametrize("history", ['"abc"', '["t", "a", 0.5]', '[["t", "a"]]',
                                     '[["t", "a", "much"]]', '[[1, "a", 0.5]]'])
def test_state_with_a_malformed_history_is_set_aside(tmp_path: Path, history: str) -> None:
    from fcn_studio.project.project import Project
    from tests.synthetic import write_voc

    write_voc(tmp_path, n=2, n_val=1)
    state = tmp_path / ".fcn_studio" / "state.json"
    state.parent.mkdir()
    state.write_text(f'{{"schema": 1, "images": {{}}, "history": {history}}}')
    project = Project.open(tmp_path)
    assert any("history" in w for w in project.warnings), project.warnings
    assert project.history == []


def test_a_well_typed_state_still_loads(tmp_path: Path) -> None:
    from fcn_studio.project.project import Project
    from tests.synthetic import write_voc

    ids = write_voc(tmp_path, n=2, n_val=1)
    state = tmp_path / ".fcn_studio" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"schema": 1, "images": {ids[0]: {
        "correction_effort": 0.25, "saved_at": "2024-01-01T00:00:00+00:00", "model_version": "v001",
        "mean_uncertainty": 1}}, "history": [["2024-01-01T00:00:00+00:00", ids[0], 0.25]]}))
    project = Project.open(tmp_path)
    assert project.warnings == [] and project.entry(ids[0]).correction_effort == 0.25
    assert [h.effort for h in project.history] == [0.25]
