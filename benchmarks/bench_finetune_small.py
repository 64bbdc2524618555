"""Fine-tuning on small frames: crops that fit the image against void-padded crops.

60 iterations (batch 4, --crop 320, the app's defaults) of the full FCN-8s /
VGG16 on 12 frames of 120x90 on the CPU, as ``fcn-train`` runs them (one random
scale per batch, fused optimizer), beside three baselines of the same run: the
optimizer's plain (unfused) step, a random scale per image, each batch padded to
its largest member (crops capped at the scaled image, before batches shared a
scale), and every crop padded with void up to 320x320 (what training did before
crops were capped).

Run: python benchmarks/bench_finetune_small.py [--iters 60] [--size 120x90]
     [--baselines unfused,per-image,padded] [--baseline-iters N]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch import Tensor  # noqa: E402

from tests.synthetic import write_voc  # noqa: E402
from training import optim as optim_module  # noqa: E402
from training import train as train_module  # noqa: E402
from training.progress import Reporter  # noqa: E402
from training.train import run_training  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402
from training.transforms import TrainTransform, train_transform  # noqa: E402


class ScalePerImage(TrainTransform):
    """A baseline: each image draws its own scale (the batch's is ignored), so a batch is
    padded to its largest member."""

    def __init__(self, crop: int, **kw) -> None:
        inner = train_transform(crop, **kw)
        super().__init__(inner.scale_crop, inner.rest.transforms)

    def __call__(self, image: Tensor, label: Tensor,
                 scale: float | None = None) -> tuple[Tensor, Tensor]:
        return super().__call__(image, label)


class PaddedToCrop(ScalePerImage):
    """The first baseline: a scale per image, the capped crop then padded (0 image,
    255 label) to the full crop."""

    def __init__(self, crop: int, **kw) -> None:
        super().__init__(crop, **kw)
        self.crop = crop

    def __call__(self, image: Tensor, label: Tensor,
                 scale: float | None = None) -> tuple[Tensor, Tensor]:
        img, lab = super().__call__(image, label)
        out_img = img.new_zeros((3, self.crop, self.crop))
        out_lab = lab.new_full((self.crop, self.crop), 255)
        out_img[:, : img.shape[1], : img.shape[2]] = img
        out_lab[: lab.shape[0], : lab.shape[1]] = lab
        return out_img, out_lab


def timed_run(root: Path, out: Path, iters: int, backbone: str = "vgg16",
              transform: type[TrainTransform] | None = None, fused: bool = True) -> float:
    """Seconds of ``iters`` iterations, with ``transform`` in place of the training one
    and, unless ``fused``, the optimizer's plain step."""
    original, devices = train_module.train_transform, optim_module.FUSED_DEVICES
    if transform is not None:
        train_module.train_transform = lambda crop, **kw: transform(crop, **kw)
    if not fused:
        optim_module.FUSED_DEVICES = frozenset()  # type: ignore[misc]
    try:
        return _timed_run(root, out, iters, backbone)
    finally:
        train_module.train_transform, optim_module.FUSED_DEVICES = original, devices  # type: ignore[misc]


def _timed_run(root: Path, out: Path, iters: int, backbone: str) -> float:
    cfg = TrainConfig(data=str(root), out=str(out), init="scratch", iters=iters, batch_size=4,
                      crop=320, workers=0, device="cpu", json=True, backbone=backbone,
                      no_resume_state=True, save_dtype="float16")  # as the app's runs
    sink = io.StringIO()
    t = time.perf_counter()
    code = run_training(cfg, Reporter(True, out=sink, err=sink))
    if code != 0:
        raise SystemExit(f"training failed ({code}): {sink.getvalue()[-1000:]}")
    return time.perf_counter() - t


# name -> (its line in the table, what timed_run changes for it)
BASELINES: dict[str, tuple[str, dict]] = {
    "unfused": ("the same, the optimizer's plain step:", {"fused": False}),
    "per-image": ("a scale per image, padded to the batch:", {"transform": ScalePerImage}),
    "padded": ("crops padded to 320 (first baseline):", {"transform": PaddedToCrop}),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--size", default="120x90")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help=f"which baselines to run, comma-separated (of {', '.join(BASELINES)})")
    p.add_argument("--baseline-iters", type=int, default=None,
                   help="iterations of the baselines (default --iters); their times are "
                        "scaled to --iters, for baselines too slow to run in full")
    args = p.parse_args()
    wanted = [b for b in args.baselines.split(",") if b]
    if not wanted or set(wanted) - set(BASELINES):
        p.error(f"--baselines: choose from {', '.join(BASELINES)}, not {args.baselines!r}")
    base_iters = args.baseline_iters or args.iters
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_voc(root, n=13, n_val=1, h=h, w=w)  # 12 training frames
        shared = timed_run(root, Path(tmp) / "shared", args.iters, args.backbone)
        times = {name: timed_run(root, Path(tmp) / name, base_iters, args.backbone,
                                 **BASELINES[name][1]) * args.iters / base_iters
                 for name in wanted}
    print(f"{args.iters} iterations, FCN-8s/{args.backbone}, batch 4, crop 320, 12 frames "
          f"{w}x{h}, CPU")
    scaled = "" if base_iters == args.iters else f" (from {base_iters} iterations, scaled)"
    print(f"  {'one scale per batch, fused (fcn-train):':40} {shared:7.1f} s")
    for name, t in times.items():
        print(f"  {BASELINES[name][0]:40} {t:7.1f} s   -> x{t / shared:.2f} faster{scaled}")


if __name__ == "__main__":
    main()
