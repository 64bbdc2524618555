"""The backbones: tap sizes and alignment, torchvision's weights, BatchNorm, compatibility."""

from __future__ import annotations

import hashlib

import pytest
import torch

from training.backbones import BACKBONES, TAP_STRIDES
from training.instant import backbone_fingerprint
from training.model import ARCHS, FCN, ModelConfig, build_model

NON_VGG = [b for b in BACKBONES if not b.startswith("vgg")]


def _model(backbone: str, arch: str = "fcn8s", **kw: object) -> FCN:
    torch.manual_seed(0)
    fc = {"fc_channels": 32} if backbone in ("vgg16", "vgg16_bn", "alexnet") else {}
    return build_model(ModelConfig(num_classes=3, arch=arch, backbone=backbone, **fc, **kw)).eval()


def test_vgg16_fingerprint_is_the_one_head_files_were_written_with() -> None:
    model = _model("vgg16")
    with torch.no_grad():
        model.fc7.bias.normal_()
    h = hashlib.sha256()  # the digest as it was when VGG16 was the only backbone
    for name in ("conv1_1", "fc7"):
        layer = getattr(model, name)
        h.update(layer.weight.detach().float().numpy().tobytes()[:1 << 20])
        h.update(layer.bias.detach().float().numpy().tobytes())
    assert backbone_fingerprint(model) == h.hexdigest()[:16]
