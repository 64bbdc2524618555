"""The project and its files under faults (issue 11): the lock race, wrong types in
state.json, stale temp files, odd image names and empty folders."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcn_studio import lockfile

REPO = Path(__file__).parents[2]

# A child that tries to take the lock each time it reads "go", reports the result,
# and gives the lock up when it reads "release".
_CONTENDER = """
import sys, time
from fcn_studio import lockfile
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
