"""Pretrained weights: ImageNet VGG16 transplant, the offline path, pytorch-fcn import."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from training import weights
from training.errors import CheckpointError, WeightsUnavailableError
from training.model import FCN, ModelConfig, build_model
from training.weights import (
    detect_pytorch_fcn_arch,
    imagenet_vgg16_state,
    imagenet_weights_info,
    init_from_imagenet,
    is_pytorch_fcn_state_dict,
    model_from_pytorch_fcn,
)

# ---------------------------------------------------------------- ImageNet VGG16


def _fake_torchvision_state(backbone: str) -> dict[str, torch.Tensor]:
    """A torchvision VGG16(-BN) state dict with random values: right keys, right shapes.

    Built on the meta device for the keys and shapes, so no 138M-parameter
    torchvision model is initialised just to be thrown away.
    """
    factory = torchvision.models.vgg16_bn if backbone == "vgg16_bn" else torchvision.models.vgg16
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in factory(weights=None).state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    state = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            continue  # the published VGG16-BN file predates this counter
        state[k] = torch.rand(shape, generator=gen) + 0.5  # positive: fine for running_var
    return state


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    return _fake_torchvision_state("vgg16")


@pytest.fixture(scope="module")
def fcn8s() -> FCN:
    return build_model(ModelConfig(num_classes=3, arch="fcn8s"))


def test_init_from_imagenet_transplants_convs_and_fc(fcn8s: FCN, vgg_state: dict) -> None:
    init_from_imagenet(fcn8s, vgg_state)
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision's VGG16 'D'
    names = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
             for i in range(1, n + 1)]
    for name, idx in zip(names, conv_indices, strict=True):
        assert torch.equal(getattr(fcn8s, name).weight, vgg_state[f"features.{idx}.weight"])
        assert torch.equal(getattr(fcn8s, name).bias, vgg_state[f"features.{idx}.bias"])
    fc6 = vgg_state["classifier.0.weight"]
    assert torch.equal(fcn8s.fc6.weight, fc6.view(4096, 512, 7, 7))
    # the flattening order is torchvision's: channel, then row, then column
    assert fcn8s.fc6.weight[5, 3, 2, 6] == fc6[5, 3 * 49 + 2 * 7 + 6]
    assert torch.equal(fcn8s.fc6.bias, vgg_state["classifier.0.bias"])
    assert torch.equal(fcn8s.fc7.weight, vgg_state["classifier.3.weight"].view(4096, 4096, 1, 1))
    assert torch.equal(fcn8s.fc7.bias, vgg_state["classifier.3.bias"])
    assert not fcn8s.score_fr.weight.any()  # the head stays zero


def test_narrow_head_takes_convs_only(vgg_state: dict) -> None:
    from training.model import ModelConfig, build_model

    model = build_model(ModelConfig(num_classes=3, fc_channels=64))
    before = model.fc6.weight.clone()
    init_from_imagenet(model, vgg_state)
    assert torch.equal(model.conv5_3.weight, vgg_state["features.28.weight"])
    assert torch.equal(model.fc6.weight, before)  # 4096-wide classifier weights cannot fit


def test_init_from_imagenet_bn_backbone() -> None:
    state = _fake_torchvision_state("vgg16_bn")
    model = build_model(ModelConfig(num_classes=2, arch="fcn32s", backbone="vgg16_bn"))
    init_from_imagenet(model, state)
    # torchvision's VGG16-BN: conv 0, bn 1, relu 2, conv 3, bn 4, ..., conv 40, bn 41
    assert torch.equal(model.conv1_2.weight, state["features.3.weight"])
    assert torch.equal(model.bn1_2.running_var, state["features.4.running_var"])
    assert torch.equal(model.conv5_3.bias, state["features.40.bias"])
    assert torch.equal(model.bn5_3.weight, state["features.41.weight"])
    assert torch.equal(model.bn5_3.running_mean, state["features.41.running_mean"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])

    # ... and a plain VGG16 state is refused for it, naming what is missing
    plain = {k: v for k, v in state.items() if not k.startswith("features")}
    plain["features.0.weight"] = state["features.0.weight"]
    with pytest.raises(CheckpointError, match=r"features\.0\.bias.*vgg16 weights"):
        init_from_imagenet(model, plain)


def test_nan_classifier_is_refused_and_nothing_copied(fcn8s: FCN, vgg_state: dict) -> None:
    features_only = dict(vgg_state)  # like torchvision's IMAGENET1K_FEATURES
    features_only["features.0.weight"] = torch.zeros_like(vgg_state["features.0.weight"])
    features_only["classifier.0.weight"] = torch.full_like(
        vgg_state["classifier.0.weight"], float("nan"))
    before = fcn8s.conv1_1.weight.clone()
    with pytest.raises(CheckpointError, match=r"classifier\.0\.weight holds NaN.*IMAGENET1K_V1"):
        init_from_imagenet(fcn8s, features_only)
    assert torch.equal(fcn8s.conv1_1.weight, before)


def test_wrong_shape_is_refused(fcn8s: FCN, vgg_state: dict) -> None:
    bad = dict(vgg_state)
    bad["classifier.3.weight"] = torch.zeros(10, 10)
    with pytest.raises(CheckpointError, match=r"classifier\.3\.weight.*\(10, 10\).*fc7\.weight"):
        init_from_imagenet(fcn8s, bad)


# ---------------------------------------------------------------- the download


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache, and no network: every download fails as offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


@pytest.mark.parametrize("backbone", ["vgg16", "vgg16_bn"])
def test_weights_info(hub_dir: Path, backbone: str) -> None:
    info = imagenet_weights_info(backbone)
    entry = weights._weights_entry(backbone)
    assert info["url"] == entry.url and info["url"].endswith("/" + info["filename"])
    assert info["filename"].startswith(backbone + "-") and info["filename"].endswith(".pth")
    assert info["path"] == str(hub_dir / "checkpoints" / info["filename"])
    assert info["folder"] == str(hub_dir / "checkpoints")
    assert 400 < info["size_mb"] < 700
    assert info["cached"] is False
    Path(info["folder"]).mkdir(parents=True)
    Path(info["path"]).write_bytes(b"")
    assert imagenet_weights_info(backbone)["cached"] is True


def test_offline_names_file_folder_and_url(hub_dir: Path, capsys: pytest.CaptureFixture) -> None:
    info = imagenet_weights_info("vgg16")
    with pytest.raises(WeightsUnavailableError) as err:
        imagenet_vgg16_state("vgg16", progress=False)
    message = str(err.value)
    assert info["filename"] == "vgg16-397923af.pth"
    assert info["filename"] in message
    assert str(hub_dir / "checkpoints") in message
    assert info["url"] in message
    assert "could not be downloaded" in message and "name resolution" in message
    assert capsys.readouterr().out == ""  # stdout belongs to the JSON event stream


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
def test_corrupt_cached_file_is_named(hub_dir: Path, content: bytes) -> None:
    info = imagenet_weights_info("vgg16_bn")
    Path(info["folder"]).mkdir(parents=True)
    Path(info["path"]).write_bytes(content)
    with pytest.raises(WeightsUnavailableError) as err:
        imagenet_vgg16_state("vgg16_bn", progress=False)
    message = str(err.value)
    assert info["path"] in message and "corrupt" in message and "Delete it" in message
    assert info["url"] in message


def test_cached_file_is_loaded_without_network(hub_dir: Path) -> None:
    info = imagenet_weights_info("vgg16")
    Path(info["folder"]).mkdir(parents=True)
    small = {"features.0.weight": torch.ones(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    torch.save(small, info["path"])
    state = imagenet_vgg16_state("vgg16", progress=False)
    assert set(state) == set(small)
    assert torch.equal(state["features.0.weight"], small["features.0.weight"])

    torch.save({"something": torch.zeros(1)}, info["path"])  # loads, but is not VGG16
    with pytest.raises(WeightsUnavailableError, match="features.0.weight"):
        imagenet_vgg16_state("vgg16", progress=False)


# ---------------------------------------------------------------- pytorch-fcn import


def _reference_model(arch: str) -> FCN:
    """A reference-alignment model; its state_dict() has pytorch-fcn's names and shapes."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(num_classes=3, arch=arch, alignment="reference")).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("score"):
                p.normal_(0, 0.01)  # non-zero outputs, so the comparison means something
    return m


@pytest.fixture(scope="module")
def fcn8s_ref() -> FCN:
    return _reference_model("fcn8s")


@pytest.fixture(scope="module")
def fcn8s_state(fcn8s_ref: FCN) -> dict[str, torch.Tensor]:
    return fcn8s_ref.state_dict()


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_pytorch_fcn_import_round_trip(arch: str, fcn8s_ref: FCN) -> None:
    source = fcn8s_ref if arch == "fcn8s" else _reference_model(arch)
    state = source.state_dict()
    assert is_pytorch_fcn_state_dict(state)
    assert detect_pytorch_fcn_arch(state) == arch
    model = model_from_pytorch_fcn(state).eval()
    assert model.config == ModelConfig(num_classes=3, arch=arch, alignment="reference")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    x = torch.randn(1, 3, 21, 34)
    with torch.no_grad():
        out = model(x)
    with torch.no_grad():
        assert torch.equal(out, source(x))
    assert out.shape == (1, 3, 21, 34) and out.abs().sum() > 0


def test_at_once_import(fcn8s_state: dict) -> None:
    assert model_from_pytorch_fcn(fcn8s_state, at_once=True).config.arch == "fcn8s-atonce"
    with pytest.raises(CheckpointError, match="FCN-8s only.*fcn16s"):
        model_from_pytorch_fcn({k: v for k, v in fcn8s_state.items()
                                if not k.startswith(("score_pool3", "upscore_pool4", "upscore8"))},
                               at_once=True)


def test_arch_detection_by_keys() -> None:
    t = torch.zeros(1)
    base = {"conv1_1.weight": t, "fc6.weight": t, "score_fr.weight": t, "upscore.weight": t}
    assert detect_pytorch_fcn_arch(base) == "fcn32s"
    assert detect_pytorch_fcn_arch({**base, "score_pool4.weight": t}) == "fcn16s"
    full = {**base, "score_pool4.weight": t, "score_pool3.weight": t}
    assert detect_pytorch_fcn_arch(full) == "fcn8s"
    wrapped = {f"module.{k}": v for k, v in base.items()}  # saved from DataParallel
    assert is_pytorch_fcn_state_dict(wrapped) and detect_pytorch_fcn_arch(wrapped) == "fcn32s"


def test_what_is_not_a_pytorch_fcn_state_dict(vgg_state: dict) -> None:
    assert not is_pytorch_fcn_state_dict(vgg_state)
    assert not is_pytorch_fcn_state_dict({"format_version": 1, "model": {}, "state_dict": {}})
    assert not is_pytorch_fcn_state_dict(
        {"conv1_1.weight": [1.0], "fc6.weight": torch.zeros(1), "score_fr.weight": torch.zeros(1)})
    assert not is_pytorch_fcn_state_dict([("conv1_1.weight", torch.zeros(1))])
    with pytest.raises(CheckpointError, match="not an FCN state dict"):
        detect_pytorch_fcn_arch(vgg_state)


def test_import_names_unexpected_missing_and_misshapen_keys(fcn8s_state: dict) -> None:
    bad = dict(fcn8s_state)
    bad["conv6_1.weight"] = bad.pop("conv5_3.weight")
    bad["fc7.bias"] = torch.zeros(10)
    with pytest.raises(CheckpointError) as err:
        model_from_pytorch_fcn(bad)
    message = str(err.value)
    assert "missing: conv5_3.weight" in message
    assert "unexpected: conv6_1.weight" in message
    assert "wrong shape: fc7.bias (10,) (needs (4096,))" in message
