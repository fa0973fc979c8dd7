"""One top-level handler for every script (tools/utils/cli.py): a user error is one sentence on stderr and exit
code 1, Ctrl-C is 130, a bug keeps its traceback, FASTERSEG_TRACEBACK=1 shows every traceback; the project's
sentence replaces torch's advice to load an unsafe file with weights_only turned off."""
import errno
import os
import re
import subprocess
import sys

import pytest
import torch

from reliability_helpers import Payload
from tools.config import ConfigError
from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils import cli
from tools.utils.checkpoint import CheckpointError, load_checkpoint
from tools.utils.errors import UserError
from tools.utils.fileio import WriteError
from tools.utils.legacy_files import UnsafeFileError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_FOLDERS = ("search", "train", "latency", "dataset", "tools")


def _scripts():
    """Every file of the project that runs as a script (``if __name__ == "__main__":``), the deployment folder's
    predict.py template aside (it runs without the project's code and has its own handler)."""
    found = ["run_demo.py"]
    for folder in SCRIPT_FOLDERS:
        for base, _dirs, names in os.walk(os.path.join(REPO, folder)):
            for name in names:
                path = os.path.join(base, name)
                if name.endswith(".py") and '__name__ == "__main__"' in open(path).read():
                    found.append(os.path.relpath(path, REPO))
    return sorted(set(found) - {os.path.join("tools", "latency", "deploy_predict.py")})


@pytest.mark.parametrize("script", _scripts())
def test_every_script_ends_through_the_one_handler(script):
    source = open(os.path.join(REPO, script)).read()
    main_block = source[source.index('if __name__ == "__main__":'):]
    assert re.search(r"sys\.exit\((cli\.)?run_script\(|run_as_script\(\)", main_block), script


def _exit(main):
    return cli.run_script(main, [])


@pytest.mark.parametrize("error", [
    ConfigError("lr=-1 must be a positive number."),
    DataError("label x.png holds values [19] outside 0..18."),
    DataFileNotFoundError("image a.png does not exist."),
    WriteError("out/x.png", OSError(errno.ENOSPC, "No space left on device")),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "missing.pt"),
    PermissionError(errno.EACCES, "Permission denied", "/root/x"),
])
def test_a_user_error_is_one_sentence_and_exit_code_1(capsys, monkeypatch, error):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    def main(argv):
        raise error
    assert _exit(main) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert cli.is_user_error(error)


def test_a_bug_keeps_its_traceback_and_the_switch_shows_every_one(monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    with pytest.raises(ZeroDivisionError):
        _exit(lambda argv: 1 / 0)
    with pytest.raises(ValueError):                     # a plain ValueError is not the project's: a bug
        _exit(lambda argv: int("x"))
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(ConfigError):
        _exit(lambda argv: (_ for _ in ()).throw(ConfigError("lr=-1 must be positive.")))


def test_ctrl_c_exits_130_and_results_map_to_exit_codes(capsys, monkeypatch):
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    def interrupted(argv):
        raise KeyboardInterrupt
    assert _exit(interrupted) == cli.EXIT_INTERRUPTED and "interrupted" in capsys.readouterr().err
    assert _exit(lambda argv: {"summary": 1}) == 0 and _exit(lambda argv: 3) == 3 and _exit(lambda argv: True) == 0


def test_every_project_error_class_is_a_user_error():
    """The classes that carry a sentence for the user (one per layer) all derive from UserError, next to the
    built-in base their callers catch."""
    from tools.engine.run import RunFolderError
    from tools.engine.weights import WeightsMismatchError
    from tools.latency.deploy import DeployError
    from tools.latency.table import TableError
    from tools.models.archfile import ArchFileError
    from tools.train.trainer import NonFiniteLossError
    for error_class in (ConfigError, DataError, DataFileNotFoundError, WriteError, CheckpointError, UnsafeFileError,
                        RunFolderError, WeightsMismatchError, DeployError, TableError, ArchFileError,
                        NonFiniteLossError):
        assert issubclass(error_class, UserError), error_class


def test_an_unsafe_weights_file_gets_the_projects_sentence_not_torchs_hint(tmp_path):
    """torch's message says to re-run with weights_only off -- the one setting that would run the file."""
    path = tmp_path / "weights1.pt"
    torch.save({"w": Payload(str(tmp_path / "ran"))}, path)
    with pytest.raises(UnsafeFileError) as raised:
        load_checkpoint(str(path), what="weights file")
    message = str(raised.value)
    assert message.startswith(f"weights file {path} asks to run") and "refused without running" in message
    assert "weights_only" not in message and not os.path.exists(tmp_path / "ran")
    truncated = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut.pt cannot be read \(.*truncated or not a torch file"):
        load_checkpoint(str(truncated))


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args, sentence", [
    (("train/train.py", "lr=-1"), "error: lr=-1 must be a positive number"),
    (("search/train_search.py", "lr=1e400"), "error: lr=1e400 is not a finite number"),
    (("train/predict.py", "--weights", "missing/weights1.pt", "--input", "missing.jpg"), "error: "),
    (("dataset/create_mapping_lists.py", "--root", "missing_root_dir"), "error: "),
    (("tools/convert_arch.py", "missing_arch.pt", "out.pt"), "error: "),
])
def test_scripts_print_the_sentence_without_a_traceback(args, sentence):
    """Stage scripts, a dataset tool, the predict script and a tool: a user error on the command line."""
    result = _run(*args, env={cli.TRACEBACK_ENV: ""})
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(sentence) and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    shown = _run(*args, env={cli.TRACEBACK_ENV: "1"})
    assert shown.returncode != 0 and "Traceback" in shown.stderr


def test_an_error_raised_in_a_loader_worker_is_its_own_sentence(tmp_path, capsys, monkeypatch):
    """torch re-raises a worker's exception with the worker's traceback in its message: the handler prints the
    sentence alone."""
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise DataError(f"image {tmp_path}/a.jpg cannot be read (it is cut short); replace it.")

    def main(argv):
        list(torch.utils.data.DataLoader(Broken(), num_workers=1))
    assert _exit(main) == cli.EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: image {tmp_path}/a.jpg cannot be read (it is cut short); replace it.\n"
