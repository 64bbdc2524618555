"""Undo deltas and the history memory budget (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_studio.labelmap.history import Delta, HistoryBudget, delta_between


def test_from_mask_trims_to_the_changed_box() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[3:5, 4:9] = True
    delta = Delta.from_mask(100, 200, mask, np.arange(10), 7)
    assert delta is not None
    assert delta.bbox == (103, 204, 105, 209) and delta.shape == (2, 5)
    assert delta.count == 10 and not delta.is_empty
    assert np.array_equal(delta.mask, np.ones((2, 5), dtype=bool))
    assert Delta.from_mask(0, 0, np.zeros((4, 4), dtype=bool), 0, 1) is None


def test_undo_redo_round_trip_with_varied_values() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 256, (50, 60)).astype(np.uint8)
    before = label.copy()
    after = label.copy()
    after[10:30, 5:50][rng.random((20, 45)) < 0.3] = rng.integers(0, 256)
    after[40, 59] = 255 - after[40, 59]
    delta = delta_between(before, after)
    assert delta is not None and delta.bbox[2:] == (41, 60)
    delta.redo(label)
    assert np.array_equal(label, after)
    delta.undo(label)
    assert np.array_equal(label, before)
    assert delta_between(before, before.copy()) is None


def test_uniform_sides_are_stored_as_scalars_and_arrays_are_frozen() -> None:
    mask = np.ones((3, 3), dtype=bool)
    delta = Delta.from_mask(0, 0, mask, np.full(9, 4), np.arange(9))
    assert delta is not None
    assert delta.old.shape == () and int(delta.old) == 4 and delta.new.shape == (9,)
    for arr in (delta.packed_mask, delta.old, delta.new):
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        Delta.from_mask(0, 0, mask, np.arange(8), 1)  # wrong number of old values
    with pytest.raises(ValueError):
        Delta.from_mask(0, 0, mask, 300, 1)


def test_delta_that_does_not_fit_the_map_is_refused() -> None:
    delta = Delta.from_mask(8, 8, np.ones((4, 4), dtype=bool), 0, 1)
    assert delta is not None
    with pytest.raises(ValueError):
        delta.redo(np.zeros((10, 10), np.uint8))


def test_memory_is_bit_packed_and_proportional_to_the_box() -> None:
    full = Delta.from_mask(0, 0, np.ones((3000, 4000), dtype=bool), 0, 1)
    assert full is not None and full.nbytes < 3000 * 4000 // 8 + 1000
    small = Delta.from_mask(1500, 2000, np.ones((20, 20), dtype=bool), np.arange(400) % 7, 3)
    assert small is not None and small.nbytes < 1000


def test_budget_keeps_many_small_steps_and_bounds_bytes() -> None:
    budget = HistoryBudget(max_bytes=10_000_000, max_steps=200)
    assert budget.steps_to_keep([5_000] * 150) == 150
    assert budget.steps_to_keep([5_000] * 300) == 200
    sizes = [5_000] * 50 + [3_000_000] * 4  # oldest first
    assert budget.steps_to_keep(sizes) == 3
    assert budget.steps_to_drop(sizes) == 51
    assert budget.steps_to_keep([50_000_000]) == 1  # the newest step always stays
    assert budget.steps_to_keep([]) == 0
    # The default keeps 100+ full-image 12 MP flood fills.
    assert HistoryBudget().steps_to_keep([1_500_400] * 150) >= 100
    with pytest.raises(ValueError):
        HistoryBudget(max_steps=0)
