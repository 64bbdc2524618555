"""The fine-tune plan, headless: defaults, split, base checks and the fcn-train arguments."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_studio.models import finetune_plan as fp
from fcn_studio.models.finetune_plan import (
    BaseModel,
    Duration,
    FinetuneOptions,
    PlanError,
    default_options,
    make_plan,
    split,
    train_argv,
)
from fcn_studio.project.project_state import split_for, split_score
from training.train_config import add_arguments

NAMES = ("background", "road", "car")
IDS = [f"img{i:03d}" for i in range(10)]


def lists_of(ids: list[str]) -> dict[str, str]:
    """The split lists a project builds when ``ids`` are saved one after the other."""
    train: set[str] = set()
    val: set[str] = set()
    for i in ids:
        (val if split_for(i, train, val) == "val" else train).add(i)
    return {i: "val" for i in val} | {i: "train" for i in train}


def engine(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(args)


def plan(options: FinetuneOptions | None = None, ids: list[str] | None = None,
         devices: tuple[str, ...] = ("cpu",), base: BaseModel | None = None) -> fp.FinetunePlan:
    ids = IDS if ids is None else ids
    lists = lists_of(ids)
    return make_plan(options or FinetuneOptions(), labelled=ids, split_of=lists.get,
                     base=base or BaseModel("v002", "/m/v002/model.pt", NAMES), class_names=NAMES,
                     devices=devices)


def test_cpu_default_is_a_ten_minute_budget_and_gpu_default_is_epochs() -> None:
    cpu = plan()
    assert cpu.duration == Duration(time_limit_s=600.0)
    args = engine(train_argv("data", "run", cpu.train_args(train_list="t.txt", val_list="v.txt")))
    assert args.time_limit == 600.0 and args.iters is None  # the budget ends the run
    gpu = plan(devices=("cpu", "cuda"))
    assert gpu.duration == Duration(epochs=fp.default_epochs(len(gpu.train_ids)))
    assert engine(train_argv("d", "r", gpu.train_args())).time_limit is None
    # A device chosen explicitly decides, whatever else there is.
    assert plan(FinetuneOptions(device="cpu"), devices=("cuda",)).duration.time_limit_s == 600.0
    assert fp.default_epochs(2) == 50 and fp.default_epochs(100) == 10 and fp.default_epochs(10) == 15
    # The dialog's defaults are the plan's.
    assert default_options(None, ["cpu"]) == FinetuneOptions(base="imagenet", time_limit_s=600.0)
    assert default_options("v001", ["cpu", "cuda:0"], n_train=10) == FinetuneOptions(epochs=15)


def test_explicit_durations() -> None:
    assert plan(FinetuneOptions(epochs=7)).duration.args() == ["--epochs", "7"]
    assert plan(FinetuneOptions(time_limit_s=90)).duration.args() == [
        "--time-limit", "90", "--epochs", str(fp.BUDGET_EPOCHS)]
    assert plan(FinetuneOptions(iters=40, epochs=3)).duration.args() == ["--iters", "40"]
    assert Duration(time_limit_s=1500).describe() == "25 minutes"
    with pytest.raises(PlanError, match="at least 1"):
        Duration(epochs=0)


def test_the_split_is_the_projects_lists() -> None:
    lists = lists_of(IDS)
    train, val = split(IDS, lists.get)
    assert val == sorted(i for i in IDS if lists[i] == "val") and val
    assert sorted(train + val) == IDS and not set(train) & set(val)
    # An image that validated once never trains later runs, as the set grows.
    more = [*IDS, *(f"new{i}" for i in range(30))]
    lists_more = lists_of(more)
    assert set(val) <= set(split(more, lists_more.get)[1])
    # One image, listed in val: it trains, nothing validates.
    only = next(i for i in (f"x{n}" for n in range(100)) if split_score(i) < 0.2)
    assert split([only], {only: "val"}.get) == ([only], [])


def test_a_chosen_share_prefers_the_projects_val_images() -> None:
    lists = lists_of(IDS)
    proj_val = {i for i in IDS if lists[i] == "val"}
    train, val = split(IDS, lists.get, 0.5)
    assert len(val) == 5 and proj_val <= set(val)
    assert split(IDS, lists.get, 0.0) == (IDS, [])
    assert split(IDS[:1], lists.get, 0.5) == (IDS[:1], [])  # the only image trains
    assert split(IDS[:2], {}.get, 0.1)[1] and len(split(IDS[:2], {}.get, 0.1)[0]) == 1
    assert split(IDS, lists.get, 0.3) == split(list(reversed(IDS)), lists.get, 0.3)  # stable
    with pytest.raises(PlanError, match="from 0 to 50 %"):
        split(IDS, lists.get, 0.9)


def test_nothing_labelled_and_other_classes_are_refused() -> None:
    with pytest.raises(PlanError, match="Save at least one corrected label"):
        plan(ids=[])
    other = BaseModel("v001", "/m/v001.pt", ("background", "cat"))
    with pytest.raises(PlanError, match="new score layers") as err:
        plan(base=other)
    assert "not in the project: cat" in str(err.value)
    p = plan(FinetuneOptions(reinit_classes=True), base=other)
    assert "--reinit-classes" in p.train_args()
    # Unknown classes (a file that does not say, ImageNet) are checked by the engine.
    assert "--reinit-classes" not in plan(FinetuneOptions(reinit_classes=True),
                                          base=BaseModel.imagenet()).train_args()


def test_the_fcn_train_arguments_parse_as_planned(tmp_path: Path) -> None:
    p = plan(FinetuneOptions(lr=3e-4, batch_size=2, extra_args=("--crop", "64")))
    argv = train_argv(tmp_path / "data", tmp_path / "run",
                      p.train_args(train_list=tmp_path / "t.txt", val_list=tmp_path / "v.txt"))
    a = engine(argv)
    assert (a.data, a.out, a.json) == (tmp_path / "data", tmp_path / "run", True)
    assert (a.init, a.parent, a.lr, a.batch_size, a.workers, a.crop) == (
        "/m/v002/model.pt", "v002", 3e-4, 2, fp.WORKERS, 64)
    assert (a.train_list, a.val_list, a.val_before) == (str(tmp_path / "t.txt"),
                                                        str(tmp_path / "v.txt"), True)
    # An exported job: its own base file, the data's split lists, the engine's workers.
    job = engine(train_argv("data", "run", p.train_args(init="base.pt", workers=None)))
    assert (job.init, job.train_list, job.workers) == ("base.pt", None, 2)
    # No validation images: no "before" run.
    assert "--val-before" not in plan(FinetuneOptions(val_share=0.0)).train_args()


def test_the_default_rate_is_the_engines_by_the_backbones_start() -> None:
    """No --lr: fcn-train picks it (1e-3 for a backbone that began as random weights,
    1e-4 for ImageNet features); the rates the dialog names are the engine's."""
    from training.train_config import PRETRAINED_LR, SCRATCH_LR, default_lr

    assert "--lr" not in plan().train_args()
    assert engine(train_argv("d", "r", plan().train_args())).lr is None
    assert (fp.PRETRAINED_LR, fp.SCRATCH_LR) == (PRETRAINED_LR, SCRATCH_LR)
    assert (default_lr("scratch"), default_lr("imagenet"), default_lr(None)) == (
        SCRATCH_LR, PRETRAINED_LR, PRETRAINED_LR)


def test_options_from_a_plain_dict() -> None:
    opts = FinetuneOptions.from_dict({"base": "imagenet", "epochs": None, "iters": 5,
                                      "extra_args": ["--crop", 64]})
    assert opts == FinetuneOptions(base="imagenet", iters=5, extra_args=("--crop", "64"))
    assert FinetuneOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(PlanError, match="unknown fine-tune option"):
        FinetuneOptions.from_dict({"epoch": 3})


def test_warnings() -> None:
    few = plan(ids=IDS[:2], base=BaseModel.scratch())
    text = " ".join(few.warnings())
    assert "Only 2 labelled images" in text and "untrained FCN-8s" in text
    assert plan().warnings() == []


def test_the_plan_imports_neither_qt_nor_torch() -> None:
    code = ("import sys, fcn_studio.models.finetune_plan; "
            "bad = [m for m in ('PySide6', 'torch') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[2])


def test_new_labels_are_those_the_newest_run_did_not_see(tmp_path) -> None:
    from fcn_studio.models.finetune_plan import new_labels
    from fcn_studio.models.versions import ModelVersion

    labelled = ["a", "b", "c", "d"]
    assert new_labels(labelled, None) == labelled  # before the first version: all of them
    v = ModelVersion("v001", tmp_path, tmp_path / "model.pt",
                     {"train_ids": ["a", "b"], "val_ids": ["c"]})
    assert new_labels(labelled, v) == ["d"]
    assert new_labels(labelled, ModelVersion("v002", tmp_path, tmp_path / "m.pt", {})) == labelled


def test_a_new_models_backbone_is_chosen_and_goes_to_fcn_train() -> None:
    from fcn_studio.models.finetune_plan import BaseModel, make_plan
    from fcn_studio.models.model_spec import BACKBONE_LABELS, ModelSpec, recommended_backbone
    from training.model import BACKBONES

    assert tuple(BACKBONE_LABELS) == tuple(BACKBONES)  # the core's list is the engine's
    assert recommended_backbone(False) == "mobilenet_v3_large"
    assert recommended_backbone(True) == "vgg16"

    def args(base: BaseModel, backbone: str | None) -> list[str]:
        plan = make_plan(fp.FinetuneOptions(backbone=backbone, epochs=1), labelled=["a", "b"],
                         split_of=lambda i: "train", base=base, class_names=["bg", "x"])
        return plan.train_args()

    new = args(BaseModel.imagenet(), "mobilenet_v3_large")
    assert new[new.index("--backbone") + 1] == "mobilenet_v3_large"
    assert "--backbone" not in args(BaseModel.imagenet(), None)  # VGG16: the engine's default
    trained = BaseModel.file("/runs/best.pt", ["bg", "x"], parent="v003")
    assert "--backbone" not in args(trained, "mobilenet_v3_large")  # its own, from its file
    # The base "current" of an untrained model keeps that model's backbone.
    spec = ModelSpec.untrained(["bg", "x"], "resnet50")
    base = fp.base_model("current", current=None, spec=spec)
    assert base.init == "scratch" and base.backbone == "resnet50"
    with pytest.raises(fp.PlanError, match="unknown backbone"):
        BaseModel.scratch().with_backbone("resnet18")


def test_model_specs_name_and_identify_their_backbone() -> None:
    from fcn_studio.models.model_spec import ModelId, ModelSpec

    vgg = ModelSpec.untrained(["bg", "x"])
    light = ModelSpec.untrained(["bg", "x"], "mobilenet_v3_large")
    assert "MobileNetV3-Large" in light.description and "VGG16" in vgg.description
    assert light.identity() != vgg.identity()
    # VGG16's id is the one stored before backbones could be chosen.
    assert vgg.identity() == ModelId.of_classes("untrained", ("bg", "x"))
    assert ModelSpec.imagenet(["bg"], "googlenet").is_new and not ModelSpec.file(
        "/m.pt", ["bg"]).is_new
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelSpec.untrained(["bg"], "resnet18")
