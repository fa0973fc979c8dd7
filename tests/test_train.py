"""train/train.py end to end on a tiny Cityscapes-format dataset with the published arch files (64x128 crops):
teacher, then student distilled from it, eval and test modes, resume, torchrun, and the bad-input sentences."""
import glob
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.demo_helpers import make_small_demo
from tests.helpers import REPO_ROOT as REPO
from tests.reliability_helpers import dead_pid
from tools.config import ConfigError, load_config
from tools.data.errors import DataError
from tools.engine.recipe import ScheduleError
from tools.engine.run import RunFolderError, RunLock, RunLockedError
from tools.engine.weights import WeightsMismatchError, clean_state_dict
from tools.models.archfile import ArchFileError
from tools.train.loop import TrainSetupError, run
from tools.train.trainer import NonFiniteLossError, Trainer
from tools.utils.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_small_demo(str(root / "data"))                      # demo scenes 64x128: 4 train, 4 val, 2 test
    return root


def config(workspace, *overrides, output="runs"):
    base = [f"dataset_path='{workspace / 'data'}'", f"output_root='{workspace / output}'", "plots=False",
            "down_sampling=1", "image_height=64", "image_width=128", "flops_input=[64, 128]", "nepochs=1",
            "niters_per_epoch=2"]
    return load_config("train_tiny", base + list(overrides))


@pytest.fixture(scope="module")
def teacher_run(workspace):
    return run(config(workspace, "mode='teacher'", "plots=True"))


@pytest.fixture(scope="module")
def student_run(workspace, teacher_run):
    return run(config(workspace, "mode='student'", f"teacher_path='{teacher_run['run_dir']}'"))


def state(path):
    return torch.load(path, weights_only=True)


def interrupted_run(monkeypatch, iteration, run_config):
    """``run(run_config)`` killed (KeyboardInterrupt) at training iteration ``iteration``."""
    original_step = Trainer.train_step

    def killed(self, images, target, step=0):
        if step == iteration:
            raise KeyboardInterrupt
        return original_step(self, images, target, step)

    monkeypatch.setattr(Trainer, "train_step", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(run_config)
    finally:
        monkeypatch.setattr(Trainer, "train_step", original_step)


def test_teacher_run_writes_the_original_files(teacher_run):
    folder = teacher_run["run_dir"]
    assert os.path.basename(folder).startswith("train-64x128_teacher_batch2-")
    for name in ("weights0.pt", "log.txt", "config.json", "DONE", "ops_0_2.png", "ops_0_1.png",
                 "path_width0.png", "path_width_all0.png"):
        assert os.path.isfile(os.path.join(folder, name)), name
    assert not any(name.startswith("checkpoint") for name in os.listdir(folder))   # finished: as the search
    assert glob.glob(os.path.join(folder, "tb", "events.out.tfevents.*"))
    log = open(os.path.join(folder, "log.txt")).read()
    assert "teacher: params = 23.524137MB, FLOPs = " in log and "teacher's valid_mIoU" in log
    assert teacher_run["networks"]["teacher"]["params"] == 23524137
    assert 0.0 <= teacher_run["val_mIoU"]["teacher"] <= 1.0
    assert not any(key.endswith(("total_ops", "total_params")) for key in state(os.path.join(folder, "weights0.pt")))


def test_student_is_distilled_from_a_teacher_that_never_changes(teacher_run, student_run):
    folder = student_run["run_dir"]
    assert os.path.basename(folder).startswith("train-64x128_student_batch2-")
    teacher_before = state(os.path.join(teacher_run["run_dir"], "weights0.pt"))
    teacher_after = state(os.path.join(folder, "weights0.pt"))
    assert teacher_before.keys() == teacher_after.keys()
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)
    student = state(os.path.join(folder, "weights1.pt"))
    assert len(student) == 320 and "heads32.conv_1x1.weight" in student
    history = student_run["history"][0]
    assert set(history["train_mIoU"]) == {"teacher", "student"} and set(student_run["val_mIoU"]) == \
        {"teacher", "student"}
    log = open(os.path.join(folder, "log.txt")).read()
    assert f"teacher weights loaded from {os.path.join(teacher_run['run_dir'], 'weights0.pt')}" in log


def test_distillation_term_only_in_student_mode(workspace, teacher_run, monkeypatch):
    seen = []
    original_step = Trainer.train_step

    def spy(self, images, target, iteration=0):
        result = original_step(self, images, target, iteration)
        seen.append(result["kl"])
        return result

    monkeypatch.setattr(Trainer, "train_step", spy)
    run(config(workspace, "mode='teacher'", "niters_per_epoch=1", "val_interval=5", output="modes"))
    run(config(workspace, "mode='student'", "niters_per_epoch=1", f"teacher_path='{teacher_run['run_dir']}'",
               output="modes"))
    assert seen[0] is None and seen[1] is not None and seen[1] > 0


def test_eval_mode_scores_both_networks_of_a_student_run(workspace, student_run):
    summary = run(config(workspace, "is_eval=True", f"eval_path='{student_run['run_dir']}'"))
    assert os.path.basename(summary["run_dir"]).startswith("eval-64x128_student_batch2-")
    records = [json.loads(line) for line in open(os.path.join(summary["run_dir"], "metrics.jsonl"))]
    assert [r["epoch"] for r in records] == [0] and set(records[0]["val_mIoU"]) == {"teacher", "student"}
    assert summary["val_mIoU"]["student"] == pytest.approx(student_run["val_mIoU"]["student"], abs=1e-9)
    assert summary["val_mIoU"]["teacher"] == pytest.approx(student_run["val_mIoU"]["teacher"], abs=1e-9)


def test_test_mode_writes_one_submission_png_per_test_image(workspace, student_run):
    summary = run(config(workspace, "is_eval=True", "is_test=True", f"eval_path='{student_run['run_dir']}'"))
    files = sorted(os.listdir(summary["test_dir"]))
    assert files == ["berlin_000000_000019_leftImg8bit.png", "berlin_000001_000019_leftImg8bit.png"]
    assert os.path.isfile(os.path.join(summary["test_dir"] + "_color", "legend.png"))
    ids = np.asarray(Image.open(os.path.join(summary["test_dir"], files[0])))
    assert ids.shape == (64, 128) and set(np.unique(ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                                                              27, 28, 31, 32, 33}


def test_test_mode_output_scores_as_eval_mode_under_the_official_evaluator(workspace, student_run, monkeypatch):
    """Predict the val list in test mode; cityscapesscripts' evaluator must give eval mode's mIoU."""
    data = workspace / "data"
    overrides = ("is_eval=True", f"eval_path='{student_run['run_dir']}'",
                 f"test_source='{data}/cityscapes_val_fine.txt'")
    summary = run(config(workspace, *overrides, "is_test=True", output="official"))
    monkeypatch.setenv("CITYSCAPES_DATASET", str(data))
    monkeypatch.setenv("CITYSCAPES_RESULTS", summary["test_dir"])
    monkeypatch.setenv("CITYSCAPES_EXPORT_DIR", str(workspace / "official"))
    monkeypatch.setattr(sys, "argv", ["evalPixelLevelSemanticLabeling"])
    module = importlib.reload(importlib.import_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"))
    module.args.quiet = True
    module.main()
    with open(workspace / "official" / "resultPixelLevelSemanticLabeling.json") as handle:
        official = json.load(handle)["averageScoreClasses"]
    assert official == pytest.approx(summary["val_mIoU"]["student"], abs=1e-6)


@pytest.mark.slow
def test_is_test_training_writes_periodic_predictions_named_as_the_original(workspace):
    summary = run(config(workspace, "mode='teacher'", "is_test=True", "niters_per_epoch=1", "test_start_epoch=1",
                         "test_interval=1", output="periodic"))
    assert os.path.basename(summary["test_dir"]) == "test_0_0" and len(os.listdir(summary["test_dir"])) == 2
    assert summary["val_mIoU"] is None                        # the original does not validate when is_test


@pytest.mark.slow
def test_resume_after_a_kill_reproduces_the_uninterrupted_weights(workspace, monkeypatch):
    settings = ("mode='teacher'", "nepochs=2", "val_interval=5")
    whole = run(config(workspace, *settings, output="whole"))
    interrupted_run(monkeypatch, 3, config(workspace, *settings, output="killed"))            # epoch 2, second step
    resumed = run(config(workspace, *settings, "resume=True", output="killed"))
    assert len(os.listdir(workspace / "killed")) == 1           # it continued the interrupted folder
    a, b = state(os.path.join(whole["run_dir"], "weights0.pt")), state(os.path.join(resumed["run_dir"], "weights0.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    with pytest.raises(RunFolderError, match="already finished"):
        run(config(workspace, *settings, f"resume='{resumed['run_dir']}'"))


def write_old_training_checkpoint(folder):
    """Rewrite ``folder``'s checkpoint in training's layout before the shared one, as the previous version left
    it (the CamVid run of commit 2a9c52a): ``{epoch, trainer: {model, optimizer, scaler}, rng, history, arch_idx}``, written
    again after the validation, without the lr schedule."""
    state = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)
    evaluated = os.path.join(folder, "checkpoint_evaluated.pt")
    after = torch.load(evaluated, weights_only=True)
    assert after["epoch"] == state["epoch"]
    state.update(after)
    os.remove(evaluated)
    optimizer = state["optimizers"]["weights"]
    for group in optimizer["param_groups"]:
        group.pop("initial_lr")
        group["lr"] = 0.123                     # the old rule left another rate here: the schedule decides
    torch.save({"epoch": state["epoch"], "trainer": {"model": state["model"], "optimizer": optimizer,
                                                     "scaler": state["extra"]["scaler"]},
                "rng": state["rng"], "history": state["history"], "arch_idx": state["extra"]["arch_idx"]},
               os.path.join(folder, "checkpoint.pt"))


def test_a_checkpoint_of_the_layout_before_resumes_with_the_same_weights(workspace, monkeypatch):
    """A run started by the previous version (the CamVid student: alone, poly schedule) continues exactly."""
    settings = ("mode='student'", "arch_idx=[1]", "nepochs=2", "lr=0.1", "lr_schedule='poly'", "warmup_iters=1",
                "val_interval=1")
    whole = run(config(workspace, *settings, output="old_whole"))
    interrupted_run(monkeypatch, 2, config(workspace, *settings, output="old_killed"))        # epoch 2, first step
    folder = str(workspace / "old_killed" / os.listdir(workspace / "old_killed")[0])
    write_old_training_checkpoint(folder)
    resumed = run(config(workspace, *settings, "resume=True", output="old_killed"))
    assert resumed["run_dir"] == folder
    a, b = state(os.path.join(whole["run_dir"], "weights1.pt")), state(os.path.join(folder, "weights1.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(h["lr"], h["loss"]) for h in resumed["history"]] == [(h["lr"], h["loss"]) for h in whole["history"]]


@pytest.mark.slow
def test_torchrun_two_processes_train_the_teacher(workspace):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               os.path.join(REPO, "train", "train.py"), "--config", "train_tiny", "mode='teacher'",
               f"dataset_path='{workspace / 'data'}'", f"output_root='{workspace / 'ddp'}'", "plots=False",
               "down_sampling=1", "image_height=64", "image_width=128", "flops_input=[64, 128]", "nepochs=1",
               "niters_per_epoch=1"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, PYTHONPATH=REPO))
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    folders = os.listdir(workspace / "ddp")
    assert len(folders) == 1
    log = open(workspace / "ddp" / folders[0] / "log.txt").read()
    assert "2 process(es)" in log and "teacher's valid_mIoU" in log
    assert os.path.isfile(workspace / "ddp" / folders[0] / "weights0.pt")


@pytest.mark.slow
def test_nan_loss_stops_saves_and_names_the_iteration(workspace):
    with pytest.raises(NonFiniteLossError, match=r"at iteration 1; the weights from before this step were saved "
                                                 r"to .*nonfinite_iter1\.pt"):
        run(config(workspace, "mode='teacher'", "lr=1e30", output="nan"))
    assert glob.glob(str(workspace / "nan" / "*" / "nonfinite_iter1.pt"))


@pytest.mark.parametrize("overrides, error, words", [
    (["mode='teacher'", "load_path='/nonexistent'"], ArchFileError,
     r"arch_0.pt does not exist; it is written by the search"),
    (["mode='student'"], TrainSetupError, r"needs teacher_path=.* written by teacher training"),
    (["mode='student'", "teacher_path='/nonexistent'"], CheckpointError,
     r"weights0.pt does not exist\. It is written by teacher training"),
    (["is_eval=True"], TrainSetupError, "is_eval=True needs eval_path"),
    (["mode='teacher'", "num_classes=11"], DataError, "num_classes=11 but dataset 'cityscapes'"),
    (["mode='teacher'", "batch_size=0"], ConfigError, "batch_size=0 must be at least 1"),
])
def test_bad_input_is_one_clear_sentence(workspace, overrides, error, words):
    with pytest.raises(error, match=words):
        run(config(workspace, *overrides, output="bad"))


def test_teacher_with_the_wrong_architecture_is_refused(workspace, student_run, tmp_path):
    os.symlink(os.path.join(student_run["run_dir"], "weights1.pt"), tmp_path / "weights0.pt")
    with pytest.raises(WeightsMismatchError, match="does not fit the network built from the arch file"):
        run(config(workspace, "mode='student'", f"teacher_path='{tmp_path}'", output="bad"))


@pytest.mark.slow
def test_student_alone_trains_without_a_teacher(workspace, monkeypatch):
    """arch_idx=[1] (as the original's train.py allows): the student alone, no teacher built, no distillation;
    with class_weight='enet' (weights from the training labels, logged)."""
    losses, kls = [], []
    original_step = Trainer.train_step

    def spy(self, images, target, iteration=0):
        result = original_step(self, images, target, iteration)
        losses.append(float(result["loss"]))
        kls.append(result["kl"])
        return result

    monkeypatch.setattr(Trainer, "train_step", spy)
    summary = run(config(workspace, "mode='student'", "arch_idx=[1]", "nepochs=2", "niters_per_epoch=4",
                         "val_interval=5", "class_weight='enet'", output="alone"))
    folder = summary["run_dir"]
    assert os.path.isfile(os.path.join(folder, "weights1.pt")) and not os.path.exists(
        os.path.join(folder, "weights0.pt"))
    assert set(summary["val_mIoU"]) == {"student"} and set(summary["networks"]) == {"student"}
    assert summary["networks"]["student"]["params"] == 4385689
    assert all(kl is None for kl in kls)
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    log = open(os.path.join(folder, "log.txt")).read()
    assert "teacher" not in log.split("args = ")[-1].split("\n", 1)[1]
    assert "class weights (class_weight='enet'): " in log        # from the training labels, before the first step


def first_step_weights(monkeypatch, run_config):
    """The trained network's and the teacher's state_dicts when ``run(run_config)`` takes its first step."""
    seen = {}
    original_step = Trainer.train_step

    def spy(self, images, target, iteration=0):
        if not seen:
            seen["model"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            seen["teacher"] = None if self.teacher is None else dict(self.teacher.state_dict())
        return original_step(self, images, target, iteration)

    monkeypatch.setattr(Trainer, "train_step", spy)
    summary = run(run_config)
    return seen, summary


def same_weights(state, path):
    saved = clean_state_dict(torch.load(path, weights_only=True))
    return set(saved) <= set(state) and all(torch.equal(state[key], saved[key]) for key in saved)


def test_init_path_starts_the_trained_network_from_given_weights(workspace, teacher_run, student_run,
                                                                 monkeypatch):
    """Fine-tuning (init_path): a run folder or a weights file; in student mode it seeds the student, while the
    teacher still comes from teacher_path; the schedule starts anew in a new run folder."""
    teacher_file = os.path.join(teacher_run["run_dir"], "weights0.pt")
    seen, summary = first_step_weights(monkeypatch, config(workspace, "mode='teacher'",
                                                           f"init_path='{teacher_run['run_dir']}'", output="tune"))
    assert same_weights(seen["model"], teacher_file) and summary["run_dir"] != teacher_run["run_dir"]
    assert "starts from " + teacher_file in open(os.path.join(summary["run_dir"], "log.txt")).read()
    student_file = os.path.join(student_run["run_dir"], "weights1.pt")
    seen, _ = first_step_weights(monkeypatch, config(workspace, "mode='student'", f"init_path='{student_file}'",
                                                     f"teacher_path='{teacher_run['run_dir']}'", output="tune"))
    assert same_weights(seen["model"], student_file) and same_weights(seen["teacher"], teacher_file)
    # without init_path the student starts from scratch (the original), not from any earlier weights
    seen, _ = first_step_weights(monkeypatch, config(workspace, "mode='student'",
                                                     f"teacher_path='{teacher_run['run_dir']}'", output="tune"))
    assert not same_weights(seen["model"], student_file)


def test_init_path_that_is_missing_or_for_another_network_is_one_sentence(workspace, teacher_run, tmp_path):
    with pytest.raises(CheckpointError, match=f"weights file {tmp_path}/weights0.pt does not exist"):
        run(config(workspace, "mode='teacher'", f"init_path='{tmp_path}'", output="bad"))
    student_as_teacher = os.path.join(teacher_run["run_dir"], "weights0.pt")
    with pytest.raises(WeightsMismatchError, match="does not fit the network built from the arch file"):
        run(config(workspace, "mode='student'", "arch_idx=[1]", f"init_path='{student_as_teacher}'", output="bad"))


@pytest.mark.slow
def test_poly_schedule_sets_the_lr_of_every_iteration(workspace, monkeypatch):
    seen = []
    original_step = Trainer.train_step

    def spy(self, images, target, iteration=0):
        seen.append(self.optimizer.param_groups[0]["lr"])
        return original_step(self, images, target, iteration)

    monkeypatch.setattr(Trainer, "train_step", spy)
    run(config(workspace, "mode='student'", "arch_idx=[1]", "nepochs=2", "niters_per_epoch=2", "lr=0.1",
               "lr_schedule='poly'", "warmup_iters=1", "val_interval=5", output="poly"))
    assert seen == pytest.approx([0.1, 0.1, 0.1 * (2 / 3) ** 0.9, 0.1 * (1 / 3) ** 0.9])
    with pytest.raises(ScheduleError, match="warmup_iters"):
        run(config(workspace, "mode='teacher'", "warmup_iters=5", output="poly"))
    with pytest.raises(ScheduleError, match="lr_schedule"):
        run(config(workspace, "mode='teacher'", "lr_schedule='step'", output="poly"))



def test_a_corrupt_eval_image_is_refused_before_the_first_step(workspace, tmp_path, monkeypatch):
    steps = []
    monkeypatch.setattr(Trainer, "train_step", lambda *args, **kwargs: steps.append(1))
    label = open(workspace / "data" / "cityscapes_val_fine.txt").read().split()[1]
    bad = tmp_path / "bad_leftImg8bit.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "val.txt").write_text(f"{bad} {workspace / 'data' / label}\n")
    with pytest.raises(DataError, match=r"image .*bad_leftImg8bit.png cannot be read \(corrupt or not an image"):
        run(config(workspace, "mode='teacher'", f"eval_source='{tmp_path / 'val.txt'}'", output="corrupt"))
    assert steps == [] and not os.path.exists(workspace / "corrupt")           # no step, no run folder


@pytest.mark.slow
def test_a_failing_validation_keeps_the_epoch_and_the_resumed_run_validates_first(workspace, monkeypatch):
    from tools.train.evaluation import Evaluation
    original = Evaluation.validate

    def crash(self, model, name, step):
        raise RuntimeError("validation crashed")

    monkeypatch.setattr(Evaluation, "validate", crash)
    with pytest.raises(RuntimeError, match="validation crashed"):
        run(config(workspace, "mode='teacher'", "niters_per_epoch=1", output="valfail"))
    folder = str(workspace / "valfail" / os.listdir(workspace / "valfail")[0])
    saved = state(os.path.join(folder, "checkpoint.pt"))
    assert saved["epoch"] == 1 and saved["extra"]["pending_eval"] is True        # the epoch was saved first
    assert "RuntimeError: validation crashed" in open(os.path.join(folder, "FAILED")).read()
    monkeypatch.setattr(Evaluation, "validate", original)
    steps = []
    monkeypatch.setattr(Trainer, "train_step", lambda *args, **kwargs: steps.append(1))
    resumed = run(config(workspace, "mode='teacher'", "niters_per_epoch=1", "resume=True", output="valfail"))
    assert steps == [] and resumed["run_dir"] == folder                          # nothing retrained
    assert 0.0 <= resumed["history"][0]["val_mIoU"]["teacher"] <= 1.0
    assert sorted(n for n in os.listdir(folder) if n.isupper()) == ["DONE"]


@pytest.mark.slow
def test_resume_is_refused_while_in_use_or_with_other_settings_and_cleans_up_after_a_kill(workspace, monkeypatch):
    settings = ("mode='teacher'", "val_interval=5", "niters_per_epoch=1")
    with pytest.raises(RunFolderError, match="holds no unfinished run named train-64x128_teacher_batch2-"):
        run(config(workspace, *settings, "nepochs=2", "resume=True", output="safe"))   # nothing to resume: stop
    interrupted_run(monkeypatch, 1, config(workspace, *settings, "nepochs=2", output="safe"))  # epoch 2, first step
    folder = str(workspace / "safe" / os.listdir(workspace / "safe")[0])
    assert "KeyboardInterrupt" in open(os.path.join(folder, "FAILED")).read()
    assert not os.path.exists(os.path.join(folder, "LOCK"))
    holder = RunLock(folder).acquire()                         # another process working in the folder
    try:
        with pytest.raises(RunLockedError, match=f"run folder {folder} is in use by process {os.getpid()} on "):
            run(config(workspace, *settings, "nepochs=2", "resume=True", output="safe"))
    finally:
        holder.release()
    with pytest.raises(RunFolderError, match=r"cannot be resumed with other settings \(lr 0.01 -> 0.5, "
                                             r"seed 12345 -> 999\)"):
        run(config(workspace, *settings, "nepochs=2", "resume=True", "lr=0.5", "seed=999", output="safe"))
    from tools.train.evaluation import Evaluation                    # the unfinished run as a student's teacher
    monkeypatch.setattr(Evaluation, "validate", lambda *args, **kwargs: 0.0)
    student = run(config(workspace, "mode='student'", "niters_per_epoch=1", f"teacher_path='{folder}'",
                         output="from_unfinished"))
    monkeypatch.undo()
    log = open(os.path.join(student["run_dir"], "log.txt")).read()
    assert f"WARNING: teacher_path={folder} is a run that has not finished (it failed: " in log, log[-3000:]
    # what a kill -9 leaves: a lock nobody holds and a half-written temporary checkpoint
    with open(os.path.join(folder, "LOCK"), "w") as handle:
        json.dump({"pid": dead_pid(), "host": "here", "started": "then"}, handle)
    open(os.path.join(folder, ".tmp-checkpoint.pt.abc.tmp"), "wb").write(b"half")
    resumed = run(config(workspace, *settings, "nepochs=3", "resume=True", output="safe"))
    assert resumed["run_dir"] == folder and [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    log = open(os.path.join(folder, "log.txt")).read()
    for line in ("took over the lock of process", "the previous attempt failed: ", "KeyboardInterrupt",
                 "removed 1 temporary file(s) left by an interrupted write: .tmp-checkpoint.pt.abc.tmp",
                 "resume: nepochs changed from 2 to 3 (applied)"):
        assert line in log
    assert not [n for n in os.listdir(folder) if n in ("FAILED", "LOCK") or n.endswith(".tmp")]


def test_eval_of_a_folder_with_only_the_students_weights_builds_the_student_alone(tmp_path):
    """pretrained/camvid ships weights1.pt without a teacher: is_eval evaluates the student alone."""
    (tmp_path / "weights1.pt").write_bytes(b"")
    config = load_config("train", ["is_eval=True", f"eval_path='{tmp_path}'"])
    assert config.arch_idx == [1] and config.stem_head_width == [(8. / 12, 8. / 12)]
    (tmp_path / "weights0.pt").write_bytes(b"")
    assert load_config("train", ["is_eval=True", f"eval_path='{tmp_path}'"]).arch_idx == [0, 1]
