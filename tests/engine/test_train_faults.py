"""fcn-train under faults and bad input (issue 11, training): each test reproduces one
case that used to crash, lose work or mislead, and checks the clean outcome."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic import write_voc
from training import train as train_module
from training import write_failures
from training.checkpoint import load_model
from training.cli import train_main
from training.progress import EtaEstimator, Reporter
from training.train import Trainer
from training.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
# The tiny runs: batch 1, 64-pixel crops, a 64-wide head, on 64x48 images.
TINY = ["--init", "scratch", "--fc-channels", "64", "--batch-size", "1", "--crop", "64",
        "--device", "cpu", "--json"]
FAST = [*TINY, "--workers", "0"]


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _first(events: list[dict], name: str) -> dict:
    return next(e for e in events if e["event"] == name)


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    write_voc(tmp_path / "data", n=3, n_val=1, h=48, w=64)  # 2 train images: 2 iterations an epoch
    return tmp_path / "data"


def _train(voc: Path, run: Path, *args: str) -> int:
    return train_main([str(voc), "--out", str(run), *args])


# -- 1. SIGTERM to the whole process group ---------------------------------------------------


def test_sigterm_to_the_process_group_stops_cleanly_with_workers(voc: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", str(voc), "--out", str(run),
         "--iters", "100000", *TINY, "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        start_new_session=True)  # its own process group, as docker, systemd and Slurm see it
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                os.killpg(proc.pid, signal.SIGTERM)  # the main process and its data workers
                break
        rest = proc.stdout.read()
        rc = proc.wait(timeout=180)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 130, err
    assert "killed by signal" not in err and "Traceback" not in err
    done = _events(rest)[-1]
    assert done["event"] == "done" and done["status"] == "cancelled"
    assert "SIGTERM" in err  # the log line says what stopped it
    loaded = load_model(run / "last.pt")
    assert loaded.meta["iteration"] >= 1
    assert (run / "resume.pt").is_file()


# -- 2. --resume is the same run ---------------------------------------------------------------


def test_resume_takes_the_runs_own_config(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "3", "--time-limit", "0", *FAST) == 0  # stops at 1
    capsys.readouterr()
    # Only the folder and --resume: nothing falls back to a default (20 epochs, 4096 wide).
    assert train_main([str(voc), "--out", str(run), "--resume", "--time-limit", "none",
                       "--json"]) == 0
    out = capsys.readouterr()
    events = _events(out.out)
    start = _first(events, "start")
    assert start["total"] == 3 and start["iteration"] == 1
    assert start["config_from"] == str(run / "config.json")
    assert "config.json" in out.err  # and it says so
    assert events[-1]["status"] == "finished" and events[-1]["iteration"] == 3
    assert json.loads((run / "config.json").read_text())["iters"] == 3


def test_resume_applies_a_new_lr_and_length(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "3", "--lr", "1e-3", "--time-limit", "0", *FAST) == 0
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--lr", "5e-4", "--iters", "4", "--time-limit", "none",
                  "--json") == 0
    events = _events(capsys.readouterr().out)
    start = _first(events, "start")
    assert start["total"] == 4
    assert any(c.startswith("--lr 0.0005 (the run had 0.001)") for c in start["changed"])
    first = _first(events, "progress")
    assert first["iteration"] == 2
    # Warm-up of 10 iterations: after step 2 the rate is 3/10 of the base, the new base.
    assert first["lr"] == pytest.approx(5e-4 * 3 / 10)
    assert json.loads((run / "config.json").read_text())["lr"] == 5e-4


def test_resume_refuses_options_that_make_another_run(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "3", "--time-limit", "0", *FAST) == 0
    capsys.readouterr()
    before = (run / "last.pt").read_bytes()
    assert _train(voc, run, "--resume", *FAST, "--crop", "32", "--scale", "1", "1") == 2
    err = capsys.readouterr().err
    assert "--crop 32 (the run has 64)" in err and "config.json" in err
    assert "--scale MIN 1.0 (the run has 0.5)" in err
    assert (run / "last.pt").read_bytes() == before


def test_resume_checks_arch_against_the_checkpoint(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "3", "--time-limit", "0", *FAST) == 0  # no --arch given
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--arch", "fcn16s", "--json") == 2
    assert "its model is fcn8s" in capsys.readouterr().err


# -- 3. --resume without (a matching) resume.pt -----------------------------------------------------


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(voc: Path, tmp_path: Path,
                                                                 capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "2", *FAST) == 0
    assert not (run / "resume.pt").exists()
    files = {n: (run / n).read_bytes() for n in ("best.pt", "last.pt", "history.json")}
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--json") == 2
    err = capsys.readouterr().err
    assert "already at iteration 2 of 2" in err and "--iters" in err
    assert {n: (run / n).read_bytes() for n in files} == files


def test_finished_run_resumed_longer_continues_from_its_iteration(voc: Path, tmp_path: Path,
                                                                  capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "2", *FAST) == 0
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--iters", "4", "--json") == 0
    events = _events(capsys.readouterr().out)
    start = _first(events, "start")
    assert start["iteration"] == 2 and "fresh optimizer state" in start["warnings"][0]
    history = json.loads((run / "history.json").read_text())
    assert [r["iteration"] for r in history] == [2, 4]  # the first run's epoch is kept


def test_resume_after_a_kill_between_last_and_resume_files(voc: Path, tmp_path: Path,
                                                           capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "4", "--time-limit", "0", *FAST) == 0
    (run / "resume.pt").unlink()  # what a kill right after writing last.pt leaves
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--time-limit", "none", "--json") == 0
    out = capsys.readouterr()
    events = _events(out.out)
    start = _first(events, "start")
    assert start["iteration"] == 1  # not 0
    assert "resume.pt is missing" in start["warnings"][0] and "warning:" in out.err
    assert events[-1]["iteration"] == 4
    history = json.loads((run / "history.json").read_text())
    assert history[0]["iteration"] == 1  # the first process's epoch is still there


def test_a_stale_resume_file_is_not_paired_with_a_newer_last(voc: Path, tmp_path: Path,
                                                             capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "6", "--time-limit", "0", *FAST) == 0  # iteration 1
    stale = (run / "resume.pt").read_bytes()
    assert _train(voc, run, "--resume", "--iters", "6", "--time-limit", "none", *FAST,
                  ) == 0
    # Put an older resume.pt beside a newer unfinished last.pt: a kill between the writes.
    (run / "resume.pt").write_bytes(stale)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["iteration"], ckpt["epoch"] = 4, 2
    torch.save(ckpt, run / "last.pt")
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--json") == 0
    start = _first(_events(capsys.readouterr().out), "start")
    assert start["iteration"] == 4 and "not last.pt's 4" in start["warnings"][0]


# -- 4. corrupt, truncated or malicious resume.pt ------------------------------------------------


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("kind", ["random", "truncated", "malicious", "not-a-resume-file"])
def test_bad_resume_file_is_reported_by_name(voc: Path, tmp_path: Path, capsys, kind: str) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "3", "--time-limit", "0", *FAST) == 0
    path = run / "resume.pt"
    marker = tmp_path / "pwned"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "malicious":
        torch.save({"optimizer": _Evil(marker)}, path)
    else:
        torch.save({"optimizer": {}, "iteration": "one"}, path)
    capsys.readouterr()
    assert _train(voc, run, "--resume", "--time-limit", "none", "--json") == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "Traceback" not in err
    assert "Delete it to resume from last.pt" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert not marker.exists()  # nothing in it was run


# -- 5. full disk during a checkpoint save ----------------------------------------------------------


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                 "writing file data/3: file write failed"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_full_disk_during_a_save_keeps_the_last_good_files(voc: Path, tmp_path: Path, capsys,
                                                           monkeypatch, failure) -> None:
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # epoch 1 wrote last.pt, best.pt and resume.pt; then the disk fills
            f.write(b"partial")
            raise failure
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    # torch's writer gives no errno: the free space left tells a full disk from other faults.
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(write_failures.shutil, "disk_usage",
                        lambda _p: usage._replace(free=10**6))
    run = tmp_path / "run"
    rc = _train(voc, run, "--epochs", "3", *FAST)
    err = capsys.readouterr().err
    assert rc == 4
    assert "disk is full" in err and "1 MB free" in err and "Traceback" not in err
    assert f"{run / 'last.pt'} (epoch 1, iteration 2" in err
    assert "--resume" in err
    monkeypatch.setattr(torch, "save", real)
    assert load_model(run / "last.pt").meta["iteration"] == 2  # epoch 1's, intact
    assert load_model(run / "best.pt").meta["iteration"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


# -- 6. an existing run folder ---------------------------------------------------------------------


def test_a_fresh_run_into_an_existing_run_folder_is_refused(voc: Path, tmp_path: Path,
                                                            capsys) -> None:
    run = tmp_path / "run"
    assert _train(voc, run, "--iters", "2", *FAST) == 0
    files = {n: (run / n).read_bytes() for n in ("best.pt", "last.pt", "log.jsonl")}
    capsys.readouterr()
    assert _train(voc, run, "--iters", "2", *FAST) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert {n: (run / n).read_bytes() for n in files} == files
    assert _train(voc, run, "--iters", "2", "--overwrite", *FAST) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in log].count("start") == 1  # the old run's log went with it


def test_resume_and_overwrite_together_are_refused(voc: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _train(voc, tmp_path / "run", "--resume", "--overwrite", *FAST)
    assert exc.value.code == 2
    assert "argument --overwrite" in capsys.readouterr().err


# -- 7. bad option values ------------------------------------------------------------------------


@pytest.mark.parametrize("option", [
    ["--lr", "-1"], ["--lr", "nan"], ["--lr", "1e39"], ["--lr", "0"], ["--batch-size", "0"],
    ["--crop", "0"], ["--scale", "2", "0.5"], ["--scale", "0", "1"], ["--val-fraction", "1.5"],
    ["--fc-channels", "0"], ["--workers", "-1"], ["--iters", "0"], ["--iters", "-5"],
    ["--epochs", "0"], ["--time-limit", "-1"], ["--time-limit", "inf"], ["--momentum", "2"],
    ["--weight-decay", "-0.1"], ["--seed", "-1"], ["--iters", "2.5"],
])
def test_bad_option_values_get_an_argparse_error(voc: Path, tmp_path: Path, capsys,
                                                 option: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _train(voc, tmp_path / "run", *FAST, *option)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option[0]}" in err and "usage: fcn-train" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


# -- 8. divergence -----------------------------------------------------------------------------------


def _scaled_loss(monkeypatch, factor: float, after: int) -> None:
    real = train_module._loss
    calls = {"n": 0}

    def loss(logits, target):
        calls["n"] += 1
        value = real(logits, target)
        return value * factor if calls["n"] > after else value

    monkeypatch.setattr(train_module, "_loss", loss)


def test_divergence_before_any_checkpoint_says_none_was_kept(voc: Path, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    _scaled_loss(monkeypatch, float("nan"), after=0)
    run = tmp_path / "run"
    assert _train(voc, run, "--epochs", "2", *FAST) == 3
    err = capsys.readouterr().err
    assert "non-finite at iteration 1" in err
    assert "No checkpoint of this run was written yet" in err and "was kept" not in err
    assert not (run / "last.pt").exists()


def test_an_exploding_loss_stops_before_its_weights_are_saved(voc: Path, tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    _scaled_loss(monkeypatch, 2e20, after=2)  # epoch 2 has a loss of about 2e20
    run = tmp_path / "run"
    assert _train(voc, run, "--epochs", "3", *FAST) == 3
    err = capsys.readouterr().err
    assert "exploded" in err and "iteration 3" in err
    assert f"{run / 'last.pt'} (epoch 1, iteration 2" in err
    kept = load_model(run / "last.pt")
    assert kept.meta["iteration"] == 2 and kept.meta["metrics"]["train_loss"] < 100
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())


# -- 9. a corrupt validation image ------------------------------------------------------------------


def test_a_corrupt_validation_image_stops_the_run_before_training(voc: Path, tmp_path: Path,
                                                                  capsys) -> None:
    bad = voc / "JPEGImages" / "img002.png"  # the validation image
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: its header still reads
    run = tmp_path / "run"
    assert _train(voc, run, "--epochs", "2", *FAST) == 2
    out = capsys.readouterr()
    assert "img002.png" in out.err and "1 of the 3 listed images" in out.err
    assert not [e for e in _events(out.out) if e["event"] in ("start", "progress")]
    assert not (run / "last.pt").exists()


# -- progress with a time budget ----------------------------------------------------------------------


def test_progress_follows_the_time_budget(voc: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = TrainConfig(data=str(voc), out=str(tmp_path / "run"), device="cpu", time_limit=600.0)
    trainer = Trainer(cfg, Reporter(), train_module.dist_utils.DistInfo())
    now = {"t": 1000.0}
    monkeypatch.setattr(train_module.time, "monotonic", lambda: now["t"])
    trainer._t_session = 1000.0
    eta = EtaEstimator()
    trainer.state.iteration = 1
    trainer._progress(eta, total=100_000)  # 1000 epochs of a few images: the budget binds
    now["t"] += 300.0
    trainer.state.iteration = 11
    fraction, remaining = trainer._progress(eta, total=100_000)
    assert fraction == pytest.approx(0.5)  # half the time, not 11 of 100,000 iterations
    assert remaining == pytest.approx(300.0)
    cfg.time_limit = None
    fraction, remaining = trainer._progress(eta, total=100_000)
    assert fraction == pytest.approx(11 / 100_000) and remaining > 300.0


def test_start_and_progress_events_carry_the_budget(voc: Path, tmp_path: Path, capsys) -> None:
    assert _train(voc, tmp_path / "run", "--epochs", "1000", "--time-limit", "0", *FAST) == 0
    events = _events(capsys.readouterr().out)
    assert _first(events, "start")["time_limit"] == 0
    progress = _first(events, "progress")
    assert progress["fraction"] == 1.0 and progress["eta"] == 0.0


def test_progress_fraction_without_a_budget(voc: Path, tmp_path: Path, capsys) -> None:
    assert _train(voc, tmp_path / "run", "--iters", "2", *FAST) == 0
    events = _events(capsys.readouterr().out)
    assert _first(events, "start")["time_limit"] is None
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.5, 1.0]


def test_a_write_failure_with_room_left_is_not_called_a_full_disk(tmp_path: Path) -> None:
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2 vs 1")
    text = write_failures.describe_write_failure(tmp_path / "last.pt", error)
    assert text.startswith("the write failed") and "disk is full" not in text
    full = write_failures.describe_write_failure(tmp_path / "last.pt",
                                                 OSError(errno.ENOSPC, "No space left on device"))
    assert full.startswith("the disk is full (No space left on device")
