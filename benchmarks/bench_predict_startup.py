"""What a person waits for when predicting a few frames: ``fcn-predict`` from process
start to the last label PNG, beside a reference FCN-8s script doing the same.

Three 500x375 frames and one FCN-8s/VGG16 checkpoint (538 MB, float32; and the
float16 version the app stores, 269 MB). Each command runs as a fresh process and
is timed from its start to its exit, median of ``--repeats``:

- ``fcn-predict CKPT FRAMES --out OUT``: imports no torchvision, loads the
  checkpoint memory-mapped, the ``same`` alignment.
- the reference: a plain script the way FCN-8s scripts are written (pytorch-fcn,
  the paper's Caffe model): it imports torchvision for VGG16, reads the whole
  checkpoint into memory, builds the published network (padding 100, Caffe's
  crops: the ``reference`` alignment) and predicts each frame.

Run: python benchmarks/bench_predict_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REFERENCE_SCRIPT = r"""
import sys
from pathlib import Path
import numpy as np
import torch
import torchvision  # noqa: F401  (a reference script builds VGG16 from torchvision)
from PIL import Image
from training.model import ModelConfig, build_model
from training.preprocess import Normalization

ckpt, frames, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
obj = torch.load(ckpt, map_location="cpu", weights_only=True)  # the whole file, in memory
config = dict(obj["model"], alignment="reference")
model = build_model(ModelConfig.from_dict(config))
model.load_state_dict(obj["state_dict"])
model.eval()
norm = Normalization.from_dict(obj["normalization"])
out.mkdir(parents=True, exist_ok=True)
with torch.inference_mode():
    for path in sorted(frames.glob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        x = norm.apply(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
        label = model(x).argmax(1)[0].to(torch.uint8).numpy()
        Image.fromarray(label, mode="L").save(out / (path.stem + ".png"))
"""


def _timed(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from training import preprocess
    from training.checkpoint import make_checkpoint, save_checkpoint
    from training.model import ModelConfig, build_model

    with tempfile.TemporaryDirectory(prefix="fcn-startup-") as name:
        tmp = Path(name)
        frames = tmp / "frames"
        frames.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.frames):
            small = rng.integers(0, 255, (47, 63, 3), dtype=np.uint8)
            Image.fromarray(small).resize((500, 375), Image.Resampling.BILINEAR).save(
                frames / f"frame{i}.jpg", quality=90)
        model = build_model(ModelConfig(num_classes=21))
        names = [f"class{i}" for i in range(21)]
        ckpts = {}
        for dtype in ("float32", "float16"):
            ckpts[dtype] = tmp / f"{dtype}.pt"
            save_checkpoint(ckpts[dtype], make_checkpoint(model, names, preprocess.TORCHVISION,
                                                          weights_dtype=dtype))
        del model
        python = sys.executable
        ref = _timed([python, "-c", REFERENCE_SCRIPT, str(ckpts["float32"]), str(frames),
                      str(tmp / "ref")], args.repeats)
        print(f"{args.frames} frames of 500x375, process start to exit, median of {args.repeats}")
        print(f"{'reference FCN-8s script (float32)':<40} {ref:6.2f} s")
        for dtype, ckpt in ckpts.items():
            ours = _timed([python, "-m", "training", "predict", str(ckpt), str(frames), "--out",
                           str(tmp / f"out-{dtype}"), "--device", "cpu"], args.repeats)
            print(f"{f'fcn-predict ({dtype} checkpoint)':<40} {ours:6.2f} s   x{ref / ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
