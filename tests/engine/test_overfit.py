"""The network and loss can learn: drive one synthetic image to mean IoU >= 0.9."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.synthetic import synthetic_pair
from training import preprocess
from training.metrics import ConfusionMatrix
from training.model import ModelConfig, build_model


def test_overfits_a_synthetic_image_in_a_few_dozen_steps() -> None:
    torch.manual_seed(0)
    image, label = synthetic_pair(3, 48, 64)
    # From scratch: the BN backbone with a narrow head is the quickest to fit.
    model = build_model(ModelConfig(num_classes=3, backbone="vgg16_bn", fc_channels=64))
    x = preprocess.TORCHVISION.apply(torch.from_numpy(image).permute(2, 0, 1)[None])
    y = torch.from_numpy(label).long()[None]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    mean_iou = None
    for step in range(80):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        opt.step()
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                pred = model(x).argmax(1)[0].numpy()
            cm = ConfusionMatrix(3)
            cm.update(label, pred)
            mean_iou = cm.scores().mean_iou
            if mean_iou >= 0.9:
                break
    assert mean_iou is not None and mean_iou >= 0.9, f"mean IoU {mean_iou} after {step + 1} steps"
