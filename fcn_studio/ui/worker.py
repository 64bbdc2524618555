"""The one way the window runs work off the GUI thread (the inference worker aside,
which keeps a model on its own thread).

:class:`BackgroundWorker` runs jobs one after the other on a single thread, so
jobs submitted in order finish in order (two saves of one image land as asked).
A job is a plain callable taking a :class:`CancelToken`; its return value comes
back in ``done``, an exception in ``failed`` (never raised into the pool), a
job that saw its token cancelled in ``cancelled``. Signals are emitted from the
worker thread and Qt queues them to receivers on the GUI thread, so slots run
there. Cancel is cooperative: a queued job that has not started is skipped, a
running one stops where it checks ``token.cancelled`` (or ``token.check()``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal


class Cancelled(Exception):  # noqa: N818 - reads as what happened: raise Cancelled
    """Raised by :meth:`CancelToken.check` inside a job that was cancelled."""


class CancelToken:
    """Set by :meth:`BackgroundWorker.cancel`; a job polls it at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled


class BackgroundWorker(QObject):
    """Jobs on one background thread; outcomes as signals carrying the job's key."""

    done = Signal(object, object)  # key, the job's return value
    failed = Signal(object, str)  # key, message (the exception's text, else its type)
    cancelled = Signal(object)  # key

    def __init__(self, name: str = "background", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[tuple[Any, CancelToken, Future[None]]] = []
        self._lock = threading.Lock()

    def submit(self, key: Any, job: Callable[[CancelToken], object]) -> CancelToken:
        """Queue ``job``; returns its token (``cancel`` it to stop just this job)."""
        token = CancelToken()

        def run() -> None:
            if token.cancelled:
                self.cancelled.emit(key)
                return
            try:
                result = job(token)
            except Cancelled:
                self.cancelled.emit(key)
            except Exception as exc:  # noqa: BLE001 - reported, never raised into the pool
                self.failed.emit(key, str(exc) or type(exc).__name__)
            else:
                self.done.emit(key, result)

        with self._lock:
            self._pending = [p for p in self._pending if not p[2].done()]
            self._pending.append((key, token, self._pool.submit(run)))
        return token

    def cancel(self, key: Any = None) -> None:
        """Cancel the jobs with ``key`` (every job when None) that have not finished."""
        with self._lock:
            for k, token, future in self._pending:
                if (key is None or k == key) and not future.done():
                    token.cancel()

    def busy(self) -> bool:
        with self._lock:
            return any(not f.done() for _k, _t, f in self._pending)

    def wait(self) -> None:
        """Block until every queued job has finished (closing, switching projects)."""
        with self._lock:
            futures = [f for _k, _t, f in self._pending]
        for f in futures:
            f.result()
        with self._lock:
            self._pending = [p for p in self._pending if not p[2].done()]

    def shutdown(self, cancel: bool = False) -> None:
        """Finish (or with ``cancel``, stop) the queued jobs and end the thread."""
        if cancel:
            self.cancel()
        self.wait()
        self._pool.shutdown(wait=True)
