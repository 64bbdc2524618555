"""Downloading a weights file with progress, cancel and checksum, atomically.

torchvision names its weight files ``<name>-<first 8+ hex digits of sha256>.pth``;
the digest is checked before the file is moved into the torch hub cache, so a
cut-off or corrupted download never lands there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import WeightsUnavailableError

CHUNK = 1 << 20
HASH_RE = re.compile(r"-([a-f0-9]{8,})\.")


class DownloadCancelled(Exception):
    """The person cancelled; nothing was written to the destination."""


def expected_hash_prefix(filename: str) -> str | None:
    m = HASH_RE.search(filename)
    return m.group(1) if m else None


def download_file(
    url: str,
    dest: Path,
    progress: Callable[[int, int | None], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` into ``dest`` (atomic; sha256 checked against the name's hash)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = expected_hash_prefix(dest.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https URL
        except OSError as exc:
            raise WeightsUnavailableError(
                f"cannot download {url} ({exc}). Put the file {dest.name} into {dest.parent} "
                "by hand (copy it from a machine that is online)."
            ) from None
        with response, os.fdopen(fd, "wb") as f:
            total = response.length
            done = 0
            while True:
                if cancelled is not None and cancelled():
                    raise DownloadCancelled()
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if prefix and not digest.hexdigest().startswith(prefix):
            raise WeightsUnavailableError(
                f"downloaded {dest.name} is corrupt (sha256 {digest.hexdigest()[:12]}…, "
                f"expected {prefix}…); nothing was saved, try again")
        os.replace(tmp, dest)
        return dest
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
