"""The labelling session model, headless: history, save state, predictions, identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_studio.labelmap.editing import Stroke
from fcn_studio.labelmap.history import HistoryBudget
from fcn_studio.models.model_spec import ModelId, ModelSpec
from fcn_studio.session import Change, LabelSession, Prediction, SaveState, SessionStore

H, W = 20, 30


def opened(label: np.ndarray | None = None, saved: bool = False, **kw) -> LabelSession:
    s = LabelSession("img", **kw)
    s.open(np.zeros((H, W), np.uint8) if label is None else label, has_saved_label=saved)
    return s


def paint(s: LabelSession, value: int = 1, row: float = 5.5) -> None:
    stroke = Stroke(s.label, value, 1.5)
    stroke.add_point(2.5, row)
    stroke.add_point(20.5, row)
    s.record(stroke.finish(), "Brush")


def prediction(value: int, model: str = "v001") -> Prediction:
    return Prediction(np.full((H, W), value, np.uint8), np.full((H, W), 0.5, np.float32),
                      ModelId.of_version(model))


def test_a_stroke_is_one_step_and_undo_redo_restore_exactly() -> None:
    s = opened()
    seen: list[Change] = []
    s.subscribe(lambda _s, c: seen.append(c))
    paint(s)
    painted = s.label.copy()
    assert len(s.history) == 1 and s.dirty and s.state is SaveState.EDITED
    assert seen[0].kind == "label" and seen[0].live  # the canvas drew it already
    s.undo()
    assert s.label.max() == 0 and s.state is SaveState.CLEAN and not s.dirty
    assert not seen[-2].live and seen[-1].kind == "state"
    s.redo()
    np.testing.assert_array_equal(s.label, painted)


def test_history_survives_leaving_and_coming_back_to_the_same_label() -> None:
    store = SessionStore()
    s = store.get("a")
    s.open(np.zeros((H, W), np.uint8), has_saved_label=False)
    paint(s)
    token, written = s.begin_save()
    s.save_finished(token)
    s.release()
    assert s.label is None  # nothing unsaved: the arrays go while away
    back = store.get("a")
    assert back is s
    back.open(written.copy(), has_saved_label=True)  # what the disk holds
    back.undo()
    assert back.label.max() == 0 and back.dirty  # the undo differs from the file


def test_history_is_dropped_when_the_label_on_disk_changed_meanwhile() -> None:
    s = opened()
    paint(s)
    token, _ = s.begin_save()
    s.save_finished(token)
    s.release()
    s.open(np.full((H, W), 2, np.uint8), has_saved_label=True)  # rewritten elsewhere
    assert len(s.history) == 0 and s.undo() is None
    assert (s.label == 2).all()


def test_unsaved_edits_are_kept_while_away() -> None:
    s = opened()
    paint(s)
    token, _ = s.begin_save()
    s.release()
    assert s.label is not None  # the save is still in flight
    s.save_failed(token, "disk full")
    assert s.state is SaveState.FAILED and s.failure == "disk full" and s.dirty
    kept = s.label
    s.open(np.zeros((H, W), np.uint8), has_saved_label=False)  # the file is the old one
    assert s.label is kept and s.label.max() == 1  # the edit is never lost
    token, _ = s.begin_save()
    assert s.state is SaveState.SAVING and s.failure is None
    s.save_finished(token)
    assert s.state is SaveState.SAVED and not s.dirty


def test_only_the_newest_save_decides_and_editing_during_a_save_stays_edited() -> None:
    s = opened()
    paint(s)
    first, _ = s.begin_save()
    paint(s, value=2, row=12.5)
    assert s.state is SaveState.EDITED
    second, _ = s.begin_save()
    s.save_failed(first, "late failure of an older save")
    assert s.state is SaveState.SAVING
    s.save_finished(second)
    assert s.state is SaveState.SAVED


def test_a_new_image_starts_from_each_prediction_until_edited() -> None:
    s = opened()
    assert s.offer_prediction(prediction(1))
    assert (s.label == 1).all() and not s.dirty and s.uncertainty is not None
    # A painted stroke, undone: nothing is done, so a newer model's prediction still applies
    # (and the undone step, recorded against the old pixels, is dropped).
    paint(s, value=2)
    s.undo()
    assert s.offer_prediction(prediction(2, "v002"))
    assert (s.label == 2).all() and len(s.history) == 0
    paint(s, value=1)
    assert not s.offer_prediction(prediction(0, "v003"))  # an edit is never overwritten
    assert s.prediction.model == ModelId.of_version("v003")


def test_a_saved_label_never_follows_the_prediction() -> None:
    s = opened(np.full((H, W), 2, np.uint8), saved=True)
    assert not s.offer_prediction(prediction(1))
    assert (s.label == 2).all() and s.prediction is not None
    assert not s.offer_prediction(Prediction(np.zeros((3, 3), np.uint8), None, None))


def test_replace_is_one_undoable_step() -> None:
    s = opened()
    assert s.replace(np.full((H, W), 3, np.uint8), "Use prediction")
    assert not s.replace(s.label.copy())
    s.undo()
    assert s.label.max() == 0


def test_byte_budget_keeps_the_label_and_the_state_consistent() -> None:
    s = opened(budget=HistoryBudget(max_steps=2))
    for row in (2.5, 8.5, 14.5):
        paint(s, row=row)
    assert len(s.history) == 2
    s.undo()
    s.undo()
    assert s.history.index == 0 and not s.history.can_undo()
    assert s.dirty  # the first stroke could not be undone: still differs from the start
    assert s.label[2, 5] == 1 and s.label[8, 5] == 0


def test_store_trims_old_histories_but_never_unsaved_ones() -> None:
    store = SessionStore(keep=2)
    for name in ("a", "b", "c"):
        s = store.get(name)
        s.open(np.zeros((H, W), np.uint8), has_saved_label=False)
        if name == "a":
            paint(s)  # edited, never saved
        s.release()
    assert "a" in store and "b" not in store and "c" in store
    assert store.unsaved() == ["a"]


def test_model_ids_are_typed_and_never_file_names(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt"
    for path, data in ((one, b"weights one"), (two, b"weights two")):
        path.parent.mkdir()
        path.write_bytes(data)
    id1, id2 = ModelSpec.file(one, ["bg"]).identity(), ModelSpec.file(two, ["bg"]).identity()
    assert id1 != id2 and id1.kind == "file" and "best.pt" not in str(id1)
    assert ModelId.of_file(one) == id1
    v = ModelSpec.of_version("v002", one, ["bg"], tmp_path / "models").identity()
    assert str(v) == "v002" and v != ModelId.of_version("v002", tmp_path / "other")
    assert (ModelSpec.untrained(["a", "b"]).identity()
            != ModelSpec.untrained(["a", "b", "c"]).identity())
    with pytest.raises(ValueError):
        ModelId("nonsense", "x")


def test_stored_model_ids_parse_back(tmp_path: Path) -> None:
    from fcn_studio.project.prediction_store import parse_model_id

    f = ModelId("file", "ab" * 32)
    assert parse_model_id(f.stored) == f
    assert parse_model_id("v003", tmp_path) == ModelId.of_version("v003", tmp_path)
    assert parse_model_id("model.pt") is None and parse_model_id(None) is None
