"""What learning after a save costs, beside one prediction of the same image (same run).

The full FCN-8s / VGG16 (fc 4096) at 500x375 on the CPU, 50 saved images whose
features are cached (real CamVid frames scaled to 500x375 when
../shared/data/camvid-mini is there, else synthetic scenes):

1. one full prediction (the baseline: what the person already waits for);
2. instant learning after the 50th save (the default 1.5 s budget), with the
   number of passes over the saved images it managed;
3. refreshing a prediction made ahead of time from its cached features.

Run: python benchmarks/bench_instant.py [--saved 50] [--size 500x375]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CAMVID = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "camvid-mini"


def frames(n: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    w, h = size
    pairs = []
    files = sorted((CAMVID / "train").glob("*.jpg")) if (CAMVID / "train").is_dir() else []
    for i in range(n):
        if files:
            f = files[i % len(files)]
            img = np.asarray(Image.open(f).convert("RGB").resize(size, Image.Resampling.BILINEAR))
            lab = np.asarray(Image.open(CAMVID / "trainannot" / f"{f.stem}.png").resize(
                size, Image.Resampling.NEAREST)).copy()
            lab[lab == 11] = 255
        else:
            from tests.synthetic import synthetic_pair

            img, lab = synthetic_pair(i, h, w)
        pairs.append((np.ascontiguousarray(img), lab.astype(np.uint8)))
    return pairs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--saved", type=int, default=50)
    p.add_argument("--size", default="500x375")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    import torch

    from training.instant import InstantLearner
    from training.model_init import fresh_model
    from training.predict import Predictor

    torch.manual_seed(0)
    names = [f"class {i}" for i in range(11)]
    predictor = Predictor(fresh_model(names, "scratch", progress=False), "cpu")
    learner = InstantLearner(predictor)
    pairs = frames(args.saved, (w, h))
    t0 = time.perf_counter()
    predict_s = []
    for i, (img, lab) in enumerate(pairs):
        t = time.perf_counter()
        learner.predict(str(i), img)
        predict_s.append(time.perf_counter() - t)
        learner.add_label(str(i), lab)
    print(f"set-up: {len(pairs)} images {w}x{h} predicted and cached in {time.perf_counter() - t0:.0f} s "
          f"({learner.cache.used_bytes / 2**20:.0f} MiB of features, "
          f"{torch.get_num_threads()} threads)")
    learner.learn()  # warm-up: allocator, kernels
    reports = [learner.learn() for _ in range(args.repeats)]
    refresh = []
    for i in range(args.repeats * 3):
        t = time.perf_counter()
        learner.refresh(str(i % len(pairs)), (h, w))
        refresh.append(time.perf_counter() - t)
    base = statistics.median(predict_s[1:] or predict_s)
    learn = statistics.median(r.seconds for r in reports)
    passes = statistics.median(r.passes for r in reports)
    ref = statistics.median(refresh)
    print(f"{'':34s}{'seconds':>10s}{'x one prediction':>18s}")
    print(f"{'one prediction (baseline)':34s}{base:10.3f}{1.0:18.2f}")
    print(f"{f'learn after save ({args.saved} saved)':34s}{learn:10.3f}{learn / base:18.2f}"
          f"   {passes:.1f} passes over the saved images")
    print(f"{'refresh from cached features':34s}{ref:10.3f}{ref / base:18.3f}")


if __name__ == "__main__":
    main()
