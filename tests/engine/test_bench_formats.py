"""fcn-bench --formats: each variant beside fp32, with its argmax agreement."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.bench_formats import (
    MIN_AGREEMENT,
    FormatRow,
    bench_formats,
    bench_train_formats,
    format_table,
    format_train_table,
)
from training.checkpoint import make_checkpoint, save_checkpoint
from training.model import ModelConfig, build_model
from training.preprocess import TORCHVISION


def test_variants_are_measured_beside_fp32_with_their_agreement(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, backbone="mobilenet_v3_large"))
    with torch.no_grad():
        model.score_fr.weight.normal_(0, 0.05)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, make_checkpoint(model, list("abcd"), TORCHVISION))
    rows = bench_formats(torch.device("cpu"), checkpoint=ckpt, repeats=1, frames=2,
                         size=(48, 64))
    assert [r.name for r in rows] == ["fp32", "channels_last", "bf16", "channels_last + bf16"]
    assert rows[0].agreement == 1.0 and rows[0].speedup == 1.0 and not rows[0].worth_it
    # The memory format alone never changes what is computed beyond rounding.
    assert rows[1].agreement >= MIN_AGREEMENT
    assert all(0.0 <= r.agreement <= 1.0 and r.ms > 0 for r in rows)
    table = format_table(rows)
    assert "channels_last + bf16" in table and "argmax agreement" in table
    assert json.loads(json.dumps([r.to_dict() for r in rows]))[0]["name"] == "fp32"


def test_a_variant_is_worth_it_only_when_faster_and_in_agreement() -> None:
    assert FormatRow("bf16", 50.0, 2.0, 0.999).worth_it
    assert not FormatRow("bf16", 50.0, 2.0, 0.98).worth_it  # faster, but other labels
    assert not FormatRow("channels_last", 99.0, 1.01, 1.0).worth_it  # the same labels, no faster


def test_training_steps_are_timed_in_both_layouts_on_copies(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, backbone="mobilenet_v3_large"))
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, make_checkpoint(model, list("abc"), TORCHVISION))
    rows = bench_train_formats(torch.device("cpu"), checkpoint=ckpt, repeats=1, batch=1,
                               size=(32, 32))
    assert [r.name for r in rows] == ["fp32", "channels_last"]
    assert rows[0].speedup == 1.0 and all(r.ms > 0 and r.speedup > 0 for r in rows)
    assert "training step" in format_train_table(rows, 1, (32, 32))


def test_training_uses_channels_last_where_it_was_measured_faster() -> None:
    from training.train import trains_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trains_channels_last(cpu, "mobilenet_v3_large")
    assert not trains_channels_last(cpu, "vgg16")  # slower there: stays contiguous
    assert trains_channels_last(cpu, "resnet50") and not trains_channels_last(cpu, "alexnet")
    assert trains_channels_last(cuda, "vgg16") and trains_channels_last(cuda, "mobilenet_v3_large")
