"""Progress reporting for the commands: a terminal bar, or one JSON object per line.

With ``--json`` stdout carries only JSON objects, one per line, each with an
``event`` key; this is what the desktop app reads from its training child.
Human-readable text then goes to stderr so it can never corrupt the stream.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null: JSON has no NaN, and readers choke on it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class Reporter:
    """Emits events as JSON lines (``json_mode``) or as a progress bar and log lines."""

    def __init__(
        self,
        json_mode: bool = False,
        *,
        enabled: bool = True,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.enabled = enabled  # False on non-zero ranks of a distributed run
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._bar_open = False
        self._last_draw = 0.0

    # -- JSON ---------------------------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        """One structured event. In JSON mode a line on stdout; otherwise ignored
        unless a human-facing method below formats it."""
        if not self.enabled or not self.json_mode:
            return
        record = {"event": name, "time": round(time.time(), 3), **_json_safe(fields)}
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    # -- human ----------------------------------------------------------------
    def log(self, message: str) -> None:
        """A line for a person: stderr in JSON mode, stdout otherwise."""
        if not self.enabled:
            return
        self._end_bar()
        stream = self.err if self.json_mode else self.out
        stream.write(message + "\n")
        stream.flush()

    def bar(self, done: int, total: int | None, desc: str = "", suffix: str = "",
            eta: float | None = None) -> None:
        """Redraw a one-line progress bar on stderr (at most 10 times a second)."""
        if not self.enabled or self.json_mode:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 28
        if total:
            filled = int(width * min(done, total) / total)
            bar = "#" * filled + "-" * (width - filled)
            count = f"{done}/{total}"
        else:
            bar, count = "?" * 0, str(done)
        eta_text = f" eta {format_duration(eta)}" if eta is not None else ""
        line = f"\r{desc} [{bar}] {count} {suffix}{eta_text}"
        self.err.write(line[:160].ljust(80))
        self.err.flush()
        self._bar_open = True
        if final:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.err.write("\n")
            self.err.flush()
            self._bar_open = False

    def error(self, message: str, **fields: Any) -> None:
        """An error: an ``error`` event in JSON mode (and on stderr in any mode)."""
        self._end_bar()
        self.event("error", message=message, **fields)
        if self.enabled or not self.json_mode:
            self.err.write(f"error: {message}\n")
            self.err.flush()


class EtaEstimator:
    """Remaining time from the average rate since the first measured step."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._n0 = 0

    def update(self, done: int, total: int) -> float | None:
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._n0 = now, done
            return None
        steps = done - self._n0
        if steps <= 0:
            return None
        rate = (now - self._t0) / steps
        return rate * max(total - done, 0)
