"""One-click fine-tuning: the plan, the training child, publishing the new version,
switching to it and refreshing the predictions of images not yet corrected.

What a run trains on, for how long and with which arguments is decided by the
Qt-free :mod:`fcn_studio.models.finetune_plan`; this controller runs it. It gets only
what it uses: the labelling controller (project, model in use, ``flush``,
``set_model``) and a :class:`~fcn_studio.ui.prompter.Prompter` for questions
and errors; it never reaches into the window. Widgets (dialog, training panel,
models panel) only show and ask; the child process does the training through
the engine's ``train`` command.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from ...models import finetune_plan as fp
from ...models.finetune_plan import FinetuneOptions, FinetunePlan, PlanError, startup_spec
from ...models.model_spec import ModelSpec
from ...models.training_job_export import ExportChoice, export_training_job
from ...models.versions import ModelVersion, VersionError, VersionStore, better, format_size
from ...project.project import Project
from ..prompter import Prompter
from ..worker import BackgroundWorker
from .training_job import TrainingJob
from .training_job_dialog import ask_export

CLOSE_WAIT_MS = 15_000
"""Closing the app during a run: how long the child gets to stop and write last.pt."""


class Labelling(Protocol):
    """What fine-tuning needs of the labelling controller."""

    project: Project | None
    spec: ModelSpec | None

    new_backbone: str  # the backbone of a new model

    @property
    def model(self) -> Any: ...  # ModelInfo | None: device, class_names

    def flush(self) -> None: ...

    def set_model(self, spec: ModelSpec, refresh_all: bool = False) -> None: ...


class FinetuneController(QObject):
    versionsChanged = Signal()
    runStarted = Signal(object)  # the FinetunePlan of a run whose child was just started
    autoStarted = Signal(object)  # the same, for a run started in the background by itself
    autoStatus = Signal(str)
    """A line about a background run for the status bar: those never open a box."""

    def __init__(self, labelling: Labelling, prompter: Prompter,
                 parent: QObject | None = None, job: TrainingJob | None = None) -> None:
        super().__init__(parent)
        self.labelling = labelling
        self.prompter = prompter
        self.job = job or TrainingJob(self)
        self.store: VersionStore | None = None
        self._run: dict[str, Any] | None = None  # what the running job started from
        self._closing = False
        self.auto_after = 0
        """Start a run by itself once this many new labels are saved (0: never)."""
        self._auto_hold = 0  # after a background run that failed: labels to wait for first
        # The newest version, read once per change of the versions (every change here
        # emits versionsChanged), not from disk at every save.
        self._newest: tuple[ModelVersion | None] | None = None
        self.versionsChanged.connect(self._forget_newest)
        # Importing a run copies its checkpoint (hundreds of MB): off the GUI thread.
        self.background = BackgroundWorker("finetune-io", self)
        self.background.done.connect(self._on_imported)
        self.background.failed.connect(
            lambda _key, text: self.prompter.error("Import run", text))
        self.job.finished.connect(self._on_finished)

    # -- project --------------------------------------------------------------------------
    def set_project(self, project: Project | None) -> None:
        self.store = VersionStore(project.models_dir) if project is not None else None
        self.versionsChanged.emit()

    def versions(self) -> list[ModelVersion]:
        return self.store.list() if self.store is not None else []

    def current_id(self) -> str | None:
        cur = self.store.current() if self.store is not None else None
        return cur.id if cur is not None else None

    # -- planning -------------------------------------------------------------------------------
    def _labelled(self) -> list[str]:
        p = self.labelling.project
        return [i for i in p.ids if p.state_of(i) == "saved"] if p is not None else []

    def devices(self) -> list[str]:
        """Devices that exist, as the worker found them (no torch import on the GUI thread):
        a GPU is offered only when the model already runs on one."""
        info = self.labelling.model
        gpu = info.device.split(":")[0] if info is not None else "cpu"
        return ["auto", "cpu"] + ([gpu] if gpu in ("cuda", "mps") else [])

    def base(self, choice: str) -> fp.BaseModel:
        model = self.labelling.model
        return fp.base_model(choice, current=self.store.current() if self.store else None,
                             spec=self.labelling.spec,
                             spec_classes=list(model.class_names) if model is not None else None)

    def plan(self, options: FinetuneOptions) -> FinetunePlan:
        """The run ``options`` ask for on this project (PlanError: why it cannot start)."""
        p = self.labelling.project
        if p is None:
            raise PlanError("Open a project first.")
        return fp.make_plan(options, labelled=self._labelled(),
                            split_of=lambda i: p.entry(i).split, base=self.base(options.base),
                            class_names=p.classes.names, devices=self.devices())

    # -- starting -----------------------------------------------------------------------------
    def one_click(self) -> None:
        """Fine-tune with the defaults: the current model, the project's saved labels, a
        time budget on a CPU and epochs on a GPU."""
        self.start(FinetuneOptions())

    def dialog(self) -> None:
        from .finetune_dialog import FinetuneDialog

        p = self.labelling.project
        if p is None or self.store is None:
            return
        labelled = self._labelled()
        cur = self.store.current()
        train, val = fp.split(labelled, lambda i: p.entry(i).split)
        current = self.base("current")
        dlg = FinetuneDialog(self.prompter.parent_widget,
                             current_version=cur.id if cur else None, labelled=len(labelled),
                             class_names=list(p.classes.names),
                             base_classes=_listed(current.class_names),
                             devices=self.devices(), project_split=(len(train), len(val)),
                             backbone=current.backbone if current.is_new
                             else self.labelling.new_backbone,
                             current_is_new=current.is_new)
        if dlg.exec():
            self.start(dlg.options())

    # -- in the background, by itself -------------------------------------------------------
    def set_auto_after(self, count: int) -> None:
        """Model > Fine-tune in the Background: after ``count`` new labels (0: off)."""
        self.auto_after = max(0, int(count))
        self._auto_hold = 0

    def on_label_saved(self, _image_id: str = "") -> None:
        """A label reached the disk: start a background run once enough are new since the
        newest version's run. It uses the one-click defaults and never asks anything."""
        if not self.auto_after or self.store is None or self.job.is_running():
            return
        if self._newest is None:
            self._newest = (self.store.latest(),)
        labelled = self._labelled()
        fresh = fp.new_labels(labelled, self._newest[0])
        if len(fresh) >= self.auto_after and len(labelled) >= self._auto_hold:
            self.start(FinetuneOptions(), auto=True)

    def _forget_newest(self) -> None:
        self._newest = None

    def _say(self, auto: bool, kind: str, text: str) -> None:
        """A message: the status bar for background runs, a box for the person's own."""
        if auto:
            self.autoStatus.emit(f"Background fine-tune: {text}")
        else:
            getattr(self.prompter, kind)("Fine-tune", text)

    def start(self, options: FinetuneOptions | dict[str, Any], *, auto: bool = False) -> bool:
        """Start a run; False (and the reason shown) when it cannot start. ``auto``: a
        background run (no question, no box; a missing ImageNet download fails the run)."""
        p = self.labelling.project
        if p is None or self.store is None:
            return False
        if self.job.is_running():
            self._say(auto, "warn", "A training run is already in progress; cancel it first.")
            return False
        self.labelling.flush()  # the newest corrections are training data too
        try:
            opts = options if isinstance(options, FinetuneOptions) else (
                FinetuneOptions.from_dict(options))
            plan = self.plan(opts)
        except PlanError as exc:
            self._say(auto, "warn", str(exc))
            return False
        if (not auto and plan.base.needs_imagenet_weights
                and not self._imagenet_weights(plan.base.backbone)):
            return False
        # plan.warnings() are shown as notes in the training panel (runStarted), never as
        # boxes: a one-click start must start.
        run_dir = self.store.new_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        lists = {}
        for name, ids in (("train", plan.train_ids), ("val", plan.val_ids)):
            lists[name] = run_dir / f"{name}_ids.txt"
            lists[name].write_text("".join(f"{i}\n" for i in ids))
        args = plan.train_args(train_list=lists["train"], val_list=lists["val"])
        self._run = {"base": plan.base.parent, "names": list(plan.class_names),
                     "run_dir": run_dir, "auto": auto, "labelled": len(plan.train_ids)
                     + len(plan.val_ids)}
        self._closing = False
        self.job.start(p.root, run_dir / "run", args)
        (self.autoStarted if auto else self.runStarted).emit(plan)
        if auto:
            self.autoStatus.emit(f"Background fine-tune started on {self._run['labelled']} "
                                 "saved labels (View > Panels > Training shows it).")
        return True

    def _imagenet_weights(self, backbone: str) -> bool:
        from .downloads import ensure_imagenet_weights

        parent = self.prompter.parent_widget
        return parent is not None and ensure_imagenet_weights(parent, backbone)

    # -- finishing --------------------------------------------------------------------------
    def _on_finished(self, result: dict[str, Any]) -> None:
        run, self._run = self._run, None
        if run is None or self.store is None:
            return
        status = result.get("status", "failed")
        in_use = self.current_id()  # before publishing: the newest version counts as current
        version = None
        try:
            # Even a failed or killed run keeps its last good checkpoint as a version
            # (publish returns None when there is none).
            version = self.store.publish(Path(result.get("run_dir") or run["run_dir"] / "run"),
                                         run["base"], status, run["names"],
                                         events=self.job.events)
        except Exception as exc:  # noqa: BLE001 - shown, the app carries on
            if not self._closing:
                self._say(run["auto"], "error", f"Could not store the new model:\n{exc}")
        if version is not None and in_use != version.id:
            # Until it is chosen, the model in use stays the project's current one, also on
            # the next start (with no pointer, the newest version would take its place).
            with contextlib.suppress(OSError, VersionError):
                self.store.set_current(in_use)
        self.versionsChanged.emit()
        if self._closing:
            return  # the app is closing: the version is kept, nothing is switched or asked
        if status in ("failed", "crashed"):
            kept = f" Its last checkpoint was kept as {version.id}." if version else ""
            if run["auto"]:  # not again at the next save: after as many new labels again
                self._auto_hold = run["labelled"] + self.auto_after
                self._say(True, "warn", f"stopped: {result.get('error') or status}.{kept} "
                          "The Training panel has its log.")
            else:
                self.prompter.warn("Fine-tune", f"Training stopped: "
                                   f"{result.get('error') or status}.{kept}\n\n"
                                   f"{(result.get('log') or '')[-1500:]}")
            return
        if version is None:
            return
        old = self.store.get(run["base"]) if run["base"].startswith("v") else None
        if better(version, old):
            self.use_version(version.id)
            if run["auto"]:
                self._say(True, "info", f"{version.id} is in use ({_pct(version.mean_iou)} "
                          "on validation).")
        elif run["auto"]:  # kept in the Models dock; switching is the person's call
            self._say(True, "info", f"{version.id} scored {_pct(version.mean_iou)} against "
                      f"{_pct(version.before_mean_iou)} before: the model in use stays "
                      "(the Models dock can switch).")
        elif self.prompter.confirm(
                "Fine-tune", f"The new model {version.id} does not score better on validation "
                f"({_pct(version.mean_iou)} vs {_pct(version.before_mean_iou)}). Use it anyway?"):
            self.use_version(version.id)

    def use_version(self, version_id: str) -> None:
        p = self.labelling.project
        if self.store is None or p is None:
            return
        v = self.store.get(version_id)
        if v.broken is not None:
            self.prompter.warn("Models", f"{v.id} cannot be used: {v.broken}")
            return
        self.store.set_current(v.id)
        self.labelling.set_model(ModelSpec.of_version(v.id, v.checkpoint, p.classes.names,
                                                      p.models_dir), refresh_all=True)
        self.versionsChanged.emit()

    def delete_version(self, version_id: str) -> None:
        """Delete a version after asking; deleting the one in use switches to the model the
        project then opens with (the newest usable version, else the starting model)."""
        p = self.labelling.project
        if self.store is None or p is None:
            return
        try:
            v = self.store.get(version_id)
        except KeyError:
            self.versionsChanged.emit()  # gone already: show what is there
            return
        if self._run is not None and self._run["base"] == v.id:
            self.prompter.warn("Models", f"{v.id} cannot be deleted: the training run in "
                                         "progress started from it.")
            return
        in_use = v.id == self.current_id()
        text = (f"Delete {v.id} ({format_size(v.size_bytes)})? Its weights are removed from "
                "the project; this cannot be undone.")
        if in_use:
            text += "\n\nIt is the model in use: the app switches to the previous one."
        if not self.prompter.confirm("Delete model version", text):
            return
        try:
            self.store.delete(v.id)
        except OSError as exc:
            self.prompter.error("Models", f"Could not delete {v.id}: {exc}")
        else:
            if in_use:
                self.labelling.set_model(startup_spec(p, self.labelling.new_backbone),
                                         refresh_all=True)
        self.versionsChanged.emit()

    # -- beyond one machine ----------------------------------------------------------------------
    def import_run(self) -> None:
        p = self.labelling.project
        if self.store is None or p is None:
            return
        folder = self.prompter.choose_folder("Run folder trained elsewhere")
        if folder is None:
            return
        store, names = self.store, list(p.classes.names)
        self.background.submit("import", lambda _token: store.import_run(folder, names))

    def _on_imported(self, _key: object, version: ModelVersion) -> None:
        self.versionsChanged.emit()
        self.prompter.info("Import run", f"Imported as {version.id}.")

    def export_job(self) -> None:
        """Export Training Job: ask where and how (GPUs, nodes, duration, batch), write it."""
        p = self.labelling.project
        if p is None or self.store is None:
            return
        self.labelling.flush()
        try:
            preview = self.plan(FinetuneOptions(epochs=fp.MIN_EPOCHS))
        except PlanError as exc:
            self.prompter.warn("Export training job", str(exc))
            return
        choice = ask_export(self.prompter.parent_widget, preview, p.root)
        if choice is not None:
            self.write_job(choice)

    def write_job(self, choice: ExportChoice) -> Path | None:
        """Write the job ``choice`` describes (the current model as its base); None when
        it cannot be written (the reason is shown)."""
        try:
            plan = self.plan(choice.options())
            checkpoint = None if plan.base.init in ("imagenet", "scratch") else Path(plan.base.init)
            out = export_training_job(self.labelling.project, choice.folder, plan,
                                      gpus_per_node=choice.gpus_per_node, nodes=choice.nodes,
                                      base_checkpoint=checkpoint)
        except Exception as exc:  # noqa: BLE001 - any failure is shown, the app carries on
            self.prompter.error("Export training job", str(exc))
            return None
        self.prompter.info("Export training job",
                           f"Written to {out}. Its README.txt says how to run it with "
                           "torchrun and how to bring the result back (Import run).")
        return out

    # -- closing ----------------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """Closing during a run: ask once; on Yes stop the child (its last checkpoint
        becomes a version) and close without asking anything more."""
        if not self.job.is_running():
            return True
        if not self.prompter.confirm("FCN Studio", "A training run is in progress. Stop it "
                                                   "and close? Its last checkpoint is kept."):
            return False
        self._closing = True
        self.job.shutdown(CLOSE_WAIT_MS)
        return True


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names is not None else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
