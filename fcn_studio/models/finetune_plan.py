"""The fine-tune plan: what a fine-tuning run starts from, trains and validates on, for
how long, and the exact ``fcn-train`` arguments, decided in one place.

The one-click Fine-tune button, the Fine-tune Options dialog, Export Training Job
and the self-test all build their run from here, so their defaults, split and
command line cannot drift apart:

* **Defaults.** On a CPU a run trains for a time budget (:data:`CPU_BUDGET_S`,
  10 minutes), so one click never means an hour of a busy laptop; on a GPU for a
  number of epochs that grows as the images get fewer (:func:`default_epochs`).
* **Split.** The project's own split lists (``ImageSets/Segmentation``, kept by
  :func:`fcn_studio.project.project_state.split_for`): an image that validated one
  version never trains the next, so before/after scores stay honest. A share
  chosen in the dialog takes the images the same rule ranks most "val-like"
  (:func:`fcn_studio.project.project_state.split_score`).
* **Arguments.** :meth:`FinetunePlan.train_args` and :func:`train_argv` give the
  child's command line after ``train``.

Qt-free and torch-free: headless tests cover it (tests/core/test_finetune_plan.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from ..project.project_state import split_score
from .model_spec import BACKBONE_LABELS, DEFAULT_BACKBONE, ModelSpec
from .versions import ModelVersion, VersionStore

# The rates fcn-train picks when no --lr is given, by how the model's backbone started
# (training.train_config.default_lr; a test keeps these equal): named here so the
# window can explain "auto" without importing the engine.
PRETRAINED_LR: Final[float] = 1e-4
SCRATCH_LR: Final[float] = 1e-3
CPU_BUDGET_S: Final[float] = 600.0
"""The one-click run on a CPU: a 10-minute time budget."""
BUDGET_EPOCHS: Final[int] = 1000
"""With a time budget the epoch count is only an upper bound; the budget ends the run."""
MIN_EPOCHS: Final[int] = 10
MAX_EPOCHS: Final[int] = 50
PRESENTATIONS: Final[int] = 150
"""A default GPU run shows the model about this many training images at least."""
FEW_IMAGES: Final[int] = 5
"""Fewer saved labels than this get a warning (overfitting, a noisy score)."""
WORKERS: Final[int] = 1
"""Data-loader workers of a run on this computer: the app and its model keep running."""
ACCELERATORS: Final[tuple[str, ...]] = ("cuda", "mps")
AUTO_FINETUNE_CHOICES: Final[tuple[int, ...]] = (0, 10, 25, 50)
"""Model > Fine-tune in the Background: off (0), or after this many new saved labels."""

SplitOf = Callable[[str], "str | None"]
"""image id -> "train", "val" or None: the project's split lists."""


class PlanError(ValueError):
    """Why a fine-tune cannot start as asked; the text is shown to the person as it is."""


# -- what a person chooses ----------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneOptions:
    """A fine-tune as chosen in the dialog (or the one-click defaults).

    ``base``: "current", "imagenet" or a checkpoint path. Duration: ``iters``, else
    ``time_limit_s``, else ``epochs``; all None picks the default for the device.
    ``val_share``: None uses the project's split lists, a number in [0, 0.5] that
    share of the labelled images. ``batch_size`` None: the engine's default.
    ``extra_args`` go to fcn-train as they are (advanced use and tests).
    """

    base: str = "current"
    epochs: int | None = None
    time_limit_s: float | None = None
    iters: int | None = None
    lr: float | None = None  # None: the engine's, by how the backbone started
    device: str = "auto"
    val_share: float | None = None
    reinit_classes: bool = False
    batch_size: int | None = None
    # The backbone of a new model (base "imagenet", or an untrained one); None keeps the
    # model in use's, else the default. Ignored when the base has trained weights.
    backbone: str | None = None
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneOptions:
        """From a plain dict (scripted use, tests); an unknown key is an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PlanError(f"unknown fine-tune option(s): {', '.join(unknown)}")
        given = {k: v for k, v in values.items() if v is not None or k in ("val_share",)}
        if "extra_args" in given:
            given["extra_args"] = tuple(str(a) for a in given["extra_args"])
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_accelerator(devices: Sequence[str]) -> bool:
    """Whether ``devices`` (what the app's model runs on, or may) include a GPU."""
    return any(d.startswith(ACCELERATORS) for d in devices)


def uses_accelerator(device: str, devices: Sequence[str]) -> bool:
    """Whether a run on ``device`` ("auto", "cpu", "cuda:1", ...) trains on a GPU."""
    if device == "auto":
        return has_accelerator(devices)
    return device.startswith(ACCELERATORS)


def default_epochs(n_train: int) -> int:
    """Epochs of a default GPU run: about :data:`PRESENTATIONS` image presentations,
    so a handful of images still learns, within [MIN_EPOCHS, MAX_EPOCHS]."""
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(PRESENTATIONS / max(n_train, 1))))


def default_options(current_version: str | None, devices: Sequence[str],
                    n_train: int = 1) -> FinetuneOptions:
    """The one-click settings: the current model (else ImageNet), the engine's rate, the project's
    split; on a GPU :func:`default_epochs`, on a CPU the 10-minute budget."""
    gpu = has_accelerator(devices)
    return FinetuneOptions(
        base="current" if current_version else "imagenet",
        epochs=default_epochs(n_train) if gpu else None,
        time_limit_s=None if gpu else CPU_BUDGET_S,
    )


# -- the parts of a plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class BaseModel:
    """The model a run starts from.

    ``parent``: what the new version records as its base ("v003", "imagenet",
    "scratch" or a file's name); ``init``: fcn-train's ``--init`` ("imagenet",
    "scratch" or a checkpoint path); ``class_names``: its classes, None when
    unknown or when it has none to keep (ImageNet, scratch).
    """

    parent: str
    init: str
    class_names: tuple[str, ...] | None = None
    backbone: str = DEFAULT_BACKBONE  # of a new model ("imagenet", "scratch"); else unused

    @staticmethod
    def imagenet(backbone: str = DEFAULT_BACKBONE) -> BaseModel:
        return BaseModel("imagenet", "imagenet", backbone=backbone)

    @staticmethod
    def scratch(backbone: str = DEFAULT_BACKBONE) -> BaseModel:
        return BaseModel("scratch", "scratch", backbone=backbone)

    @property
    def is_new(self) -> bool:
        """No trained weights: the run builds the network, so its backbone is chosen."""
        return self.init in ("imagenet", "scratch")

    def with_backbone(self, backbone: str | None) -> BaseModel:
        if backbone is None or not self.is_new:
            return self
        if backbone not in BACKBONE_LABELS:
            raise PlanError(f"unknown backbone {backbone!r}; one of {', '.join(BACKBONE_LABELS)}")
        return BaseModel(self.parent, self.init, self.class_names, backbone)

    @staticmethod
    def file(path: str | Path, class_names: Sequence[str] | None = None,
             parent: str | None = None) -> BaseModel:
        names = tuple(class_names) if class_names is not None else None
        return BaseModel(parent or Path(path).name, str(path), names)

    @property
    def needs_imagenet_weights(self) -> bool:
        return self.init == "imagenet"


@dataclass(frozen=True)
class Duration:
    """How long a run trains: ``iters`` iterations, else a ``time_limit_s`` budget,
    else ``epochs``."""

    epochs: int | None = None
    time_limit_s: float | None = None
    iters: int | None = None

    def __post_init__(self) -> None:
        if self.iters is None and self.time_limit_s is None and self.epochs is None:
            raise PlanError("a run needs epochs, iterations or a time budget")
        for name in ("epochs", "iters"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PlanError(f"{name} must be at least 1, not {value}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise PlanError(f"the time budget must be positive, not {self.time_limit_s} s")

    def args(self) -> list[str]:
        if self.iters is not None:
            limit = [] if self.time_limit_s is None else ["--time-limit", f"{self.time_limit_s:g}"]
            return ["--iters", str(self.iters), *limit]
        if self.time_limit_s is not None:
            return ["--time-limit", f"{self.time_limit_s:g}", "--epochs",
                    str(self.epochs or BUDGET_EPOCHS)]
        return ["--epochs", str(self.epochs)]

    def describe(self) -> str:
        """``"10 minutes"``, ``"20 epochs"``, ``"40 iterations"``."""
        if self.iters is not None:
            return f"{self.iters} iterations"
        if self.time_limit_s is not None:
            minutes = self.time_limit_s / 60
            return f"{minutes:g} minute{'s' * (minutes != 1)}"
        return f"{self.epochs} epoch{'s' * (self.epochs != 1)}"


def duration_for(options: FinetuneOptions, n_train: int, accelerator: bool) -> Duration:
    """The duration ``options`` ask for, else the default for the device."""
    if options.iters is not None:
        return Duration(iters=options.iters, time_limit_s=options.time_limit_s)
    if options.time_limit_s is not None:
        return Duration(time_limit_s=options.time_limit_s)
    if options.epochs is not None:
        return Duration(epochs=options.epochs)
    if accelerator:
        return Duration(epochs=default_epochs(n_train))
    return Duration(time_limit_s=CPU_BUDGET_S)


def n_val_for(n: int, share: float) -> int:
    """How many of ``n`` images a validation ``share`` gives: none for a zero share or a
    single image, else at least one, and training always keeps at least one."""
    if n < 2 or share <= 0:
        return 0
    return min(n - 1, max(1, round(share * n)))


def split(ids: Sequence[str], split_of: SplitOf,
          val_share: float | None = None) -> tuple[list[str], list[str]]:
    """(train, val) of the labelled ``ids``, both sorted.

    ``val_share`` None: the project's lists (an id listed in val validates, every
    other one trains; when none would train, the images validate no more). A share:
    that share of the images validates (:func:`n_val_for`), those the project lists
    in val first, then those :func:`~fcn_studio.project.project_state.split_score` ranks
    lowest, so the same images validate run after run.
    """
    ids = sorted(dict.fromkeys(ids))
    if val_share is None:
        val = [i for i in ids if split_of(i) == "val"]
        train = [i for i in ids if split_of(i) != "val"]
        if not train:  # e.g. one labelled image that the lists put in val
            return ids, []
        return train, val
    if not 0.0 <= val_share <= 0.5:
        raise PlanError(f"the validation share must be from 0 to 50 %, not {100 * val_share:g} %")
    ranked = sorted(ids, key=lambda i: (split_of(i) != "val", split_score(i), i))
    chosen = set(ranked[:n_val_for(len(ids), val_share)])
    return [i for i in ids if i not in chosen], [i for i in ids if i in chosen]


def class_mismatch(base: Sequence[str] | None, project: Sequence[str]) -> str | None:
    """Why ``base``'s classes are not the project's, or None when they match (or are unknown)."""
    if base is None or list(base) == list(project):
        return None
    if sorted(base) == sorted(project):
        return "the base model has the project's classes in a different order"
    new = [c for c in project if c not in base]
    gone = [c for c in base if c not in project]
    parts = [f"the base model has {len(base)} classes, the project {len(project)}"]
    if new:
        parts.append("new: " + ", ".join(new))
    if gone:
        parts.append("not in the project: " + ", ".join(gone))
    return "; ".join(parts)


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetunePlan:
    """Everything a run needs, checked: build it with :func:`make_plan`."""

    base: BaseModel
    class_names: tuple[str, ...]
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    duration: Duration
    options: FinetuneOptions = field(default_factory=FinetuneOptions)

    @property
    def reinit_classes(self) -> bool:
        """New score layers: only when asked and the base's classes differ."""
        return self.options.reinit_classes and class_mismatch(
            self.base.class_names, self.class_names) is not None

    def warnings(self) -> list[str]:
        """What the person should know before the run (it starts anyway)."""
        out = []
        n = len(self.train_ids) + len(self.val_ids)
        if n < FEW_IMAGES:
            out.append(f"Only {n} labelled image{'s' * (n != 1)}: the model will learn a "
                       "little. More corrected images help more.")
        if not self.val_ids:
            out.append("No validation images: there will be no before/after score.")
        if self.base.init == "scratch":
            out.append("No model to start from (no version yet and no ImageNet weights): "
                       "training starts from an untrained FCN-8s.")
        return out

    def train_args(self, *, train_list: str | Path | None = None,
                   val_list: str | Path | None = None, init: str | None = None,
                   device: str | None = None, workers: int | None = WORKERS,
                   parent: str | None = None) -> list[str]:
        """fcn-train's options for this plan (everything after ``DATA --out RUN --json``).

        ``train_list``/``val_list``: id list files (the app's own runs; an empty val
        list means no validation, never the data's val split); without them the
        data folder's split lists are used (an exported job writes the plan's split
        there). ``init``, ``device``, ``parent``: override the plan's (an exported
        job starts from its copy ``base.pt``, on whatever device the server has;
        ``parent=""`` records no parent).
        ``workers`` None: the engine's default.
        """
        args = ["--init", init or self.base.init, "--device", device or self.options.device]
        if self.options.lr is not None:
            args += ["--lr", f"{self.options.lr:g}"]
        if self.base.is_new and self.base.backbone != DEFAULT_BACKBONE:
            args += ["--backbone", self.base.backbone]
        recorded = self.base.parent if parent is None else parent
        if recorded:  # "" records none
            args += ["--parent", recorded]
        if self.options.batch_size is not None:
            args += ["--batch-size", str(self.options.batch_size)]
        if workers is not None:
            args += ["--workers", str(workers)]
        if train_list is not None:
            # The app's own run: never resumed (a stopped run becomes a version as it
            # is), so no optimizer state to write; Cancel is seconds shorter for it. Its
            # versions are stored in float16: half the disk, the same predictions.
            args += ["--train-list", str(train_list), "--no-resume-state",
                     "--save-dtype", "float16"]
        if val_list is not None:
            args += ["--val-list", str(val_list)]
        if self.val_ids:
            args.append("--val-before")  # the starting model's score: the "before"
        args += self.duration.args()
        if self.reinit_classes:
            args.append("--reinit-classes")
        return args + list(self.options.extra_args)

    def summary(self) -> str:
        """E.g. ``"8 training and 2 validation images, 10 minutes, from v003"``."""
        return (f"{len(self.train_ids)} training and {len(self.val_ids)} validation images, "
                f"{self.duration.describe()}, from {self.base.parent}")


def make_plan(options: FinetuneOptions, *, labelled: Sequence[str], split_of: SplitOf,
              base: BaseModel, class_names: Sequence[str],
              devices: Sequence[str] = ("cpu",)) -> FinetunePlan:
    """Check ``options`` against the project and decide the run; PlanError says why not.

    ``labelled``: the ids with a saved label (the training data); ``devices``: those
    there are (a GPU among them makes "auto" a GPU run, with epochs by default).
    """
    if not labelled:
        raise PlanError("Save at least one corrected label first: only saved labels are "
                        "training data.")
    names = tuple(class_names)
    base = base.with_backbone(options.backbone)
    mismatch = class_mismatch(base.class_names, names)
    if mismatch and not options.reinit_classes:
        raise PlanError(f"The base model's classes differ from the project's ({mismatch}):\n"
                        f"model: {', '.join(base.class_names or ())}\nproject: {', '.join(names)}\n"
                        "Use Fine-tune Options and tick “Start new score layers”.")
    train, val = split(labelled, split_of, options.val_share)
    duration = duration_for(options, len(train), uses_accelerator(options.device, devices))
    return FinetunePlan(base, names, tuple(train), tuple(val), duration, options)


def train_argv(data: str | Path, out: str | Path, args: Sequence[str]) -> list[str]:
    """The whole command line after ``train``: ``DATA --out RUN --json ARGS``."""
    return [str(data), "--out", str(out), *([] if "--json" in args else ["--json"]), *args]


def new_labels(labelled: Sequence[str], newest: ModelVersion | None) -> list[str]:
    """Saved labels the newest version's run did not see (neither trained nor validated
    on): all of them before the first version. What a background fine-tune waits for."""
    if newest is None:
        return list(labelled)
    meta = newest.meta or {}
    seen = set(meta.get("train_ids") or ()) | set(meta.get("val_ids") or ())
    return [i for i in labelled if i not in seen]


def startup_spec(project: Any, backbone: str = DEFAULT_BACKBONE) -> ModelSpec:
    """The model a project opens with: its current version (what its last fine-tune
    made), else a new ImageNet FCN-8s on ``backbone`` (the labelling controller falls back
    to an untrained one when those weights are not on disk). Always with this project's
    classes, never another project's model. ``project``: a Project (``models_dir``,
    ``classes``)."""
    names = tuple(project.classes.names)
    cur = VersionStore(project.models_dir).current()
    if cur is not None and cur.broken is None:
        return ModelSpec.of_version(cur.id, cur.checkpoint, names, project.models_dir)
    return ModelSpec.imagenet(names, backbone)


def base_model(choice: str, *, current: ModelVersion | None, spec: ModelSpec | None = None,
               spec_classes: Sequence[str] | None = None) -> BaseModel:
    """The base a choice names: "imagenet"; a checkpoint path; "current": the project's
    current version, else the model in use (``spec``, with the classes it reported),
    else ImageNet when that is in use, else an untrained FCN-8s ("scratch")."""
    new_backbone = spec.backbone if spec is not None and spec.is_new else DEFAULT_BACKBONE
    if choice == "imagenet":
        return BaseModel.imagenet(new_backbone)
    if choice != "current":
        return BaseModel.file(choice)
    if current is not None and current.broken is None:
        names = tuple(current.class_names) or None
        return BaseModel(current.id, str(current.checkpoint), names)
    if spec is not None and spec.kind in ("file", "version") and spec.path:
        names = tuple(spec_classes) if spec_classes is not None else None
        return BaseModel(spec.version or Path(spec.path).name, spec.path, names)
    if spec is not None and spec.kind == "imagenet":
        return BaseModel.imagenet(new_backbone)
    return BaseModel.scratch(new_backbone)
