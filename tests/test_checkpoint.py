"""Atomic checkpoint writes, safe loading and RNG capture."""
import os
import random

import numpy as np
import pytest
import torch

from tools.utils.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tools.utils.fileio import atomic_write


def test_roundtrip_with_weights_only(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"w": torch.arange(3.0), "epoch": 4, "name": "x"}, str(path))
    loaded = load_checkpoint(str(path))
    assert loaded["epoch"] == 4 and torch.equal(loaded["w"], torch.arange(3.0))
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"v": 1}, str(path))

    def explode(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), explode)
    assert load_checkpoint(str(path)) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="weights0.pt does not exist. It is written by the teacher stage"):
        load_checkpoint(str(tmp_path / "weights0.pt"), produced_by="the teacher stage")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt cannot be read"):
        load_checkpoint(str(bad))


def test_rng_state_restores_every_generator(tmp_path):
    path = str(tmp_path / "rng.pt")
    save_checkpoint({"rng": rng_state()}, path)
    first = (torch.rand(2), random.random(), np.random.rand())
    set_rng_state(load_checkpoint(path)["rng"])
    second = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]


def test_cuda_rng_state_is_the_current_devices_only(tmp_path, fake_cuda):
    """One GPU's state (not get_rng_state_all: a context on every GPU), restorable anywhere."""
    path = str(tmp_path / "rng.pt")
    save_checkpoint({"rng": rng_state()}, path)
    state = load_checkpoint(path)["rng"]
    assert torch.equal(state["cuda"], fake_cuda.states[0])
    set_rng_state(state)
    assert len(fake_cuda.set_states) == 1 and torch.equal(fake_cuda.set_states[0], fake_cuda.states[0])
    legacy = dict(state, cuda=list(fake_cuda.states))   # written by get_rng_state_all() on 2 GPUs
    set_rng_state(legacy)
    assert torch.equal(fake_cuda.set_states[1], fake_cuda.states[0])


def test_no_file_is_ever_unpickled_in_full():
    """Nothing in the project loads with full unpickling (the original's files are read by the
    restricted unpicklers of tools/utils/legacy_files.py)."""
    import re
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    unsafe = re.compile("weights_only" + r"\s*=\s*False|allow_pickle" + r"\s*=\s*True")
    found = []
    for parent, dirs, names in os.walk(repo):
        skip = ("runs", "data") if parent == repo else ()          # run outputs and datasets, not code
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__" and d not in skip]
        for name in names:
            if name.endswith((".py", ".md", ".txt", ".cfg", ".toml", ".sh")) or name == "Dockerfile":
                path = os.path.join(parent, name)
                with open(path, encoding="utf-8", errors="replace") as handle:
                    found += [f"{os.path.relpath(path, repo)}:{number}" for number, line in enumerate(handle, 1)
                              if unsafe.search(line)]
    assert found == []
