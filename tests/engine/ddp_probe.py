"""Run under torchrun by test_train.py: train, then record this rank's weights digest."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from training import distributed as dist_utils
from training.progress import Reporter
from training.train import Trainer
from training.train_config import TrainConfig


def main() -> None:
    data, out = sys.argv[1], sys.argv[2]
    backbone = sys.argv[3] if len(sys.argv) > 3 else "vgg16"
    fc = 64 if backbone.startswith("vgg") else 4096  # fc6/fc7 exist only on VGG (and AlexNet)
    cfg = TrainConfig(data=data, out=out, init="scratch", backbone=backbone, fc_channels=fc,
                      iters=3, batch_size=1, crop=48, workers=0, device="cpu", json=True)
    info = dist_utils.init_distributed("cpu")
    try:
        rc = Trainer(cfg, Reporter(True, enabled=info.is_main), info)
        code = rc.run()
        digest = hashlib.sha256()
        for name, tensor in sorted(rc.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        Path(out, f"rank{info.rank}.json").write_text(json.dumps(
            {"rc": code, "digest": digest.hexdigest(), "world": info.world_size,
             "conv1": float(next(rc.model.parameters()).double().sum())}))
    finally:
        dist_utils.cleanup(info)
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
