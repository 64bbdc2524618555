"""Instant learning: the head learns on cached features; the cache stays within its bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.synthetic import CLASS_NAMES, synthetic_pair
from training.feature_cache import FeatureCache, ImageFeatures
from training.instant import InstantLearner, coarse_target, head_state, soft_cross_entropy
from training.model import ModelConfig, build_model
from training.model_init import fresh_model
from training.predict import Predictor
from training.simulate import correction_effort


def _learner(arch: str = "fcn8s", alignment: str = "same", **kw) -> InstantLearner:
    torch.manual_seed(0)
    loaded = fresh_model(CLASS_NAMES, "scratch", arch=arch, alignment=alignment, fc_channels=64,
                         progress=False)
    return InstantLearner(Predictor(loaded, "cpu"), FeatureCache(), **kw)


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("alignment", ["same", "reference"])
def test_features_then_head_equal_the_whole_network(arch: str, alignment: str) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(num_classes=3, arch=arch, alignment=alignment, fc_channels=32))
    with torch.no_grad():  # non-zero score layers, so the skips really contribute
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0, 0.1)
    model.eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        whole = model(x)
        parts = model.head(model.features(x), 45, 61)
    assert set(model.features(x)) == set(model.skip_taps())
    assert torch.allclose(whole, parts, atol=1e-5)


def test_coarse_target_counts_class_shares_per_block() -> None:
    label = np.full((16, 16), 255, np.uint8)
    label[:8, :8] = 1  # block (0, 0): all class 1
    label[:8, 8:12] = 0  # block (0, 1): half class 0, half void
    label[8:, :] = 2
    label[8, 0] = 0  # block (1, 0): 63 x class 2, 1 x class 0
    t = coarse_target(label, 3, 8, (2, 2)).float()
    assert t.shape == (4, 2, 2)
    assert torch.allclose(t[:, 0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(t[:, 0, 1], torch.tensor([1.0, 0.0, 0.0, 0.5]))
    assert torch.allclose(t[:, 1, 0], torch.tensor([1 / 64, 0.0, 63 / 64, 1.0]), atol=1e-3)


def test_coarse_target_treats_the_padding_as_void() -> None:
    t = coarse_target(np.zeros((10, 10), np.uint8), 2, 8, (2, 2)).float()
    assert t[-1, 0, 0] == 1.0 and t[-1, 1, 1] == pytest.approx(4 / 64, abs=1e-3)


def test_soft_cross_entropy_ignores_void_cells() -> None:
    target = torch.zeros(1, 3, 1, 2)
    target[0, 0, 0, 0] = 1.0  # cell 0: class 0, weight 1
    target[0, 2, 0, 0] = 1.0
    target[0, 1, 0, 1] = 1.0  # cell 1: class 1 but weight 0 (all void)
    scores = torch.tensor([[[[5.0, 0.0]], [[0.0, 5.0]]]])
    good = soft_cross_entropy(scores, target)
    scores_bad_void_cell = torch.tensor([[[[5.0, 9.0]], [[0.0, -9.0]]]])
    assert torch.allclose(good, soft_cross_entropy(scores_bad_void_cell, target))


@pytest.mark.parametrize("alignment", ["same", "reference"])
def test_head_learning_lowers_the_loss_and_changes_the_next_prediction(alignment: str) -> None:
    learner = _learner(alignment=alignment, max_passes=60, min_steps=1, time_budget=60, lr=1e-2)
    image, label = synthetic_pair(0, 64, 80)
    before = learner.predict("a", image)
    backbone_before = {k: v.clone() for k, v in learner.model.state_dict().items() if k.startswith("conv")}
    learner.add_label("a", label)
    report = learner.learn()
    assert report.images == 1 and report.steps == 60
    assert report.loss_after < report.loss_before
    after = learner.refresh("a", label.shape)
    assert after is not None
    assert correction_effort(after.label, label) < correction_effort(before.label, label)
    # The full forward agrees with the head-only refresh (up to the fp16 storage of the
    # features), and the backbone never moved.
    again = learner.predictor.predict(image)
    assert (again.label == after.label).mean() > 0.99
    for k, v in backbone_before.items():
        assert torch.equal(v, learner.model.state_dict()[k])


def test_each_pass_visits_the_newest_images_twice() -> None:
    learner = _learner(max_passes=3, min_steps=1, time_budget=60, batch_size=1, recent=2)
    for i, key in enumerate("abcde"):  # saved in this order: d and e are the newest
        image, label = synthetic_pair(10 + i, 48, 64)
        learner.predict(key, image)
        learner.add_label(key, label)
    visited: list[str] = []
    real = learner._loss

    def counting(model, taps, target, keys):
        visited.extend(keys)
        return real(model, taps, target, keys)

    learner._loss = counting  # type: ignore[method-assign]
    report = learner.learn()
    assert {k: visited.count(k) for k in "abcde"} == {"a": 3, "b": 3, "c": 3, "d": 6, "e": 6}
    assert report.steps == 21 and report.passes == pytest.approx(21 / 5)
    assert visited[0] == "e"  # the newest leads, however short the budget


def test_while_every_image_is_recent_none_is_visited_twice() -> None:
    learner = _learner(max_passes=4, min_steps=1, time_budget=60, batch_size=1, recent=5)
    for i, key in enumerate("ab"):
        image, label = synthetic_pair(20 + i, 48, 64)
        learner.predict(key, image)
        learner.add_label(key, label)
    report = learner.learn()
    assert report.steps == 8 and report.passes == pytest.approx(4.0)


def test_roll_back_restores_the_head_before_the_last_learn() -> None:
    learner = _learner(max_passes=5, min_steps=1, time_budget=60)
    image, label = synthetic_pair(1, 48, 64)
    learner.predict("a", image)
    learner.add_label("a", label)
    start = head_state(learner.model)
    learner.learn()
    changed = head_state(learner.model)
    assert any(not torch.equal(start[k], changed[k]) for k in start)
    learner.roll_back()
    assert all(torch.equal(start[k], v) for k, v in head_state(learner.model).items())
    with pytest.raises(ValueError, match="nothing to roll back"):
        learner.roll_back()


def test_missing_features_are_recomputed_with_reload_or_reported() -> None:
    learner = _learner(max_passes=2, time_budget=60)
    image, label = synthetic_pair(2, 48, 64)
    learner.add_label("gone", label)  # never predicted: no features
    report = learner.learn()
    assert report.images == 0 and report.skipped == ("gone",)
    report = learner.learn(reload=lambda key: image)
    assert report.images == 1 and report.skipped == ()


def test_a_label_with_class_ids_beyond_the_model_is_refused() -> None:
    learner = _learner()
    bad = np.full((48, 64), 7, np.uint8)
    with pytest.raises(ValueError, match="class id 7.*3 classes"):
        learner.add_label("x", bad)


def test_new_backbone_drops_old_features() -> None:
    learner = _learner()
    image, _ = synthetic_pair(3, 48, 64)
    learner.predict("a", image)
    assert learner.has_features("a")
    learner.set_backbone(learner.predictor)
    assert not learner.has_features("a") and len(learner.cache) == 0


def test_huge_images_cache_features_of_a_downscaled_copy() -> None:
    learner = _learner(max_passes=2, time_budget=60)
    learner.predictor.tile_size = 64  # anything larger counts as huge
    image, label = synthetic_pair(4, 96, 128)
    pred = learner.predict("big", image)
    assert pred.label.shape == (96, 128)
    feats = learner.cache.get("big")
    assert feats is not None and feats.size == (48, 64)
    learner.add_label("big", label)
    assert learner.learn().images == 1
    assert learner.refresh("big", (96, 128)).label.shape == (96, 128)


def _feats(nbytes: int, tag: str = "b") -> ImageFeatures:
    return ImageFeatures({"fc7": torch.zeros(nbytes // 2, dtype=torch.float16)}, (1, 1), tag)


def test_cache_evicts_least_recently_used_within_its_bound() -> None:
    cache = FeatureCache(memory_bytes=3000)
    for k in "abc":
        cache.put(k, _feats(1000))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", _feats(1000))
    assert cache.get("b") is None and cache.get("a") is not None
    assert cache.used_bytes <= 3000
    for i in range(10_000):  # a big project's worth of images never grows it
        cache.put(f"img{i}", _feats(1000))
    assert cache.used_bytes <= 3000 and len(cache) == 3


def test_cache_spills_to_disk_and_refuses_stale_backbones(tmp_path) -> None:
    cache = FeatureCache(memory_bytes=1500, disk_dir=tmp_path, disk_bytes=10_000_000)
    cache.put("a", _feats(1000, "old"))
    cache.put("b", _feats(1000, "old"))  # evicts a to disk
    assert len(list(tmp_path.glob("*.pt"))) == 1
    back = cache.get("a", "old")
    assert back is not None and back.backbone == "old"
    assert cache.get("b", "new") is None  # features of another backbone are never used
    (next(tmp_path.glob("*.pt"))).write_bytes(b"garbage")
    fresh = FeatureCache(memory_bytes=1500, disk_dir=tmp_path)
    assert fresh.get("whatever") is None  # an unreadable cache file is a miss, not a crash


def test_a_negative_recent_count_is_refused() -> None:
    with pytest.raises(ValueError, match="recent >= 0"):
        _learner(recent=-1)
