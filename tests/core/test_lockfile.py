"""The project lock: one live app per project, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_studio.project import lockfile
from fcn_studio.project.lockfile import ProjectLocked, acquire, lock_path, read_lock
from training.errors import DataError


def _write_lock(root: Path, pid: int, host: str | None = None) -> None:
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "time": "2024-01-01T00:00:00+00:00", "token": "theirs"}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acquire_writes_pid_host_time_and_release_removes_it(tmp_path: Path) -> None:
    lock = acquire(tmp_path)
    info = read_lock(tmp_path)
    assert info is not None and info.pid == os.getpid() and info.host == socket.gethostname()
    assert info.time and lock.held
    lock.release()
    lock.release()  # idempotent
    assert not lock_path(tmp_path).exists()


def test_context_manager_and_second_open_in_this_process(tmp_path: Path) -> None:
    with acquire(tmp_path):
        with pytest.raises(ProjectLocked):
            acquire(tmp_path)
    assert not lock_path(tmp_path).exists()
    acquire(tmp_path).release()  # free again


def test_lock_of_a_live_process_is_refused(tmp_path: Path) -> None:
    _write_lock(tmp_path, os.getppid())  # our parent: alive, not us
    with pytest.raises(ProjectLocked) as err:
        acquire(tmp_path)
    assert err.value.info.pid == os.getppid() and str(os.getppid()) in str(err.value)
    assert read_lock(tmp_path).token == "theirs"  # untouched


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    dead = _dead_pid()
    assert not lockfile.pid_alive(dead)
    _write_lock(tmp_path, dead)
    with acquire(tmp_path) as lock:
        assert read_lock(tmp_path) == lock.info and lock.info.pid == os.getpid()
    assert sorted(os.listdir(tmp_path / ".fcn_studio")) == []  # no stale copies left


def test_garbled_lock_is_taken_over(tmp_path: Path) -> None:
    lock_path(tmp_path).parent.mkdir(parents=True)
    lock_path(tmp_path).write_text("{half")
    acquire(tmp_path).release()


def test_lock_from_another_host_is_held_unless_forced(tmp_path: Path) -> None:
    _write_lock(tmp_path, 1, host="some-other-machine")
    with pytest.raises(ProjectLocked, match="some-other-machine"):
        acquire(tmp_path)
    with acquire(tmp_path, force=True) as lock:
        assert read_lock(tmp_path) == lock.info


def test_release_leaves_a_lock_someone_else_took(tmp_path: Path) -> None:
    lock = acquire(tmp_path)
    _write_lock(tmp_path, os.getppid())  # forcibly taken over by another app
    lock.release()
    assert read_lock(tmp_path).token == "theirs"


def test_read_only_folder_is_a_data_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes")
        with pytest.raises(DataError, match="lock"):
            acquire(tmp_path)
    finally:
        tmp_path.chmod(0o755)
