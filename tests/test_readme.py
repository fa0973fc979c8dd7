"""README cannot rot: its test command is what CI runs, its scripts exist, and its cheap commands run."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


def _readme_commands():
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        blocks = re.findall(r"```bash\n(.*?)```", handle.read(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_readme_opens_with_main_job_and_tests_and_ci_runs_the_test_command():
    commands = _readme_commands()
    assert commands[0] == "pip install -r requirements.txt && python run_demo.py"
    assert commands[1] == "pip install -r requirements-test.txt && python -m pytest -q"
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as handle:
        assert commands[1] in handle.read()


def test_every_python_script_in_readme_exists():
    scripts = [part for command in _readme_commands() for part in shlex.split(command) if part.endswith(".py")]
    assert scripts and all(os.path.isfile(os.path.join(REPO_ROOT, script)) for script in scripts)


@pytest.mark.slow
def test_published_description_command_runs(tmp_path):
    command = next(c for c in _readme_commands() if c.startswith("python latency/run_latency.py"))
    argv = shlex.split(command)
    argv[1] = os.path.join(REPO_ROOT, argv[1])
    result = subprocess.run([sys.executable] + argv[1:] + [f"json='{tmp_path / 'report.json'}'"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5.70" in result.stdout + result.stderr and (tmp_path / "report.json").is_file()
