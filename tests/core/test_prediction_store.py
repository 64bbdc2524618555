"""Stored predictions keep their uncertainty and the model that made them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcn_studio.models.model_spec import ModelId
from fcn_studio.project import prediction_store
from fcn_studio.project.project import Project
from fcn_studio.session import Prediction
from tests.synthetic import write_voc


def test_prediction_round_trips_with_uncertainty_and_model(tmp_path: Path) -> None:
    write_voc(tmp_path / "p", n=2, n_val=1)
    project = Project.open(tmp_path / "p")
    h, w = project.load_image("img000").shape[:2]
    u = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    model = ModelId("file", "cd" * 32)
    prediction_store.store(project, "img000", Prediction(np.ones((h, w), np.uint8), u, model))
    back = prediction_store.load(project, "img000")
    assert back is not None and back.model == model
    np.testing.assert_array_equal(back.label, 1)
    assert np.abs(back.uncertainty - u).max() <= 0.5 / 255 + 1e-6
    assert project.entry("img000").model_version == model.stored
    assert prediction_store.load(project, "img001") is None


def test_a_broken_uncertainty_file_is_not_used(tmp_path: Path) -> None:
    write_voc(tmp_path / "p", n=1, n_val=0)
    project = Project.open(tmp_path / "p")
    h, w = project.load_image("img000").shape[:2]
    pred = Prediction(np.zeros((h, w), np.uint8), np.zeros((h, w), np.float32),
                      ModelId.of_version("v001", project.models_dir))
    prediction_store.store(project, "img000", pred)
    prediction_store.uncertainty_path(project, "img000").write_bytes(b"not a png")
    back = prediction_store.load(project, "img000")
    assert back is not None and back.uncertainty is None
    assert back.model == ModelId.of_version("v001", project.models_dir)
