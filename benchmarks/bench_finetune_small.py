"""Fine-tuning on small frames: crops that fit the image against void-padded crops.

60 iterations (batch 4, --crop 320, the app's defaults) of the full FCN-8s /
VGG16 on 12 frames of 120x90 on the CPU, as ``fcn-train`` runs them, beside the
baseline of the same run with every crop padded with void up to 320x320 (what
training did before crops were capped at the scaled image).

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
from training.transforms import train_transform  # noqa: E402


class PaddedToCrop:
    """The baseline: the capped crop, then padded (0 image, 255 label) to the full crop."""

    def __init__(self, crop: int, **kw) -> None:
        self.inner = train_transform(crop, **kw)
        self.crop = crop

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        img, lab = self.inner(image, label)
        out_img = img.new_zeros((3, self.crop, self.crop))
        out_lab = lab.new_full((self.crop, self.crop), 255)
        out_img[:, : img.shape[1], : img.shape[2]] = img
        out_lab[: lab.shape[0], : lab.shape[1]] = lab
        return out_img, out_lab


def timed_run(root: Path, out: Path, iters: int, backbone: str = "vgg16") -> float:
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
        capped = timed_run(root, Path(tmp) / "capped", args.iters, args.backbone)
        original = train_module.train_transform
        train_module.train_transform = lambda crop, **kw: PaddedToCrop(crop, **kw)  # type: ignore
        try:
            padded = (timed_run(root, Path(tmp) / "padded", base_iters, args.backbone)
                      * args.iters / base_iters)
        finally:
            train_module.train_transform = original
    print(f"{args.iters} iterations, FCN-8s/{args.backbone}, batch 4, crop 320, 12 frames "
          f"{w}x{h}, CPU")
    print(f"  crops capped at the image:       {capped:7.1f} s")
    scaled = "" if base_iters == args.iters else f" (from {base_iters} iterations, scaled)"
    print(f"  crops padded to 320 (baseline):  {padded:7.1f} s   -> x{padded / capped:.1f} faster"
          f"{scaled}")


if __name__ == "__main__":
    main()
