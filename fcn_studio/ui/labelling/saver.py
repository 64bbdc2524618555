"""Writing files off the GUI thread, in order, with the outcome as a signal.

PNG compression of a 12-megapixel label takes a few hundred milliseconds; the
person keeps working while it runs. A failed save keeps the edit in memory and
says why (read-only folder, full disk). Each job carries a token the caller
chose (the session's save number), so an outcome is matched to its save.
The thread and the signalling are :class:`~fcn_studio.ui.worker.BackgroundWorker`'s.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from ..worker import BackgroundWorker


class BackgroundSaver(QObject):
    saved = Signal(str, int)  # image id, token
    failed = Signal(str, int, str)  # image id, token, message

    def __init__(self, parent: QObject | None = None, name: str = "label-saver") -> None:
        super().__init__(parent)
        # One thread: saves of the same image land in the order they were asked for.
        self._worker = BackgroundWorker(name, self)
        self._worker.done.connect(lambda key, _result: self.saved.emit(*key))
        self._worker.failed.connect(lambda key, text: self.failed.emit(key[0], key[1], text))

    def submit(self, image_id: str, work: Callable[[], object], token: int = 0) -> None:
        # A save is never cancelled: the edit it writes exists nowhere else on disk.
        self._worker.submit((image_id, token), lambda _token: work())

    def busy(self) -> bool:
        return self._worker.busy()

    def wait(self) -> None:
        """Block until every queued job has finished (used on close)."""
        self._worker.wait()

    def shutdown(self) -> None:
        self._worker.shutdown()
