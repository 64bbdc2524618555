"""One app per project: a lock file ``<root>/.fcn_studio/lock``.

The file holds the owner's pid, host name, start time and a random token (JSON).
Another process on the same host that is still alive keeps the project locked;
a lock left behind by a process that died (a crash, a kill) is taken over. A lock
from another host (a project on a network share) cannot be checked for liveness
and counts as held; ``acquire(root, force=True)`` takes it anyway when the person
says the other app is gone.

Acquisition is atomic: the lock's content is written to a temp file first and then
hard-linked into place (``os.link`` fails when the name exists), so a lock file is
never seen empty or half-written by a second app opening the project at the same
moment; an unreadable lock would otherwise look stale and be taken over. Where the
file system has no hard links (FAT, some network shares) the file is created
exclusively and then written, and a reader gives an unreadable lock that was
written within :data:`UNREADABLE_GRACE_S` time to finish before calling it stale.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from training.atomic import make_temp, pid_alive
from training.errors import DataError, FCNError

from .project_state import APP_DIR, now_iso

LOCK_FILE = "lock"

UNREADABLE_GRACE_S: float = 1.0
"""How long an unreadable lock file counts as still being written (see above)."""

_POLL_S = 0.02

# link() errors that mean "no hard links on this file system", not "cannot write".
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENOSYS,
             errno.EMLINK}

__all__ = ["LOCK_FILE", "Lock", "LockInfo", "ProjectLocked", "acquire", "lock_path",
           "pid_alive", "read_lock"]


@dataclass(frozen=True)
class LockInfo:
    """Who holds a project: process id, host name, ISO time, and a per-lock token."""

    pid: int
    host: str
    time: str
    token: str = ""

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} since {self.time}"


class ProjectLocked(FCNError):
    """Another live FCN Studio holds the project."""

    def __init__(self, path: Path, info: LockInfo) -> None:
        self.path = path
        self.info = info
        super().__init__(f"{path.parent.parent}: open in another FCN Studio "
                         f"({info.describe()})")


def lock_path(root: str | Path) -> Path:
    return Path(root) / APP_DIR / LOCK_FILE


def read_lock(root: str | Path) -> LockInfo | None:
    """The current lock, or None when there is none or it is unreadable."""
    return _read(lock_path(root))


class Lock:
    """A held project lock; ``release()`` or leave the ``with`` block to give it up."""

    def __init__(self, path: Path, info: LockInfo) -> None:
        self.path = path
        self.info = info
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if not self._held:
            return
        self._held = False
        _HELD.discard(str(self.path.resolve()))
        # Only our own token: if someone forcibly took the lock, it is theirs now.
        if _read(self.path) == self.info:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


_HELD: set[str] = set()
"""Lock files held by this process, so a second open in the same app is refused even
though the pid in the file is alive (it is ours)."""


def acquire(root: str | Path, *, force: bool = False) -> Lock:
    """Lock the project at ``root``.

    Raises ProjectLocked when another live process holds it (``force`` takes it
    anyway), and DataError when the lock cannot be written (read-only folder).
    """
    path = lock_path(root)
    info = LockInfo(os.getpid(), socket.gethostname(), now_iso(), secrets.token_hex(8))
    key = str(path.resolve())
    attempts, polls = 0, 0
    while attempts < 3:
        if _create(path, info):
            _HELD.add(key)
            return Lock(path, info)
        current = _read(path)
        if current is None and polls < 2 * UNREADABLE_GRACE_S / _POLL_S and _being_written(path):
            polls += 1
            _pause(_POLL_S)  # its writer is between create and write; ask again
            continue
        attempts += 1
        if current is not None and not force and (key in _HELD or _is_live(current)):
            raise ProjectLocked(path, current)
        # Stale (or forced): move it aside under a unique name, then create afresh.
        # The rename is atomic, so of two processes taking over only one wins; the
        # loser finds the winner's fresh lock on its next attempt.
        aside = path.with_name(f"{LOCK_FILE}.stale.{info.token}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(path, f"cannot take over the lock ({exc.strerror or exc})") from exc
        taken = _read(aside)
        with contextlib.suppress(OSError):
            aside.unlink()
        if taken != current and taken is not None and _is_live(taken) and not force:
            # We moved a lock that was created between our read and our rename.
            _create(path, taken)
            raise ProjectLocked(path, taken)
    raise DataError(path, "cannot acquire the lock: it keeps changing")


def _create(path: Path, info: LockInfo) -> bool:
    """Make ``path`` hold ``info``, complete from its first moment; False when one exists."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = make_temp(path)
    except OSError as exc:
        raise DataError(path, f"cannot create the lock ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(info), f)
        os.link(tmp, path)  # atomic, and refuses an existing name like O_EXCL
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LINKS:
            return _create_exclusive(path, info)
        raise DataError(path, f"cannot create the lock ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _create_exclusive(path: Path, info: LockInfo) -> bool:
    """Without hard links: create exclusively, then write (readers allow for the gap)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise DataError(path, f"cannot create the lock ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(info), f)
    return True


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _being_written(path: Path) -> bool:
    """Whether ``path`` was written so recently that its writer may not be done."""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False  # gone: the next create will tell
    return abs(age) < UNREADABLE_GRACE_S


def _read(path: Path) -> LockInfo | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockInfo(int(data["pid"]), str(data["host"]), str(data["time"]),
                        str(data.get("token", "")))
    except (OSError, ValueError, TypeError, KeyError):
        # A half-written or garbled lock belongs to no one who can be asked.
        return None


def _is_live(info: LockInfo) -> bool:
    """True unless the lock's owner is known to be dead (same host, pid gone)."""
    if info.host != socket.gethostname():
        return True
    if info.pid == os.getpid():
        return False  # our pid but not in _HELD: a dead process whose pid we reuse
    return pid_alive(info.pid)
