"""Writing files off the GUI thread, in order, with the outcome as a signal.

PNG compression of a 12-megapixel label takes a few hundred milliseconds; the
person keeps working while it runs. A failed save keeps the edit in memory and
says why (read-only folder, full disk). Each job carries a token the caller
chose (the session's save number), so an outcome is matched to its save.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal


class BackgroundSaver(QObject):
    saved = Signal(str, int)  # image id, token
    failed = Signal(str, int, str)  # image id, token, message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # One thread: saves of the same image land in the order they were asked for.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-saver")
        self._pending: list[Future] = []

    def submit(self, image_id: str, work: Callable[[], object], token: int = 0) -> None:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # reported, never raised into the thread pool
                self.failed.emit(image_id, token, str(exc) or type(exc).__name__)
            else:
                self.saved.emit(image_id, token)

        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(run))

    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def wait(self) -> None:
        """Block until every queued job has finished (used on close)."""
        for f in list(self._pending):
            f.result()
        self._pending.clear()

    def shutdown(self) -> None:
        self.wait()
        self._pool.shutdown(wait=True)
