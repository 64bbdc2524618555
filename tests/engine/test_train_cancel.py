"""Cancel is prompt: a stop signal that arrives inside a backward pass or a validation
ends the run there, with the weights of the last finished step (issue 11, item 22:
on a CPU a cancel waited for the whole iteration under way, tens of seconds)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.synthetic import write_voc
from training import evaluate as evaluate_module
from training import train as train_module
from training.checkpoint import load_model
from training.cli import train_main
from training.stopping import StopFlag, StopRequested

FAST = ["--init", "scratch", "--fc-channels", "64", "--batch-size", "2", "--crop", "48",
        "--workers", "0", "--device", "cpu", "--json"]


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    write_voc(tmp_path / "data", n=6, n_val=2)
    return tmp_path / "data"


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sigterm_in_backward(monkeypatch, on_step: int) -> list[int]:
    """SIGTERM this process from inside the backward pass of step ``on_step`` (1-based),
    as a Cancel click would arrive mid-iteration."""
    steps: list[int] = []
    loss_of = train_module._loss

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = loss_of(logits, y)
        steps.append(len(steps) + 1)
        if len(steps) == on_step:
            value.register_hook(lambda g: os.kill(os.getpid(), signal.SIGTERM))
        return value

    monkeypatch.setattr(train_module, "_loss", loss)
    return steps


def test_a_stop_inside_backward_abandons_that_step(voc: Path, tmp_path: Path, monkeypatch,
                                                   capsys) -> None:
    _sigterm_in_backward(monkeypatch, on_step=2)
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "50", *FAST]) == 130
    events = _events(capsys.readouterr().out)
    done = events[-1]
    assert done["event"] == "done" and done["status"] == "cancelled"
    # Step 1 finished; step 2 was stopped inside its backward pass and never applied.
    assert done["iteration"] == 1
    assert [e["iteration"] for e in events if e["event"] == "progress"] == [1]
    assert load_model(run / "last.pt").meta["iteration"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM))  # the handler was put back


def test_a_stop_in_the_first_step_saves_no_copy_of_the_start(voc: Path, tmp_path: Path,
                                                             monkeypatch, capsys) -> None:
    _sigterm_in_backward(monkeypatch, on_step=1)
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "50", *FAST]) == 130
    done = _events(capsys.readouterr().out)[-1]
    assert (done["status"], done["iteration"], done["last"]) == ("cancelled", 0, None)
    assert not (run / "last.pt").exists()


def test_a_stop_during_the_before_validation_ends_at_once(voc: Path, tmp_path: Path,
                                                          monkeypatch, capsys) -> None:
    seen: list[int] = []
    evaluate_of = train_module.evaluate_model

    def evaluate(*args, **kwargs):
        seen.append(1)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while validating
        return evaluate_of(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_model", evaluate)
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "50", "--val-before",
                       *FAST]) == 130
    events = _events(capsys.readouterr().out)
    assert seen == [1]  # no epoch validation either
    assert not [e for e in events if e["event"] in ("progress", "epoch")]
    assert events[-1]["status"] == "cancelled" and events[-1]["iteration"] == 0
    assert evaluate_module is not None


def test_poll_only_stops_abandonable_work() -> None:
    flag = StopFlag()
    flag.reason = "cancelled"
    flag.poll()  # outside abandonable work: nothing happens, the loop checks the flag
    with pytest.raises(StopRequested):
        with flag.abandonable():
            pass  # a stop that came before the work starts skips it
    flag.can_abandon = False  # under torchrun: never abandoned half-way
    with flag.abandonable():
        flag.poll()
