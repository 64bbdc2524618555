"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell) on any of the backbones.

The backbones (VGG16 as in the paper, and AlexNet, GoogLeNet, MobileNetV3-Large,
ResNet50) live in :mod:`training.backbones`; each gives feature maps at strides 8,
16 and 32, and the head here scores and fuses them. VGG16's layer names are the
reference ones (``conv1_1`` ... ``fc7``, ``score_fr``, ``score_pool4``, ``upscore2``
...), so pytorch-fcn and Caffe-converted state dicts load with a plain
``load_state_dict``. Two alignments (ARCHITECTURE.md, "FCN-8s alignments"):

- ``reference`` (VGG16 only): exactly the published network: conv1_1 pads by 100,
  fc6 has no padding, and Caffe's crop offsets line the skips up. Any input size works.
- ``same``: conv1_1 pads by 1, fc6 by 3 and the input is padded to a multiple of
  32, so every skip already has the size of the upsampled score it joins. Same
  weights, about 1.7x less compute at 500x500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbones import BACKBONES, TAP_STRIDES, VGG16_BLOCKS, VGG_BACKBONES, get_backbone

__all__ = ["ALIGNMENTS", "ARCHS", "BACKBONES", "FCN", "ModelConfig", "VGG16_BLOCKS",
           "bilinear_kernel", "build_model", "is_head_parameter", "reinit_score_layers",
           "transfer_weights"]
ARCHS: Final = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
ALIGNMENTS: Final = ("same", "reference")

MAX_CLASSES: Final = 255
"""Label maps are uint8 with 255 = void, so class ids run 0..254."""

REFERENCE_OFFSETS: Final[Mapping[str, Mapping[str, int]]] = {
    "fcn32s": {"final": 19},
    "fcn16s": {"score_pool4": 5, "final": 27},
    "fcn8s": {"score_pool4": 5, "score_pool3": 9, "final": 31},
    "fcn8s-atonce": {"score_pool4": 5, "score_pool3": 9, "final": 31},
}
"""Where Caffe's crop layers start in the reference network (from its coordinate maps)."""

AT_ONCE_SCALES: Final = {"score_pool4": 0.01, "score_pool3": 0.0001}
"""FCN-8s at once damps the skips so that all of them can learn together from the start."""

# Upsampling layers per architecture: (name, stride); each kernel is 2 x stride.
_UPSAMPLING: Final[Mapping[str, tuple[tuple[str, int], ...]]] = {
    "fcn32s": (("upscore", 32),),
    "fcn16s": (("upscore2", 2), ("upscore16", 16)),
    "fcn8s": (("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)),
    "fcn8s-atonce": (("upscore2", 2), ("upscore_pool4", 2), ("upscore8", 8)),
}

_SAME_MULTIPLE: Final = 32  # total stride of the backbone


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an FCN before loading its weights."""

    num_classes: int
    arch: str = "fcn8s"
    backbone: str = "vgg16"
    alignment: str = "same"
    learnable_upsampling: bool = False  # False: the bilinear deconvs stay frozen
    # Width of fc6/fc7 (VGG16 and AlexNet; the other backbones have none and ignore
    # it). 4096 is the paper's and the only width ImageNet's classifier weights fit;
    # a narrower head (e.g. 1024) trains from scratch faster and saves memory and
    # disk (fc6 alone is 103M of FCN-8s's 134M parameters at 4096).
    fc_channels: int = 4096
    # BatchNorm layers keep their running statistics while training (eval mode):
    # set for backbones started from ImageNet, whose statistics the small batches
    # of a labelling session would only blur (training.backbones, "BatchNorm").
    freeze_bn: bool = False

    def __post_init__(self) -> None:
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
            raise ValueError(f"num_classes must be an integer from 1 to {MAX_CLASSES}, not {n!r}")
        for name, allowed in (("arch", ARCHS), ("backbone", BACKBONES), ("alignment", ALIGNMENTS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; not {value!r}")
        fc = self.fc_channels
        if isinstance(fc, bool) or not isinstance(fc, int) or not 1 <= fc <= 8192:
            raise ValueError(f"fc_channels must be an integer from 1 to 8192, not {fc!r}")
        for flag in ("learnable_upsampling", "freeze_bn"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, not {getattr(self, flag)!r}")
        if self.alignment == "reference" and self.backbone not in VGG_BACKBONES:
            raise ValueError(f"the reference alignment is VGG16's ({', '.join(VGG_BACKBONES)}); "
                             f"use the same alignment for {self.backbone}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, as stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; ValueError names any bad or unknown key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a model config must be a mapping, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(map(str, unknown))}")
        if "num_classes" not in d:
            raise ValueError("model config has no num_classes")
        return cls(**d)


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Deconv weights ``(channels, channels, k, k)`` that upsample each channel bilinearly.

    Only the class diagonal is filled: class c is upsampled from class c alone.
    """
    if channels < 1 or kernel_size < 1:
        raise ValueError(f"need channels >= 1 and kernel_size >= 1, not {channels}, {kernel_size}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    filt = torch.outer(taps, taps).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def _crop(x: Tensor, offset: int, height: int, width: int) -> Tensor:
    """``x[..., offset:offset+height, offset:offset+width]``, refusing a short slice.

    Plain slicing would quietly return less, and the error would surface later as
    a baffling size mismatch (or not at all for the final crop).
    """
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise RuntimeError(
            f"cannot crop {height}x{width} at offset {offset} from a "
            f"{x.shape[-2]}x{x.shape[-1]} blob"
        )
    return x[..., offset : offset + height, offset : offset + width]


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom and right by edge replication up to a multiple of ``multiple``.

    Only bottom/right, so pixel (0, 0) keeps its place and the output is a plain
    top-left crop; replication rather than zeros, so no fake edge appears.
    """
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


class FCN(nn.Module):
    """A fully convolutional network: ``N x 3 x H x W`` -> ``N x C x H x W`` logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = get_backbone(config.backbone)
        self.crop_offsets: dict[str, int] = (
            dict(REFERENCE_OFFSETS[config.arch]) if config.alignment == "reference"
            # In "same" alignment every blob already starts at the input's origin.
            else {k: 0 for k in REFERENCE_OFFSETS[config.arch]}
        )
        # Built on the meta device and materialised once: the default init of
        # fc6/fc7 (120M weights) would otherwise run and then be overwritten.
        with torch.device("meta"):
            self._make_layers()
        self.to_empty(device="cpu")
        self.reset_parameters()

    def _make_layers(self) -> None:
        cfg = self.config
        n = cfg.num_classes
        reference = cfg.alignment == "reference"
        self.backbone.build(self, cfg.fc_channels, reference)
        channels = self.backbone.channels(cfg.fc_channels)
        self.score_fr = nn.Conv2d(channels["fc7"], n, 1)
        if cfg.arch != "fcn32s":
            self.score_pool4 = nn.Conv2d(channels["pool4"], n, 1)
        if cfg.arch in ("fcn8s", "fcn8s-atonce"):
            self.score_pool3 = nn.Conv2d(channels["pool3"], n, 1)
        for name, stride in _UPSAMPLING[cfg.arch]:
            # "same": padding stride/2 trims the deconv to exactly stride x its input
            # and centres input pixel i on output block [s*i, s*i+s).
            pad = 0 if reference else stride // 2
            deconv = nn.ConvTranspose2d(n, n, 2 * stride, stride=stride, padding=pad, bias=False)
            setattr(self, name, deconv)

    def reset_parameters(self) -> None:
        """Fresh weights: kaiming backbone, zero score layers, bilinear upsampling."""
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, nn.ConvTranspose2d):
                    module.weight.copy_(bilinear_kernel(module.in_channels, module.kernel_size[0]))
                    module.weight.requires_grad_(self.config.learnable_upsampling)
                elif isinstance(module, nn.Conv2d) and is_head_parameter(name):
                    # Zero scores: a new head starts by predicting nothing, and the
                    # skips start as no-ops, as in the reference solvers.
                    nn.init.zeros_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()

    def train(self, mode: bool = True) -> FCN:
        """As nn.Module's, but BatchNorm stays in eval mode when ``freeze_bn`` is set."""
        super().train(mode)
        if mode and self.config.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _layer(self, name: str) -> nn.Module:
        """A layer that exists only in some architectures (set with setattr)."""
        layer = getattr(self, name)
        assert isinstance(layer, nn.Module)
        return layer

    def _skip(self, name: str, features: Tensor, like: Tensor) -> Tensor:
        """Score a pooled feature map and crop it to the upsampled blob ``like``."""
        if self.config.arch == "fcn8s-atonce":
            features = features * AT_ONCE_SCALES[name]
        score = getattr(self, name)(features)
        return _crop(score, self.crop_offsets[name], like.shape[-2], like.shape[-1])

    def skip_taps(self) -> tuple[str, ...]:
        """The backbone outputs the head reads: what instant learning caches per image."""
        return {"fcn32s": ("fc7",), "fcn16s": ("pool4", "fc7")}.get(
            self.config.arch, ("pool3", "pool4", "fc7"))

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """The backbone: normalised ``N x 3 x H x W`` -> the skip taps (pool3 1/8, pool4
        1/16, fc7 1/32), only those the head uses. ``x`` is padded here in the "same"
        alignment, so :meth:`head` needs the unpadded size."""
        taps = self.skip_taps()
        if self.config.alignment != "same":
            raw = self.backbone.forward(self, x, taps)
            return {t: raw[t] for t in taps}
        x = _pad_to_multiple(x, _SAME_MULTIPLE)
        h, w = x.shape[-2:]
        before, after = self.backbone.pad
        if before or after:
            x = F.pad(x, (before, after, before, after), mode="replicate")
        raw = self.backbone.forward(self, x, taps)
        # Every tap exactly padded size / stride, from the cell the backbone's
        # alignment asks for (training.backbones, "Alignment").
        out = {}
        for t in taps:
            size, offset = (h // TAP_STRIDES[t], w // TAP_STRIDES[t]), self.backbone.offsets.get(t, 0)
            exact = offset == 0 and tuple(raw[t].shape[-2:]) == size
            out[t] = raw[t] if exact else _crop(raw[t], offset, *size)
        return out

    def coarse_scores(self, feats: Mapping[str, Tensor]) -> Tensor:
        """Class scores at the finest skip (1/8 for FCN-8s), before the final upsampling."""
        h = self.score_fr(feats["fc7"])  # 1/32
        if self.config.arch == "fcn32s":
            return h
        h = self._layer("upscore2")(h)  # 1/16
        h = h + self._skip("score_pool4", feats["pool4"], h)
        if self.config.arch == "fcn16s":
            return h
        h = self._layer("upscore_pool4")(h)  # 1/8
        return h + self._skip("score_pool3", feats["pool3"], h)

    @property
    def final_upsampling(self) -> nn.ConvTranspose2d:
        """The last deconv (x8, x16 or x32) from :meth:`coarse_scores` to the input size."""
        name = _UPSAMPLING[self.config.arch][-1][0]
        return getattr(self, name)

    @property
    def coarse_stride(self) -> int:
        return _UPSAMPLING[self.config.arch][-1][1]

    def head(self, feats: Mapping[str, Tensor], height: int, width: int) -> Tensor:
        """Score layers and upsampling: the skip taps -> ``N x C x height x width`` logits."""
        h = self.final_upsampling(self.coarse_scores(feats))
        return _crop(h, self.crop_offsets["final"], height, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x), x.shape[-2], x.shape[-1])

    def extra_repr(self) -> str:
        return f"config={self.config}"


def build_model(config: ModelConfig) -> FCN:
    """A freshly initialised FCN (no pretrained weights; see ``training.weights``)."""
    return FCN(config)


def is_head_parameter(name: str) -> bool:
    """Score and upsampling layers: what depends on the class count."""
    return name.startswith(("score", "upscore"))


def transfer_weights(dst: FCN, src_state: Mapping[str, Tensor]) -> list[str]:
    """Copy every tensor of ``src_state`` whose name and shape ``dst`` shares.

    For staged training (32s -> 16s -> 8s) and fine-tuning; returns the copied names.
    """
    dst_state = dst.state_dict()  # views of dst's tensors: copying into them updates dst
    copied = []
    with torch.no_grad():
        for name, value in src_state.items():
            target = dst_state.get(name)
            if target is not None and isinstance(value, Tensor) and target.shape == value.shape:
                target.copy_(value)
                copied.append(name)
    return copied


def reinit_score_layers(model: FCN, num_classes: int) -> FCN:
    """A new model for ``num_classes`` with ``model``'s backbone and fresh score layers.

    Returned on ``model``'s device and in its train/eval mode; ``model`` is untouched.
    """
    new = build_model(replace(model.config, num_classes=num_classes))
    backbone = {k: v for k, v in model.state_dict().items() if not is_head_parameter(k)}
    transfer_weights(new, backbone)
    param = next(model.parameters())
    return new.to(device=param.device).train(model.training)
