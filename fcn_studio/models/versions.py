"""Model versions: every training run becomes a numbered version inside the project.

Layout, under ``Project.models_dir``::

    v001/model.pt    the run's best.pt (else its last.pt)
    v001/meta.json   base, status, image ids, config, history, metrics, "before", classes
    current.json     {"id": "v002"}: the version the project uses; rollback = point back
    ../runs/<time>/  folders for training runs (``VersionStore.new_run_dir``)

A version folder appears whole or not at all: model.pt and meta.json are written
into a hidden temp folder beside the versions, which is then renamed to vNNN
(ARCHITECTURE.md, "Writes are atomic"). No Qt and no torch here: metrics come from the
run's history.json and JSON events, and a checkpoint is only checked to be a
complete zip file with a pickle in it (what ``torch.save`` writes), never loaded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from training.atomic import atomic_write_text, current_umask
from training.errors import DataError

FORMAT: Final = "fcn-studio-version"
FORMAT_VERSION: Final = 1
MODEL_FILE: Final = "model.pt"
META_FILE: Final = "meta.json"
CURRENT_FILE: Final = "current.json"
RUNS_DIR: Final = "runs"
STATUSES: Final = ("finished", "cancelled", "time_limit", "failed")
_ID_RE: Final = re.compile(r"v(\d{3,})")
_TOMBSTONE: Final = ".deleted-"  # + a deleted version's id: its number stays taken


def format_size(size: int | None) -> str:
    """Bytes on disk, as a person reads them: "537 MB", "12.4 MB", "45 kB"."""
    if size is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size} B"


class VersionError(DataError):
    """A run folder or version cannot be used; the message names the folder."""


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable torch checkpoint, or None. Reads the zip directory only."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "checkpoint empty (0 bytes)"
        with open(path, "rb") as f:
            if f.read(2) != b"PK":
                return "checkpoint is not a PyTorch file (no zip header)"
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except FileNotFoundError:
        return "checkpoint missing"
    except zipfile.BadZipFile:
        return "checkpoint unreadable (truncated)"
    except OSError as exc:
        return f"checkpoint unreadable ({exc.strerror or exc})"
    if not any(n.endswith("data.pkl") for n in names):
        return "checkpoint is not a PyTorch file (no data.pkl inside)"
    return None


@dataclass(frozen=True)
class ModelVersion:
    id: str
    dir: Path
    checkpoint: Path
    meta: dict[str, Any]
    broken: str | None = None  # why it cannot be loaded; None when usable

    @property
    def usable(self) -> bool:
        return self.broken is None

    @property
    def size_bytes(self) -> int | None:
        """The size of its weights file on disk; None when it cannot be read."""
        try:
            return self.checkpoint.stat().st_size
        except OSError:
            return None

    @property
    def metrics(self) -> dict[str, Any]:
        """The final validation scores of the checkpoint kept (mean_iou, per_class_iou, ...)."""
        m = self.meta.get("metrics")
        return m if isinstance(m, dict) else {}

    @property
    def mean_iou(self) -> float | None:
        return _number(self.metrics.get("mean_iou"))

    @property
    def before_mean_iou(self) -> float | None:
        """The base model's mean IoU on the same validation images (epoch 0), if measured."""
        before = self.meta.get("before")
        return _number(before.get("mean_iou")) if isinstance(before, dict) else None

    @property
    def per_class_iou(self) -> list[float | None]:
        values = self.metrics.get("per_class_iou")
        return [_number(v) for v in values] if isinstance(values, list) else []

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))

    @property
    def status(self) -> str:
        """finished, cancelled, time_limit or failed."""
        return str(self.meta.get("status", ""))

    @property
    def base(self) -> str:
        """The version id, "imagenet", "scratch" or the file name the run started from."""
        return str(self.meta.get("base", ""))


def better(new: ModelVersion, old: ModelVersion | None) -> bool:
    """Whether ``new`` scores better on validation than ``old`` (None: the untrained
    base). When ``new`` was trained from ``old`` and measured its base first
    (``before``), both scores are on the same images; otherwise ``old``'s own score."""
    if not new.usable or new.mean_iou is None:
        return False
    reference: float | None
    if new.before_mean_iou is not None and (old is None or new.base == old.id):
        reference = new.before_mean_iou
    else:
        reference = old.mean_iou if old is not None else None
    return reference is None or new.mean_iou > reference


class VersionStore:
    """The versions in one project's models folder. One writer at a time (the project lock)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir).absolute()  # the training child has its own cwd
        self._lock = threading.Lock()

    @property
    def runs_dir(self) -> Path:
        return self.models_dir.parent / RUNS_DIR

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[ModelVersion]:
        """Every version, oldest first. Broken ones are flagged, never raised; a folder
        without meta.json is an unfinished version and is left out."""
        if not self.models_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.models_dir.iterdir()
                 if (m := _ID_RE.fullmatch(p.name)) and p.is_dir() and (p / META_FILE).exists()]
        return [self._read(p) for _, p in sorted(found)]

    def get(self, version_id: str) -> ModelVersion:
        if not _ID_RE.fullmatch(version_id or "") or not (self.models_dir / version_id / META_FILE).exists():
            raise KeyError(f"no model version {version_id!r} in {self.models_dir}")
        return self._read(self.models_dir / version_id)

    def latest(self) -> ModelVersion | None:
        """The newest usable version."""
        return next((v for v in reversed(self.list()) if v.usable), None)

    def current(self) -> ModelVersion | None:
        """The version the project uses: the one current.json names when it is usable,
        else the newest usable one; None when current.json says none (the base model)."""
        pointer = self._read_pointer()
        if pointer is not None:
            if pointer == "":
                return None
            with contextlib.suppress(KeyError):
                version = self.get(pointer)
                if version.usable:
                    return version
        return self.latest()

    def set_current(self, version_id: str | None) -> None:
        """Point the project at a version (rollback: an older id), or at none."""
        if version_id is not None:
            version = self.get(version_id)
            if not version.usable:
                raise VersionError(version.dir, f"cannot use version {version_id}: {version.broken}")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.models_dir / CURRENT_FILE, json.dumps({"id": version_id}) + "\n")

    # -- writing ---------------------------------------------------------------------------

    def new_run_dir(self) -> Path:
        """A fresh, empty folder for a training child to write its run into."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            path = self.runs_dir / (stamp if n == 0 else f"{stamp}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise VersionError(self.runs_dir, "cannot create a run folder")

    def publish(self, run_dir: Path, base: str, status: str, class_names: Sequence[str],
                events: Sequence[dict[str, Any]] | None = None, *,
                move: bool = True) -> ModelVersion | None:
        """Turn a finished (or cancelled, timed-out, failed) run into the next version.

        Takes best.pt, else last.pt; returns None when neither is usable. ``events``
        are the run's JSON events (default: its log.jsonl). ``move`` moves the
        checkpoint instead of copying it, and for a run in ``runs_dir`` deletes the
        run's other checkpoints (hundreds of MB each; config, log and history stay).
        The classes recorded are the run's own (its start event), else ``class_names``.
        """
        status = "failed" if status == "crashed" else status
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        run_dir = Path(run_dir)
        chosen = _pick_checkpoint(run_dir)
        if isinstance(chosen, str):
            return None
        run = _read_run(run_dir, None if events is None else list(events))
        meta = _version_meta(run, run_dir, chosen.stem, base, status,
                             run.classes or [str(n) for n in class_names])
        version = self._store(chosen, meta, move=move)
        if move and self.runs_dir.resolve() in run_dir.resolve().parents:
            for name in ("best.pt", "last.pt", "resume.pt"):
                with contextlib.suppress(OSError):
                    (run_dir / name).unlink(missing_ok=True)
        return version

    def import_run(self, run_dir: Path, class_names: Sequence[str]) -> ModelVersion:
        """A run folder trained elsewhere (a GPU server, the exported job) becomes a version.
        Its files are copied, never moved. Raises VersionError naming the folder."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise VersionError(run_dir, "not a folder")
        if not (run_dir / "config.json").is_file():
            raise VersionError(run_dir, "not a training run folder (no config.json); choose the "
                                        "folder the training command wrote with --out")
        chosen = _pick_checkpoint(run_dir)
        if isinstance(chosen, str):
            raise VersionError(run_dir, f"no usable checkpoint ({chosen})")
        run = _read_run(run_dir, None)
        if run.classes is None:
            raise VersionError(run_dir, "cannot tell which classes the model was trained on (no "
                                        "start event in log.jsonl, no class_names.txt in its data)")
        wanted = [str(n) for n in class_names]
        if run.classes != wanted:
            raise VersionError(run_dir, f"trained on the classes {run.classes}, but this project has "
                                        f"{wanted}")
        done = run.done or {}
        status = done.get("status") if done.get("status") in STATUSES else "failed"
        meta = _version_meta(run, run_dir, chosen.stem, _base_of(run.config), str(status), wanted)
        meta["imported_from"] = str(run_dir.resolve())
        return self._store(chosen, meta, move=False)

    def delete(self, version_id: str) -> None:
        """Remove a version; the pointer then falls back to the newest usable version.

        Its number is never given out again (a tombstone stays): predictions stored
        under its id must not be taken for a later version's.
        """
        version_dir = self.get(version_id).dir
        with self._lock:
            (self.models_dir / f"{_TOMBSTONE}{version_id}").touch()
            trash = self.models_dir / f".trash-{version_id}-{os.getpid()}"
            os.replace(version_dir, trash)  # gone from list() at once, whatever rmtree leaves
            shutil.rmtree(trash, ignore_errors=True)
            if self._read_pointer() == version_id:
                (self.models_dir / CURRENT_FILE).unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------

    def _read(self, path: Path) -> ModelVersion:
        checkpoint = path / MODEL_FILE
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return ModelVersion(path.name, path, checkpoint, {}, "meta.json corrupt")
        except OSError as exc:
            return ModelVersion(path.name, path, checkpoint, {},
                                f"meta.json unreadable ({exc.strerror or exc})")
        return ModelVersion(path.name, path, checkpoint, meta, checkpoint_problem(checkpoint))

    def _read_pointer(self) -> str | None:
        """current.json's id; "" when it says none; None when absent or unreadable."""
        try:
            data = json.loads((self.models_dir / CURRENT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or "id" not in data:
            return None
        return "" if data["id"] is None else str(data["id"])

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.models_dir.iterdir()
                   if (m := _ID_RE.fullmatch(p.name.removeprefix(_TOMBSTONE)))]
        return max(numbers, default=0) + 1

    def _store(self, source: Path, meta: dict[str, Any], *, move: bool) -> ModelVersion:
        with self._lock:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            for stale in [*self.models_dir.glob(".new-*"), *self.models_dir.glob(".trash-*")]:
                shutil.rmtree(stale, ignore_errors=True)  # left by a crash mid-publish or mid-delete
            tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.models_dir))
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700: others could not read
            target, moved = tmp / MODEL_FILE, False
            try:
                if move:
                    with contextlib.suppress(OSError):  # another filesystem: copy instead
                        os.replace(source, target)
                        moved = True
                if not moved:
                    _copy_synced(source, target)
                number = self._next_number()
                while True:  # one pass unless a vNNN appears meanwhile
                    dest = self.models_dir / f"v{number:03d}"
                    meta["id"] = dest.name
                    atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1, default=str))
                    try:
                        if dest.exists():
                            raise FileExistsError(dest)
                        os.rename(tmp, dest)  # the whole version appears at once
                        break
                    except OSError:
                        if not dest.exists():
                            raise
                        number += 1
            except BaseException:
                if moved:
                    with contextlib.suppress(OSError):
                        os.replace(target, source)
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return self._read(dest)


# -- run folders -----------------------------------------------------------------------------


@dataclass
class _Run:
    config: dict[str, Any]
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    classes: list[str] | None
    done: dict[str, Any] | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's JSON events from its log.jsonl (unreadable lines skipped)."""
    events: list[Any] = []
    with contextlib.suppress(OSError):
        for line in (Path(run_dir) / "log.jsonl").read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return [e for e in events if isinstance(e, dict) and "event" in e]


def _resolve(run_dir: Path, value: Any) -> Path | None:
    """A path from config.json; a relative one is taken from the job folder (run's parent)."""
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else run_dir.parent / path


def _read_ids(path: Path | None) -> list[str]:
    """Non-empty lines of a list file; [] when there is none."""
    if path is None:
        return []
    try:
        return [s for line in path.read_text(encoding="utf-8").splitlines() if (s := line.strip())]
    except (OSError, UnicodeDecodeError):
        return []


def _read_run(run_dir: Path, events: list[dict[str, Any]] | None) -> _Run:
    config = _load_json(run_dir / "config.json")
    config = config if isinstance(config, dict) else {}
    events = read_events(run_dir) if events is None else [e for e in events if isinstance(e, dict)]
    history = _load_json(run_dir / "history.json")
    if not isinstance(history, list):  # no history.json yet: the epoch events say the same
        history = [{k: v for k, v in e.items() if k not in ("event", "time", "epochs", "before")}
                   for e in events if e.get("event") == "epoch"]
    history = [h for h in history if isinstance(h, dict)]
    starts = [e for e in events if e.get("event") == "start" and isinstance(e.get("classes"), list)]
    classes = [str(c) for c in starts[-1]["classes"]] if starts else None
    if classes is None and (data := _resolve(run_dir, config.get("data"))) is not None:
        names = _read_ids(data / "class_names.txt")
        classes = names or None
    dones = [e for e in events if e.get("event") == "done"]
    return _Run(config, history, events, classes, dones[-1] if dones else None)


def _pick_checkpoint(run_dir: Path) -> Path | str:
    """best.pt, else last.pt; a string saying why when neither is usable."""
    problems = []
    for name in ("best.pt", "last.pt"):
        problem = checkpoint_problem(run_dir / name)
        if problem is None:
            return run_dir / name
        problems.append(f"{name}: {problem}")
    return "; ".join(problems)


def _chosen_metrics(run: _Run, kind: str) -> dict[str, Any]:
    """The epoch record of the checkpoint taken: its checkpoint event's iteration, else
    the best-scoring epoch (best.pt) or the last one (last.pt)."""
    trained = [h for h in run.history if h.get("epoch", 0) != 0]
    saved = [e for e in run.events if e.get("event") == "checkpoint" and e.get("kind") == kind]
    if saved:
        match = [h for h in trained if h.get("iteration") == saved[-1].get("iteration")]
        if match:
            return match[-1]
    scored = [h for h in trained if _number(h.get("mean_iou")) is not None]
    if kind == "best" and scored:
        return max(scored, key=lambda h: h["mean_iou"])  # the first of equals, as the engine keeps
    if trained:
        return trained[-1]
    metrics = (run.done or {}).get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _base_of(config: dict[str, Any]) -> str:
    init = str(config.get("init") or "")
    if config.get("parent"):
        return str(config["parent"])
    return init if init in ("imagenet", "scratch", "") else Path(init).name


def _version_meta(run: _Run, run_dir: Path, kind: str, base: str, status: str,
                  class_names: list[str]) -> dict[str, Any]:
    before = next((h for h in run.history if h.get("epoch") == 0), None)
    done = run.done or {}
    duration = _number(done.get("seconds"))
    if duration is None:
        duration = sum(_number(h.get("seconds")) or 0.0 for h in run.history) or None
    config = run.config
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "id": "", "created": now_iso(),
        "base": base, "status": status, "checkpoint_from": f"{kind}.pt",
        "train_ids": _run_ids(run_dir, config, "train"), "val_ids": _run_ids(run_dir, config, "val"),
        "config": config, "history": run.history, "metrics": _chosen_metrics(run, kind),
        "before": before, "class_names": class_names, "duration_s": duration,
        "run_dir": str(run_dir.resolve()),
    }


def _run_ids(run_dir: Path, config: dict[str, Any], which: str) -> list[str]:
    """The ids a run used: its --train-list/--val-list file, else the data's split list."""
    listed = _resolve(run_dir, config.get(f"{which}_list"))
    if listed is None and (data := _resolve(run_dir, config.get("data"))) is not None:
        listed = data / "ImageSets" / "Segmentation" / f"{config.get(f'{which}_split') or which}.txt"
    return _read_ids(listed)


def _copy_synced(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
