"""``fcn-studio --self-test``: does this installation work, end to end?

Runs without a display (Qt's offscreen platform) and without a network, from a
source install and from the PyInstaller bundle alike, and prints one line per
step::

    ok   load model: FCN-8s (untrained, 6 classes) on cpu, 1.2 s

The steps are the things a broken bundle gets wrong: torch and torchvision's
compiled operators, Qt with its platform plugin and the icon font, the model,
a prediction on a bundled sample image, a VOC label written and read back, and a
short training run in a child process started exactly as the Fine-tune action
starts it (in the bundle: the bundle's own executable with ``train``). The first
failing step prints ``FAIL <step>: <error>`` and the exit status is 1; the steps
after it are skipped. All passed: exit status 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

TRAIN_TIMEOUT_S = 240
"""The training child normally needs 5-15 s; a hung child is killed after this."""
TRAIN_EXTRA_ARGS = ("--fc-channels", "64", "--crop", "48", "--seed", "0")
"""A narrow head on small crops: the run checks the child works, not that it learns."""
SAMPLE_IMAGE = "street_00"


class SelfTestError(Exception):
    """A check that did not hold; the message says what was expected and what was found."""


@dataclass
class Context:
    """What the steps hand on to each other, and the temporary folder they write in."""

    tmp: Path
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    name: str
    run: Callable[[Context], str]  # returns the detail for the "ok" line; raises on failure


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestError(message)


# -- the steps --------------------------------------------------------------------------------


def step_torch(ctx: Context) -> str:
    import warnings

    import torch

    # torchvision swallows the reason its compiled operators did not load unless asked.
    os.environ.setdefault("TORCHVISION_WARN_WHEN_EXTENSION_LOADING_FAILS", "1")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torchvision
            from torchvision.ops import nms
        # The compiled operators: a bundle without torchvision/_C_stable.so (older releases:
        # _C.so) fails here, or already on import, with "operator torchvision::nms does not exist".
        keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    except Exception as exc:
        why = "; ".join(str(w.message) for w in caught if "extension" in str(w.message))
        hint = (": its compiled operators (torchvision/_C_stable.so or _C.so) are missing or did "
                "not load" if "torchvision::" in str(exc) or why else "")
        raise SelfTestError(f"torchvision{hint}: {type(exc).__name__}: {exc}"
                            + (f" ({why})" if why else "")) from exc
    _check(keep.tolist() == [0, 2], f"torchvision.ops.nms kept {keep.tolist()}, expected [0, 2]")
    if torch.cuda.is_available():
        gpu = f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        gpu = "MPS available"
    else:
        gpu = "no GPU"
    return (f"torch {torch.__version__}, torchvision {torchvision.__version__} "
            f"(compiled ops: nms ok), {torch.get_num_threads()} CPU threads, {gpu}")


def step_qt(ctx: Context) -> str:
    # No window is shown: the offscreen platform works on any machine, display or not.
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import PySide6
    from PySide6.QtCharts import QChart, QLineSeries
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["fcn-studio", "--self-test"])
    ctx.values["qapp"] = app  # kept alive until the run ends
    import qtawesome

    icon = qtawesome.icon("mdi6.brush", color="black")
    image = icon.pixmap(QSize(32, 32)).toImage()
    _check(not image.isNull(), "qtawesome rendered a null pixmap for mdi6.brush")
    size = image.width() * image.height()
    inked = sum(1 for y in range(image.height()) for x in range(image.width())
                if image.pixelColor(x, y).alpha() > 0)
    _check(20 < inked < size, f"the mdi6.brush icon rendered {inked} of {size} pixels visible: "
           "the icon font did not load (qtawesome's fonts missing?)")
    chart = QChart()
    chart.addSeries(QLineSeries())
    # Every module of the app's window imports (a bundle missing one fails here, not on a
    # user's first click).
    import fcn_studio.ui.main_window  # noqa: F401

    return (f"PySide6 {PySide6.__version__}, platform {QGuiApplication.platformName()}, "
            f"icon font ok ({inked}/{size} pixels inked), QtCharts ok, app modules import")


def step_load_model(ctx: Context) -> str:
    from training import voc
    from training.model_init import fresh_model
    from training.predict import Predictor
    from training.weights import imagenet_weights_info

    from ..models.model_spec import BACKBONE_LABELS
    from ..resources import sample_project_source

    project = sample_project_source()
    _check(project.is_dir(), f"the bundled sample project is missing: {project}")
    names = voc.read_class_names(project)
    loaded = fresh_model(names, "scratch", progress=False)
    predictor = Predictor(loaded, "cpu")
    ctx.values["predictor"] = predictor
    arch = loaded.config.arch.replace("fcn", "FCN-", 1)
    cached = []
    try:  # the backbones a new model starts from: VGG16 on a GPU, MobileNetV3 on a CPU
        for backbone in ("vgg16", "mobilenet_v3_large"):
            info = imagenet_weights_info(backbone)
            state = "cached" if info["cached"] else "not cached (downloaded when first used)"
            cached.append(f"ImageNet {BACKBONE_LABELS[backbone]} weights {state}")
        weights = "; ".join(cached)
    except Exception as exc:  # noqa: BLE001 (informative only)
        weights = f"ImageNet weights info unavailable ({exc})"
    return f"{arch} (untrained, {len(names)} classes) on {predictor.device}; {weights}"


def step_segment(ctx: Context) -> str:
    import numpy as np
    from PIL import Image

    from training import voc

    from ..resources import sample_project_source

    predictor = ctx.values.get("predictor")
    _check(predictor is not None, "no model: the load model step did not run")
    path = voc.image_path(sample_project_source(), SAMPLE_IMAGE)
    with Image.open(path) as im:
        image = np.asarray(im.convert("RGB"))
    start = time.perf_counter()
    label = predictor.predict(image, uncertainty="entropy").label
    seconds = time.perf_counter() - start
    h, w = image.shape[:2]
    _check(label.shape == (h, w), f"label shape {label.shape} != image shape {(h, w)}")
    _check(label.dtype == np.uint8, f"label dtype {label.dtype}, expected uint8")
    top = int(label.max())
    _check(top < predictor.num_classes, f"class id {top} out of range ({predictor.num_classes})")
    ctx.values["label"] = label
    return f"{path.name} {w}x{h} -> label {w}x{h} in {seconds:.2f} s on the CPU"


def step_write_label(ctx: Context) -> str:
    import numpy as np
    from PIL import Image

    from training import voc

    h, w = 60, 80
    label = (np.arange(w, dtype=np.uint8)[None, :] // 10).repeat(h, 0)  # classes 0..7
    label[:10, :10] = 255  # void
    path = ctx.tmp / "label" / "SegmentationClass" / "check.png"
    path.parent.mkdir(parents=True)
    voc.write_label(path, label)
    with Image.open(path) as im:
        mode, color1 = im.mode, tuple(im.getpalette()[3:6])
    _check(mode == "P", f"{path.name} saved in mode {mode}, expected a palette PNG (P)")
    _check(color1 == (128, 0, 0), f"palette entry 1 is {color1}, expected VOC's (128, 0, 0)")
    back = voc.read_label(path)
    _check(back.shape == label.shape and bool((back == label).all()),
           "the label read back differs from the one written")
    return f"palette PNG {w}x{h} with classes 0-7 and void 255 written and read back equal"


_TINY_CLASSES = ("background", "square", "stripe")


def _tiny_dataset(root: Path) -> list[str]:
    """Two 64x80 images with 3 classes, VOC layout; returns the class names."""
    import numpy as np
    from PIL import Image

    from training import voc

    names = list(_TINY_CLASSES)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    ids = []
    for i in range(2):
        label = np.zeros((64, 80), np.uint8)
        label[10 + 5 * i : 40 + 5 * i, 20:50] = 1
        label[:, 60 + 5 * i : 70 + 5 * i] = 2
        label[0:4, 0:4] = 255
        image = np.array([[30, 30, 30], [220, 40, 40], [40, 200, 60]], np.uint8)[
            np.minimum(label, 2)]
        image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
        image_id = f"tiny_{i}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        voc.write_label(root / "SegmentationClass" / f"{image_id}.png", label)
        ids.append(image_id)
    voc.write_class_names(root, names)
    voc.write_split(root, "train", ids)
    voc.write_split(root, "val", ids[1:])
    return names


def _train_command(data: Path, out: Path) -> tuple[list[str], dict[str, str], str | None]:
    """The command, environment and working folder, as the Fine-tune action's TrainingJob
    builds them (it uses QProcess; this uses subprocess and needs no event loop), from a
    fine-tune plan like the button's: two iterations of an untrained model on the CPU."""
    from training import voc

    from ..models.finetune_plan import BaseModel, FinetuneOptions, make_plan, train_argv
    from .finetuning.training_job import REPO_ROOT, command_prefix

    val = set(voc.read_split(data, "val")) if voc.split_path(data, "val").is_file() else set()
    ids = voc.read_split(data, "train") + sorted(val) if val else ["tiny_0", "tiny_1"]
    options = FinetuneOptions(iters=2, device="cpu", batch_size=1, extra_args=TRAIN_EXTRA_ARGS)
    plan = make_plan(options, labelled=ids, split_of=lambda i: "val" if i in val else "train",
                     base=BaseModel.scratch(), class_names=_TINY_CLASSES)
    args = plan.train_args(workers=0)  # the data's own split lists: no list files needed
    command = [*command_prefix(), *train_argv(data, out, args)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    cwd = None
    if not getattr(sys, "frozen", False):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        cwd = str(REPO_ROOT)
    return command, env, cwd


def step_train(ctx: Context) -> str:
    data, out = ctx.tmp / "tiny_voc", ctx.tmp / "run"
    _tiny_dataset(data)
    command, env, cwd = _train_command(data, out)
    try:
        proc = subprocess.run(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SelfTestError(f"the training child did not finish in {TRAIN_TIMEOUT_S} s: "
                            f"{' '.join(command)}") from exc
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    events, stray = [], []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            stray.append(line)
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    if proc.returncode != 0 or done is None:
        errors = [e.get("message", e) for e in events if e.get("event") == "error"]
        raise SelfTestError(f"the training child ({' '.join(command[:2])} ...) exited with "
                            f"{proc.returncode}, {'a' if done else 'no'} done event"
                            + (f"; error events: {errors}" if errors else "")
                            + (f"\n--- its stderr (tail) ---\n{tail}" if tail else ""))
    _check(not stray, f"the training child printed non-JSON lines on stdout: {stray[:3]}")
    _check(done.get("status") == "finished", f"the run ended with status {done.get('status')!r}, "
           f"expected 'finished'\n{tail}")
    last = Path(str(done.get("last")))
    _check(last.is_file() and last.stat().st_size > 0, f"no checkpoint at {last}")
    kinds = sorted({e.get("event") for e in events})
    how = "bundle's own executable" if getattr(sys, "frozen", False) else "python -m training"
    return (f"child process ({how} train) ran {done.get('iteration')}/{done.get('total')} "
            f"iterations, status finished, {last.name} {last.stat().st_size / 1024:.0f} KiB; "
            f"{len(events)} JSON events ({', '.join(kinds)})")


STEPS: tuple[Step, ...] = (
    Step("torch and torchvision", step_torch),
    Step("Qt offscreen and icons", step_qt),
    Step("load model", step_load_model),
    Step("segment sample image", step_segment),
    Step("write VOC label", step_write_label),
    Step("train in child process", step_train),
)


# -- the runner -------------------------------------------------------------------------------


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()  # line by line, also through a pipe: a hang shows where it hangs


def run_steps(steps: Sequence[Step], out: TextIO | None = None, verbose: bool = False) -> int:
    """Run ``steps`` in order; 0 when all pass, 1 at the first failure (the rest skipped)."""
    out = out if out is not None else sys.stdout
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fcn-studio-selftest-") as tmp:
        ctx = Context(tmp=Path(tmp))
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            try:
                detail = step.run(ctx)
            except Exception as exc:  # noqa: BLE001 (any error is this step's failure)
                message = str(exc) or type(exc).__name__
                kind = "" if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: "
                _say(out, f"FAIL {step.name}: {kind}{message}")
                if verbose or not isinstance(exc, SelfTestError):
                    _say(out, "".join(traceback.format_exception(exc)).rstrip())
                skipped = [s.name for s in steps[i + 1:]]
                if skipped:
                    _say(out, f"skip {', '.join(skipped)}")
                _say(out, f"self-test FAILED at step '{step.name}' "
                          f"({time.perf_counter() - started:.1f} s)")
                return 1
            _say(out, f"ok   {step.name}: {detail}, {time.perf_counter() - t0:.1f} s")
    _say(out, f"self-test passed: {len(steps)} steps in {time.perf_counter() - started:.1f} s")
    return 0


def main(out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    where = f"bundle {Path(sys.executable).parent}" if getattr(sys, "frozen", False) else (
        f"source install, Python {sys.version.split()[0]} at {sys.executable}")
    _say(out, f"FCN Studio self-test ({where})")
    return run_steps(STEPS, out)
