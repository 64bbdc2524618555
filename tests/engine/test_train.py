from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic import CLASS_NAMES, write_voc
from training import preprocess
from training import train as train_module
from training.checkpoint import load_model, make_checkpoint, save_checkpoint
from training.cli import train_main
from training.model import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[2]
# A narrow head (fc6/fc7 width 64) keeps these runs and their checkpoints small;
# the full-width network is exercised by the model tests.
FAST = ["--init", "scratch", "--fc-channels", "64", "--batch-size", "2", "--crop", "48",
        "--workers", "0", "--device", "cpu", "--json"]


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every stdout line must be JSON


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    write_voc(tmp_path / "data", n=6, n_val=2)
    return tmp_path / "data"


def test_train_end_to_end(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--epochs", "2", *FAST]) == 0
    events = _events(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"progress", "epoch", "checkpoint"} <= set(kinds)
    prog = [e for e in events if e["event"] == "progress"]
    assert prog[-1]["iteration"] == prog[-1]["total"] == 4  # 4 train images, batch 2, 2 epochs
    assert all({"epoch", "iteration", "total", "loss", "eta"} <= set(e) for e in prog)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 2
    assert {"pixel_acc", "mean_acc", "mean_iou", "fw_iou", "per_class_iou"} <= set(epochs[-1])
    assert events[-1]["status"] == "finished"
    for name in ("config.json", "last.pt", "best.pt", "history.json", "log.jsonl"):
        assert (run / name).is_file(), name
    assert not (run / "resume.pt").exists()  # a finished run needs no optimizer state
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    assert len(json.loads((run / "history.json").read_text())) == 2
    loaded = load_model(run / "last.pt")
    assert loaded.class_names == CLASS_NAMES
    assert loaded.meta["train_ids"] == ["img000", "img001", "img002", "img003"]
    assert loaded.meta["val_ids"] == ["img004", "img005"]
    assert "mean_iou" in loaded.meta["metrics"]


def test_time_limit_then_resume(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "4", "--time-limit", "0", *FAST]) == 0
    first = _events(capsys.readouterr().out)
    assert first[-1]["status"] == "time_limit" and first[-1]["iteration"] == 1
    assert (run / "resume.pt").is_file()
    # The run's own time limit would apply again on resume; 'none' lifts it, and says so.
    assert train_main([str(voc), "--out", str(run), "--iters", "4", "--resume",
                       "--time-limit", "none", *FAST]) == 0
    second = _events(capsys.readouterr().out)
    assert second[0]["iteration"] == 1 and second[0]["resumed"]
    assert any(c.startswith("--time-limit None") for c in second[0]["changed"])
    assert second[-1]["status"] == "finished" and second[-1]["iteration"] == 4
    assert load_model(run / "last.pt").meta["iteration"] == 4


def test_time_budget_decays_the_rate(voc: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """A run that ends at its time limit decays its rate over the budget (poly, power
    0.9), not over an iteration count it never reaches: "1000 epochs or 20 s" is at a
    quarter of its rate with 5 s left. The clock is the iteration count here (1 s each)."""
    monkeypatch.setattr(train_module.Trainer, "_session_elapsed", lambda self: float(self.state.iteration))
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--epochs", "1000", "--time-limit", "20",
                       "--lr", "1e-3", *FAST]) == 0
    events = _events(capsys.readouterr().out)
    lr = {e["iteration"]: e["lr"] for e in events if e["event"] == "progress"}
    assert events[-1]["status"] == "time_limit" and max(lr) == 20
    # Warm-up (10 iterations) first, then the rate for step k + 1 follows the time spent.
    assert lr[4] == pytest.approx(1e-3 * 5 / 10)
    for it in (12, 15, 19):
        assert lr[it] == pytest.approx(1e-3 * (1 - it / 20) ** 0.9)
    assert lr[20] == 0.0


def test_the_default_rate_follows_how_the_backbone_started(voc: Path, tmp_path: Path,
                                                          capsys) -> None:
    """Without --lr: random features learn at 1e-3, and so do the models trained from
    them (the start is recorded down the line); a checkpoint that does not say how its
    backbone started (an imported file, an older run) is fine-tuned at 1e-4."""
    fast = [a for a in FAST if a not in ("--init", "scratch")]

    def rate(run: Path, *init: str) -> float:
        assert train_main([str(voc), "--out", str(run), "--iters", "1", *init, *fast]) == 0
        capsys.readouterr()
        return json.loads((run / "config.json").read_text())["lr"]

    assert rate(tmp_path / "a", "--init", "scratch") == 1e-3
    assert load_model(tmp_path / "a" / "last.pt").meta["backbone_init"] == "scratch"
    assert rate(tmp_path / "b", "--init", str(tmp_path / "a" / "last.pt")) == 1e-3
    assert load_model(tmp_path / "b" / "last.pt").meta["backbone_init"] == "scratch"
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, make_checkpoint(load_model(tmp_path / "a" / "last.pt").model,
                                           CLASS_NAMES, preprocess.TORCHVISION))
    assert rate(tmp_path / "c", "--init", str(plain)) == 1e-4
    assert "backbone_init" not in load_model(tmp_path / "c" / "last.pt").meta


def test_no_resume_state_writes_no_optimizer_state(voc: Path, tmp_path: Path, capsys) -> None:
    """The app's runs are never resumed: a stopped run keeps last.pt but no resume.pt."""
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "4", "--time-limit", "0",
                       "--no-resume-state", "--save-dtype", "float16", *FAST]) == 0
    assert _events(capsys.readouterr().out)[-1]["status"] == "time_limit"
    assert (run / "last.pt").is_file() and not (run / "resume.pt").exists()
    # The app's runs also store their weights in float16 (half the disk) and load as usual.
    raw = torch.load(run / "last.pt", weights_only=True)
    assert raw["weights_dtype"] == "float16" and raw["state_dict"]["conv1_1.weight"].dtype == torch.float16
    assert next(load_model(run / "last.pt").model.parameters()).dtype == torch.float32


def test_non_finite_loss_keeps_last_good_checkpoint(voc: Path, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    calls = {"n": 0}
    real = train_module._loss

    def flaky(logits, target):
        calls["n"] += 1
        loss = real(logits, target)
        return loss * float("nan") if calls["n"] > 2 else loss

    monkeypatch.setattr(train_module, "_loss", flaky)
    run = tmp_path / "run"
    rc = train_main([str(voc), "--out", str(run), "--epochs", "3", *FAST])
    assert rc == 3
    events = _events(capsys.readouterr().out)
    assert events[-1]["event"] == "error" and "non-finite" in events[-1]["message"]
    # Epoch 1 (iterations 1-2) finished and was saved; nothing after it overwrote it.
    kept = load_model(run / "last.pt")
    assert kept.meta["iteration"] == 2
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())


def test_init_from_checkpoint_with_other_classes(voc: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.pt"
    model = build_model(ModelConfig(num_classes=2, arch="fcn32s", fc_channels=64))
    save_checkpoint(other, make_checkpoint(model, ["bg", "cat"], preprocess.TORCHVISION))
    args = [str(voc), "--out", str(tmp_path / "run"), "--iters", "1", *FAST]
    args[args.index("scratch")] = str(other)
    assert train_main(args) == 2
    err = capsys.readouterr()
    assert "other.pt" in err.err and "--reinit-classes" in err.err
    assert train_main([*args, "--reinit-classes"]) == 0
    loaded = load_model(tmp_path / "run" / "last.pt")
    assert loaded.class_names == CLASS_NAMES and loaded.config.arch == "fcn32s"


def test_empty_and_missing_data_errors(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    (empty / "JPEGImages").mkdir(parents=True)
    (empty / "class_names.txt").write_text("bg\nx\n")
    assert train_main([str(empty), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "error:" in capsys.readouterr().err
    nolist = tmp_path / "noclasses"
    write_voc(nolist, n=2, n_val=1)
    (nolist / "class_names.txt").unlink()
    assert train_main([str(nolist), "--out", str(tmp_path / "r2"), *FAST]) == 2
    assert "class_names.txt" in capsys.readouterr().err


def test_sigint_stops_cleanly_with_usable_checkpoint(voc: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", str(voc), "--out", str(run),
         "--iters", "10000", *FAST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stdout.read()
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert rc == 130, proc.stderr.read()
    done = _events(rest)[-1]
    assert done["event"] == "done" and done["status"] == "cancelled"
    loaded = load_model(run / "last.pt")
    assert loaded.meta["iteration"] >= 1
    assert (run / "resume.pt").is_file()


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_identical(voc: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "engine" / "ddp_probe.py"), str(voc), str(run)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((run / "rank0.json").read_text())
    r1 = json.loads((run / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["rc"] == r1["rc"] == 0
    assert r0["digest"] == r1["digest"]
    # Training really changed the weights (identical, but not identical by doing nothing).
    torch.manual_seed(0)  # the probe's seed: the run starts from exactly this model
    init = build_model(ModelConfig(num_classes=3, fc_channels=64))
    assert r0["conv1"] != pytest.approx(float(init.conv1_1.weight.detach().double().sum()))
    # Only rank 0 wrote the run's files; events came once.
    events = _events(res.stdout)
    assert sum(e["event"] == "start" for e in events) == 1
    assert load_model(run / "last.pt").meta["iteration"] == 3


@pytest.mark.slow
def test_ddp_with_a_batchnorm_backbone_ends_identical(voc: Path, tmp_path: Path) -> None:
    # MobileNetV3: BatchNorm statistics too must agree across ranks (DDP broadcasts them).
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "engine" / "ddp_probe.py"), str(voc), str(run), "mobilenet_v3_large"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["rc"] == r1["rc"] == 0 and r0["world"] == 2
    assert r0["digest"] == r1["digest"]
    loaded = load_model(run / "last.pt")
    assert loaded.config.backbone == "mobilenet_v3_large" and loaded.meta["iteration"] == 3


def test_id_lists_and_validation_before_training(voc: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "t.txt").write_text("img000\nimg001\n")
    (tmp_path / "v.txt").write_text("img005\n")
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--iters", "1", "--train-list",
                       str(tmp_path / "t.txt"), "--val-list", str(tmp_path / "v.txt"),
                       "--val-before", *FAST]) == 0
    events = _events(capsys.readouterr().out)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs[0]["epoch"] == 0 and epochs[0]["before"] is True
    assert "mean_iou" in epochs[0] and epochs[1]["epoch"] == 1
    meta = load_model(run / "last.pt").meta
    assert meta["train_ids"] == ["img000", "img001"] and meta["val_ids"] == ["img005"]
    (tmp_path / "bad.txt").write_text("../escape\n")
    assert train_main([str(voc), "--out", str(tmp_path / "r2"), "--train-list",
                       str(tmp_path / "bad.txt"), *FAST]) == 2
    assert "bad.txt" in capsys.readouterr().err


def test_save_interval_writes_less_and_best_pt_keeps_the_best_epoch(voc: Path, tmp_path: Path,
                                                                      capsys, monkeypatch) -> None:
    """With epochs shorter than --save-interval only the first epoch and the end write;
    a better epoch in between is held and reaches best.pt at the next write, as it was."""
    scores = iter([0.2, 0.6, 0.4, 0.3])  # epoch 2 is the best and falls between writes

    class Scored:
        def __init__(self, miou: float) -> None:
            self.miou = miou

        def scores(self):
            return self

        def to_dict(self) -> dict:
            return {"mean_iou": self.miou}

    monkeypatch.setattr(train_module, "evaluate_model", lambda *a, **k: Scored(next(scores)))
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--epochs", "4", "--save-interval", "3600",
                       *FAST]) == 0
    events = _events(capsys.readouterr().out)
    written = [(e["kind"], e["iteration"]) for e in events if e["event"] == "checkpoint"]
    # Epoch 1 writes last and best; the end writes last and the held epoch 2 as best.
    assert written == [("last", 2), ("best", 2), ("last", 8), ("best", 4)]
    best, last = load_model(run / "best.pt"), load_model(run / "last.pt")
    assert best.meta["iteration"] == 4 and best.meta["metrics"]["mean_iou"] == 0.6
    assert last.meta["iteration"] == 8 and len(last.meta["history"]) == 4
    assert len(best.meta["history"]) == 2  # the history as it was at epoch 2
    # A copy, not the live weights: training went on after epoch 2.
    changed = [k for k, v in best.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, last.model.state_dict()[k])]
    assert changed


def test_save_interval_zero_writes_every_epoch(voc: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train_main([str(voc), "--out", str(run), "--epochs", "3", "--save-interval", "0",
                       *FAST]) == 0
    events = _events(capsys.readouterr().out)
    assert [e["iteration"] for e in events
            if e["event"] == "checkpoint" and e["kind"] == "last"] == [2, 4, 6]
