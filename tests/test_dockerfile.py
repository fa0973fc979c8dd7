"""Lint the Dockerfile (no Docker engine runs here): pinned base, every COPY source exists, torch kept."""
import os
import re

from conftest import REPO_ROOT


def _instructions():
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as handle:
        text = handle.read().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_base_image_is_pinned():
    bases = [line.split()[1] for line in _instructions() if line.upper().startswith("FROM ")]
    assert len(bases) == 1
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", bases[0]) and not bases[0].endswith(":latest")


def test_every_copied_path_exists():
    copies = [line.split()[1:-1] for line in _instructions() if line.upper().startswith("COPY ")]
    sources = [source for sources in copies for source in sources]
    assert "requirements.txt" in sources and "tools" in sources
    missing = [source for source in sources if not os.path.exists(os.path.join(REPO_ROOT, source))]
    assert missing == []


def test_cuda_torch_of_the_base_is_not_replaced():
    run_lines = " ".join(line for line in _instructions() if line.upper().startswith("RUN "))
    assert "grep -v '^torch=='" in run_lines and "pip install -r requirements.txt" not in run_lines
