"""The training child process: a real short run, cancel, crashes, bad output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fcn_studio.models.versions import VersionStore
from fcn_studio.ui.finetuning import training_job
from fcn_studio.ui.finetuning.training_job import TrainingJob, _LineBuffer, command_prefix
from tests.synthetic import CLASS_NAMES, write_voc

TINY = ["--init", "scratch", "--fc-channels", "64", "--batch-size", "2", "--crop", "48",
        "--workers", "0", "--device", "cpu"]
RUN_TIMEOUT_MS = 120_000


def fake_child(script: str) -> list[str]:
    """A program override: a Python script in place of the engine (extra argv ignored)."""
    return [sys.executable, "-c", script]


def collect(job: TrainingJob) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {k: [] for k in ("started", "progress", "epoch", "checkpoint", "log")}
    job.started.connect(seen["started"].append)
    job.progress.connect(seen["progress"].append)
    job.epochFinished.connect(seen["epoch"].append)
    job.checkpointSaved.connect(seen["checkpoint"].append)
    job.logLine.connect(seen["log"].append)
    return seen


def run_to_end(qtbot, job: TrainingJob, data: Path, run: Path, args: list[str]) -> dict[str, Any]:
    with qtbot.waitSignal(job.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        job.start(data, run, args)
    return blocker.args[0]


@pytest.fixture
def voc_data(tmp_path: Path) -> Path:
    write_voc(tmp_path / "data", n=4, n_val=1)
    return tmp_path / "data"


def test_real_training_run_end_to_end(qtbot, voc_data: Path, tmp_path: Path) -> None:
    job = TrainingJob()
    seen = collect(job)
    run = tmp_path / "run"
    result = run_to_end(qtbot, job, voc_data, run, [*TINY, "--iters", "2", "--val-before"])
    assert result["status"] == "finished", result["log"]
    assert result["exit_code"] == 0 and result["error"] is None and result["run_dir"] == str(run)
    assert result["done"]["status"] == "finished"
    assert seen["started"][0]["classes"] == CLASS_NAMES and seen["started"][0]["total"] == 2
    assert [p["iteration"] for p in seen["progress"]] == [1, 2]
    epochs = seen["epoch"]
    assert epochs[0]["epoch"] == 0 and epochs[0]["before"] is True  # the starting model
    assert [e["epoch"] for e in epochs[1:]] == [1, 2]
    assert {c["kind"] for c in seen["checkpoint"]} == {"last", "best"}
    assert any("training fcn8s" in line for line in seen["log"])  # stderr, line by line
    assert (run / "last.pt").read_bytes()[:2] == b"PK" and not job.is_running()
    # The run becomes the project's first version, with its before/after scores.
    store = VersionStore(tmp_path / "models")
    version = store.publish(run, "scratch", result["status"], CLASS_NAMES, events=job.events)
    assert version is not None and version.usable and version.id == "v001"
    assert version.mean_iou is not None and version.before_mean_iou is not None
    assert version.meta["train_ids"] == ["img000", "img001", "img002"]
    assert version.meta["val_ids"] == ["img003"]


def test_cancel_stops_cleanly_with_a_usable_checkpoint(qtbot, voc_data: Path, tmp_path: Path) -> None:
    job = TrainingJob()
    run = tmp_path / "run"
    with qtbot.waitSignal(job.progress, timeout=RUN_TIMEOUT_MS):
        job.start(voc_data, run, [*TINY, "--iters", "10000"])
    with qtbot.waitSignal(job.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        job.cancel()
    result = blocker.args[0]
    assert result["status"] == "cancelled", result["log"]
    assert result["exit_code"] == 130 and result["done"]["status"] == "cancelled"
    assert (run / "last.pt").read_bytes()[:2] == b"PK"
    assert job.cancel_requested and not job.is_running()
    job.cancel()  # nothing running: a no-op


def test_a_crashing_child_reports_crashed_with_its_log(qtbot, tmp_path: Path) -> None:
    script = ("import json, os, sys\n"
              "print(json.dumps({'event': 'progress', 'iteration': 1, 'total': 5}), flush=True)\n"
              "print('Fatal Python error: Segmentation fault', file=sys.stderr, flush=True)\n"
              "os._exit(1)\n")
    job = TrainingJob(program=fake_child(script))
    seen = collect(job)
    result = run_to_end(qtbot, job, tmp_path, tmp_path / "run", [])
    assert result["status"] == "crashed" and result["exit_code"] == 1 and result["done"] is None
    assert "Segmentation fault" in result["log"] and "exit code 1" in result["error"]
    assert [p["iteration"] for p in seen["progress"]] == [1]


def test_a_child_killed_by_a_signal_is_crashed(qtbot, tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    result = run_to_end(qtbot, TrainingJob(program=fake_child(script)), tmp_path, tmp_path / "r", [])
    assert result["status"] == "crashed" and "killed" in result["error"]


def test_an_error_event_means_failed_with_its_message(qtbot, tmp_path: Path) -> None:
    script = ("import json, sys\n"
              "print(json.dumps({'event': 'error', 'message': 'run/last.pt: No space left on device',"
              " 'kind': 'OSError'}))\n"
              "sys.exit(4)\n")
    result = run_to_end(qtbot, TrainingJob(program=fake_child(script)), tmp_path, tmp_path / "r", [])
    assert result["status"] == "failed" and result["exit_code"] == 4
    assert result["error"] == "run/last.pt: No space left on device"


def test_a_program_that_cannot_start_is_failed(qtbot, tmp_path: Path) -> None:
    job = TrainingJob(program=[str(tmp_path / "no-such-program")])
    result = run_to_end(qtbot, job, tmp_path, tmp_path / "r", [])
    assert result["status"] == "failed" and "could not start" in result["error"]
    assert not job.is_running()


def test_a_second_start_while_running_raises(qtbot, tmp_path: Path) -> None:
    job = TrainingJob(program=fake_child("import sys\nsys.stdin.read()\n"))  # runs until stdin closes
    job.start(tmp_path, tmp_path / "r", [])
    assert job.is_running()
    with pytest.raises(RuntimeError, match="already in progress"):
        job.start(tmp_path, tmp_path / "r2", [])
    with qtbot.waitSignal(job.finished, timeout=10_000) as blocker:
        job.cancel()
    assert blocker.args[0]["status"] == "cancelled" and blocker.args[0]["exit_code"] == -1


def test_a_child_that_ignores_cancel_is_killed_after_the_grace_period(qtbot, tmp_path: Path,
                                                                     monkeypatch) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    monkeypatch.setattr(training_job, "CANCEL_GRACE_MS", 300)
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "print('ready', flush=True)\n"
              "sys.stdin.read()\n")
    job = TrainingJob(program=fake_child(script))
    with qtbot.waitSignal(job.logLine, timeout=10_000):
        job.start(tmp_path, tmp_path / "r", [])
    with qtbot.waitSignal(job.finished, timeout=10_000) as blocker:
        job.cancel()
        assert job.is_running()  # SIGTERM ignored: still there until the grace period ends
    assert blocker.args[0]["status"] == "cancelled" and not job.is_running()


def test_shutdown_ends_a_running_child(qtbot, tmp_path: Path) -> None:
    job = TrainingJob(program=fake_child("import sys\nsys.stdin.read()\n"))
    finished: list[dict[str, Any]] = []
    job.finished.connect(finished.append)
    job.start(tmp_path, tmp_path / "r", [])
    assert job.wait(50) is False  # still running
    job.shutdown(5_000)
    assert not job.is_running() and [f["status"] for f in finished] == ["cancelled"]
    assert job.wait(0) is True


def test_non_json_and_split_stdout_lines(qtbot, tmp_path: Path) -> None:
    done = json.dumps({"event": "done", "status": "time_limit", "seconds": 1.0})
    half = len(done) // 2
    script = ("import sys, time\n"
              "print('Downloading weights... 12%', flush=True)\n"
              "print('[1, 2, 3]', flush=True)\n"  # JSON, but not an event
              f"sys.stdout.write({done[:half]!r}); sys.stdout.flush(); time.sleep(0.3)\n"
              f"sys.stdout.write({done[half:]!r} + '\\n'); sys.stdout.flush()\n"
              "sys.stdout.write('no newline at the end')\n")
    job = TrainingJob(program=fake_child(script))
    seen = collect(job)
    result = run_to_end(qtbot, job, tmp_path, tmp_path / "r", [])
    assert seen["log"] == ["Downloading weights... 12%", "[1, 2, 3]", "no newline at the end"]
    assert result["status"] == "time_limit" and result["done"]["seconds"] == 1.0
    assert [e["event"] for e in job.events] == ["done"]


def test_line_buffer_and_command_prefix(monkeypatch) -> None:
    buf = _LineBuffer()
    assert buf.feed(b'{"a"') == [] and buf.feed(b': 1}\r\nnext') == ['{"a": 1}']
    assert buf.feed(b"\xc3") == [] and buf.feed(b"\xbc\n") == ["nextü"]  # a character split in two
    assert buf.flush() == []
    assert command_prefix() == [sys.executable, "-m", "training", "train"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert command_prefix() == [sys.executable, "train"]


@pytest.mark.parametrize("status, code", [("finished", 0), ("cancelled", 130)])
def test_a_child_slow_to_exit_after_done_is_ended(qtbot, tmp_path: Path, status: str,
                                                  code: int) -> None:
    # After its done event the engine has written everything; tearing torch down can
    # take seconds on a CPU, which Cancel used to wait for. This child never exits.
    done = json.dumps({"event": "done", "status": status})
    child = f"import time; print({done!r}, flush=True); time.sleep(600)"
    job = TrainingJob(program=fake_child(child))
    with qtbot.waitSignal(job.finished, timeout=30_000) as blocker:
        job.start(tmp_path, tmp_path / "run", [])
    result = blocker.args[0]
    assert (result["status"], result["exit_code"], result["error"]) == (status, code, None)
    assert not job.is_running()
