"""Shared fixtures: where the reference data lives, and a fixed seed for every test."""
import os

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA = os.path.join(REPO_ROOT, "tests", "data")
REFERENCE_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "reference")


@pytest.fixture
def test_data_dir():
    """Small reference files copied into the project (published arch files, figures, derivation cases...)."""
    return TEST_DATA


@pytest.fixture
def reference_dir():
    """The large equivalence files in ../shared/reference; tests using them skip when it is absent."""
    if not os.path.isdir(REFERENCE_DIR):
        pytest.skip(f"{REFERENCE_DIR} is absent (it sits beside the project in CI, not in a user's clone)")
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


class FakeCuda:
    """What the faked CUDA runtime was asked: RNG states set, and the calls that must never happen."""

    def __init__(self, name, count):
        self.name, self.count = name, count
        self.states = [torch.ByteTensor([index] * 8) for index in range(count)]
        self.set_states = []


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CPU-only torch that believes it has 2 initialised GPUs named 'NVIDIA Fake GPU' (current: 0).

    For the CUDA paths that only decide (devices, names, tables, RNG bookkeeping); nothing runs on a GPU.
    Asking for every GPU's RNG state at once fails the test (it makes a CUDA context on each of them).
    """
    fake = FakeCuda("NVIDIA Fake GPU", 2)

    def every_gpu(*args, **kwargs):
        raise AssertionError("a CUDA call on every visible GPU")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: fake.count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: fake.name)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": fake.states[0].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": fake.set_states.append(state))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", every_gpu)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", every_gpu)
    return fake
