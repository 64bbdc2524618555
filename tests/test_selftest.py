"""``fcn-studio --self-test``: the whole run from a source install, and the runner's failure path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_studio.ui import selftest
from fcn_studio.ui.selftest import Context, SelfTestError, Step, run_steps

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_self_test_passes_from_source() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "fcn_studio", "--self-test"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}"
    lines = out.splitlines()
    for step in selftest.STEPS:
        assert any(line.startswith(f"ok   {step.name}: ") for line in lines), (step.name, out)
    assert "FAIL" not in out
    assert lines[-1].startswith(f"self-test passed: {len(selftest.STEPS)} steps")
    assert any("compiled ops: nms ok" in line for line in lines)
    assert any("platform offscreen" in line for line in lines)
    assert any("label 480x360" in line for line in lines)
    assert any("status finished, last.pt" in line for line in lines)


def test_failing_step_exits_nonzero_and_names_the_step() -> None:
    ran: list[str] = []

    def fine(ctx: Context) -> str:
        ran.append("fine")
        assert ctx.tmp.is_dir()
        ctx.values["x"] = 1
        return "all good"

    def broken(ctx: Context) -> str:
        ran.append("broken")
        raise RuntimeError("operator torchvision::nms does not exist")

    def never(ctx: Context) -> str:
        ran.append("never")
        return "unreachable"

    out = io.StringIO()
    code = run_steps([Step("first", fine), Step("compiled ops", broken), Step("last", never)], out)
    text = out.getvalue()
    assert code == 1
    assert ran == ["fine", "broken"]
    lines = text.splitlines()
    assert lines[0].startswith("ok   first: all good, ")
    assert lines[1] == "FAIL compiled ops: RuntimeError: operator torchvision::nms does not exist"
    assert "skip last" in lines
    assert lines[-1].startswith("self-test FAILED at step 'compiled ops'")


def test_check_failure_message_and_all_pass() -> None:
    def bad_shape(ctx: Context) -> str:
        raise SelfTestError("label shape (1, 2) != image shape (3, 4)")

    out = io.StringIO()
    assert run_steps([Step("segment sample image", bad_shape)], out) == 1
    text = out.getvalue()
    assert "FAIL segment sample image: label shape (1, 2) != image shape (3, 4)" in text
    assert "Traceback" not in text  # a failed check says what it found, no stack

    out = io.StringIO()
    assert run_steps([Step("a", lambda ctx: "1"), Step("b", lambda ctx: "2")], out) == 0
    assert out.getvalue().splitlines()[-1].startswith("self-test passed: 2 steps")


def test_train_command_is_the_fine_tune_command(tmp_path: Path) -> None:
    from fcn_studio.ui.finetuning.training_job import command_prefix

    command, env, cwd = selftest._train_command(tmp_path / "data", tmp_path / "run")
    assert command[: len(command_prefix())] == command_prefix()
    assert command[len(command_prefix())] == str(tmp_path / "data")
    assert "--json" in command and "--out" in command
    assert str(REPO) in env["PYTHONPATH"].split(os.pathsep)
    assert cwd == str(REPO)


def test_selftest_module_is_light() -> None:
    # Steps import torch and Qt themselves: `fcn-studio --help` and the app's start stay fast.
    code = ("import sys, fcn_studio.__main__, fcn_studio.ui.selftest\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.split()
    assert not {"torch", "torchvision", "PySide6", "qtawesome"} & set(out)
