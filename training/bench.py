"""``fcn-bench``: how fast the model, training and prediction run on this machine.

Every figure is printed beside the reference-alignment FCN-8s in fp32 measured
in the same run, as a ratio (>1 means faster than the reference). On CUDA the
absolute times are the figures to compare with published ones. ``--backbones``
instead prints one table across backbones (FCN-8s, same alignment, fp32): forward
time, training images/s, parameters and checkpoint size, each beside FCN-8s/VGG16
from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import preprocess
from .backbones import BACKBONES, get_backbone
from .checkpoint import make_checkpoint, save_checkpoint
from .device import autocast_dtype, describe_device, resolve_device
from .model import FCN, ModelConfig, build_model
from .model_init import calibrate_batchnorm
from .optim import uses_fused


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _prepare(model: FCN, device: torch.device) -> FCN:
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def bench_forward(model: FCN, device: torch.device, dtype: torch.dtype | None,
                  size: tuple[int, int], warmup: int, repeats: int) -> float:
    h, w = size
    x = torch.randn(1, 3, h, w, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    return _time(step, device, warmup, repeats)


def bench_train(model: FCN, device: torch.device, dtype: torch.dtype | None, batch: int,
                size: int | tuple[int, int], warmup: int, repeats: int,
                channels_last: bool | None = None) -> float:
    """Training images per second (forward, backward, optimizer step) on ``size``
    (a side, or H x W) inputs; channels_last inputs on CUDA unless told otherwise
    (the caller puts the model in the same layout)."""
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6, momentum=0.9,
                          fused=uses_fused(model))  # as fcn-train steps
    hw = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch, 3, *hw, device=device)
    if device.type == "cuda" if channels_last is None else channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    n = model.config.num_classes
    y = torch.randint(0, n, (batch, *hw), device=device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, ignore_index=255)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    seconds = _time(step, device, warmup, repeats)
    model.eval()
    return batch / seconds


def bench_predict(config: ModelConfig, device_name: str, folder: Path, work: Path,
                  amp: str) -> float:
    """End to end with the ``fcn-predict`` pipeline: files in, label PNGs out; images/s."""
    from .predict_cli import add_arguments, run
    from .progress import Reporter

    ckpt = work / f"{config.alignment}.pt"
    model = build_model(config)
    names = [f"class{i}" for i in range(config.num_classes)]
    save_checkpoint(ckpt, make_checkpoint(model, names, preprocess.TORCHVISION))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = work / f"out-{config.alignment}"
    args = parser.parse_args([str(ckpt), str(folder), "--out", str(out), "--device", device_name,
                              "--amp", amp, "--batch-size", "4"])
    n = len(list(folder.glob("*.jpg")))
    t0 = time.perf_counter()
    rc = run(args, Reporter(enabled=False))
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError("prediction failed during the benchmark")
    return n / elapsed


def _write_frames(folder: Path, count: int, size: tuple[int, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(count):
        # Smooth random images compress like photos; pure noise would skew decode times.
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(
            folder / f"frame{i:03d}.jpg", quality=90)


def _checkpoint_mb(model: FCN, work: Path) -> float:
    path = work / "size.pt"
    names = [f"class{i}" for i in range(model.config.num_classes)]
    save_checkpoint(path, make_checkpoint(model, names, preprocess.TORCHVISION))
    size = path.stat().st_size / 1e6
    path.unlink()
    return size


def bench_backbones(names: Sequence[str], device: torch.device, classes: int, repeats: int,
                    batch: int, train_size: int) -> list[dict[str, float | str]]:
    """One row per backbone; FCN-8s/VGG16 first, always: the base of every ratio."""
    rows: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["vgg16", *(n for n in names if n != "vgg16")]:
            torch.manual_seed(0)
            model = build_model(ModelConfig(num_classes=classes, backbone=name))
            if get_backbone(name).has_bn:
                # Fresh BatchNorm statistics make MobileNetV3's random activations vanish
                # into denormals, which run many times slower on a CPU than real weights.
                calibrate_batchnorm(model)
            model = _prepare(model, device)
            rows.append({
                "backbone": name,
                "forward_ms": 1000 * bench_forward(model, device, None, (375, 500), 1, repeats),
                "forward_480x360_ms": 1000 * bench_forward(model, device, None, (360, 480), 1,
                                                           repeats),
                "train_img_s": bench_train(model, device, None, batch, train_size, 1,
                                           max(2, repeats // 2)),
                "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "checkpoint_mb": _checkpoint_mb(model, Path(tmp)),
            })
            del model
    return rows


def _backbone_table(rows: list[dict[str, float | str]], base: dict[str, float | str],
                    batch: int, train_size: int) -> str:
    def cell(row: dict[str, float | str], key: str, fmt: str, faster_when_lower: bool) -> str:
        value, ref = float(row[key]), float(base[key])
        ratio = ref / value if faster_when_lower else value / ref
        return f"{value:{fmt}} (x{ratio:.2f})"

    header = (f"{'FCN-8s backbone':<20} {'forward 500x375 ms':>20} {'forward 480x360 ms':>20} "
              f"{f'train b{batch} {train_size}px img/s':>24} {'params (M)':>16} "
              f"{'checkpoint MB':>16}")
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['backbone']!s:<20} {cell(row, 'forward_ms', '.0f', True):>20} "
            f"{cell(row, 'forward_480x360_ms', '.0f', True):>20} "
            f"{cell(row, 'train_img_s', '.2f', False):>24} "
            f"{cell(row, 'params_m', '.1f', True):>16} {cell(row, 'checkpoint_mb', '.0f', True):>16}")
    lines.append("(xN: N times faster, or N times smaller, than FCN-8s/VGG16 in this run)")
    return "\n".join(lines)


def _backbone_list(text: str) -> list[str]:
    names = list(BACKBONES) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in BACKBONES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{', '.join(bad) or 'nothing'}: not a backbone; give 'all' or a comma-separated "
            f"list of {', '.join(BACKBONES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fcn-bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--classes", type=int, default=21)
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default: 5 CPU, 50 CUDA)")
    p.add_argument("--train-batch", type=int, default=None, help="default: 2 CPU, 16 CUDA")
    p.add_argument("--images", type=Path, help="folder of JPEGs for the end-to-end test "
                   "(default: synthetic 480x360 frames)")
    p.add_argument("--frames", type=int, default=8, help="synthetic frames for end to end")
    p.add_argument("--skip", nargs="*", default=[], choices=("forward", "train", "predict"))
    p.add_argument("--json", action="store_true", help="print one JSON object with all figures")
    p.add_argument("--backbones", type=_backbone_list, metavar="all|NAME,NAME",
                   help="instead: one table across these backbones (FCN-8s/VGG16 is always "
                        "measured as the base of the ratios)")
    p.add_argument("--train-size", type=int, default=None,
                   help="square training input of the --backbones table (default: 320 CPU, 512 CUDA)")
    p.add_argument("--formats", action="store_true",
                   help="instead: channels_last and bf16 autocast against fp32 (forward ms at "
                        "500x375 and argmax agreement), to see whether they pay on this device")
    p.add_argument("--checkpoint", type=Path,
                   help="the model --formats compares (default: a new FCN-8s with random "
                        "score layers); a trained one shows the agreement that matters")
    p.add_argument("--backbone", default="vgg16", choices=BACKBONES,
                   help="backbone of the new model --formats uses without --checkpoint")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    repeats = args.repeats or (50 if cuda else 5)
    warmup = 10 if cuda else 1
    batch = args.train_batch or (16 if cuda else 2)
    if cuda:
        torch.backends.cudnn.benchmark = True
    n = args.classes
    if args.formats:
        from .bench_formats import (
            bench_formats,
            bench_train_formats,
            format_table,
            format_train_table,
        )

        reps = args.repeats or (50 if cuda else 3)
        formats = bench_formats(device, checkpoint=args.checkpoint, backbone=args.backbone,
                                classes=n, repeats=reps, images=args.images)
        train_batch, step_size = args.train_batch or 4, (224, 288)
        steps = bench_train_formats(device, checkpoint=args.checkpoint, backbone=args.backbone,
                                    classes=n, repeats=reps, batch=train_batch, size=step_size)
        if args.json:
            print(json.dumps({"device": describe_device(device), "torch": torch.__version__,
                              "formats": [r.to_dict() for r in formats],
                              "training": [r.to_dict() for r in steps]}))
        else:
            print(f"device: {describe_device(device)}, torch {torch.__version__}\n"
                  + format_table(formats) + "\n\n" + format_train_table(steps, train_batch, step_size))
        return 0
    if args.backbones:
        train_size = args.train_size or (512 if cuda else 320)
        rows = bench_backbones(args.backbones, device, n, args.repeats or (50 if cuda else 3),
                               batch, train_size)
        if args.json:
            print(json.dumps({"device": describe_device(device), "torch": torch.__version__,
                              "backbones": rows}))
        else:
            print(f"device: {describe_device(device)}, torch {torch.__version__}\n"
                  + _backbone_table(rows, rows[0], batch, train_size))
        return 0
    ours = ModelConfig(num_classes=n, arch="fcn8s", alignment="same")
    ref = ModelConfig(num_classes=n, arch="fcn8s", alignment="reference")
    results: dict[str, object] = {"device": describe_device(device), "torch": torch.__version__}
    lines: list[str] = [f"device: {results['device']}, torch {torch.__version__}"]

    def row(name: str, value: float, base: float, unit: str, higher_better: bool) -> None:
        ratio = value / base if higher_better else base / value
        results[name] = {"value": value, "reference": base, "unit": unit, "speedup": ratio}
        lines.append(f"{name:<34} {value:10.4g} {unit:<9} reference fp32 {base:10.4g}  "
                     f"x{ratio:.2f}")

    if "forward" not in args.skip:
        m_ref = _prepare(build_model(ref), device)
        base = bench_forward(m_ref, device, None, (375, 500), warmup, repeats)
        del m_ref
        m = _prepare(build_model(ours), device)
        row("forward 500x375 fp32 (ms)", 1000 * bench_forward(m, device, None, (375, 500), warmup,
                                                               repeats), 1000 * base, "ms", False)
        if cuda:
            for amp in ("fp16", "bf16"):
                t = bench_forward(m, device, autocast_dtype(device, amp), (375, 500), warmup, repeats)
                row(f"forward 500x375 {amp} (ms)", 1000 * t, 1000 * base, "ms", False)
        del m
    if "train" not in args.skip:
        size = 512
        r = max(2, repeats // 5)
        base = bench_train(_prepare(build_model(ref), device), device, None, batch, size, 1, r)
        m = _prepare(build_model(ours), device)
        row(f"train 512x512 b{batch} fp32 (img/s)", bench_train(m, device, None, batch, size, 1, r),
            base, "img/s", True)
        if cuda:
            row(f"train 512x512 b{batch} bf16 (img/s)",
                bench_train(m, device, torch.bfloat16, batch, size, 3, r), base, "img/s", True)
        del m
    if "predict" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            folder = args.images
            if folder is None:
                folder = work / "frames"
                _write_frames(folder, args.frames, (360, 480))
            base = bench_predict(ref, args.device, folder, work, "none")
            row("predict end to end fp32 (img/s)", bench_predict(ours, args.device, folder, work,
                                                                 "none"), base, "img/s", True)
            if cuda:
                row("predict end to end fp16 (img/s)", bench_predict(ours, args.device, folder,
                                                                     work, "fp16"), base, "img/s", True)
    print(json.dumps(results) if args.json else "\n".join(lines))
    return 0
