"""fcn-simulate end to end on a tiny dataset, every learning mode, and its bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import write_voc
from training.simulate import correction_effort, main

TINY = ["--fc-channels", "64", "--device", "cpu", "--block", "2", "--json"]


def _run(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, records


def test_correction_effort_counts_non_void_pixels_that_differ() -> None:
    label = np.array([[0, 1, 255], [1, 1, 255]], np.uint8)
    pred = np.array([[0, 0, 1], [1, 0, 0]], np.uint8)
    assert correction_effort(pred, label) == pytest.approx(2 / 4)
    assert correction_effort(pred, np.full((2, 3), 255, np.uint8)) == 0.0


@pytest.mark.parametrize("mode", ["off", "instant", "finetune", "both"])
def test_every_mode_replays_the_labelled_images_in_sorted_order(tmp_path, capsys, mode: str) -> None:
    ids = write_voc(tmp_path / "data", n=5, n_val=1, h=48, w=64)
    code, records = _run(capsys, str(tmp_path / "data"), "--learn", mode, "--finetune-every", "2",
                         "--finetune-budget", "2", "--learn-budget", "0.5", *TINY)
    assert code == 0
    assert records[0]["event"] == "start" and records[-1]["event"] == "summary"
    images = [r for r in records if r["event"] == "image"]
    assert [r["id"] for r in images] == sorted(ids)
    summary = records[-1]
    assert len(summary["effort"]) == 5 and all(0.0 <= e <= 1.0 for e in summary["effort"])
    assert summary["effort_per_block"] == pytest.approx(
        [np.mean(summary["effort"][i : i + 2]) for i in (0, 2, 4)], abs=1e-3)
    assert len(summary["predict_s"]) == 5
    learned = [s is not None for s in summary["learn_s"]]
    assert all(learned) if mode in ("instant", "both") else not any(learned)
    finetunes = [r for r in records if r["event"] == "finetune"]
    # After images 2 and 4 (none after the last image: nothing would use it).
    assert len(finetunes) == (2 if mode in ("finetune", "both") else 0)
    assert summary["finetune_s"] == [f["seconds"] for f in finetunes]
    assert all(f["iterations"] >= 1 for f in finetunes)


def test_finetune_iters_fixes_the_steps_of_every_fine_tune(tmp_path, capsys) -> None:
    """A step count, not seconds: the same replay on a fast and a slow machine."""
    write_voc(tmp_path / "data", n=4, n_val=0, h=48, w=64)
    code, records = _run(capsys, str(tmp_path / "data"), "--learn", "finetune", "--finetune-every", "2",
                         "--finetune-iters", "3", *TINY)
    assert code == 0
    assert records[0]["finetune_iters"] == 3 and records[0]["finetune_budget"] is None
    finetunes = [r for r in records if r["event"] == "finetune"]
    assert [f["iterations"] for f in finetunes] == [3]


def test_instant_learning_lowers_the_effort_on_repeated_images(tmp_path, capsys) -> None:
    """The same scene again and again: with learning the later copies need less correction."""
    root = tmp_path / "data"
    write_voc(root, n=1, n_val=0, h=48, w=64)
    for i in range(1, 6):
        shutil.copy(root / "JPEGImages" / "img000.png", root / "JPEGImages" / f"img00{i}.png")
        shutil.copy(root / "SegmentationClass" / "img000.png", root / "SegmentationClass" / f"img00{i}.png")
    _, off = _run(capsys, str(root), "--learn", "off", *TINY)
    _, instant = _run(capsys, str(root), "--learn", "instant", "--learn-budget", "2",
                       "--learn-lr", "0.01", *TINY)
    assert len(set(off[-1]["effort"])) == 1  # no learning: the same answer every time
    assert instant[-1]["effort"][-1] < off[-1]["effort"][-1]


def test_camvid_layout_is_read_with_its_void_id(tmp_path, capsys) -> None:
    from PIL import Image

    root = tmp_path / "camvid"
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    (root / "classes.txt").write_text("Sky\nRoad\n")
    rng = np.random.default_rng(0)
    for name in ("b", "a"):
        pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"{name}.png")
        mask = np.zeros((40, 56), np.uint8)
        mask[20:] = 1
        mask[:, :8] = 11  # CamVid's "Unlabelled"
        Image.fromarray(mask).save(root / "trainannot" / f"{name}.png")
    code, records = _run(capsys, str(root), "--learn", "off", *TINY)
    assert code == 0 and [r["id"] for r in records if r["event"] == "image"] == ["a", "b"]
    # An untrained head predicts class 0 everywhere: wrong on the Road half, void not counted.
    assert records[-1]["effort"][0] == pytest.approx(0.5, abs=0.01)


def test_a_dataset_without_labels_is_a_clear_error(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    write_voc(root, n=2, n_val=0)
    shutil.rmtree(root / "SegmentationClass")
    code, records = _run(capsys, str(root), *TINY)
    assert code == 2
    assert records == [{"event": "error", "message": records[0]["message"]}]
    assert "no labelled images" in records[0]["message"] and str(root) in records[0]["message"]


def test_a_model_with_other_classes_is_refused_by_name(tmp_path, capsys) -> None:
    from training.checkpoint import make_checkpoint, save_checkpoint
    from training.model_init import fresh_model

    write_voc(tmp_path / "data", n=2, n_val=0)
    other = fresh_model(["sky", "road"], "scratch", fc_channels=16, progress=False)
    ckpt = tmp_path / "other.pt"
    save_checkpoint(ckpt, make_checkpoint(other.model, other.class_names, other.normalization))
    code, records = _run(capsys, str(tmp_path / "data"), "--init", str(ckpt), *TINY)
    assert code == 2
    assert "sky" in records[0]["message"] and "disc" in records[0]["message"]


def test_bad_option_values_are_argparse_errors(tmp_path, capsys) -> None:
    write_voc(tmp_path / "data", n=2, n_val=0)
    for bad in (["--block", "0"], ["--finetune-budget", "nan"], ["--images", "-1"],
                ["--finetune-iters", "0"]):
        with pytest.raises(SystemExit) as exc:
            main([str(tmp_path / "data"), *bad])
        assert exc.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_stdout_holds_only_json_in_json_mode(tmp_path, capsys) -> None:
    write_voc(tmp_path / "data", n=3, n_val=0, h=48, w=64)
    main([str(tmp_path / "data"), "--learn", "finetune", "--finetune-every", "1",
          "--finetune-budget", "1", *TINY])
    for line in capsys.readouterr().out.splitlines():
        json.loads(line)


def test_missing_folder_names_it(tmp_path, capsys) -> None:
    code, records = _run(capsys, str(Path(tmp_path) / "nope"), *TINY)
    assert code == 2 and "nope" in records[0]["message"]
