"""Lint the Dockerfile (no Docker engine runs here): pinned base, every COPY source exists, the base's CUDA stack
kept, everything the README's commands and the tests read copied, a non-root user, no pycuda."""
import os
import re

from tests.helpers import REPO_ROOT


def _instructions():
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as handle:
        text = handle.read().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_base_image_is_pinned():
    bases = [line.split()[1] for line in _instructions() if line.upper().startswith("FROM ")]
    assert len(bases) == 1
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", bases[0]) and not bases[0].endswith(":latest")


def _copied_sources():
    copies = [[part for part in line.split()[1:-1] if not part.startswith("--")]
              for line in _instructions() if line.upper().startswith("COPY ")]
    return [source for sources in copies for source in sources]


def _run_lines():
    return [line[4:] for line in _instructions() if line.upper().startswith("RUN ")]


def test_every_copied_path_exists():
    sources = _copied_sources()
    assert "requirements.txt" in sources and "tools" in sources
    missing = [source for source in sources if not os.path.exists(os.path.join(REPO_ROOT, source))]
    assert missing == []


def test_the_base_images_torch_numpy_and_tensorrt_are_pinned_for_every_install():
    """numpy stays the one the base's torch is built against (no numpy 2 via opencv)."""
    runs = " ".join(_run_lines())
    match = re.search(r"pip list --format=freeze \| grep -iE '\^\(([\w|]+)\)==';[^>]*> (\S+)", runs)
    assert match, "the constraints file is not generated from the base image's installed versions"
    assert {"torch", "numpy", "tensorrt"} <= set(match.group(1).split("|"))
    constraints = match.group(2)
    installs = re.findall(r"pip install ([^&;]+)", runs)
    assert installs and all(f"-c {constraints}" in install for install in installs)
    envs = " ".join(line for line in _instructions() if line.upper().startswith("ENV "))
    assert f"PIP_CONSTRAINT={constraints}" in envs   # later installs in the container obey it too


def test_requirements_inside_the_image_keep_the_cuda_torch_and_the_tests_can_run():
    """`pip install -r requirements.txt` in the container must not fetch PyPI's torch."""
    runs = " ".join(_run_lines())
    rewrite = runs.find("sed -i 's/^torch==.*/torch ")
    install = runs.find("-r requirements-test.txt")
    assert 0 <= rewrite < install, "requirements.txt's torch pin is not replaced before the install"
    assert "requirements.txt" in runs[rewrite:install]
    assert "pip install -r requirements.txt" not in runs and "torch==" not in runs.replace("^torch==", "")
    with open(os.path.join(REPO_ROOT, "requirements-test.txt")) as handle:
        assert "-r requirements.txt" in handle.read()


def _ignored_top_level():
    with open(os.path.join(REPO_ROOT, ".gitignore")) as handle:
        return {line.strip().strip("/") for line in handle if line.startswith("/")}


def test_the_image_holds_what_the_readme_commands_and_the_tests_read():
    """Issues 13 item 3 and 14: run_demo.py, docs/ and every other top-level entry (tests read .ci and the
    Dockerfile); only git-ignored and hidden entries stay out."""
    wanted = {name for name in os.listdir(REPO_ROOT)
              if not name.startswith(".") and name not in _ignored_top_level() | {"__pycache__"}} | {".ci"}
    sources = set(_copied_sources())
    assert sorted(wanted - sources) == [] and {"run_demo.py", "docs"} <= sources
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        scripts = {path for path in re.findall(r"[\w./-]+\.py\b", handle.read())
                   if "/" in path or path == "run_demo.py"}
    assert "run_demo.py" in scripts and all(script.split("/")[0] in sources for script in scripts)


def test_no_pycuda_anywhere():
    """pycuda was built from source at `docker build` and never imported."""
    for name in ("Dockerfile", "requirements.txt", "requirements-test.txt"):
        with open(os.path.join(REPO_ROOT, name)) as handle:
            assert "pycuda" not in handle.read().lower(), name


def test_the_container_runs_as_a_non_root_user():
    users = [line.split()[1] for line in _instructions() if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in run and users[-1] in run for run in _run_lines())


def test_readme_gives_the_docker_build_and_run_lines():
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        text = handle.read()
    assert "docker build -t fasterseg ." in text
    run = re.search(r"^docker run --gpus all .* fasterseg python run_demo\.py$", text, flags=re.M)
    assert run and "/workspace/fasterseg/runs" in run.group(0)
