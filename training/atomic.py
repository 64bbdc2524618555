"""Atomic file writes: a temp file in the same folder, fsync, then os.replace.

A crash, a kill or a full disk leaves either the old file or the new one, never a
torn mix (ARCHITECTURE.md, "Writes are atomic").

Permissions: ``tempfile.mkstemp`` creates its file with mode 0600 whatever the
umask, and ``os.replace`` keeps that mode, so without care every label, list and
checkpoint would be unreadable to other users and tools. The temp file is given the
mode a plain ``open(path, "w")`` would leave: the old file's mode when it is
replaced, else 0666 less the process umask.

Temp files are named ``.<name>.<pid>-<host>-<random>.tmp`` (``<host>`` is a short
hash of the host name), so :func:`remove_stale_temps` can tell a temp file of a
killed writer from one still being written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"

STALE_AGE_S: float = 3600.0
"""A temp file untouched this long is stale whoever wrote it. A live writer touches
its file with every write (a checkpoint of hundreds of MB is written in seconds), so
only a writer stopped for an hour mid-save (Ctrl+Z) could lose its temp file, and
its save then fails cleanly at ``os.replace``, never tearing the target."""


def _umask_from_proc() -> int | None:
    """The umask as Linux (4.7 and newer) reports it in /proc/self/status, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_umask_once() -> int:
    # os.umask both sets and returns, and the umask is process-wide: flipping it
    # while another thread creates a file would give that file the wrong mode. So
    # it is flipped only where /proc cannot tell, and only once, at import.
    proc = _umask_from_proc()
    if proc is not None:
        return proc
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = _read_umask_once()


def current_umask() -> int:
    """The process umask, read without changing it.

    On Linux from ``/proc/self/status``, which is thread-safe and follows later
    ``os.umask`` calls. Elsewhere the value read once at import is used: the umask
    of a desktop app or a training run is set by its launcher and does not change
    while it runs.
    """
    proc = _umask_from_proc()
    return _UMASK_AT_IMPORT if proc is None else proc


def new_file_mode(path: str | Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would leave on ``path``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


_HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]

# mkstemp's random part is 8 characters of [a-z0-9_].
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-[a-z0-9_]{8}\.tmp")
# Before the pid was part of the name: ``.<name>.<random>.tmp``; only age can tell.
_LEGACY_TEMP_RE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def make_temp(path: str | Path, suffix: str = TEMP_SUFFIX) -> tuple[int, str]:
    """Create a temp file beside ``path`` for an atomic write: ``(fd, temp path)``.

    The file has the mode ``path`` will need (:func:`new_file_mode`) and a name
    :func:`remove_stale_temps` recognises. The parent folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-{_HOST_TAG}-",
                               suffix=suffix, dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp's mode means nothing
            os.fchmod(fd, new_file_mode(path))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path``.

    On any exception the temp file is removed and ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(path)
    try:
        # Text: UTF-8 with "\n" line ends on every platform; binary: neither applies.
        text = mode == "w"
        with os.fdopen(fd, mode, encoding="utf-8" if text else None,
                       newline="\n" if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Run ``writer(file_object)`` into a temp file and move it into place.

    For libraries that write to a file object (PIL ``Image.save``, ``torch.save``).
    """
    with atomic_open(path, "wb") as f:
        writer(f)


# -- temp files of killed writers -------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    return True


def _pid_alive_windows(pid: int) -> bool:
    # os.kill(pid, 0) would *terminate* the process on Windows; ask the kernel instead.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    process_query_limited_information, still_active = 0x1000, 259
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def is_stale_temp(name: str, age_s: float, max_age_s: float = STALE_AGE_S) -> bool:
    """Whether a file called ``name``, last written ``age_s`` seconds ago, is a temp
    file of an atomic write that can never finish.

    The rule, from safest evidence to weakest:

    - the name must be one this module makes (``.<name>.<pid>-<host>-<random>.tmp``,
      or the older ``.<name>.<random>.tmp``); nothing else is ever touched;
    - written on this host by a process that no longer exists: stale at once (a
      live writer's process is alive; a reused pid only delays the removal);
    - otherwise (another host on a network share, a live pid, the older name):
      stale once untouched for ``max_age_s``.
    """
    match = _TEMP_RE.fullmatch(name)
    if match is not None:
        if match["host"] == _HOST_TAG and int(match["pid"]) != os.getpid():
            if not pid_alive(int(match["pid"])):
                return True
    elif _LEGACY_TEMP_RE.fullmatch(name) is None:
        return False
    return age_s >= max_age_s


def remove_stale_temps(folder: str | Path, *, recursive: bool = False,
                       max_age_s: float = STALE_AGE_S) -> list[Path]:
    """Delete the temp files that killed atomic writes left in ``folder``.

    See :func:`is_stale_temp` for which files count as stale. Returns the removed
    paths. Never raises for a file system problem (a read-only or vanished
    folder): cleaning up is a courtesy, never a reason to fail an open or a resume.
    With ``recursive`` the sub-folders are cleaned too (symbolic links are not
    followed).
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    removed += remove_stale_temps(entry.path, recursive=True, max_age_s=max_age_s)
                continue
            if not entry.name.endswith(TEMP_SUFFIX) or not entry.is_file(follow_symlinks=False):
                continue
            if is_stale_temp(entry.name, now - entry.stat(follow_symlinks=False).st_mtime,
                             max_age_s):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone meanwhile, or not ours to delete
    return removed
