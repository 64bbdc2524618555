"""Why a run file could not be written, in words the person can act on."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .errors import CheckpointError


class CheckpointWriteError(CheckpointError):
    """A run file could not be written (full disk, read-only folder); the previous one is kept."""


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size_text(n: float) -> str:
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


def describe_write_failure(path: Path, exc: BaseException) -> str:
    """Why writing ``path`` failed, in words: full disk, permissions, or the error itself."""
    where = path.parent
    free = _free_bytes(where)
    free_text = f"{_size_text(free)} free on {where}" if free is not None else "free space unknown"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return f"the disk is full ({exc.strerror}; {free_text})"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"the folder is not writable ({exc.strerror})"
        return exc.strerror or str(exc)
    text = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    # PyTorch's zip writer reports a short write without an errno ("file write failed",
    # "unexpected pos ..."): judge by the room left against the size of a checkpoint.
    sizes = [p.stat().st_size for p in (where / "last.pt", where / "best.pt", path) if p.is_file()]
    needed = max(sizes, default=64 * 10**6)
    if free is not None and free < 1.1 * needed:
        return (f"the disk is full ({free_text}; a checkpoint needs about "
                f"{_size_text(needed)}; torch: {text})")
    return f"the write failed ({free_text}; torch: {text})"
