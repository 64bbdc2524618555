"""Model versions (publish, current/rollback, broken files, import) and the job export."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fcn_studio.models.training_job_export import export_training_job
from fcn_studio.models.versions import (
    ModelVersion,
    VersionError,
    VersionStore,
    better,
    checkpoint_problem,
)
from fcn_studio.project.project import Project
from tests.synthetic import CLASS_NAMES, write_voc
from training.train_config import add_arguments

NAMES = list(CLASS_NAMES)


def fake_checkpoint(path: Path, payload: bytes = b"x" * 100) -> None:
    """A tiny file shaped like torch.save output: a zip with archive/data.pkl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/data/0", b"\0" * 64)


def epoch(n: int, miou: float | None, iteration: int | None = None, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"epoch": n, "iteration": n if iteration is None else iteration, **extra}
    if miou is not None:
        record.update(mean_iou=miou, pixel_acc=0.5 + miou / 2, per_class_iou=[miou, miou, miou])
    return record


def fake_run(run: Path, history: list[dict[str, Any]], *, best: bool = True, last: bool = True,
             classes: list[str] | None = None, done: str | None = "finished",
             data: str | None = None, config: dict[str, Any] | None = None) -> Path:
    """A run folder as the engine writes it: config, log.jsonl, history, checkpoints."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(
        {"data": data or str(run / "data"), "out": str(run), "init": "scratch", **(config or {})}))
    (run / "history.json").write_text(json.dumps(history))
    events: list[dict[str, Any]] = [{"event": "start", "classes": classes or NAMES}]
    best_record = max((h for h in history if h["epoch"] and "mean_iou" in h),
                      key=lambda h: h["mean_iou"], default=None)
    if best and best_record is not None:
        events.append({"event": "checkpoint", "kind": "best", "iteration": best_record["iteration"]})
    if done:
        events.append({"event": "done", "status": done, "seconds": 12.5,
                       "metrics": history[-1] if history else {}})
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + "not json\n")
    if best:
        fake_checkpoint(run / "best.pt", b"best")
    if last:
        fake_checkpoint(run / "last.pt", b"last")
    return run


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    return VersionStore(tmp_path / "project" / ".fcn_studio" / "models")


def test_publish_makes_numbered_versions_with_metrics(store: VersionStore, tmp_path: Path) -> None:
    assert store.list() == [] and store.current() is None
    history = [epoch(0, 0.2), epoch(1, 0.5, seconds=3.0), epoch(2, 0.6), epoch(3, 0.55)]
    run = fake_run(tmp_path / "r1", history)
    v1 = store.publish(run, "imagenet", "finished", NAMES)
    assert v1 is not None and v1.id == "v001" and v1.usable
    assert v1.checkpoint == store.models_dir / "v001" / "model.pt"
    assert zipfile.ZipFile(v1.checkpoint).read("archive/data.pkl") == b"best"  # best.pt, moved
    assert not (run / "best.pt").exists() and (run / "last.pt").exists()
    assert v1.mean_iou == pytest.approx(0.6)  # the best epoch, not the last
    assert v1.before_mean_iou == pytest.approx(0.2)
    assert v1.per_class_iou == pytest.approx([0.6] * 3)
    assert (v1.status, v1.base, v1.class_names) == ("finished", "imagenet", NAMES)
    meta = json.loads((v1.dir / "meta.json").read_text())
    assert meta["history"] == history and meta["duration_s"] == 12.5
    assert meta["config"]["init"] == "scratch" and meta["checkpoint_from"] == "best.pt"
    assert v1.created and meta["run_dir"] == str(run.resolve())

    run2 = fake_run(tmp_path / "r2", [epoch(0, 0.6), epoch(1, 0.7)])
    v2 = store.publish(run2, v1.id, "finished", NAMES, move=False)
    assert v2 is not None and v2.id == "v002" and (run2 / "best.pt").exists()
    assert [v.id for v in store.list()] == ["v001", "v002"]
    assert store.get("v002").mean_iou == pytest.approx(0.7)
    assert not [p for p in store.models_dir.iterdir() if p.name.startswith(".")]  # no temp left


def test_publish_takes_events_and_last_checkpoint(store: VersionStore, tmp_path: Path) -> None:
    # A cancelled run before any validation: only last.pt, metrics from its last record.
    run = fake_run(tmp_path / "r", [epoch(1, None, train_loss=1.5)], best=False, done="cancelled")
    (run / "history.json").unlink()  # not written yet: the epoch events stand in
    events = [{"event": "start", "classes": NAMES},
              {"event": "epoch", "epoch": 1, "iteration": 7, "train_loss": 1.5, "time": 1.0}]
    v = store.publish(run, "v001", "crashed", NAMES, events=events)
    assert v is not None and v.status == "failed" and v.mean_iou is None
    assert v.meta["checkpoint_from"] == "last.pt" and v.meta["metrics"]["train_loss"] == 1.5
    assert v.meta["history"] == [{"epoch": 1, "iteration": 7, "train_loss": 1.5}]


def test_publish_records_the_run_ids(store: VersionStore, tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "train_ids.txt").write_text("a\nb\n")
    (run / "val_ids.txt").write_text("c\n")
    fake_run(run, [epoch(1, 0.4)], config={"train_list": str(run / "train_ids.txt"),
                                            "val_list": str(run / "val_ids.txt")})
    v = store.publish(run, "scratch", "finished", NAMES)
    assert v is not None and (v.meta["train_ids"], v.meta["val_ids"]) == (["a", "b"], ["c"])


def test_no_usable_checkpoint_publishes_nothing(store: VersionStore, tmp_path: Path) -> None:
    run = fake_run(tmp_path / "r", [epoch(1, 0.5)], best=False, last=False, done=None)
    assert store.publish(run, "imagenet", "failed", NAMES) is None
    (run / "last.pt").write_bytes(b"PK\x03\x04 torn")
    assert store.publish(run, "imagenet", "failed", NAMES) is None
    assert store.list() == []
    with pytest.raises(ValueError):
        store.publish(run, "imagenet", "exploded", NAMES)


def test_current_set_current_and_rollback(store: VersionStore, tmp_path: Path) -> None:
    for i in range(3):
        store.publish(fake_run(tmp_path / f"r{i}", [epoch(1, 0.1 * (i + 1))]), "imagenet", "finished",
                      NAMES)
    assert store.current().id == "v003"  # no pointer yet: the newest
    store.set_current("v002")
    assert store.current().id == "v002"
    store.set_current("v001")  # rollback
    assert store.current().id == "v001"
    assert json.loads((store.models_dir / "current.json").read_text()) == {"id": "v001"}
    store.set_current(None)  # back to the base model
    assert store.current() is None
    with pytest.raises(KeyError):
        store.set_current("v009")
    with pytest.raises(KeyError):
        store.get("../v001")
    store.set_current("v003")
    store.delete("v003")
    assert [v.id for v in store.list()] == ["v001", "v002"] and store.current().id == "v002"
    v4 = store.publish(fake_run(tmp_path / "r4", [epoch(1, 0.9)]), "v002", "finished", NAMES)
    # Never v003 again: stored predictions and learned heads keyed by "v003" belong to the
    # deleted one. The tombstone is no version, and the size is that of the weights file.
    assert v4.id == "v004" and [v.id for v in store.list()] == ["v001", "v002", "v004"]
    assert v4.size_bytes == v4.checkpoint.stat().st_size > 0


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.unlink(), "checkpoint missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:-30]), "checkpoint unreadable (truncated)"),
    (lambda p: p.write_bytes(b"\x80\x02 an old pickle"), "checkpoint is not a PyTorch file (no zip header)"),
    (lambda p: p.write_bytes(b""), "checkpoint empty (0 bytes)"),
])
def test_broken_checkpoints_are_flagged_not_raised(store: VersionStore, tmp_path: Path, damage,
                                                   reason: str) -> None:
    store.publish(fake_run(tmp_path / "r1", [epoch(1, 0.3)]), "imagenet", "finished", NAMES)
    v2 = store.publish(fake_run(tmp_path / "r2", [epoch(1, 0.4)]), "v001", "finished", NAMES)
    store.set_current("v002")
    damage(v2.checkpoint)
    listed = store.list()
    assert [v.broken for v in listed] == [None, reason]
    assert checkpoint_problem(v2.checkpoint) == reason
    assert store.current().id == "v001"  # the pointer's version is broken: the newest usable
    with pytest.raises(VersionError, match="v002"):
        store.set_current("v002")
    assert not better(listed[1], listed[0])


def test_corrupt_meta_and_half_versions(store: VersionStore, tmp_path: Path) -> None:
    v1 = store.publish(fake_run(tmp_path / "r1", [epoch(1, 0.3)]), "imagenet", "finished", NAMES)
    (v1.dir / "meta.json").write_text('{"id": "v001", "metr')
    half = store.models_dir / "v002"  # a model without meta.json: never published
    fake_checkpoint(half / "model.pt")
    (store.models_dir / ".new-crashed").mkdir()
    (listed,) = store.list()
    assert listed.id == "v001" and listed.broken == "meta.json corrupt" and listed.mean_iou is None
    assert store.current() is None
    v3 = store.publish(fake_run(tmp_path / "r2", [epoch(1, 0.4)]), "imagenet", "finished", NAMES)
    assert v3.id == "v003" and not (store.models_dir / ".new-crashed").exists()


def _version(vid: str, miou: float | None, base: str = "imagenet", before: float | None = None,
             broken: str | None = None) -> ModelVersion:
    meta = {"base": base, "metrics": {"mean_iou": miou} if miou is not None else {}}
    if before is not None:
        meta["before"] = {"epoch": 0, "mean_iou": before}
    return ModelVersion(vid, Path(vid), Path(vid) / "model.pt", meta, broken)


def test_better() -> None:
    old = _version("v001", 0.50)
    assert better(_version("v002", 0.55), old)
    assert not better(_version("v002", 0.45), old)
    # Trained from old and measured on the same images: old's score there (0.40) counts.
    assert better(_version("v002", 0.45, base="v001", before=0.40), old)
    assert not better(_version("v002", 0.55, base="v001", before=0.60), old)
    # Its base is not old: "before" measured another model, old's own score counts.
    assert not better(_version("v002", 0.45, base="imagenet", before=0.40), old)
    assert better(_version("v001", 0.3), None)
    assert not better(_version("v001", 0.3, before=0.35), None)
    assert not better(_version("v002", None), old)
    assert not better(_version("v002", 0.9, broken="checkpoint missing"), old)


def test_import_run(store: VersionStore, tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "data").mkdir(parents=True)
    run = fake_run(job / "run", [epoch(0, 0.1), epoch(1, 0.4)], data="data",
                   config={"init": "base.pt", "parent": "v007"})
    v = store.import_run(run, NAMES)
    assert v.id == "v001" and v.base == "v007" and v.status == "finished"
    assert v.meta["imported_from"] == str(run.resolve()) and (run / "best.pt").exists()  # copied

    wrong = fake_run(tmp_path / "wrong", [epoch(1, 0.4)], classes=["background", "cat"])
    with pytest.raises(VersionError, match=r"wrong.*cat"):
        store.import_run(wrong, NAMES)
    with pytest.raises(VersionError, match="no config.json"):
        store.import_run(tmp_path / "job", NAMES)
    with pytest.raises(VersionError, match="not a folder"):
        store.import_run(tmp_path / "nowhere", NAMES)
    empty = fake_run(tmp_path / "empty", [epoch(1, 0.4)], best=False, last=False)
    with pytest.raises(VersionError, match=r"empty.*no usable checkpoint.*missing"):
        store.import_run(empty, NAMES)
    # No start event: the class list beside its data decides.
    nolog = fake_run(tmp_path / "j2" / "run", [epoch(1, 0.4)], data="data")
    (nolog / "log.jsonl").unlink()
    with pytest.raises(VersionError, match="which classes"):
        store.import_run(nolog, NAMES)
    (tmp_path / "j2" / "data").mkdir()
    (tmp_path / "j2" / "data" / "class_names.txt").write_text("\n".join(NAMES) + "\n")
    assert store.import_run(nolog, NAMES).status == "failed"  # no done event: it never ended


def test_new_run_dir_is_fresh_and_tidied_after_publish(store: VersionStore) -> None:
    a, b = store.new_run_dir(), store.new_run_dir()
    assert a != b and a.is_dir() and b.is_dir() and a.parent == store.models_dir.parent / "runs"
    assert a.is_absolute()
    run = fake_run(a / "run", [epoch(1, 0.5)], done="time_limit")
    fake_checkpoint(run / "resume.pt")
    v = store.publish(run, "imagenet", "time_limit", NAMES)
    assert v is not None and v.usable and v.status == "time_limit"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.json", "log.jsonl"]


# -- the exported training job ---------------------------------------------------------------


def _engine_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcn-train", exit_on_error=False)
    add_arguments(parser)
    return parser


def _commands(run_sh: str) -> list[list[str]]:
    """The engine command lines in run.sh, as argv lists without the trailing "$@"."""
    found = []
    for line in run_sh.splitlines():
        words = shlex.split(line.strip(), comments=True)
        if words[:1] == ["exec"]:
            found.append([w for w in words[1:] if w != "$@"])
    return found


@pytest.mark.parametrize("gpus, nodes", [(1, 1), (4, 2)])
def test_export_training_job(tmp_path: Path, gpus: int, nodes: int) -> None:
    root = tmp_path / "project"
    write_voc(root, n=5, n_val=2)
    (root / "SegmentationClass" / "img001.png").unlink()  # an image without a label stays out
    project = Project.open(root)
    base = tmp_path / "v003.pt"
    fake_checkpoint(base)
    job = export_training_job(project, tmp_path / "job", epochs=7, batch_size=3, gpus_per_node=gpus,
                              nodes=nodes, base_checkpoint=base, parent="v003")
    assert sorted(p.name for p in (job / "data" / "JPEGImages").iterdir()) == [
        "img000.png", "img002.png", "img003.png", "img004.png"]
    assert (job / "data" / "ImageSets" / "Segmentation" / "val.txt").read_text() == "img003\nimg004\n"
    assert (job / "data" / "class_names.txt").read_text().split() == NAMES
    assert (job / "base.pt").read_bytes() == base.read_bytes()
    meta = json.loads((job / "job.json").read_text())
    assert meta["train_ids"] == ["img000", "img002"] and meta["class_names"] == NAMES
    assert meta["gpus_per_node"] == gpus and meta["nodes"] == nodes
    readme = (job / "README.txt").read_text()
    assert "Import run" in readme and "./run.sh" in readme
    run_sh = (job / "run.sh").read_text()
    assert os.access(job / "run.sh", os.X_OK)
    subprocess.run(["bash", "-n", str(job / "run.sh")], check=True)  # valid bash
    single, multi = _commands(run_sh)
    assert single[:4] == ["${PYTHON:-python}", "-m", "training", "train"]
    assert multi[:3] == ["torchrun", "--nproc_per_node", str(gpus)]
    assert ("--nnodes" in multi and "$NODE_RANK" in multi and "$MASTER_ADDR" in multi) == (nodes > 1)
    for command in (single, multi):
        engine = command[command.index("train") + 1:]
        assert engine == meta["args"]
        args = _engine_parser().parse_args(engine)
        assert (args.data, args.out, args.json) == (Path("data"), Path("run"), True)
        assert (args.epochs, args.batch_size, args.init, args.parent) == (7, 3, "base.pt", "v003")


def test_export_refuses_without_labels_or_into_a_full_folder(tmp_path: Path) -> None:
    root = tmp_path / "project"
    write_voc(root, n=2, n_val=1)
    project = Project.open(root)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Exception, match="new or empty"):
        export_training_job(project, tmp_path / "full", epochs=1, batch_size=1)
    job = export_training_job(project, tmp_path / "job", epochs=1, batch_size=1)
    assert "--init imagenet" in (job / "run.sh").read_text() and not (job / "base.pt").exists()
    for label in (root / "SegmentationClass").iterdir():
        label.unlink()
    with pytest.raises(Exception, match="no image has a saved label"):
        export_training_job(Project.open(root), tmp_path / "job2", epochs=1, batch_size=1)


def test_core_modules_import_no_qt_and_no_torch() -> None:
    code = ("import sys, fcn_studio.models.versions, fcn_studio.models.training_job_export; "
            "bad = [m for m in ('PySide6', 'torch') if m in sys.modules]; sys.exit(str(bad) if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
