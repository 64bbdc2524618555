"""Input normalisation, stored in every checkpoint because it depends on the weights.

torchvision's ImageNet weights expect RGB scaled to [0, 1] then ImageNet mean/std;
Caffe-converted FCN weights (pytorch-fcn, fcn.berkeleyvision.org) expect BGR in
0..255 minus the per-channel mean (ARCHITECTURE.md, "Preprocessing").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Normalization:
    channel_order: str  # "RGB" or "BGR": the order the network expects
    scale: float  # uint8 values are multiplied by this first
    mean: tuple[float, float, float]  # subtracted after scaling, in channel_order
    std: tuple[float, float, float]  # divided after subtracting, in channel_order

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise ``N x 3 x H x W`` RGB images in 0..255 (uint8 or float) to float32.

        Runs on whatever device ``images`` is on, so the data loader can ship
        uint8 (4x less to copy) and the GPU does the arithmetic.
        """
        x = images.float()
        if self.channel_order == "BGR":
            x = x.flip(1)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * self.scale - mean) / std

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(
            channel_order=str(d["channel_order"]),
            scale=float(d["scale"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
        )


TORCHVISION = Normalization("RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""For torchvision ImageNet weights and for models trained from them."""

CAFFE = Normalization("BGR", 1.0, (104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0))
"""For Caffe-converted weights (pytorch-fcn / fcn.berkeleyvision.org)."""
