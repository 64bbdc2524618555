"""Run the engine's training command in a child process and turn its output into signals.

The child (``python -m training train DATA --out RUN --json ...``; in the frozen
app the bundle's own executable with ``train``) prints one JSON event per stdout
line and readable text on stderr. Training runs in a child process, not a thread,
so a crash, an out-of-memory kill or a hung driver ends the run and never the
app, and torch's threads never compete with the GUI's. QProcess delivers its
output on the GUI thread as it arrives, so the window never waits on it.
Whatever the child does, crash included, ends in one ``finished`` signal; the
app carries on.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ...models.finetune_plan import train_argv

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
CANCEL_GRACE_MS: Final = 60_000
"""After a cancel the child stops at the next iteration and writes last.pt; this is
how long it gets before it is killed (a very slow iteration, or a hung child)."""
EXIT_GRACE_MS: Final = 1_500
"""After its ``done`` event the child has written every file (checkpoints, history,
log); what is left is the interpreter tearing torch down, seconds on a CPU. It gets
this long to exit by itself, then it is killed: the result is already complete."""
LOG_TAIL_LINES: Final = 200
FINISHED_STATUSES: Final = ("finished", "cancelled", "time_limit", "failed", "crashed")
EXIT_CANCELLED: Final = 130


def command_prefix() -> list[str]:
    """How to start the engine's train command: the bundle itself when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "train"]
    return [sys.executable, "-m", "training", "train"]


class _LineBuffer:
    """Bytes in, complete lines out; a partial line waits for the rest."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self._pending = (self._pending + data).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [rest.decode("utf-8", "replace").rstrip("\r")] if rest.strip() else []


class TrainingJob(QObject):
    """One training child at a time. Signals carry the engine's events as dicts."""

    started = Signal(dict)  # the start event
    progress = Signal(dict)  # progress events
    epochFinished = Signal(dict)  # epoch events (epoch 0, before=True: the starting model)
    checkpointSaved = Signal(dict)  # checkpoint events (kind last | best)
    logLine = Signal(str)  # stderr lines, and stdout lines that are not JSON events
    finished = Signal(dict)  # status, exit_code, done, error, run_dir, log

    def __init__(self, parent: QObject | None = None, program: list[str] | None = None) -> None:
        super().__init__(parent)
        self._program = list(program) if program else command_prefix()
        self._process: QProcess | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self._exit_timer = QTimer(self)
        self._exit_timer.setSingleShot(True)
        self._exit_timer.timeout.connect(self._end_after_done)
        self._reset(Path())

    def _reset(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.events: list[dict[str, Any]] = []  # every event, for VersionStore.publish
        self.done: dict[str, Any] | None = None
        self.error: str | None = None
        self.cancel_requested = False
        self._killed_after_done = False
        self._out = _LineBuffer()
        self._err = _LineBuffer()
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._finished_sent = False

    # -- control ------------------------------------------------------------------------------

    def start(self, data_dir: Path, run_dir: Path, args: list[str]) -> None:
        """Start ``train DATA --out RUN --json ARGS``; paths in ``args`` should be absolute."""
        if self.is_running():
            raise RuntimeError("a training run is already in progress")
        run_dir = Path(run_dir).resolve()
        self._reset(run_dir)
        command = [*self._program, *train_argv(Path(data_dir).resolve(), run_dir, args)]
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")  # events as they happen, not when a buffer fills
        env.insert("PYTHONIOENCODING", "utf-8")
        if not getattr(sys, "frozen", False):
            # From source the child imports `training` from this checkout, wherever it starts.
            path = env.value("PYTHONPATH", "")
            env.insert("PYTHONPATH", str(REPO_ROOT) + (f"{os.pathsep}{path}" if path else ""))
            process.setWorkingDirectory(str(REPO_ROOT))
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self._process = process
        process.start(command[0], command[1:])

    def cancel(self, force: bool = False) -> None:
        """Ask the child to stop (SIGTERM: it finishes the iteration and writes last.pt);
        it is killed if it has not ended after CANCEL_GRACE_MS, or at once with ``force``."""
        if not self.is_running() or self._process is None:
            return
        self.cancel_requested = True
        if force or sys.platform == "win32":
            # Windows has no SIGTERM for console children: last.pt is the last write's
            # (at most --save-interval, a minute by default, old).
            self._kill()
            return
        self._process.terminate()
        if not self._kill_timer.isActive():
            self._kill_timer.start(CANCEL_GRACE_MS)

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    def wait(self, ms: int = 30_000) -> bool:
        """Block until the child ends (for shutdown and tests); True when it has ended."""
        if self._process is None or not self.is_running():
            return True
        self._process.waitForFinished(ms)
        return not self.is_running()

    def shutdown(self, ms: int = 10_000) -> None:
        """At app exit: cancel, wait up to ``ms``, then kill."""
        if self.is_running():
            self.cancel()
            if not self.wait(ms):
                self.cancel(force=True)
                self.wait(5_000)

    def _kill(self) -> None:
        if self.is_running() and self._process is not None:
            self._process.kill()

    def _end_after_done(self) -> None:
        if self.is_running():
            self._killed_after_done = True
            self._kill()

    # -- output ---------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        if self._process is not None:
            for line in self._out.feed(bytes(self._process.readAllStandardOutput().data())):
                self._handle_stdout(line)

    def _read_stderr(self) -> None:
        if self._process is not None:
            for line in self._err.feed(bytes(self._process.readAllStandardError().data())):
                self._handle_stderr(line)

    def _handle_stderr(self, line: str) -> None:
        if line.strip():
            self._tail.append(line)
            self.logLine.emit(line)

    def _handle_stdout(self, line: str) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self._tail.append(line)
            self.logLine.emit(line)  # a stray print in the child is a log line, never a crash
            return
        self.events.append(event)
        name = event["event"]
        if name == "start":
            self.started.emit(event)
        elif name == "progress":
            self.progress.emit(event)
        elif name == "epoch":
            self.epochFinished.emit(event)
        elif name == "checkpoint":
            self.checkpointSaved.emit(event)
        elif name == "done":
            self.done = event
            self._exit_timer.start(EXIT_GRACE_MS)
        elif name == "error":
            self.error = str(event.get("message") or "training failed")

    # -- the end -----------------------------------------------------------------------------------

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._process is not None:
            # No finished() follows a failed start: report it here.
            message = f"could not start the training process ({self._process.errorString()})"
            self._tail.append(message)
            self._emit_finished("failed", -1, message)

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._exit_timer.stop()
        self._read_stdout()
        self._read_stderr()
        for line in self._out.flush():
            self._handle_stdout(line)
        for line in self._err.flush():
            self._handle_stderr(line)
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        code = -1 if crashed else exit_code
        done_status = (self.done or {}).get("status")
        if self._killed_after_done and done_status in FINISHED_STATUSES:
            # Killed in its teardown, after it reported: the run's own outcome stands.
            code = EXIT_CANCELLED if done_status == "cancelled" else 0
            self._emit_finished(str(done_status), code, None)
        elif not crashed and code in (0, EXIT_CANCELLED) and done_status in FINISHED_STATUSES:
            self._emit_finished(str(done_status), code, None)
        elif self.cancel_requested and (crashed or code == EXIT_CANCELLED):
            self._emit_finished("cancelled", code, None)  # stopped before it could report
        elif self.error is not None:
            self._emit_finished("failed", code, self.error)
        elif crashed:
            self._emit_finished("crashed", code, "the training process was killed or crashed")
        else:
            self._emit_finished("crashed", code, f"the training process ended with exit code {code} "
                                                 "without reporting a result")

    def _emit_finished(self, status: str, exit_code: int, error: str | None) -> None:
        if self._finished_sent:
            return
        self._finished_sent = True
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        self.finished.emit({"status": status, "exit_code": exit_code, "done": self.done,
                            "error": error, "run_dir": str(self.run_dir),
                            "log": "\n".join(self._tail)})
