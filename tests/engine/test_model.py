"""FCN-32s/16s/8s: shapes, alignment, initialisation, reference names, config values."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
import torch
from torch import nn

from training import model as model_module
from training.model import (
    ALIGNMENTS,
    ARCHS,
    FCN,
    ModelConfig,
    bilinear_kernel,
    build_model,
    reinit_score_layers,
    transfer_weights,
)

ALL_CONFIGS = [(arch, alignment) for arch in ARCHS for alignment in ALIGNMENTS]
ODD_SIZES = [(1, 1), (7, 13), (33, 65), (100, 37)]
HEADS = {  # reference (pytorch-fcn) head layer names -> is a score conv (else a deconv)
    "fcn32s": {"score_fr": True, "upscore": False},
    "fcn16s": {"score_fr": True, "score_pool4": True, "upscore2": False, "upscore16": False},
    "fcn8s": {"score_fr": True, "score_pool4": True, "score_pool3": True,
              "upscore2": False, "upscore_pool4": False, "upscore8": False},
}
HEADS["fcn8s-atonce"] = HEADS["fcn8s"]


def _ids(config: tuple[str, str]) -> str:
    return "-".join(config)


@pytest.fixture(scope="module")
def model(request: pytest.FixtureRequest) -> FCN:
    """One full-size model per (arch, alignment), shared by the tests below.

    Module scope with indirect parametrisation: pytest groups the tests by
    configuration, so each ~134M-parameter model is built once and freed after.
    """
    arch, alignment = request.param
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=3, arch=arch, alignment=alignment)).eval()


def _run(model: FCN, h: int, w: int) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(1, 3, h, w))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("model", ALL_CONFIGS, indirect=True, ids=_ids)
def test_output_has_the_input_size_and_zero_logits_when_fresh(model: FCN) -> None:
    for h, w in ODD_SIZES:
        out = _run(model, h, w)
        assert out.shape == (1, 3, h, w)
        assert not out.any()  # zero score layers: nothing predicted before training


@pytest.mark.slow
@pytest.mark.parametrize("model", [("fcn8s", "reference")], indirect=True, ids=_ids)
def test_reference_output_has_the_input_size_at_600x400(model: FCN) -> None:
    assert _run(model, 600, 400).shape == (1, 3, 600, 400)


def _reference_crops_fit(arch: str, size: int) -> bool:
    """Blob sizes of the reference network, worked out by hand, for one side length."""
    offsets = model_module.REFERENCE_OFFSETS[arch]
    pools = []
    h = size + 2 * 100 - 2  # conv1_1: 3x3 with padding 100
    for _ in range(5):
        h = -(-h // 2)  # ceil-mode 2x2 pooling (3x3 pad-1 convs keep the size)
        pools.append(h)
    h = pools[4] - 6  # fc6: 7x7, no padding
    if h < 1:
        return False
    if arch == "fcn32s":
        return (h - 1) * 32 + 64 >= offsets["final"] + size
    h = (h - 1) * 2 + 4  # upscore2
    if pools[3] < offsets["score_pool4"] + h:
        return False
    if arch == "fcn16s":
        return (h - 1) * 16 + 32 >= offsets["final"] + size
    h = (h - 1) * 2 + 4  # upscore_pool4
    if pools[2] < offsets["score_pool3"] + h:
        return False
    return (h - 1) * 8 + 16 >= offsets["final"] + size


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_reference_crops_fit_every_size_up_to_600(arch: str) -> None:
    assert [s for s in range(1, 601) if not _reference_crops_fit(arch, s)] == []


def test_vgg16_bn_backbone() -> None:
    torch.manual_seed(0)
    m = build_model(ModelConfig(num_classes=2, arch="fcn8s", backbone="vgg16_bn"))
    names = set(m.state_dict())
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for i in range(1, n + 1):
            assert {f"bn{b}_{i}.weight", f"bn{b}_{i}.running_var"} <= names
    assert not any(k.startswith(("bn6", "bn7")) for k in names)  # no BN on fc6/fc7
    m.train()
    assert m(torch.randn(2, 3, 33, 47)).shape == (2, 2, 33, 47)


@pytest.mark.parametrize("model", [("fcn8s", "same")], indirect=True, ids=_ids)
def test_autocast_and_channels_last(model: FCN) -> None:
    x = torch.randn(1, 3, 37, 70)
    with torch.no_grad():
        for layer in (model.score_fr, model.score_pool4, model.score_pool3):
            layer.weight.normal_(0, 0.01)  # non-zero logits, so the comparison means something
        try:
            expected = model(x)
            cl = model.to(memory_format=torch.channels_last)
            got = cl(x.to(memory_format=torch.channels_last))
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = cl(x)
            assert half.shape == (1, 3, 37, 70) and torch.isfinite(half).all()
        finally:  # the fixture is shared: give it back as it was
            model.to(memory_format=torch.contiguous_format)
            for layer in (model.score_fr, model.score_pool4, model.score_pool3):
                layer.weight.zero_()


# ---------------------------------------------------------------- alignment


def _layer_map(layer: nn.Module) -> tuple[Fraction, Fraction]:
    """(a, b): pixel o of the layer's output is centred at a*o + b in its input."""
    k, s, p = (v if isinstance(v, int) else v[0]
               for v in (layer.kernel_size, layer.stride, layer.padding))
    if isinstance(layer, nn.ConvTranspose2d):
        return Fraction(1, s), Fraction(p - Fraction(k - 1, 2), s)
    return Fraction(s), Fraction(k - 1, 2) - p


def _frames(model: FCN) -> dict[str, tuple[Fraction, Fraction]]:
    """Where each blob's pixels sit in input coordinates, composed layer by layer.

    An independent check of the crop offsets: Caffe derived them the same way
    (``coord_map.py``), from the layers' kernel, stride and padding.
    """
    frames: dict[str, tuple[Fraction, Fraction]] = {}
    a, b = Fraction(1), Fraction(0)

    def through(layer: nn.Module) -> None:
        nonlocal a, b
        la, lb = _layer_map(layer)
        a, b = a * la, a * lb + b

    pool = nn.MaxPool2d(2, 2)
    for blk, n in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n + 1):
            through(getattr(model, f"conv{blk}_{i}"))
        through(pool)
        frames[f"pool{blk}"] = (a, b)
    for name in ("fc6", "fc7", "score_fr"):
        through(getattr(model, name))
    for name, skip in (("upscore2", "pool4"), ("upscore_pool4", "pool3")):
        if not hasattr(model, name):
            break
        through(getattr(model, name))
        frames[f"up_{skip}"] = (a, b)
    through(getattr(model, {"fcn32s": "upscore", "fcn16s": "upscore16"}.get(
        model.config.arch, "upscore8")))
    frames["out"] = (a, b)
    return frames


def _expected_offsets(model: FCN) -> dict[str, int]:
    frames = _frames(model)
    offsets = {}
    for skip in ("pool4", "pool3"):
        if f"up_{skip}" in frames:
            (a, b_skip), (_, b_up) = frames[skip], frames[f"up_{skip}"]
            offsets[f"score_{skip}"] = (b_up - b_skip) / a
    a, b = frames["out"]
    assert a == 1
    offsets["final"] = -b
    assert all(o.denominator == 1 for o in offsets.values()), offsets
    return {k: int(v) for k, v in offsets.items()}


@pytest.mark.parametrize("model", ALL_CONFIGS, indirect=True, ids=_ids)
def test_crops_use_the_offsets_the_geometry_implies(
    model: FCN, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _expected_offsets(model)
    published = {"fcn32s": {"final": 19}, "fcn16s": {"score_pool4": 5, "final": 27}}.get(
        model.config.arch, {"score_pool4": 5, "score_pool3": 9, "final": 31})
    if model.config.alignment == "same":
        published = {k: 0 for k in published}  # every blob starts at the input's origin
    assert expected == published

    used = []
    crop = model_module._crop

    def recording_crop(x: torch.Tensor, offset: int, h: int, w: int) -> torch.Tensor:
        used.append(offset)
        return crop(x, offset, h, w)

    monkeypatch.setattr(model_module, "_crop", recording_crop)
    _run(model, 20, 30)
    order = [k for k in ("score_pool4", "score_pool3", "final") if k in expected]
    assert used == [expected[k] for k in order]


# ---------------------------------------------------------------- initialisation


def test_bilinear_kernel_k4() -> None:
    w = bilinear_kernel(3, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert w.shape == (3, 3, 4, 4)
    for c in range(3):
        torch.testing.assert_close(w[c, c], torch.outer(taps, taps))
    # e.g. the corner is 0.0625 and the next one 0.1875
    assert w[0, 0, 0, 0].item() == 0.0625 and w[0, 0, 0, 1].item() == 0.1875
    off_diagonal = w.clone()
    off_diagonal[range(3), range(3)] = 0
    assert not off_diagonal.any()


def test_bilinear_kernel_odd_size() -> None:
    # k=3: factor 2, centre 1
    torch.testing.assert_close(
        bilinear_kernel(1, 3)[0, 0], torch.outer(*[torch.tensor([0.5, 1.0, 0.5])] * 2))


@pytest.mark.parametrize("stride", [2, 8, 32])
def test_bilinear_deconv_keeps_a_constant_constant(stride: int) -> None:
    k = 2 * stride
    up = nn.ConvTranspose2d(2, 2, k, stride=stride, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(2, k))
        out = up(torch.full((1, 2, 5, 6), 3.0))
    interior = out[..., k - stride : -(k - stride), k - stride : -(k - stride)]
    assert interior.numel() > 0
    torch.testing.assert_close(interior, torch.full_like(interior, 3.0))


@pytest.mark.parametrize("model", ALL_CONFIGS, indirect=True, ids=_ids)
def test_fresh_head_scores_zero_and_upsampling_frozen(model: FCN) -> None:
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, is_score in HEADS[model.config.arch].items():
        assert trainable[f"{name}.weight"] is is_score  # deconvs frozen, scores learn
        if is_score:
            assert not model.get_parameter(f"{name}.weight").any()
            assert not model.get_parameter(f"{name}.bias").any()
    assert all(v for k, v in trainable.items() if not k.startswith("upscore"))
    for name, p in model.named_parameters():
        if name.startswith("upscore"):
            torch.testing.assert_close(p.detach(), bilinear_kernel(3, p.shape[-1]))


def test_learnable_upsampling() -> None:
    m = build_model(ModelConfig(num_classes=2, arch="fcn32s", learnable_upsampling=True))
    assert m.upscore.weight.requires_grad
    torch.testing.assert_close(m.upscore.weight.detach(), bilinear_kernel(2, 64))


@pytest.mark.parametrize("model", ALL_CONFIGS, indirect=True, ids=_ids)
def test_state_dict_has_the_reference_names(model: FCN) -> None:
    expected = {}
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for i in range(1, n + 1):
            expected[f"conv{b}_{i}.weight"] = expected[f"conv{b}_{i}.bias"] = None
    expected.update({"fc6.weight": (4096, 512, 7, 7), "fc6.bias": (4096,),
                     "fc7.weight": (4096, 4096, 1, 1), "fc7.bias": (4096,)})
    for name, learns in HEADS[model.config.arch].items():
        expected[f"{name}.weight"] = None
        if learns:  # score convs have a bias, the deconvs none
            expected[f"{name}.bias"] = (3,)
    state = model.state_dict()
    assert set(state) == set(expected)
    for k, shape in expected.items():
        if shape is not None:
            assert tuple(state[k].shape) == shape, k
    assert tuple(state["upscore2.weight" if "upscore2.weight" in state else "upscore.weight"]
                 .shape[:2]) == (3, 3)


@pytest.mark.parametrize("model", [("fcn8s", "same"), ("fcn8s-atonce", "same")],
                         indirect=True, ids=_ids)
def test_at_once_damps_the_skips(model: FCN) -> None:
    seen: dict[str, torch.Tensor] = {}

    def grab(name: str) -> Callable[[nn.Module, tuple], None]:
        return lambda _module, args: seen.__setitem__(name, args[0].clone())

    # conv5_1 reads pool4 and conv4_1 reads pool3: the undamped features.
    hooks = [getattr(model, n).register_forward_pre_hook(grab(n))
             for n in ("conv4_1", "conv5_1", "score_pool3", "score_pool4")]
    try:
        _run(model, 40, 50)
    finally:
        for h in hooks:
            h.remove()
    at_once = model.config.arch == "fcn8s-atonce"
    assert torch.equal(seen["score_pool4"], seen["conv5_1"] * (0.01 if at_once else 1))
    assert torch.equal(seen["score_pool3"], seen["conv4_1"] * (0.0001 if at_once else 1))
    assert seen["conv5_1"].abs().max() > 0


# ---------------------------------------------------------------- weights between models


def _randomise_head(m: FCN) -> None:
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("score"):
                p.normal_()


def test_staged_transfer_32s_16s_8s() -> None:
    torch.manual_seed(0)
    m32 = build_model(ModelConfig(num_classes=3, arch="fcn32s"))
    _randomise_head(m32)
    m16 = build_model(ModelConfig(num_classes=3, arch="fcn16s"))
    copied = transfer_weights(m16, m32.state_dict())
    assert "score_fr.weight" in copied and "conv1_1.weight" in copied and "fc6.weight" in copied
    assert not any(k.startswith("upscore") for k in copied)  # upscore (k64) is not in 16s
    assert torch.equal(m16.fc7.weight, m32.fc7.weight)
    assert torch.equal(m16.score_fr.weight, m32.score_fr.weight)
    assert not m16.score_pool4.weight.any()
    del m32

    _randomise_head(m16)
    m8 = build_model(ModelConfig(num_classes=3, arch="fcn8s"))
    copied = transfer_weights(m8, m16.state_dict())
    assert {"score_pool4.weight", "score_pool4.bias", "upscore2.weight"} <= set(copied)
    assert "upscore16.weight" not in copied
    assert torch.equal(m8.score_pool4.weight, m16.score_pool4.weight)
    assert not m8.score_pool3.weight.any()

    # names it lacks and shapes that differ (another class count) are left alone
    src = {"score_fr.weight": torch.ones(5, 4096, 1, 1), "conv1_1.bias": torch.ones(64),
           "conv0_1.weight": torch.ones(1)}
    assert transfer_weights(m8, src) == ["conv1_1.bias"]
    assert torch.equal(m8.conv1_1.bias, torch.ones(64))
    assert torch.equal(m8.score_fr.weight, m16.score_fr.weight)


def test_reinit_score_layers_keeps_the_backbone() -> None:
    torch.manual_seed(0)
    src = build_model(ModelConfig(num_classes=3, arch="fcn16s", alignment="reference")).eval()
    _randomise_head(src)
    new = reinit_score_layers(src, 5)
    assert new.config == ModelConfig(num_classes=5, arch="fcn16s", alignment="reference")
    assert not new.training
    assert torch.equal(new.conv3_2.weight, src.conv3_2.weight)
    assert torch.equal(new.fc6.bias, src.fc6.bias)
    assert not new.score_fr.weight.any() and not new.score_pool4.bias.any()
    torch.testing.assert_close(new.upscore16.weight.detach(), bilinear_kernel(5, 32))
    assert src.score_fr.weight.shape[0] == 3 and src.score_fr.weight.abs().sum() > 0
    assert _run(new, 9, 11).shape == (1, 5, 9, 11)


# ---------------------------------------------------------------- config


def test_config_round_trip() -> None:
    cfg = ModelConfig(num_classes=21, arch="fcn16s", backbone="vgg16_bn",
                      alignment="reference", learnable_upsampling=True, fc_channels=1024)
    d = cfg.to_dict()
    assert d == {"num_classes": 21, "arch": "fcn16s", "backbone": "vgg16_bn",
                 "alignment": "reference", "learnable_upsampling": True, "fc_channels": 1024,
                 "freeze_bn": False}
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig.from_dict({"num_classes": 2}) == ModelConfig(2)
    assert ModelConfig(2).alignment == "same" and ModelConfig(2).arch == "fcn8s"


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 256}, "num_classes"),
        ({"num_classes": "3"}, "num_classes"),
        ({"num_classes": 3.0}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"num_classes": 3, "arch": "fcn4s"}, "arch must be one of fcn32s"),
        ({"num_classes": 3, "backbone": "resnet18"}, "backbone"),
        ({"num_classes": 3, "backbone": "resnet50", "alignment": "reference"}, "VGG16"),
        ({"num_classes": 3, "freeze_bn": 1}, "freeze_bn"),
        ({"num_classes": 3, "alignment": "centre"}, "alignment"),
        ({"num_classes": 3, "learnable_upsampling": "yes"}, "learnable_upsampling"),
        ({"num_classes": 3, "width": 2}, "unknown model config keys: width"),
        ({"arch": "fcn8s"}, "no num_classes"),
        (["num_classes", 3], "mapping"),
    ],
)
def test_config_rejects_bad_values(d: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(d)  # type: ignore[arg-type]


def test_narrow_head_keeps_shapes_and_imagenet_convs() -> None:
    from training.model import ModelConfig, build_model

    model = build_model(ModelConfig(num_classes=4, fc_channels=64))
    assert model.fc6.weight.shape == (64, 512, 7, 7) and model.score_fr.weight.shape == (4, 64, 1, 1)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 61)).shape == (1, 4, 45, 61)
    with pytest.raises(ValueError, match="fc_channels"):
        ModelConfig(num_classes=4, fc_channels=0)
