"""The backbones an FCN head sits on: feature maps at strides 8, 16 and 32.

Every backbone gives three taps, named after VGG16's layers (the reference FCN)
so that the head, the feature cache and instant learning read them alike:
``pool3`` (stride 8), ``pool4`` (stride 16) and ``fc7`` (stride 32). FCN-8s scores
all three, FCN-16s the last two, FCN-32s ``fc7`` alone.

==================== ================= ============ ==============================
backbone             pool3 / pool4     fc7          built from
==================== ================= ============ ==============================
vgg16, vgg16_bn      256 / 512         fc_channels  VGG16 convs; fc6/fc7 as 7x7
                                                    and 1x1 convs (the paper)
alexnet              64 / 192          fc_channels  torchvision's AlexNet: pool1,
                                                    pool2; fc6/fc7 as 6x6 and 1x1
                                                    convs (the paper's FCN-AlexNet)
googlenet            480 / 832         1024         torchvision's GoogLeNet:
                                                    inception 3b, 4e, 5b (the
                                                    paper's: no avg pool, dropout,
                                                    fc; no aux classifiers)
mobilenet_v3_large   40 / 112          960          torchvision's features 6, 12,
                                                    16 (the ends of the stride-8,
                                                    16 and 32 stages)
resnet50             512 / 1024        2048         layer2, layer3, layer4
==================== ================= ============ ==============================

The light head of MobileNetV3-Large and ResNet50 adds nothing to the backbone:
the 1x1 score layers read the stage ends directly, exactly as FCN's skips read
pool3/pool4. A reduction (say 2048 -> 512) before the scores would have to start
from random weights, so instant learning, which trains only the scores, would
learn through a random projection of ImageNet's features; scoring all channels
costs little instead: (40 + 112 + 960) x C weights for MobileNetV3 (23k at 21
classes, 0.03 GMAC at 500x375) and (512 + 1024 + 2048) x C for ResNet50 (75k,
0.1 GMAC), against 3.8 and 55 GMAC for the backbones themselves. The cached
features per 500x375 image are 0.8 MB (MobileNetV3) and 5.5 MB (ResNet50) in
fp16, against 3.9 MB for VGG16.

Alignment ("same"): the input is padded to a multiple of 32 and every tap has
exactly ``padded size / stride`` cells, cell ``i`` centred on pixels
``[s*i, s*i+s)`` as the head's bilinear upsampling assumes. VGG16 is exact by
construction. Where a backbone's own arithmetic is off (AlexNet's 11x11/4 conv
and 3x3/2 pools lose cells; the stride-2 convs of ResNet and MobileNet centre
cell ``i`` on pixel ``s*i``, half a cell early), the input gets a few more
replicated pixels (``Backbone.pad``, top-left / bottom-right) and each tap is
cropped from its ``offsets`` cell, chosen so that every tap's centres lie
within 4.5 pixels of the block centres (worked out in each class). The layers
run exactly as torchvision's, so ImageNet weights fit by a plain renaming.

BatchNorm (vgg16_bn, googlenet, mobilenet_v3_large, resnet50): a model started
from ImageNet has ``freeze_bn`` set: its BatchNorm layers keep ImageNet's
running statistics (eval mode) while training, because the batches of 2-8
images a labelling session trains on give too noisy statistics; their affine
weights still learn. A model trained from scratch learns its statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TAPS: Final = ("pool3", "pool4", "fc7")
TAP_STRIDES: Final[Mapping[str, int]] = {"pool3": 8, "pool4": 16, "fc7": 32}

VGG16_BLOCKS: Final = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
"""Output channels of each 3x3 conv, per block; a 2x2 max-pool ends every block."""


def small_input_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a zero-padded conv (fc6: 7x7, padding 3) whose input may be smaller
    than its kernel, as pool5 of a small image is.

    PyTorch's CPU backward for a 512->4096 7x7 conv on a 6x8 map took 78 s, against
    2.2 s on 7x9 (one 2-core CPU; 5x5: 22 s against 1.8 s): fine-tuning VGG16 on frames
    under 224 pixels high spent nearly all its time there. On a CPU such a conv runs as
    one matrix product over the unfolded input instead (fc6 forward and backward on a
    3x4 map: 1.3 s against 2.5 s padded, 2x2: 0.5 s against 2.3 s), elsewhere on the
    input padded with zeros at the bottom and right up to the kernel's size, the output
    cropped back. Both give the plain conv's numbers: the padded rows and columns are
    zeros where the conv's own padding already read zeros, and the outputs that see
    them are cropped off.
    """
    kh, kw = conv.kernel_size
    h, w = x.shape[-2:]
    if conv.padding == (0, 0) or (h >= kh and w >= kw):  # a valid conv needs its size
        return conv(x)
    if (x.device.type == "cpu" and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and isinstance(conv.padding, tuple)):
        return conv_as_matmul(conv, x)
    return padded_to_kernel(conv, x)


def padded_to_kernel(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` on ``x`` zero-padded at the bottom and right up to the kernel's size."""
    kh, kw = conv.kernel_size
    h, w = x.shape[-2:]
    return conv(F.pad(x, (0, max(0, kw - w), 0, max(0, kh - h))))[..., :h, :w]


def conv_as_matmul(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` (stride 1, no dilation or groups) as unfold + one matrix product."""
    n, _, h, w = x.shape
    if not isinstance(conv.padding, tuple):
        raise ValueError(f"conv_as_matmul needs numeric padding, not {conv.padding!r}")
    kh, kw = conv.kernel_size
    ph, pw = int(conv.padding[0]), int(conv.padding[1])
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    cols = F.unfold(x, (kh, kw), padding=(ph, pw))  # n x (c * kh * kw) x (ho * wo)
    rows = cols.transpose(1, 2).reshape(n * ho * wo, -1)
    weight = conv.weight.reshape(conv.out_channels, -1).t()
    out = rows @ weight if conv.bias is None else torch.addmm(conv.bias, rows, weight)
    return out.view(n, ho, wo, conv.out_channels).permute(0, 3, 1, 2)


class Backbone:
    """One backbone's layers, forward pass and ImageNet names.

    The layers are registered on the FCN itself (not on a sub-module), so their
    state-dict names are the reference ones for VGG16 (``conv1_1``, ``fc7``) and
    torchvision's own for the others (``layer1.0.conv1``, ``inception3a...``).
    """

    name: ClassVar[str]
    has_fc: ClassVar[bool] = False  # fc6/fc7 of width fc_channels
    has_bn: ClassVar[bool] = False
    pad: ClassVar[tuple[int, int]] = (0, 0)  # extra replicated pixels: top/left, bottom/right
    offsets: ClassVar[Mapping[str, int]] = {}  # first cell of each tap in the "same" alignment
    weights: ClassVar[str]  # torchvision.models attribute path of the ImageNet weights entry
    first_key: ClassVar[str]  # a key every torchvision ImageNet file of this backbone has

    def channels(self, fc_channels: int) -> dict[str, int]:
        raise NotImplementedError

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        """Register the layers on ``net`` (called on the meta device)."""
        raise NotImplementedError

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        """The padded input -> the taps asked for (uncropped)."""
        raise NotImplementedError

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        """(our module, torchvision module) prefixes whose tensors correspond one to one."""
        raise NotImplementedError


def _torchvision_model(factory: str, **kwargs: Any) -> nn.Module:
    # torchvision is slow to import and only needed for these backbones.
    import torchvision.models

    model = getattr(torchvision.models, factory)(weights=None, **kwargs)
    assert isinstance(model, nn.Module)
    return model


class VGG16(Backbone):
    name = "vgg16"
    has_fc = True
    weights = "VGG16_Weights.IMAGENET1K_V1"
    first_key = "features.0.weight"

    def channels(self, fc_channels: int) -> dict[str, int]:
        return {"pool3": 256, "pool4": 512, "fc7": fc_channels}

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        in_ch = 3
        for b, widths in enumerate(VGG16_BLOCKS, start=1):
            for i, out_ch in enumerate(widths, start=1):
                # The reference pads conv1_1 by 100 so that any input survives
                # fc6's 7x7 valid conv and the crops downstream.
                pad = 100 if (reference and b == 1 and i == 1) else 1
                setattr(net, f"conv{b}_{i}", nn.Conv2d(in_ch, out_ch, 3, padding=pad))
                if self.has_bn:
                    setattr(net, f"bn{b}_{i}", nn.BatchNorm2d(out_ch))
                in_ch = out_ch
        net.fc6 = nn.Conv2d(512, fc_channels, 7, padding=0 if reference else 3)
        net.drop6 = nn.Dropout(0.5)  # element-wise, as Caffe's dropout
        net.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        net.drop7 = nn.Dropout(0.5)

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        h = x
        for b, widths in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, len(widths) + 1):
                h = getattr(net, f"conv{b}_{i}")(h)
                if self.has_bn:
                    h = getattr(net, f"bn{b}_{i}")(h)
                h = F.relu(h, inplace=True)
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)  # 1/2, 1/4, 1/8, 1/16, 1/32
            if f"pool{b}" in taps:
                out[f"pool{b}"] = h
        h = net.drop6(F.relu(small_input_conv(net.fc6, h), inplace=True))
        out["fc7"] = net.drop7(F.relu(net.fc7(h), inplace=True))
        return out

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        pairs = []
        index = 0  # walks torchvision's `features` Sequential: conv, [bn,] relu, ..., pool
        for b, widths in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, len(widths) + 1):
                pairs.append((f"conv{b}_{i}", f"features.{index}"))
                if self.has_bn:
                    pairs.append((f"bn{b}_{i}", f"features.{index + 1}"))
                index += 3 if self.has_bn else 2
            index += 1  # max-pool
        if fc_channels == 4096:  # only the paper's width fits ImageNet's classifier
            pairs += [("fc6", "classifier.0"), ("fc7", "classifier.3")]
        return pairs


class VGG16BN(VGG16):
    name = "vgg16_bn"
    has_bn = True
    weights = "VGG16_BN_Weights.IMAGENET1K_V1"


class AlexNet(Backbone):
    """Taps pool1, pool2 and fc7 (after pool5 and the convolutionalised fc6/fc7).

    Cell centres in the padded input: conv1 (11x11/4, pad 2) puts cell j on pixel
    4j+3 and each 3x3/2 pool doubles that plus one cell: pool1 8i+7, pool2 16i+15,
    pool5 32i+31; fc6 (6x6, padded 3 before and 2 after) moves it to 32i+15. With 4
    pixels above/left that is 8i+3, 16i+11, 32i+11 in the image: 0.5, 3.5 and 4.5
    pixels from the block centres. 27 pixels below/right keep pool5 (and so fc7)
    at padded size / 32 cells: the 3x3/2 pools without padding lose a cell each.
    """

    name = "alexnet"
    has_fc = True
    pad = (4, 27)
    weights = "AlexNet_Weights.IMAGENET1K_V1"
    first_key = "features.0.weight"
    _CONVS: ClassVar = (("conv1", 0), ("conv2", 3), ("conv3", 6), ("conv4", 8), ("conv5", 10))

    def channels(self, fc_channels: int) -> dict[str, int]:
        return {"pool3": 64, "pool4": 192, "fc7": fc_channels}

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        features = _torchvision_model("alexnet").features
        assert isinstance(features, nn.Sequential)
        for name, index in self._CONVS:
            setattr(net, name, features[index])
        # The classifier's Linear(9216, 4096) on the 256 x 6 x 6 pool5 is a 6x6 conv.
        net.fc6 = nn.Conv2d(256, fc_channels, 6)
        net.drop6 = nn.Dropout(0.5)
        net.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        net.drop7 = nn.Dropout(0.5)

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        h = F.max_pool2d(F.relu(net.conv1(x), inplace=True), 3, 2)
        out["pool3"] = h
        h = F.max_pool2d(F.relu(net.conv2(h), inplace=True), 3, 2)
        out["pool4"] = h
        for name in ("conv3", "conv4", "conv5"):
            h = F.relu(getattr(net, name)(h), inplace=True)
        h = F.max_pool2d(h, 3, 2)
        h = net.fc6(F.pad(h, (3, 2, 3, 2)))  # an even kernel: one more before than after
        h = net.drop6(F.relu(h, inplace=True))
        out["fc7"] = net.drop7(F.relu(net.fc7(h), inplace=True))
        return out

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        pairs = [(name, f"features.{index}") for name, index in self._CONVS]
        if fc_channels == 4096:
            pairs += [("fc6", "classifier.1"), ("fc7", "classifier.4")]
        return pairs


class GoogLeNet(Backbone):
    """Taps inception3b, inception4e and inception5b; no avg pool, dropout or fc.

    Cell centres: conv1 (7x7/2, pad 3) puts cell j on pixel 2j, the 3x3/2 ceil-mode
    pools on 2i+1 of their input and the last 2x2/2 on 2i+0.5: 8i+6, 16i+14, 32i+22.
    With 4 pixels above/left: 8i+2, 16i+10, 32i+18, within 2.5 pixels of the block
    centres; the ceil-mode pools keep every tap at padded size / stride cells.

    torchvision's ImageNet weights come with ``transform_input``, which turns
    ImageNet-normalised input into ``(x - 0.5) / 0.5``; here that normalisation
    is stored in the checkpoint instead (``weights.imagenet_normalization``).
    """

    name = "googlenet"
    has_bn = True
    pad = (4, 0)
    weights = "GoogLeNet_Weights.IMAGENET1K_V1"
    first_key = "conv1.conv.weight"
    _STEM: ClassVar = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2")
    _STAGES: ClassVar = (
        ("pool3", ("inception3a", "inception3b")),
        ("pool4", ("maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                   "inception4e")),
        ("fc7", ("maxpool4", "inception5a", "inception5b")),
    )

    def channels(self, fc_channels: int) -> dict[str, int]:
        return {"pool3": 480, "pool4": 832, "fc7": 1024}

    def _modules(self) -> list[str]:
        return [*self._STEM, *(m for _, stage in self._STAGES for m in stage)]

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        tv = _torchvision_model("googlenet", aux_logits=False, init_weights=False)
        for name in self._modules():
            setattr(net, name, getattr(tv, name))

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        for name in self._STEM:
            x = getattr(net, name)(x)
        out: dict[str, Tensor] = {}
        for tap, stage in self._STAGES:
            for name in stage:
                x = getattr(net, name)(x)
            out[tap] = x
        return out

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        return [(name, name) for name in self._modules() if not name.startswith("maxpool")]


class MobileNetV3Large(Backbone):
    """Taps: the outputs of torchvision's ``features`` 6, 12 and 16 (here ``body``).

    Its stride-2 convs (3x3 pad 1, 5x5 pad 2) put cell j on pixel s*j, half a
    cell before the block centre; 12 pixels above/left and crops from cells 2, 1
    and 1 put the centres 0.5, 3.5 and 4.5 pixels from the block centres (the
    stride-32 tap computes one more row and column for it).
    """

    name = "mobilenet_v3_large"
    has_bn = True
    pad = (12, 0)
    offsets = {"pool3": 2, "pool4": 1, "fc7": 1}
    weights = "MobileNet_V3_Large_Weights.IMAGENET1K_V2"
    first_key = "features.0.0.weight"
    _TAPS: ClassVar = {6: "pool3", 12: "pool4", 16: "fc7"}

    def channels(self, fc_channels: int) -> dict[str, int]:
        return {"pool3": 40, "pool4": 112, "fc7": 960}

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        # `features` would shadow FCN.features(): the same Sequential, named body.
        net.body = _torchvision_model("mobilenet_v3_large").features

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for i, block in enumerate(net.body):
            x = block(x)
            if i in self._TAPS:
                out[self._TAPS[i]] = x
        return out

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        return [("body", "features")]


class ResNet50(Backbone):
    """Taps layer2, layer3 and layer4; the stem and alignment as MobileNetV3's."""

    name = "resnet50"
    has_bn = True
    pad = (12, 0)
    offsets = {"pool3": 2, "pool4": 1, "fc7": 1}
    weights = "ResNet50_Weights.IMAGENET1K_V2"
    first_key = "conv1.weight"
    _MODULES: ClassVar = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

    def channels(self, fc_channels: int) -> dict[str, int]:
        return {"pool3": 512, "pool4": 1024, "fc7": 2048}

    def build(self, net: nn.Module, fc_channels: int, reference: bool) -> None:
        tv = _torchvision_model("resnet50")
        for name in self._MODULES:
            setattr(net, name, getattr(tv, name))

    def forward(self, net: Any, x: Tensor, taps: tuple[str, ...]) -> dict[str, Tensor]:
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer1(x)
        out = {"pool3": net.layer2(x)}
        out["pool4"] = net.layer3(out["pool3"])
        out["fc7"] = net.layer4(out["pool4"])
        return out

    def imagenet_pairs(self, fc_channels: int) -> list[tuple[str, str]]:
        return [(name, name) for name in self._MODULES if name not in ("relu", "maxpool")]


REGISTRY: Final[Mapping[str, Backbone]] = {
    b.name: b for b in (VGG16(), VGG16BN(), AlexNet(), GoogLeNet(), MobileNetV3Large(), ResNet50())
}
BACKBONES: Final = tuple(REGISTRY)
VGG_BACKBONES: Final = ("vgg16", "vgg16_bn")
"""The only backbones of the reference alignment and the pytorch-fcn import."""


def get_backbone(name: str) -> Backbone:
    if name not in REGISTRY:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; not {name!r}")
    return REGISTRY[name]
