"""Instant learning's idle-time work: labels saved earlier, and features a new backbone lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.synthetic import CLASS_NAMES, synthetic_pair, write_voc
from training import voc
from training.feature_cache import FeatureCache
from training.images import read_image
from training.instant import InstantLearner
from training.instant_backlog import EarlierLabel, LabelBacklog
from training.model_init import fresh_model
from training.predict import Predictor


def _learner(seed: int = 0) -> InstantLearner:
    torch.manual_seed(seed)
    loaded = fresh_model(CLASS_NAMES, "scratch", fc_channels=64, progress=False)
    return InstantLearner(Predictor(loaded, "cpu"), FeatureCache())


def _earlier(root: Path, ids: list[str]) -> list[EarlierLabel]:
    return [EarlierLabel(i, voc.image_path(root, i), voc.label_path(root, i)) for i in ids]


def _run(backlog: LabelBacklog, learner: InstantLearner, root: Path) -> list[str]:
    taken = []
    while backlog.pending(learner):
        t = backlog.step(learner, lambda k: read_image(voc.image_path(root, k)))
        if t is not None:
            taken.append(t.key)
    return taken


def test_earlier_labels_become_training_data_older_than_the_labels_saved_now(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=4, n_val=0)
    learner = _learner()
    image, label = synthetic_pair(9)
    learner.predict("new", image)
    learner.add_label("new", label)  # saved in this session, before the backlog ran
    backlog = LabelBacklog()
    backlog.set_earlier(_earlier(root, ["img003", "img001", "img000"]))  # newest first
    assert _run(backlog, learner, root) == ["img003", "img001", "img000"]
    # Oldest first, and the label saved now stays the newest.
    assert learner.labelled == ["img000", "img001", "img003", "new"]
    assert all(learner.has_features(k) for k in learner.labelled)
    assert learner.learn().images == 4
    assert backlog.take_problems() == []


def test_only_the_newest_earlier_labels_up_to_the_limit_are_taken(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=4, n_val=0)
    learner = _learner()
    backlog = LabelBacklog(limit=2)
    backlog.set_earlier(_earlier(root, ["img002", "img000", "img001", "img003"]))
    assert _run(backlog, learner, root) == ["img002", "img000"]


def test_earlier_labels_stop_at_the_byte_limit(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=4, n_val=0)  # 64 x 80 labels: 5120 bytes each
    learner = _learner()
    backlog = LabelBacklog(byte_limit=2 * 64 * 80 - 1)  # the second one reaches it
    backlog.set_earlier(_earlier(root, ["img003", "img002", "img001", "img000"]))
    assert _run(backlog, learner, root) == ["img003", "img002"]


def test_a_label_that_does_not_fit_is_left_out_and_named(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=3, n_val=0)
    bad = np.full((64, 80), 7, np.uint8)  # the model has 3 classes
    voc.write_label(voc.label_path(root, "img001"), bad)
    voc.write_label(voc.label_path(root, "img002"), np.zeros((10, 10), np.uint8))  # wrong size
    learner = _learner()
    backlog = LabelBacklog()
    backlog.set_earlier(_earlier(root, ["img002", "img001", "img000"]))
    assert _run(backlog, learner, root) == ["img000"]
    problems = backlog.take_problems()
    assert len(problems) == 2
    assert "img002" in problems[0]
    assert "img001" in problems[1] and "7" in problems[1]
    assert backlog.take_problems() == []  # said once
    assert learner.labelled == ["img000"]


def test_a_new_backbone_gets_the_features_of_every_saved_image_back(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=3, n_val=0)
    learner = _learner()
    backlog = LabelBacklog()
    backlog.set_earlier(_earlier(root, ["img002", "img001", "img000"]))
    _run(backlog, learner, root)
    # A fine-tune finished: its model, no features yet.
    learner.set_backbone(_learner(seed=1).predictor)
    backlog.new_learner(kept_labels=True)
    assert not any(learner.has_features(k) for k in learner.labelled)
    assert backlog.pending(learner)
    assert _run(backlog, learner, root) == []  # nothing taken again: only features
    assert all(learner.has_features(k) for k in learner.labelled)
    assert learner.learn().skipped == ()


def test_an_image_gone_since_is_a_problem_not_a_crash(tmp_path) -> None:
    root = tmp_path / "data"
    write_voc(root, n=2, n_val=0)
    earlier = _earlier(root, ["img001", "img000"])
    voc.image_path(root, "img001").unlink()
    learner = _learner()
    backlog = LabelBacklog()
    backlog.set_earlier(earlier)
    assert _run(backlog, learner, root) == ["img000"]
    assert any("img001" in p for p in backlog.take_problems())
    backlog.clear()
    assert not backlog.pending(_learner())
