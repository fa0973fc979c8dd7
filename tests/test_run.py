"""Run folders shared by training and search (tools/engine/run.py): lock, FAILED, temp clean-up, resume rule,
config comparison, warnings about unfinished input runs."""
import json
import logging
import os
import subprocess
import sys

import pytest
from easydict import EasyDict

from tests.reliability_helpers import dead_pid
from tools.engine.run import (CONFIG_NAME, LOCK_NAME, RunFolderError, RunLock, RunLockedError, find_resume_dir,
                              guarded_run, mark_done, new_run_dir, open_run_dir, open_stage_dir, resume_changes,
                              unfinished_note, warn_if_unfinished)



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
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), repo], stdout=subprocess.PIPE, text=True)
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
