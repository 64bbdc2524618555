"""The one background-worker abstraction: results, errors and cancels as signals, in order."""

from __future__ import annotations

import threading

from fcn_studio.ui.labelling.saver import BackgroundSaver
from fcn_studio.ui.worker import BackgroundWorker, CancelToken


def test_results_and_errors_arrive_as_signals_in_order(qtbot) -> None:
    worker = BackgroundWorker("test")
    seen: list[tuple] = []
    worker.done.connect(lambda key, result: seen.append(("done", key, result)))
    worker.failed.connect(lambda key, text: seen.append(("failed", key, text)))
    gui = threading.get_ident()
    threads: list[int] = []
    worker.done.connect(lambda *_a: threads.append(threading.get_ident()))

    def boom(_token: CancelToken) -> None:
        raise OSError("disk full")

    worker.submit("a", lambda _t: 1)
    worker.submit("b", boom)
    worker.submit("c", lambda _t: threading.get_ident())
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=5_000)
    assert [s[:2] for s in seen] == [("done", "a"), ("failed", "b"), ("done", "c")]
    assert seen[0][2] == 1 and seen[1][2] == "disk full"
    assert seen[2][2] != gui  # the job ran off the GUI thread ...
    assert set(threads) == {gui}  # ... and its outcome was delivered on it
    worker.shutdown()


def test_cancel_skips_queued_jobs_and_stops_a_running_one(qtbot) -> None:
    worker = BackgroundWorker("test")
    cancelled: list[str] = []
    done: list[str] = []
    worker.cancelled.connect(cancelled.append)
    worker.done.connect(lambda key, _r: done.append(key))
    started, release = threading.Event(), threading.Event()

    def long_job(token: CancelToken) -> str:
        started.set()
        while not release.wait(0.01):
            token.check()  # a cooperative stop point
        return "finished"

    worker.submit("long", long_job)
    worker.submit("queued", lambda _t: "never")
    assert started.wait(5)
    worker.cancel()
    qtbot.waitUntil(lambda: len(cancelled) == 2, timeout=5_000)
    assert cancelled == ["long", "queued"] and done == []
    assert not worker.busy()
    token = worker.submit("after", lambda _t: "ran")
    qtbot.waitUntil(lambda: done == ["after"], timeout=5_000)
    assert not token.cancelled
    worker.shutdown()


def test_the_saver_keeps_its_signals(qtbot) -> None:
    saver = BackgroundSaver()
    with qtbot.waitSignal(saver.saved) as ok:
        saver.submit("img1", lambda: None, token=7)
    assert ok.args == ["img1", 7]

    def fail() -> None:
        raise PermissionError("read-only folder")

    with qtbot.waitSignal(saver.failed) as bad:
        saver.submit("img2", fail, token=8)
    assert bad.args == ["img2", 8, "read-only folder"]
    saver.wait()
    assert not saver.busy()
    saver.shutdown()
