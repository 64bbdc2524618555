"""The model a training run starts from: ImageNet, scratch, or a weights file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from . import preprocess
from .backbones import get_backbone
from .checkpoint import LoadedModel, adapt_classes, load_model, palette_table
from .model import FCN, ModelConfig, build_model, transfer_weights
from .train_config import TrainConfig

DEFAULT_ARCH = "fcn8s"
# Checkpoint metadata: how the backbone started ("imagenet" or "scratch"), kept through
# every run trained from it; it picks the default learning rate.
BACKBONE_INIT = "backbone_init"


def fresh_model(class_names: list[str], init: str = "imagenet", *, arch: str = DEFAULT_ARCH,
                backbone: str = "vgg16", alignment: str = "same", fc_channels: int = 4096,
                progress: bool = True) -> LoadedModel:
    """A new FCN for ``class_names``: an ImageNet backbone (``init="imagenet"``, with
    that weights entry's input normalisation and, for BatchNorm backbones, frozen
    BatchNorm statistics) or random weights (``"scratch"``); score layers start at
    zero either way.

    Raises WeightsUnavailableError when the ImageNet file is neither cached nor
    downloadable.
    """
    if init not in ("imagenet", "scratch"):
        raise ValueError(f"init must be 'imagenet' or 'scratch', not {init!r}")
    n = len(class_names)
    imagenet = init == "imagenet"
    model = build_model(ModelConfig(num_classes=n, arch=arch, backbone=backbone,
                                    alignment=alignment, fc_channels=fc_channels,
                                    freeze_bn=imagenet and get_backbone(backbone).has_bn))
    normalization = preprocess.TORCHVISION
    if not imagenet and get_backbone(backbone).has_bn:
        calibrate_batchnorm(model)
    if imagenet:
        from .weights import imagenet_normalization, imagenet_state, init_from_imagenet

        init_from_imagenet(model, imagenet_state(backbone, progress=progress))
        normalization = imagenet_normalization(backbone)
    return LoadedModel(model=model, class_names=list(class_names),
                       normalization=normalization, palette=palette_table(None, n),
                       meta={"init": init, BACKBONE_INIT: init}, source="new")


def calibrate_batchnorm(model: FCN, size: int = 128) -> None:
    """Give a random BatchNorm backbone the running statistics of its own activations.

    Fresh BatchNorm layers hold mean 0 and variance 1, which in eval mode (prediction,
    instant learning) normalise nothing: through ResNet50 the random features grow
    into the tens, through MobileNetV3 (depthwise convs) they vanish to exactly 0 in
    fp16, and the head cannot learn from either. One training-mode pass over noise
    with a cumulative average puts every layer at unit scale, as VGG16's kaiming
    initialisation is without BatchNorm. The noise has its own seed, so the caller's
    random stream (the weights) is what it would have been.
    """
    noise = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.momentum = None  # a plain average of this one pass
        m.reset_running_stats()
    with torch.no_grad():
        model.train()
        for m in layers:  # also under freeze_bn
            m.train()
        model.features(noise.to(next(model.parameters()).device))
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
        if m.num_batches_tracked is not None:
            m.num_batches_tracked.zero_()
    model.train(was_training)


def initial_model(cfg: TrainConfig, class_names: list[str], progress: bool = True) -> LoadedModel:
    """Build the starting model for ``cfg`` and the dataset's ``class_names``.

    Raises WeightsUnavailableError (offline, no cached ImageNet file) and
    CheckpointError (unusable file, classes that differ without --reinit-classes).
    """
    if cfg.init in ("imagenet", "scratch"):
        return fresh_model(class_names, cfg.init, arch=cfg.arch or DEFAULT_ARCH,
                           backbone=cfg.backbone, alignment=cfg.alignment,
                           fc_channels=cfg.fc_channels, progress=progress)

    path = Path(cfg.init)
    classes = None
    if cfg.classes:
        from .id_masks import read_class_list

        classes = read_class_list(cfg.classes)
    loaded = load_model(path, classes=classes, at_once=cfg.at_once)
    loaded = adapt_classes(loaded, class_names, cfg.reinit_classes, str(path))
    if cfg.arch and cfg.arch != loaded.config.arch:
        # Staged training (32s -> 16s -> 8s): a new head, every matching layer carried over.
        config = replace(loaded.config, arch=cfg.arch)
        model = build_model(config)
        transfer_weights(model, loaded.model.state_dict())
        loaded = LoadedModel(model=model, class_names=loaded.class_names,
                             normalization=loaded.normalization, palette=loaded.palette,
                             meta={**loaded.meta, "staged_from": loaded.config.arch},
                             source=loaded.source)
    loaded.meta = {**loaded.meta, "init": str(path)}
    return loaded
