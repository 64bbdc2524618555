"""Export a training job for a GPU server or cluster: one folder that trains on its own.

    job/
      data/        a VOC export of the project's saved labels, with its split lists
      base.pt      the model to start from (when given)
      job.json     what the job is: classes, ids, options, the command
      run.sh       the torchrun command (one or more nodes) and a plain single-GPU line
      README.txt   how to run it, and how to bring run/ back into the app

The job trains with the same engine as the app (``python -m training train``),
under torchrun when there is more than one GPU: DistributedDataParallel, one
process per GPU, only rank 0 writes the run folder. Its images, split and
arguments come from the same fine-tune plan as a run in the app
(:mod:`fcn_studio.models.finetune_plan`), and every path in it is relative to the job
folder, so it can be copied anywhere. The run folder it writes (``run/``) comes
back with Import run (``VersionStore.import_run``).
Qt-free and torch-free.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from training import voc
from training.atomic import atomic_write_text
from training.errors import DataError

from .finetune_plan import BaseModel, FinetuneOptions, FinetunePlan, make_plan, train_argv
from .versions import now_iso

JOB_FORMAT: Final = "fcn-studio-training-job"
DATA_DIR: Final = "data"
RUN_DIR: Final = "run"
BASE_FILE: Final = "base.pt"
DEFAULT_EPOCHS: Final = 50
DEFAULT_BATCH: Final = 16


@dataclass(frozen=True)
class ExportChoice:
    """What Export Training Job asks: where, on how many GPUs, how long, what batch."""

    folder: Path
    gpus_per_node: int = 1
    nodes: int = 1
    epochs: int | None = DEFAULT_EPOCHS
    time_limit_s: float | None = None
    batch_size: int = DEFAULT_BATCH

    def options(self) -> FinetuneOptions:
        """The fine-tune options of the job: the current model, on the server's device."""
        return FinetuneOptions(base="current", epochs=None if self.time_limit_s else self.epochs,
                               time_limit_s=self.time_limit_s, batch_size=self.batch_size,
                               device="auto")


def torchrun_command(args: Sequence[str], gpus_per_node: int, nodes: int) -> list[str]:
    """``torchrun ... -m training train ARGS``; on several nodes each one is told its rank."""
    cmd = ["torchrun", "--nproc_per_node", str(gpus_per_node)]
    if nodes > 1:
        cmd += ["--nnodes", str(nodes), "--node_rank", "$NODE_RANK", "--master_addr", "$MASTER_ADDR",
                "--master_port", "$MASTER_PORT"]
    return [*cmd, "-m", "training", "train", *args]


def _shell(cmd: Sequence[str]) -> str:
    """Quote for bash, leaving $VARIABLES to expand (inside double quotes)."""
    return " ".join(f'"{c}"' if c.startswith("$") else shlex.quote(c) for c in cmd)


def _run_sh(args: list[str], gpus_per_node: int, nodes: int, summary: str) -> str:
    single = ["${PYTHON:-python}", "-m", "training", "train", *args]
    multi = torchrun_command(args, gpus_per_node, nodes)
    node_checks = (': "${NODE_RANK:?set NODE_RANK (0 on the master node, 1.. on the others)}"\n'
                   ': "${MASTER_ADDR:?set MASTER_ADDR (the master node host name or address)}"\n'
                   'MASTER_PORT="${MASTER_PORT:-29500}"\n') if nodes > 1 else ""
    return (
        "#!/usr/bin/env bash\n"
        f"# FCN Studio training job: {summary}\n"
        "# ./run.sh            train on every GPU listed below (torchrun)\n"
        "# ./run.sh single     train on one GPU (or the CPU) without torchrun\n"
        "# Extra options go to the training command, e.g. ./run.sh --resume, ./run.sh --time-limit 3600\n"
        "set -euo pipefail\n"
        'cd "$(dirname "$0")"\n'
        'if [ "${1:-}" = "single" ]; then\n'
        "  shift\n"
        f'  exec {_shell(single)} "$@"\n'
        "fi\n"
        f"{node_checks}"
        f'exec {_shell(multi)} "$@"\n'
    )


def _readme(summary: str, gpus_per_node: int, nodes: int, has_base: bool) -> str:
    nodes_text = (
        f"On each of the {nodes} nodes, with the same folder (a shared disk, or a copy):\n"
        "    NODE_RANK=0 MASTER_ADDR=<master host> ./run.sh     (on the master node)\n"
        "    NODE_RANK=1 MASTER_ADDR=<master host> ./run.sh     (on the next node, and so on)\n"
        "Only the master node (rank 0) writes run/.\n"
        if nodes > 1 else
        f"    ./run.sh           ({gpus_per_node} GPU{'s' if gpus_per_node > 1 else ''} via torchrun)\n"
    )
    start = ("base.pt, the model this project uses now" if has_base
             else "the ImageNet VGG16 weights (downloaded on first use: the server needs internet "
                  "access, or copy the file into the torch hub cache beforehand)")
    return (
        f"FCN Studio training job\n=======================\n\n{summary}\n"
        f"The model starts from {start}.\n\n"
        "1. Copy this folder to the GPU machine.\n"
        "2. Install the engine there: Python 3.10+, PyTorch with CUDA, and FCN Studio\n"
        "   (pip install fcn-studio, or put its source folder on PYTHONPATH).\n"
        f"3. Run it:\n{nodes_text}"
        "   One GPU without torchrun:  ./run.sh single\n"
        "   Interrupted (Ctrl+C, a preempted job)? The same command with --resume goes on:\n"
        "   ./run.sh --resume\n"
        "4. Training writes run/: config.json, log.jsonl, history.json, best.pt, last.pt.\n"
        "   Progress: one JSON event per line on stdout, readable lines on stderr.\n"
        "5. Bring run/ back to the computer with the project, then in FCN Studio choose\n"
        "   Import run... and pick the run folder. It becomes the project's next model\n"
        "   version (the classes must match this project's).\n\n"
        "job.json records the images, classes and options; run.sh holds the exact commands.\n"
    )


def _labelled(project: Any) -> list[str]:
    return [i for i in project.ids if project.state_of(i) == "saved"
            and project.label_path(i).is_file()]


def _plan_for(project: Any, epochs: int | None, time_limit_s: float | None,
              batch_size: int | None, base_checkpoint: Path | None, parent: str | None,
              extra_args: Sequence[str]) -> FinetunePlan:
    base = (BaseModel.file(base_checkpoint, parent=parent) if base_checkpoint is not None
            else BaseModel.imagenet())
    options = FinetuneOptions(epochs=epochs, time_limit_s=time_limit_s, batch_size=batch_size,
                              extra_args=tuple(extra_args))
    return make_plan(options, labelled=_labelled(project), split_of=lambda i: project.entry(i).split,
                     base=base, class_names=project.classes.names, devices=("cuda",))


def export_training_job(project: Any, dest: Path, plan: FinetunePlan | None = None, *,
                        epochs: int | None = None, time_limit_s: float | None = None,
                        batch_size: int | None = None, gpus_per_node: int = 1, nodes: int = 1,
                        base_checkpoint: Path | None = None, parent: str | None = None,
                        extra_args: Sequence[str] = ()) -> Path:
    """Write a self-contained training job folder at ``dest`` (new or empty; created
    with its parents) and return it.

    ``plan`` (:mod:`fcn_studio.models.finetune_plan`) decides the images, their split, the
    duration and the arguments, as for a fine-tune in the app; without one it is
    made from ``epochs`` or ``time_limit_s``, ``batch_size`` and ``extra_args``.
    ``project`` is a Project (``root``, ``ids``, ``state_of``, ``entry``,
    ``label_path``, ``classes.names``, ``flush``); its saved labels are the
    training data. ``base_checkpoint`` is copied in as ``base.pt`` (else the job
    starts from ImageNet); ``parent`` (the base version's id) is recorded in the
    checkpoint. Every path in the job is relative to its folder.
    """
    if gpus_per_node < 1 or nodes < 1:
        raise ValueError("gpus_per_node and nodes must be at least 1")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(dest, "the job folder must be new or empty")
    if base_checkpoint is not None and not Path(base_checkpoint).is_file():
        raise DataError(base_checkpoint, "missing: the model to start from")
    project.flush()
    if plan is None:
        if not _labelled(project):
            raise DataError(project.root, "nothing to train on: no image has a saved label yet")
        plan = _plan_for(project, epochs, time_limit_s, batch_size, base_checkpoint, parent,
                         extra_args)
    names = list(plan.class_names)
    ids = sorted(plan.train_ids + plan.val_ids)
    missing = [i for i in ids if not project.label_path(i).is_file()]
    if not ids or missing:
        raise DataError(project.root, "nothing to train on: no image has a saved label yet"
                        if not ids else f"no saved label for {missing[0]}")
    dest.mkdir(parents=True, exist_ok=True)
    data = dest / DATA_DIR
    exported = voc.export_voc(project.root, data, names, ids)
    # The plan's split, the one a fine-tune in the app uses: the job validates on the
    # images the project validates on.
    splits = {"train": list(plan.train_ids), "val": list(plan.val_ids)}
    for name, listed in (*splits.items(), ("trainval", ids)):
        voc.write_split(data, name, listed)
    init = "imagenet"
    if base_checkpoint is not None:
        shutil.copyfile(base_checkpoint, dest / BASE_FILE)
        init = BASE_FILE
    elif plan.base.init not in ("imagenet", "scratch"):
        raise DataError(Path(plan.base.init), "the job needs this base model's file: "
                                              "pass it as base_checkpoint")
    else:
        init = plan.base.init
    job_parent = parent or (plan.base.parent if plan.base.parent.startswith("v") else None)
    args = train_argv(DATA_DIR, RUN_DIR, plan.train_args(init=init, device="auto", workers=None,
                                                         parent=job_parent or ""))
    gpus = gpus_per_node * nodes
    batch = plan.options.batch_size
    summary = (f"{len(splits['train'])} training and {len(splits['val'])} validation images, "
               f"{len(names)} classes, {plan.duration.describe()}, "
               + (f"batch {batch} per GPU, " if batch else "")
               + f"{gpus} GPU{'s' if gpus > 1 else ''}"
               + (f" on {nodes} nodes" if nodes > 1 else ""))
    job: dict[str, Any] = {
        "format": JOB_FORMAT, "format_version": 2, "created": now_iso(),
        "project_name": Path(project.root).name, "class_names": names, "images": len(exported),
        "data": DATA_DIR, "run": RUN_DIR, "train_ids": splits["train"], "val_ids": splits["val"],
        "epochs": plan.duration.epochs, "time_limit_s": plan.duration.time_limit_s,
        "batch_size": batch, "gpus_per_node": gpus_per_node, "nodes": nodes,
        "base": BASE_FILE if base_checkpoint is not None else init,
        "parent": job_parent, "args": args, "command": torchrun_command(args, gpus_per_node, nodes),
    }
    atomic_write_text(dest / "job.json", json.dumps(job, indent=1) + "\n")
    run_sh = dest / "run.sh"
    atomic_write_text(run_sh, _run_sh(args, gpus_per_node, nodes, summary))
    run_sh.chmod(0o755)
    atomic_write_text(dest / "README.txt", _readme(summary, gpus_per_node, nodes,
                                                   base_checkpoint is not None))
    return dest
