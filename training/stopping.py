"""Stopping a training run cleanly: SIGINT/SIGTERM set a flag the loop polls, work that
changes no weights may be abandoned at once, and data-loader workers leave the
decision to the main process.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):  # noqa: N818 - like KeyboardInterrupt: no handler eats it
    """Raised by a stop signal inside :meth:`StopFlag.abandonable` work."""


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop polls it between iterations.

    A CPU iteration of FCN-8s takes tens of seconds, so waiting for the one under
    way made Cancel slow. Work that changes no weights (a forward and backward
    pass, a validation) runs inside :meth:`abandonable`: a signal there raises
    :class:`StopRequested` at once, and the run stops with the weights of the
    last finished step. Only in a single process: under torchrun a rank that
    left a backward pass would leave the others waiting in its all-reduce.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.signal_name: str | None = None
        self.can_abandon = True  # False under torchrun
        self._abandonable = False
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """Run the body unless a stop came; a stop during it raises StopRequested."""
        if self.reason is not None and self.can_abandon:
            raise StopRequested
        self._abandonable = self.can_abandon
        try:
            yield
        finally:
            self._abandonable = False

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test thread)
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        self.reason = "cancelled"
        self.signal_name = signal.Signals(signum).name
        self.poll()

    def poll(self, *_args: Any) -> None:
        """A point where abandonable work may stop: raises StopRequested when a stop came.

        Also a gradient hook on every parameter: a backward pass is one C++ call that
        runs Python (and with it signal handlers) only in such hooks, on a CPU in the
        main thread, so the stop ends it between layers rather than at its end.
        """
        if self._abandonable and self.reason is not None:
            self._abandonable = False
            raise StopRequested


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while data-loader workers start.

    ``docker stop``, systemd and Slurm send SIGTERM to the whole process group, and
    a worker killed by it crashes the run. Workers inherit this signal mask, so a
    signal that arrives while one starts waits until its init function ignores it;
    here the main process gets it as soon as the workers are up.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups to fear
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_init(_worker_id: int) -> None:
    # Ctrl+C and SIGTERM reach the whole process group; only the main process decides
    # to stop, then ends its workers itself.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def batches(loader: DataLoader | list) -> Iterator[Any]:
    """Iterate a loader whose workers (if it starts any now) survive a stop signal."""
    with stop_signals_blocked():
        it = iter(loader)
    yield from it
