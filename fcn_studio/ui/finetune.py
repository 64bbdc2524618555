"""One-click fine-tuning: checks, the training child, publishing the new version,
switching to it and refreshing the predictions of images not yet corrected.

Widgets (dialog, training panel, models panel) only show and ask; the child
process does the training through the engine's `train` command.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..model_spec import ModelSpec
from ..versions import ModelVersion, VersionStore, better
from .training_job import TrainingJob

if TYPE_CHECKING:
    from .main_window import MainWindow

FEW_IMAGES = 5


class FinetuneController(QObject):
    versionsChanged = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.job = TrainingJob(self)
        self.store: VersionStore | None = None
        self._run: dict | None = None  # what the running job started from
        self.job.finished.connect(self._on_finished)

    # -- project --------------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.store = VersionStore(project.models_dir) if project is not None else None
        self.versionsChanged.emit()

    def versions(self) -> list[ModelVersion]:
        return self.store.list() if self.store is not None else []

    def current_id(self) -> str | None:
        cur = self.store.current() if self.store is not None else None
        return cur.id if cur is not None else None

    def startup_spec(self, project) -> ModelSpec:
        """The model a project opens with: its current version, else ImageNet FCN-8s (the
        controller falls back to an untrained FCN-8s when those weights are not on disk).
        Always with this project's classes, never another project's model."""
        names = tuple(project.classes.names)
        cur = self.store.current() if self.store is not None else None
        if cur is not None and cur.broken is None:
            return ModelSpec.of_version(cur.id, cur.checkpoint, names, project.models_dir)
        return ModelSpec.imagenet(names)

    # -- starting -----------------------------------------------------------------------------
    def _labelled(self) -> list[str]:
        p = self.w.controller.project
        return [i for i in p.ids if p.state_of(i) == "saved"] if p is not None else []

    def one_click(self) -> None:
        """Fine-tune with the defaults: the current model, the project's saved labels."""
        self.start({"base": "current", "epochs": None, "time_limit_s": None, "lr": 1e-4,
                    "device": "auto", "val_share": 0.2, "reinit_classes": False})

    def dialog(self) -> None:
        from .finetune_dialog import FinetuneDialog

        p = self.w.controller.project
        if p is None:
            return
        cur = self.store.current() if self.store else None
        dlg = FinetuneDialog(self.w, current_version=cur.id if cur else None,
                             labelled=len(self._labelled()), class_names=list(p.classes.names),
                             base_classes=cur.meta.get("class_names") if cur else None,
                             devices=self._devices())
        if dlg.exec():
            self.start(dlg.options())

    def _devices(self) -> list[str]:
        """Devices that exist, as the worker found them (no torch import on the GUI thread):
        a GPU is offered only when the model already runs on one."""
        info = self.w.controller.model
        gpu = info.device.split(":")[0] if info is not None else "cpu"
        return ["auto", "cpu"] + ([gpu] if gpu in ("cuda", "mps") else [])

    def _refuse(self, text: str) -> None:
        QMessageBox.warning(self.w, "Fine-tune", text)

    def start(self, opts: dict) -> bool:
        c = self.w.controller
        p = c.project
        if p is None or self.store is None:
            return False
        if self.job.is_running():
            self._refuse("A training run is already in progress; cancel it first.")
            return False
        c.flush()  # the newest corrections are training data too
        ids = self._labelled()
        if not ids:
            self._refuse("Save at least one corrected label first: only saved labels are "
                         "training data.")
            return False
        if len(ids) < FEW_IMAGES:
            QMessageBox.information(self.w, "Fine-tune", f"Only {len(ids)} labelled image(s): "
                                    "the model will learn a little. More corrected images "
                                    "help more.")
        base, init, base_classes = self._base(opts)
        if init is None:
            return False
        names = list(p.classes.names)
        reinit = bool(opts.get("reinit_classes"))
        if base_classes is not None and list(base_classes) != names and not reinit:
            self._refuse("The base model's classes differ from the project's:\n"
                         f"model: {', '.join(base_classes)}\nproject: {', '.join(names)}\n"
                         "Use Fine-tune… and tick 'start new score layers'.")
            return False
        run_dir = self.store.new_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        train, val = self._split(ids, float(opts.get("val_share", 0.2)))
        (run_dir / "train_ids.txt").write_text("\n".join(train) + "\n")
        (run_dir / "val_ids.txt").write_text("\n".join(val) + ("\n" if val else ""))
        args = ["--init", init, "--train-list", str(run_dir / "train_ids.txt"),
                "--device", str(opts.get("device", "auto")), "--lr", str(opts.get("lr", 1e-4)),
                "--parent", base, "--workers", "1"]
        if val:
            args += ["--val-list", str(run_dir / "val_ids.txt"), "--val-before"]
        else:
            args += ["--val-list", str(run_dir / "val_ids.txt")]
        if opts.get("iters"):
            args += ["--iters", str(opts["iters"])]
        elif opts.get("time_limit_s"):
            args += ["--time-limit", str(opts["time_limit_s"]), "--epochs", "1000"]
        else:
            args += ["--epochs", str(opts.get("epochs") or self._default_epochs(len(train)))]
        if reinit:
            args.append("--reinit-classes")
        args += [str(a) for a in opts.get("extra_args", ())]  # advanced: any fcn-train option
        self._run = {"base": base, "names": names, "run_dir": run_dir}
        self.w.training_panel.reset()
        self.job.start(p.root, run_dir / "run", args)
        self.w.show_training_dock()
        return True

    @staticmethod
    def _default_epochs(n_train: int) -> int:
        # About 150 image presentations at least, so a handful of images still learns.
        return max(10, min(50, 150 // max(n_train, 1)))

    @staticmethod
    def _split(ids: list[str], share: float) -> tuple[list[str], list[str]]:
        """A seeded split: stable for the same ids, at least one image on each side."""
        if len(ids) < 2 or share <= 0:
            return ids, []
        order = sorted(ids)
        random.Random(0).shuffle(order)
        n_val = min(len(ids) - 1, max(1, round(share * len(ids))))
        return sorted(order[n_val:]), sorted(order[:n_val])

    def _base(self, opts: dict) -> tuple[str, str | None, list[str] | None]:
        """(base name, --init value, base classes or None when unknown)."""
        base = opts.get("base", "current")
        if base == "imagenet":
            from .downloads import ensure_imagenet_weights

            if not ensure_imagenet_weights(self.w):
                return "imagenet", None, None
            return "imagenet", "imagenet", None
        if base == "current":
            cur = self.store.current() if self.store else None
            if cur is not None and cur.broken is None:
                return cur.id, str(cur.checkpoint), cur.meta.get("class_names")
            spec = self.w.controller.spec
            if spec is not None and spec.kind in ("file", "version") and spec.path:
                model = self.w.controller.model
                return spec.version, spec.path, list(model.class_names) if model else None
            if spec is not None and spec.kind == "imagenet":
                return "imagenet", "imagenet", None
            # No version yet and no ImageNet weights: start from scratch, and say so.
            return "scratch", "scratch", None
        return Path(base).name, str(base), None

    # -- finishing --------------------------------------------------------------------------
    def _on_finished(self, result: dict) -> None:
        run, self._run = self._run, None
        if run is None or self.store is None:
            return
        status = result.get("status", "failed")
        version = None
        try:
            # Even a failed or killed run keeps its last good checkpoint as a version
            # (publish returns None when there is none).
            version = self.store.publish(Path(result.get("run_dir") or run["run_dir"] / "run"),
                                         run["base"], status, run["names"],
                                         events=self.job.events)
        except Exception as exc:  # noqa: BLE001 - shown, the app carries on
            QMessageBox.critical(self.w, "Fine-tune", f"Could not store the new model:\n{exc}")
        self.versionsChanged.emit()
        if status in ("failed", "crashed"):
            kept = f" Its last checkpoint was kept as {version.id}." if version else ""
            QMessageBox.warning(self.w, "Fine-tune", f"Training stopped: "
                                f"{result.get('error') or status}.{kept}\n\n"
                                f"{(result.get('log') or '')[-1500:]}")
            return
        if version is None:
            return
        old = self.store.get(run["base"]) if run["base"].startswith("v") else None
        if better(version, old):
            self.use_version(version.id)
        else:
            choice = QMessageBox.question(
                self.w, "Fine-tune",
                f"The new model {version.id} does not score better on validation "
                f"({_pct(version.mean_iou)} vs {_pct(version.before_mean_iou)}). Use it anyway?")
            if choice == QMessageBox.StandardButton.Yes:
                self.use_version(version.id)

    def use_version(self, version_id: str) -> None:
        if self.store is None:
            return
        v = self.store.get(version_id)
        if v.broken is not None:
            QMessageBox.warning(self.w, "Models", f"{v.id} cannot be used: {v.broken}")
            return
        self.store.set_current(v.id)
        p = self.w.controller.project
        self.w.controller.set_model(ModelSpec.of_version(v.id, v.checkpoint, p.classes.names,
                                                         p.models_dir), refresh_all=True)
        self.versionsChanged.emit()

    # -- beyond one machine ----------------------------------------------------------------------
    def import_run(self) -> None:
        if self.store is None:
            return
        folder = QFileDialog.getExistingDirectory(self.w, "Run folder trained elsewhere")
        if not folder:
            return
        try:
            v = self.store.import_run(Path(folder), list(self.w.controller.project.classes.names))
        except Exception as exc:  # noqa: BLE001
            QMessageBox.critical(self.w, "Import run", str(exc))
            return
        self.versionsChanged.emit()
        QMessageBox.information(self.w, "Import run", f"Imported as {v.id}.")

    def export_job(self) -> None:
        from ..training_job_export import export_training_job

        p = self.w.controller.project
        if p is None:
            return
        dest = QFileDialog.getExistingDirectory(self.w, "Empty folder for the training job")
        if not dest:
            return
        self.w.controller.flush()
        cur = self.store.current() if self.store else None
        try:
            out = export_training_job(p, Path(dest), epochs=50, batch_size=16,
                                      base_checkpoint=cur.checkpoint if cur else None)
        except Exception as exc:  # noqa: BLE001
            QMessageBox.critical(self.w, "Export training job", str(exc))
            return
        QMessageBox.information(self.w, "Export training job",
                                f"Written to {out}. Its README.txt says how to run it with "
                                "torchrun and how to bring the result back (Import run).")

    def confirm_close(self) -> bool:
        if not self.job.is_running():
            return True
        choice = QMessageBox.question(self.w, "FCN Studio",
                                      "A training run is in progress. Stop it and close? "
                                      "Its last checkpoint is kept.")
        if choice != QMessageBox.StandardButton.Yes:
            return False
        self.job.cancel()
        self.job.wait(60_000)
        return True


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
