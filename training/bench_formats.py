"""``fcn-bench --formats``: is channels_last or bf16 autocast worth it on this device?

For one model (a checkpoint given with ``--checkpoint``, else a new FCN-8s whose
score layers are given random weights so that its argmax depends on the input),
each variant's forward time at 500x375 is measured beside plain fp32 (contiguous
tensors) in the same run, and its argmax on real-looking frames is compared with
fp32's: a variant is only worth turning on when it is faster *and* agrees on at
least :data:`MIN_AGREEMENT` of the pixels. Whether bf16 pays on a CPU depends on the
CPU (native bf16 instructions or not), so this is measured, never assumed.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import LoadedModel, load_model
from .model import ModelConfig, build_model
from .model_init import calibrate_batchnorm
from .preprocess import TORCHVISION

MIN_AGREEMENT = 0.995
SLOW_FACTOR = 4.0  # a first call this many times fp32's is not worth repeating
VARIANTS: tuple[tuple[str, bool, torch.dtype | None], ...] = (
    ("fp32", False, None),
    ("channels_last", True, None),
    ("bf16", False, torch.bfloat16),
    ("channels_last + bf16", True, torch.bfloat16),
)


@dataclass(frozen=True)
class FormatRow:
    name: str
    ms: float
    speedup: float  # fp32's time / this one's
    agreement: float  # share of pixels whose argmax equals fp32's

    @property
    def worth_it(self) -> bool:
        return self.name != "fp32" and self.speedup > 1.05 and self.agreement >= MIN_AGREEMENT

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ms": self.ms, "speedup": self.speedup,
                "agreement": self.agreement, "worth_it": self.worth_it}


def _model(checkpoint: Path | None, backbone: str, classes: int) -> LoadedModel:
    if checkpoint is not None:
        return load_model(checkpoint)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=classes, backbone=backbone))
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        calibrate_batchnorm(model)
    with torch.no_grad():  # a head that reads the features, so the argmax means something
        for name, module in model.named_children():
            if name.startswith("score") and isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.01)
    return LoadedModel(model=model, class_names=[str(i) for i in range(classes)],
                       normalization=TORCHVISION, palette=np.zeros((256, 3), np.uint8),
                       meta={}, source="bench")


def _frames(count: int, size: tuple[int, int], folder: Path | None) -> torch.Tensor:
    """``count`` uint8 frames: JPEGs from ``folder`` resized, else smooth random ones."""
    from PIL import Image

    h, w = size
    images: list[np.ndarray] = []
    if folder is not None:
        for path in sorted(folder.glob("*.*"))[:count]:
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB").resize((w, h))))
    rng = np.random.default_rng(0)
    while len(images) < count:
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        images.append(np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def _forward(model: torch.nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    ctx = torch.autocast(batch.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with ctx:
        return model(batch).float()


def _timed(model: torch.nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> None:
    _forward(model, batch, dtype)


def bench_formats(device: torch.device, *, checkpoint: Path | None = None,
                  backbone: str = "vgg16", classes: int = 21, repeats: int = 3,
                  images: Path | None = None, frames: int = 4,
                  size: tuple[int, int] = (375, 500)) -> list[FormatRow]:
    """Each variant's median forward ms and agreement with fp32, fp32 first."""
    from .bench import _time

    loaded = _model(checkpoint, backbone, classes)
    model = loaded.model.eval().to(device)
    x_all = loaded.normalization.apply(_frames(frames, size, images).to(device))
    rows: list[FormatRow] = []
    reference: torch.Tensor | None = None
    base_s = 0.0
    for name, channels_last, dtype in VARIANTS:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = x_all.contiguous(memory_format=fmt)

        # The first call is timed on its own: where a variant has no fast kernels (bf16 on
        # a CPU without bf16 instructions is tens of times slower) it is not repeated,
        # and its agreement is read from that one frame.
        t0 = time.perf_counter()
        first = _forward(model, x[:1], dtype).argmax(1)
        once = time.perf_counter() - t0
        if reference is not None and once > SLOW_FACTOR * max(base_s, 1e-3):
            agreement = float((first == reference[:1]).float().mean())
            rows.append(FormatRow(name, 1000 * once, base_s / once, agreement))
            continue
        seconds = _time(functools.partial(_timed, model, x[:1], dtype), device, 0, repeats)
        labels = torch.cat([first, *(_forward(model, x[i:i + 1], dtype).argmax(1)
                                     for i in range(1, len(x)))])
        if reference is None:
            reference, base_s = labels, seconds
        agreement = float((labels == reference).float().mean())
        rows.append(FormatRow(name, 1000 * seconds, base_s / seconds, agreement))
    return rows


@dataclass(frozen=True)
class TrainFormatRow:
    name: str
    ms: float  # one training step (forward, backward, optimizer step)
    speedup: float  # fp32's time / this one's

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ms": self.ms, "speedup": self.speedup}


def bench_train_formats(device: torch.device, *, checkpoint: Path | None = None,
                        backbone: str = "vgg16", classes: int = 21, repeats: int = 3,
                        batch: int = 4, size: tuple[int, int] = (224, 288)) -> list[TrainFormatRow]:
    """A training step in fp32 with contiguous tensors and with channels_last, each on
    its own copy of the model (training changes the weights). The step's result is the
    same maths in another memory layout, so only the time is compared; what pays for
    prediction may not for training (on one 2-core CPU channels_last sped up
    MobileNetV3's steps and slowed VGG16's)."""
    import copy

    from .bench import bench_train

    loaded = _model(checkpoint, backbone, classes)
    rows: list[TrainFormatRow] = []
    base_s = 0.0
    for name, channels_last in (("fp32", False), ("channels_last", True)):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = copy.deepcopy(loaded.model).to(device).to(memory_format=fmt)
        seconds = batch / bench_train(model, device, None, batch, size, 1, repeats,
                                      channels_last=channels_last)
        base_s = base_s or seconds
        rows.append(TrainFormatRow(name, 1000 * seconds, base_s / seconds))
    return rows


def format_train_table(rows: list[TrainFormatRow], batch: int, size: tuple[int, int]) -> str:
    lines = [f"{'training step':<22} {'ms':>11} {'vs fp32':>8}   (batch {batch}, {size[1]}x{size[0]})"]
    for r in rows:
        lines.append(f"{r.name:<22} {r.ms:11.0f} {f'x{r.speedup:.2f}':>8}")
    return "\n".join(lines)


def format_table(rows: list[FormatRow]) -> str:
    lines = [f"{'variant':<22} {'forward ms':>11} {'vs fp32':>8} {'argmax agreement':>17}  worth it"]
    for r in rows:
        lines.append(f"{r.name:<22} {r.ms:11.0f} {f'x{r.speedup:.2f}':>8} "
                     f"{100 * r.agreement:16.2f}%  {'yes' if r.worth_it else 'no'}")
    return "\n".join(lines)
