"""The training optimizer: fused kernels where PyTorch has them, the same steps as the
plain implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.model import ModelConfig, build_model
from training.optim import make_optimizer, param_groups
from training.train_config import TrainConfig


def _steps(model, twin, fused, plain, n: int = 3) -> None:
    """``n`` steps of both optimizers on the same gradients (``model``'s, copied to
    ``twin``): a gradient recomputed on the twin would differ by rounding, and Adam
    turns rounding in near-zero gradients into steps of the learning rate's size."""
    torch.manual_seed(1)
    for _ in range(n):
        x = torch.randn(2, 3, 64, 64)
        y = torch.randint(0, 3, (2, 64, 64))
        fused.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for a, b in zip(model.parameters(), twin.parameters(), strict=True):
            b.grad = None if a.grad is None else a.grad.clone()
        fused.step()
        plain.step()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_cpu_optimizer_is_fused_and_steps_like_the_plain_one(tmp_path, kind):
    cfg = TrainConfig(data=tmp_path, out=tmp_path / "run", optimizer=kind, lr=1e-2,
                      weight_decay=5e-4)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, fc_channels=16)).eval()  # no dropout
    with torch.no_grad():  # score layers start at zero: no gradient would reach the backbone
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0, 0.05)
    twin = build_model(ModelConfig(num_classes=3, fc_channels=16)).eval()
    twin.load_state_dict(model.state_dict())
    start = model.state_dict()["conv1_1.weight"].clone()

    fused = make_optimizer(model, cfg)
    assert fused.defaults["fused"] is True
    plain = type(fused)(param_groups(twin, cfg), fused=False,  # the same groups, by name
                        **({"momentum": cfg.momentum} if kind == "sgd" else {}))
    _steps(model, twin, fused, plain)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    # the step moved the weights (the comparison above is not of two untouched models)
    assert not torch.equal(start, model.state_dict()["conv1_1.weight"])
