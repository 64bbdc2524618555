"""The fine-tune and project controllers without a window: narrow collaborators (a
labelling controller, a scripted prompter), the plan's run, closing during a run,
and Export Training Job (issue 8 items 4-5, issues 9, 11 item 20, 12)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from fcn_studio.models.finetune_plan import CPU_BUDGET_S
from fcn_studio.models.model_spec import ModelSpec
from fcn_studio.models.training_job_export import ExportChoice
from fcn_studio.project.project import Project
from fcn_studio.ui.finetuning.finetune import FinetuneController
from fcn_studio.ui.finetuning.training_job import TrainingJob
from fcn_studio.ui.labelling.controller import Controller
from fcn_studio.ui.labelling.inference import InferenceWorker
from fcn_studio.ui.project.project_ops import ProjectOps
from fcn_studio.ui.settings import AppSettings
from tests.synthetic import CLASS_NAMES, write_voc

# A child that records its command line, then trains "until" SIGTERM and reports it.
RECORDING_CHILD = r"""
import json, signal, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "argv.json").write_text(json.dumps(sys.argv[1:]))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print(json.dumps({"event": "start", "total": 10, "epochs": 1, "time_limit": 600.0}), flush=True)
while not stop:
    time.sleep(0.02)
print(json.dumps({"event": "done", "status": "cancelled"}), flush=True)
sys.exit(130)
"""


@dataclass
class ScriptedPrompter:
    """Records every message and question; ``answers`` answer the questions in turn
    (confirm: True/False; ask: a button index), else confirm says yes and ask closes."""

    answers: list[Any] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    offered: list[list[str]] = field(default_factory=list)  # the buttons of each ask()
    folder: Path | None = None
    parent_widget: Any = None

    def info(self, title: str, text: str) -> None:
        self.said.append(("info", text))

    def warn(self, title: str, text: str) -> None:
        self.said.append(("warn", text))

    def error(self, title: str, text: str) -> None:
        self.said.append(("error", text))

    def confirm(self, title: str, text: str) -> bool:
        self.asked.append(text)
        return bool(self.answers.pop(0)) if self.answers else True

    def ask(self, title: str, text: str, buttons: list[str], default: int = 0) -> int:
        self.asked.append(text)
        self.offered.append(list(buttons))
        return int(self.answers.pop(0)) if self.answers else -1

    def choose_folder(self, title: str, start: str = "") -> Path | None:
        return self.folder

    def choose_file(self, title: str, filters: str) -> Path | None:
        return None


@dataclass
class FakeLabelling:
    """The part of the labelling controller fine-tuning uses."""

    project: Project | None
    spec: ModelSpec | None = None
    model: Any = None
    new_backbone: str = "vgg16"
    flushed: int = 0
    models_set: list[ModelSpec] = field(default_factory=list)

    def flush(self) -> None:
        self.flushed += 1

    def set_model(self, spec: ModelSpec, refresh_all: bool = False) -> None:
        self.models_set.append(spec)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    write_voc(tmp_path / "proj", n=6, n_val=2)
    return Project.open(tmp_path / "proj")


@pytest.fixture
def finetune(qtbot, project: Project):
    labelling = FakeLabelling(project, model=SimpleNamespace(device="cpu",
                                                             class_names=list(CLASS_NAMES)))
    prompter = ScriptedPrompter()
    job = TrainingJob(program=[sys.executable, "-c", RECORDING_CHILD])
    ft = FinetuneController(labelling, prompter, job=job)
    ft.set_project(project)
    yield ft, labelling, prompter
    job.shutdown(10_000)


def test_one_click_on_a_cpu_trains_for_the_time_budget_on_the_projects_split(
        qtbot, finetune, project: Project) -> None:
    ft, labelling, prompter = finetune
    with qtbot.waitSignal(ft.job.started, timeout=30_000):
        with qtbot.waitSignal(ft.runStarted) as started:
            ft.one_click()
    plan = started.args[0]
    assert labelling.flushed == 1  # the newest corrections are training data too
    assert plan.duration.time_limit_s == CPU_BUDGET_S and plan.duration.epochs is None
    run = ft.job.run_dir
    argv = json.loads((run / "argv.json").read_text())
    assert argv[argv.index("--time-limit") + 1] == "600"
    lists = {k: Path(argv[argv.index(f"--{k}-list") + 1]).read_text().split() for k in ("train", "val")}
    assert lists["val"] == sorted(i for i in project.ids if project.entry(i).split == "val")
    assert lists["val"] and not set(lists["train"]) & set(lists["val"])
    # One click starts without a box to click (issue 12): what the person should know
    # travels with the plan to the training panel. Six labelled images: no warning about
    # few images; no model yet: it says so.
    assert prompter.said == [] and prompter.asked == []
    assert plan.warnings() == [
        "No model to start from (no version yet and no ImageNet weights): training starts "
        "from an untrained FCN-8s."]
    assert "--val-before" in argv and argv[argv.index("--init") + 1] == "scratch"


def test_closing_during_a_run_asks_once_and_closes(qtbot, finetune, monkeypatch) -> None:
    ft, labelling, prompter = finetune
    with qtbot.waitSignal(ft.job.started, timeout=30_000):
        ft.one_click()
    # The stopped run leaves a version that scores no better: after "Stop it and
    # close? Yes" the old code asked "Use the new model anyway?" and switched models.
    kept = SimpleNamespace(id="v001", usable=True, mean_iou=None, before_mean_iou=None,
                           base="imagenet")
    monkeypatch.setattr(ft.store, "publish", lambda *a, **k: kept)
    assert ft.confirm_close() is True
    assert len(prompter.asked) == 1 and "Stop it and close?" in prompter.asked[0]
    assert not ft.job.is_running()
    assert labelling.models_set == []  # nothing switched while closing
    assert not [kind for kind, _text in prompter.said if kind != "info"]


def test_closing_can_be_refused(qtbot, finetune) -> None:
    ft, _labelling, prompter = finetune
    with qtbot.waitSignal(ft.job.started, timeout=30_000):
        ft.one_click()
    prompter.answers = [False]
    assert ft.confirm_close() is False and ft.job.is_running()


def test_nothing_labelled_is_refused_with_the_reason(qtbot, tmp_path: Path) -> None:
    write_voc(tmp_path / "bare", n=2, n_val=1)
    for label in (tmp_path / "bare" / "SegmentationClass").iterdir():
        label.unlink()
    project = Project.open(tmp_path / "bare")
    prompter = ScriptedPrompter()
    ft = FinetuneController(FakeLabelling(project), prompter)
    ft.set_project(project)
    assert ft.start({"base": "imagenet"}) is False
    assert prompter.said and "Save at least one corrected label" in prompter.said[0][1]
    assert not ft.job.is_running()


def test_export_writes_a_relative_job_in_a_new_folder(qtbot, finetune, project: Project,
                                                      tmp_path: Path) -> None:
    ft, _labelling, prompter = finetune
    base = tmp_path / "v.pt"
    base.write_bytes(b"weights")
    ft.labelling.spec = ModelSpec.file(base, CLASS_NAMES)
    dest = tmp_path / "jobs" / "nested" / "job1"  # created, parents and all
    choice = ExportChoice(dest, gpus_per_node=4, nodes=2, epochs=None, time_limit_s=3600.0,
                          batch_size=8)
    assert ft.write_job(choice) == dest
    job = json.loads((dest / "job.json").read_text())
    assert (job["gpus_per_node"], job["nodes"], job["batch_size"]) == (4, 2, 8)
    assert job["time_limit_s"] == 3600.0 and job["epochs"] is None
    args = job["args"]
    assert args[args.index("--time-limit") + 1] == "3600" and args[args.index("--init") + 1] == "base.pt"
    assert args[args.index("--device") + 1] == "auto"  # the server's GPUs, not this computer's CPU
    text = (dest / "job.json").read_text()
    assert str(project.root) not in text and str(tmp_path) not in text  # no local paths
    assert job["val_ids"] == sorted(i for i in project.ids if project.entry(i).split == "val")
    assert (dest / "base.pt").read_bytes() == b"weights"
    assert prompter.said[-1][0] == "info"
    # A folder that is not empty is refused with the reason, nothing is raised.
    assert ft.write_job(choice) is None and "new or empty" in prompter.said[-1][1]


# -- project operations without a window -----------------------------------------------------


@pytest.fixture
def ops(qtbot, tmp_path: Path):
    worker = InferenceWorker("cpu")  # never started: no model is loaded
    controller = Controller(worker)
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    prompter = ScriptedPrompter()
    ops = ProjectOps(controller, settings, prompter)
    yield ops, controller, prompter, settings
    ops.release_lock()
    controller.close_project()


def test_project_ops_open_a_project_without_a_window(qtbot, ops, tmp_path: Path) -> None:
    o, controller, prompter, settings = ops
    write_voc(tmp_path / "p", n=3, n_val=1)
    spec = ModelSpec.untrained(CLASS_NAMES)
    assert o.open_project(tmp_path / "p", model=spec)
    assert controller.project is not None and controller.session is not None
    assert controller.session.image_id == controller.project.ids[0]
    assert str((tmp_path / "p").resolve()) in settings.recent_projects()
    with qtbot.waitSignal(o.classesChanged):
        o.add_class("bicycle")
    assert controller.project.classes.names[-1] == "bicycle"
    o.add_class("bicycle")  # a refused edit is said through the prompter, never raised
    assert prompter.said and prompter.said[-1][0] == "error"


def test_project_ops_say_errors_through_the_prompter(qtbot, ops, tmp_path: Path) -> None:
    o, _controller, prompter, _settings = ops
    (tmp_path / "empty").mkdir()
    assert o.open_project(tmp_path / "empty") is False
    assert prompter.said[0][0] == "error" and "holds no images" in prompter.said[0][1]
    o.prompter.folder = tmp_path / "empty"
    o.new_project_dialog()  # asks for the source folder through the prompter too
    assert "holds no images" in prompter.said[-1][1]


def test_no_controller_module_imports_the_window() -> None:
    import ast

    # Only app.py (which starts it) and the self-test may know the window; the rest get narrow
    # collaborators, so that it can be tested without one and there is no import cycle.
    ui = Path(__file__).resolve().parents[2] / "fcn_studio" / "ui"
    checked = 0
    for path in ui.rglob("*.py"):
        if path.name in ("main_window.py", "app.py", "selftest.py"):  # selftest: it loads
            continue
        tree = ast.parse(path.read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.split(".")[-1] == "main_window" for m in imported), path
        checked += 1
    assert checked > 20


def test_the_export_dialog_asks_gpus_nodes_duration_and_batch(qtbot, finetune,
                                                              tmp_path: Path) -> None:
    from fcn_studio.ui.finetuning.training_job_dialog import ExportJobDialog

    ft, _labelling, _prompter = finetune
    dialog = ExportJobDialog(None, ft.plan(ft_options()), tmp_path / "proj")
    qtbot.addWidget(dialog)
    dialog.location_edit.setText(str(tmp_path / "new" / "place"))
    dialog.name_edit.setText("job")
    dialog.gpus_spin.setValue(8)
    dialog.nodes_spin.setValue(2)
    dialog.time_radio.setChecked(True)
    dialog.minutes_spin.setValue(90)
    dialog.batch_spin.setValue(4)
    assert dialog.ok_button.isEnabled() and "a global batch of 64" in dialog.summary_label.text()
    assert dialog.choice() == ExportChoice(tmp_path / "new" / "place" / "job", 8, 2, None,
                                           5400.0, 4)
    (tmp_path / "new" / "place" / "job").mkdir(parents=True)
    (tmp_path / "new" / "place" / "job" / "x").write_text("x")
    dialog.name_edit.setText("job ")  # re-checked: that folder is not empty
    assert not dialog.ok_button.isEnabled() and "not empty" in dialog.summary_label.text()
    dialog.name_edit.setText("a/b")
    assert "plain name" in dialog.summary_label.text()


def ft_options():
    from fcn_studio.models.finetune_plan import FinetuneOptions

    return FinetuneOptions(epochs=10)


@pytest.mark.parametrize("has_background", [True, False])
def test_deleting_a_class_offers_background_only_where_there_is_one(
        qtbot, ops, tmp_path: Path, has_background: bool) -> None:
    from fcn_studio.project.classes import ClassSet

    o, controller, prompter, _settings = ops
    write_voc(tmp_path / "p", n=2, n_val=0)
    names = list(CLASS_NAMES) if has_background else ["Sky", *CLASS_NAMES[1:]]
    ClassSet(names, has_background=has_background).save(tmp_path / "p")
    assert o.open_project(tmp_path / "p", model=ModelSpec.untrained(names))
    prompter.answers = [0]  # the first button
    with qtbot.waitSignal(o.classesChanged):
        o.delete_class(1)
    question = prompter.asked[-1]
    assert question.startswith(f"Delete class 1 ({names[1]})?")
    assert prompter.offered[-1] == (["Background (background)", "Void", "Cancel"]
                                    if has_background else ["Void", "Cancel"])
    assert controller.project.classes.names == (names[0], *names[2:])
    if not has_background:
        o.delete_class(0)  # Sky is a real class here: deleting it is asked, not refused
        assert prompter.asked[-1].startswith("Delete class 0 (Sky)?")
    else:
        asked = len(prompter.asked)
        o.delete_class(0)  # background: refused at once, no question
        assert len(prompter.asked) == asked and "background" in prompter.said[-1][1]


def test_deleting_versions_asks_and_moves_off_the_one_in_use(
        qtbot, finetune, tmp_path: Path) -> None:
    from tests.core.test_versions import epoch, fake_run

    ft, labelling, prompter = finetune
    for i in range(2):
        ft.store.publish(fake_run(tmp_path / f"r{i}", [epoch(1, 0.1 * (i + 1))]), "imagenet",
                         "finished", list(CLASS_NAMES))
    assert ft.current_id() == "v002"
    prompter.answers = [False]  # "no": nothing is deleted
    ft.delete_version("v002")
    assert "Delete v002 (" in prompter.asked[-1] and "model in use" in prompter.asked[-1]
    assert [v.id for v in ft.versions()] == ["v001", "v002"] and labelling.models_set == []
    prompter.answers = [True]
    with qtbot.waitSignal(ft.versionsChanged):
        ft.delete_version("v002")
    assert [v.id for v in ft.versions()] == ["v001"] and ft.current_id() == "v001"
    assert labelling.models_set[-1].version == "v001"  # the app moved to the previous one
    prompter.answers = [True]
    ft.delete_version("v001")
    assert ft.versions() == [] and labelling.models_set[-1].kind == "imagenet"


def test_a_background_run_starts_by_itself_once_enough_labels_are_new(
        qtbot, finetune, project: Project) -> None:
    ft, labelling, prompter = finetune
    statuses: list[str] = []
    ft.autoStatus.connect(statuses.append)
    ft.on_label_saved("a")  # off by default
    ft.set_auto_after(10)  # six saved labels are not ten
    with qtbot.assertNotEmitted(ft.autoStarted, wait=50):
        ft.on_label_saved("a")
    assert not ft.job.is_running()
    ft.set_auto_after(3)
    with qtbot.waitSignal(ft.job.started, timeout=30_000):
        with qtbot.assertNotEmitted(ft.runStarted):
            with qtbot.waitSignal(ft.autoStarted):
                ft.on_label_saved("a")
    assert prompter.said == [] and prompter.asked == []  # never a box, never a question
    assert statuses[-1].startswith("Background fine-tune started on 6 saved labels")
    with qtbot.assertNotEmitted(ft.autoStarted, wait=50):
        ft.on_label_saved("a")  # one run at a time
    with qtbot.waitSignal(ft.job.finished, timeout=30_000):
        ft.job.cancel()
    assert prompter.said == []


def test_a_background_run_that_fails_or_scores_worse_asks_nothing(
        qtbot, finetune, project: Project, tmp_path: Path) -> None:
    from tests.core.test_versions import epoch, fake_run

    ft, labelling, prompter = finetune
    statuses: list[str] = []
    ft.autoStatus.connect(statuses.append)
    ft.store.publish(fake_run(tmp_path / "r0", [epoch(0, 0.1), epoch(1, 0.5)]), "imagenet",
                     "finished", list(CLASS_NAMES))
    ft.set_auto_after(2)
    # A background run from v001 that scored worse: listed, not used, nothing asked.
    ft._run = {"base": "v001", "names": list(CLASS_NAMES), "run_dir": tmp_path / "r1",
               "auto": True, "labelled": 6}
    fake_run(tmp_path / "r1" / "run", [epoch(0, 0.5), epoch(1, 0.3)])
    ft._on_finished({"status": "finished", "run_dir": str(tmp_path / "r1" / "run")})
    assert [v.id for v in ft.versions()] == ["v001", "v002"] and ft.current_id() == "v001"
    assert prompter.asked == [] and labelling.models_set == []
    assert "v002 scored 30.0 %" in statuses[-1] and "stays" in statuses[-1]
    # A failed one: said in the status bar, and the next try waits for two more labels.
    ft._run = {"base": "v001", "names": list(CLASS_NAMES), "run_dir": tmp_path / "r2",
               "auto": True, "labelled": 6}
    ft._on_finished({"status": "failed", "error": "out of memory"})
    assert prompter.said == [] and "stopped: out of memory" in statuses[-1]
    with qtbot.assertNotEmitted(ft.autoStarted, wait=50):
        ft.on_label_saved("a")  # still six labels: held until eight
