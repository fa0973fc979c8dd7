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
from tools.config import load_config
from tools.data.errors import DataError
from tools.engine.checkpoint import CheckpointError
from tools.engine.train_run import TrainSetupError, run
from tools.engine.trainer import NonFiniteLossError, Trainer
from tools.engine.weights import WeightsMismatchError
from tools.models.archfile import ArchFileError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_teacher_run_writes_the_original_files(teacher_run):
    folder = teacher_run["run_dir"]
    assert os.path.basename(folder).startswith("train-64x128_teacher_batch2-")
    for name in ("weights0.pt", "checkpoint.pt", "log.txt", "DONE", "ops_0_2.png", "ops_0_1.png",
                 "path_width0.png", "path_width_all0.png"):
        assert os.path.isfile(os.path.join(folder, name)), name
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
    assert summary["val_mIoU"]["student"] == pytest.approx(student_run["val_mIoU"]["student"], abs=1e-9)
    assert summary["val_mIoU"]["teacher"] == pytest.approx(student_run["val_mIoU"]["teacher"], abs=1e-9)


def test_test_mode_writes_one_submission_png_per_test_image(workspace, student_run):
    summary = run(config(workspace, "is_eval=True", "is_test=True", f"eval_path='{student_run['run_dir']}'"))
    files = sorted(os.listdir(summary["test_dir"]))
    assert files == ["berlin_000000_000019_leftImg8bit.png", "berlin_000001_000019_leftImg8bit.png"]
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


def test_is_test_training_writes_periodic_predictions_named_as_the_original(workspace):
    summary = run(config(workspace, "mode='teacher'", "is_test=True", "niters_per_epoch=1", "test_start_epoch=1",
                         "test_interval=1", output="periodic"))
    assert os.path.basename(summary["test_dir"]) == "test_0_0" and len(os.listdir(summary["test_dir"])) == 2
    assert summary["val_mIoU"] is None                        # the original does not validate when is_test


def test_resume_after_a_kill_reproduces_the_uninterrupted_weights(workspace, monkeypatch):
    settings = ("mode='teacher'", "nepochs=2", "val_interval=5")
    whole = run(config(workspace, *settings, output="whole"))
    original_step = Trainer.train_step

    def killed(self, images, target, iteration=0):
        if iteration == 3:                                     # epoch 2, second step
            raise KeyboardInterrupt
        return original_step(self, images, target, iteration)

    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run(config(workspace, *settings, output="killed"))
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = run(config(workspace, *settings, "resume=True", output="killed"))
    assert len(os.listdir(workspace / "killed")) == 1           # it continued the interrupted folder
    a, b = state(os.path.join(whole["run_dir"], "weights0.pt")), state(os.path.join(resumed["run_dir"], "weights0.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    with pytest.raises(TrainSetupError, match="already finished"):
        run(config(workspace, *settings, f"resume='{resumed['run_dir']}'"))


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
    (["mode='teacher'", "batch_size=0"], TrainSetupError, "must all be at least 1"),
])
def test_bad_input_is_one_clear_sentence(workspace, overrides, error, words):
    with pytest.raises(error, match=words):
        run(config(workspace, *overrides, output="bad"))


def test_teacher_with_the_wrong_architecture_is_refused(workspace, student_run, tmp_path):
    os.symlink(os.path.join(student_run["run_dir"], "weights1.pt"), tmp_path / "weights0.pt")
    with pytest.raises(WeightsMismatchError, match="does not fit the network built from the arch file"):
        run(config(workspace, "mode='student'", f"teacher_path='{tmp_path}'", output="bad"))
