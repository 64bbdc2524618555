"""Fine-tuning on small frames: crops that fit the image against void-padded crops.

60 iterations (batch 4, --crop 320, the app's defaults) of the full FCN-8s /
VGG16 on 12 frames of 120x90 on the CPU, as ``fcn-train`` runs them (one random
scale per batch), beside two baselines of the same run: a random scale per image,
each batch padded to its largest member (crops capped at the scaled image, before
batches shared a scale), and every crop padded with void up to 320x320 (what
training did before crops were capped).

Run: python benchmarks/bench_finetune_small.py [--iters 60] [--size 120x90]
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
              transform: type[TrainTransform] | None = None) -> float:
    """Seconds of ``iters`` iterations, with ``transform`` in place of the training one."""
    original = train_module.train_transform
    if transform is not None:
        train_module.train_transform = lambda crop, **kw: transform(crop, **kw)  # type: ignore
    try:
        return _timed_run(root, out, iters, backbone)
    finally:
        train_module.train_transform = original


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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--size", default="120x90")
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--baseline-iters", type=int, default=None,
                   help="iterations of the padded baseline (default --iters); its time is "
                        "scaled to --iters, for a baseline too slow to run in full")
    args = p.parse_args()
    base_iters = args.baseline_iters or args.iters
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_voc(root, n=13, n_val=1, h=h, w=w)  # 12 training frames
        shared = timed_run(root, Path(tmp) / "shared", args.iters, args.backbone)
        per_image = (timed_run(root, Path(tmp) / "per_image", base_iters, args.backbone,
                               ScalePerImage) * args.iters / base_iters)
        padded = (timed_run(root, Path(tmp) / "padded", base_iters, args.backbone, PaddedToCrop)
                  * args.iters / base_iters)
    print(f"{args.iters} iterations, FCN-8s/{args.backbone}, batch 4, crop 320, 12 frames "
          f"{w}x{h}, CPU")
    scaled = "" if base_iters == args.iters else f" (from {base_iters} iterations, scaled)"
    print(f"  one scale per batch (fcn-train):         {shared:7.1f} s")
    print(f"  a scale per image, padded to the batch:  {per_image:7.1f} s   -> x"
          f"{per_image / shared:.2f} faster{scaled}")
    print(f"  crops padded to 320 (first baseline):    {padded:7.1f} s   -> x"
          f"{padded / shared:.1f} faster{scaled}")

if __name__ == "__main__":
    main()
