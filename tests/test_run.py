"""The run lifecycle shared by training and search (tools/engine/run.py): lock, FAILED, temp clean-up, resume rule,
config comparison, warnings about unfinished input runs, and the Run itself on a toy stage (epochs, one big
checkpoint per epoch, resume with the same numbers, finish)."""
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from easydict import EasyDict

from tests.helpers import REPO_ROOT
from tests.reliability_helpers import dead_pid
from tools.engine import run as run_module
from tools.engine.recipe import build_lr_scheduler
from tools.engine.run import (CHECKPOINT_NAME, CONFIG_NAME, EVALUATED_NAME, LOCK_NAME, Run, RunFolderError, RunLock,
                              RunLockedError, find_resume_dir, guarded_run, mark_done, new_run_dir, open_run_dir,
                              open_stage_dir, resume_changes, unfinished_note, warn_if_unfinished)
from tools.utils.checkpoint import CheckpointError



def test_a_held_lock_refuses_a_second_holder_naming_the_process(tmp_path):
    first = RunLock(str(tmp_path)).acquire()
    with pytest.raises(RunLockedError, match=rf"run folder {tmp_path} is in use by process {os.getpid()} on "):
        RunLock(str(tmp_path)).acquire()
    first.release()
    assert not os.path.exists(tmp_path / LOCK_NAME)
    RunLock(str(tmp_path)).acquire().release()              # free again


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from tools.engine.run import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), REPO_ROOT], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} "):
            open_run_dir(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    lock, notes = open_run_dir(str(tmp_path))               # killed: its lock is taken over
    assert any(f"took over the lock of process {holder.pid}" in note for note in notes)
    lock.release()


def test_open_run_dir_takes_over_a_stale_lock_and_removes_temp_files(tmp_path):
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "elsewhere", "started": "then"}))
    (tmp_path / "FAILED").write_text("2026-01-01 00:00:00 KeyboardInterrupt: \n")
    (tmp_path / ".tmp-checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".tmp-x.png.q.tmp").write_bytes(b"")
    (tmp_path / "checkpoint.pt").write_bytes(b"kept")
    lock, notes = open_run_dir(str(tmp_path))
    try:
        assert any(f"took over the lock of process {pid}" in note for note in notes)
        assert any("previous attempt failed: 2026-01-01 00:00:00 KeyboardInterrupt" in note for note in notes)
        assert any("removed 2 temporary file(s)" in note for note in notes)
        assert sorted(os.listdir(tmp_path)) == ["FAILED", LOCK_NAME, "checkpoint.pt", "sub"]
        assert os.listdir(tmp_path / "sub") == []
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_failure_leaves_failed_with_the_error_line_and_releases_the_lock(tmp_path):
    lock = RunLock(str(tmp_path)).acquire()
    with pytest.raises(ValueError):
        with guarded_run(str(tmp_path), lock):
            raise ValueError("image x.png cannot be read\nsecond line")
    assert (tmp_path / "FAILED").read_text().split(" ", 2)[2] == "ValueError: image x.png cannot be read\n"
    assert not lock.held and not os.path.exists(tmp_path / LOCK_NAME)
    mark_done(str(tmp_path))                                 # a finished run has DONE and no FAILED
    assert sorted(os.listdir(tmp_path)) == ["DONE"]


def _config(root, **values):
    config = EasyDict(output_root=str(root), save="x", resume=False, lr=0.01, seed=1, nepochs=2, device="cpu")
    config.update(values)
    return config


def test_one_resume_rule_and_the_config_comparison(tmp_path):
    with pytest.raises(RunFolderError, match=r"resume=True but .* holds no unfinished run named train-x-\*"):
        find_resume_dir(_config(tmp_path, resume=True), "train", "checkpoint.pt")
    folder, lock, notes = open_stage_dir(_config(tmp_path), "train", "checkpoint.pt", resume=False)
    lock.release()
    assert json.load(open(os.path.join(folder, CONFIG_NAME)))["lr"] == 0.01 and notes == []
    with pytest.raises(RunFolderError, match="no unfinished run"):                # no checkpoint yet
        find_resume_dir(_config(tmp_path, resume=True), "train", "checkpoint.pt")
    open(os.path.join(folder, "checkpoint.pt"), "wb").close()
    assert find_resume_dir(_config(tmp_path, resume=True), "train", "checkpoint.pt") == folder
    open(os.path.join(folder, "FAILED"), "w").write("then ValueError: bad\n")
    with pytest.raises(RunFolderError, match=r"other settings \(lr 0.01 -> 0.5, seed 1 -> 999\)"):
        open_stage_dir(_config(tmp_path, resume=True, lr=0.5, seed=999), "train", "checkpoint.pt", resume=True)
    assert not os.path.exists(os.path.join(folder, LOCK_NAME))                    # refused: lock released
    assert os.path.exists(os.path.join(folder, "FAILED"))                         # and still marked failed
    _, lock, notes = open_stage_dir(_config(tmp_path, resume=True, nepochs=5, device="cuda"), "train",
                                    "checkpoint.pt", resume=True)
    lock.release()
    assert "resume: device changed from 'cpu' to 'cuda' (applied)" in notes
    assert "resume: nepochs changed from 2 to 5 (applied)" in notes
    assert not os.path.exists(os.path.join(folder, "FAILED"))                     # accepted: live again
    assert json.load(open(os.path.join(folder, CONFIG_NAME)))["nepochs"] == 5
    mark_done(folder)
    with pytest.raises(RunFolderError, match="already finished"):
        find_resume_dir(_config(tmp_path, resume=folder), "train", "checkpoint.pt")


def test_resume_changes_lists_every_fixed_key():
    saved = {"lr": 0.01, "stem_head_width": [[1, 1]], "nepochs": 3, "resume": False}
    config = EasyDict(lr=0.01, stem_head_width=[(1, 1)], nepochs=4, resume=True)
    assert resume_changes(saved, config, "run") == [("nepochs", 3, 4), ("resume", False, True)]


def test_new_run_dirs_of_the_same_second_differ(tmp_path):
    first, second = new_run_dir(str(tmp_path), "train", "x"), new_run_dir(str(tmp_path), "train", "x")
    assert first != second and os.path.isdir(first) and os.path.isdir(second)


def test_unfinished_input_runs_are_named_in_a_warning(tmp_path, caplog):
    plain = tmp_path / "copied_arch_files"
    plain.mkdir()
    assert unfinished_note(str(plain)) is None and unfinished_note("") is None
    run = tmp_path / "train-x-1"
    run.mkdir()
    (run / "log.txt").write_text("")
    assert "no DONE marker" in unfinished_note(str(run))
    (run / "FAILED").write_text("2026-01-01 00:00:00 ValueError: bad\n")
    logger = logging.getLogger("test_run_warning")
    with caplog.at_level(logging.WARNING, logger="test_run_warning"):
        warn_if_unfinished(logger, "teacher_path", str(run))
    assert f"teacher_path={run} is a run that has not finished (it failed: 2026-01-01" in caplog.text
    mark_done(str(run))
    assert unfinished_note(str(run)) is None


class ToyRun(Run):
    """A stage of the smallest kind: a linear model, one random batch an epoch, a random 'validation' number (so
    the random state after the evaluation matters). ``stop=(hook, epoch)`` raises KeyboardInterrupt there."""

    prefix = "toy"

    def __init__(self, config, stop=None):
        super().__init__(config)
        self.stop = stop
        self.seed()
        self.model = torch.nn.Linear(3, 1)
        self.open_folder()

    def setup(self):
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr, momentum=0.9)
        self.optimizers = {"weights": self.optimizer}
        self.schedulers = {"lr": build_lr_scheduler(self.optimizer, self.config)}
        self.history = []

    def _maybe_stop(self, hook, epoch):
        if self.stop == (hook, epoch):
            raise KeyboardInterrupt

    def train_one_epoch(self, epoch):
        self._maybe_stop("train", epoch)
        loss = self.model(torch.randn(4, 3)).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        lr = self.optimizer.param_groups[0]["lr"]
        self.history.append({"epoch": epoch + 1, "loss": float(loss.detach()), "lr": lr})

    def evaluate(self, epoch):
        self._maybe_stop("evaluate", epoch)
        self.history[-1]["val"] = float(torch.rand(()))
        return True

    def epoch_record(self, epoch):
        return self.history[-1]

    def result(self):
        return self.history


def _toy_config(root, **values):
    return _config(root, nepochs=3, niters_per_epoch=1, lr=0.1, lr_decay=0.9, **values)


def test_run_lifecycle_resumes_with_the_same_numbers_and_writes_one_checkpoint_per_epoch(tmp_path, monkeypatch):
    written = []
    original_save = run_module.save_checkpoint
    monkeypatch.setattr(run_module, "save_checkpoint",
                        lambda state, path: written.append(os.path.basename(path)) or original_save(state, path))
    whole = ToyRun(_toy_config(tmp_path / "whole")).launch()
    assert written == [CHECKPOINT_NAME, EVALUATED_NAME] * 3          # the big file once per epoch
    folder = os.path.join(tmp_path / "whole", os.listdir(tmp_path / "whole")[0])
    assert sorted(os.listdir(folder)) == ["DONE", CONFIG_NAME, "log.txt", "metrics.jsonl", "tb"]
    assert [h["lr"] for h in whole] == [0.1, 0.1 * 0.9, 0.1 * 0.9 * 0.9]
    for stop in (("train", 1), ("evaluate", 1), ("evaluate", 2)):
        out = tmp_path / f"{stop[0]}{stop[1]}"
        with pytest.raises(KeyboardInterrupt):
            ToyRun(_toy_config(out), stop=stop).launch()
        resumed = ToyRun(_toy_config(out, resume=True)).launch()
        assert resumed == whole, stop
    with pytest.raises(RunFolderError, match="no unfinished run named toy-x-"):    # the one rule: nothing to resume
        ToyRun(_toy_config(tmp_path / "whole", resume=True))


def test_a_checkpoint_of_an_unknown_layout_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        ToyRun(_toy_config(tmp_path), stop=("train", 1)).launch()
    folder = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    torch.save({"epoch": 1, "weights": {}}, os.path.join(folder, CHECKPOINT_NAME))
    with pytest.raises(CheckpointError, match=r"is not a toy checkpoint this version can resume; start a new run"):
        ToyRun(_toy_config(tmp_path, resume=True)).launch()
