"""A write that fails (full disk, permissions), log files included, ends the command with an error naming the
file: the atomic writer keeps the previous file, and log.txt lines that could not be written (logging's own
FileHandler prints those and goes on) make latency/run_latency.py and every Run stage exit non-zero."""
import errno
import logging
import os

import pytest

from tools.utils import fileio
from tools.utils.cli import run_script
from tools.utils.fileio import LogFileHandler, WriteError, atomic_write, check_log_files

ERRORS = [errno.ENOSPC, errno.EACCES]


class FullDisk:
    """A text stream on a full disk: ``write`` buffers, ``flush`` fails as on /dev/full."""

    def write(self, text):
        return len(text)

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        pass


def _fail(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code", ERRORS)
@pytest.mark.parametrize("where", ["mkstemp", "write", "fsync", "replace"])
def test_a_failed_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, where, code):
    path = tmp_path / "report.json"
    path.write_text("old")
    write = _fail(code) if where == "write" else (lambda handle: handle.write(b"new"))
    if where == "mkstemp":
        monkeypatch.setattr(fileio.tempfile, "mkstemp", _fail(code))
    elif where in ("fsync", "replace"):
        monkeypatch.setattr(fileio.os, where, _fail(code))
    with pytest.raises(WriteError, match=rf"^cannot write {path}: {os.strerror(code)}; free space on that disk or "
                                         rf"choose a folder you can write to \(the previous version .* unchanged\)\.$"):
        atomic_write(str(path), write)
    monkeypatch.undo()
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_sentence_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "ro" / "a.txt"
    path.parent.mkdir()
    path.write_text("old")
    os.chmod(path.parent, 0o555)
    try:
        with pytest.raises(WriteError, match=rf"^cannot write {path}: Permission denied; "):
            fileio.write_text(str(path), "new")
    finally:
        os.chmod(path.parent, 0o755)
    assert path.read_text() == "old"


def _logger(name, handler):
    logger = logging.getLogger(f"test_write_failures.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


@pytest.mark.parametrize("stream", ["fake", "/dev/full"])
def test_a_log_line_the_disk_cannot_take_is_remembered_and_raised_once(tmp_path, capsys, stream):
    if stream == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    path = tmp_path / "log.txt"
    handler = LogFileHandler(str(path))
    logger = _logger(stream, handler)
    logger.info("written")
    check_log_files(logger)                                   # nothing failed: nothing raised
    handler.stream.close()
    handler.stream = FullDisk() if stream == "fake" else open("/dev/full", "w")
    for line in range(3):
        logger.info("line %d", line)                         # logging goes on; the error is kept
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [f"cannot write the log file {path}: No space left on device; the command will end with an "
                    f"error."]                                 # one line, not a traceback per log line
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device; free space on that "
                                         rf"disk or choose a folder you can write to \(the log lines from then on "
                                         rf"are missing\)\.$"):
        check_log_files(logger)
    check_log_files(logger)                                   # said once
    handler.stream = open(os.devnull, "w")
    handler.close()
    assert path.read_text().endswith("written\n")


def test_a_bad_log_call_is_not_taken_for_a_write_error(tmp_path, capsys):
    handler = LogFileHandler(str(tmp_path / "log.txt"))
    logger = _logger("bad_format", handler)
    logger.info("%d", "not a number")                        # a bug in the caller: logging's usual report
    assert "--- Logging error ---" in capsys.readouterr().err
    check_log_files(logger)
    handler.close()


def test_a_log_file_that_cannot_be_opened_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(LogFileHandler, "_open", _fail(errno.EACCES))
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path / 'log.txt'}: Permission denied; "):
        LogFileHandler(str(tmp_path / "log.txt"))


def _full_log_files(monkeypatch):
    """Every log file opened from now on is on a full disk."""
    monkeypatch.setattr(LogFileHandler, "_open", lambda self: FullDisk())


def test_run_latency_with_a_full_disk_exits_non_zero_naming_its_log(tmp_path, monkeypatch, capsys):
    """The issue's reproduction: run_latency.py on a full disk ended with exit code 0 and an empty log."""
    from tests.test_latency_scripts import script
    _full_log_files(monkeypatch)
    args = ["mode='student'", "measure=False", "plots=False", f"output_root='{tmp_path}'"]
    assert run_script(script("run_latency").main, args) == 1
    err = capsys.readouterr().err
    (run,) = os.listdir(tmp_path)
    log = tmp_path / run / "log.txt"
    assert err.strip().splitlines()[-1] == (f"error: cannot write {log}: No space left on device; free space on "
                                            f"that disk or choose a folder you can write to (the log lines from "
                                            f"then on are missing).")


def test_a_run_whose_log_failed_is_not_done_and_exits_non_zero(tmp_path, monkeypatch):
    from tests.test_run import ToyRun, _toy_config
    from tools.engine.run import CHECKPOINT_NAME, FAILED_NAME, is_done

    class LoggingRun(ToyRun):
        def begin(self):
            self.logger.info("begin")

    _full_log_files(monkeypatch)
    with pytest.raises(WriteError, match=r"cannot write .*log.txt: No space left on device"):
        LoggingRun(_toy_config(tmp_path / "early")).launch()
    (folder,) = [os.path.join(tmp_path, "early", name) for name in os.listdir(tmp_path / "early")]
    assert not is_done(folder) and os.path.isfile(os.path.join(folder, CHECKPOINT_NAME))     # resumable
    assert "WriteError: cannot write" in open(os.path.join(folder, FAILED_NAME)).read()
    with pytest.raises(WriteError, match=r"cannot write .*log.txt: No space left on device"):
        ToyRun(_toy_config(tmp_path / "last")).launch()      # only its last line ('finished') was lost
    (folder,) = [os.path.join(tmp_path, "last", name) for name in os.listdir(tmp_path / "last")]
    assert is_done(folder)
