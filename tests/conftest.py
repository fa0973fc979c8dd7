"""Shared fixtures (where the reference data lives, a fixed seed for every test, a faked CUDA runtime) and the
markers of the test kinds: ``slow`` (end to end), ``reference`` (contract tests against ../shared/reference),
``gpu`` (needs CUDA). Constants and classes that tests import live in tests/helpers.py.
"""
import os

import pytest
import torch

from tests.helpers import REFERENCE_DIR, TEST_DATA, FakeCuda

# A test that requests one of these fixtures reads ../shared/reference (student_reference: test_derived.py).
REFERENCE_FIXTURES = {"reference_dir", "student_reference"}
# End to end: fixtures that run a whole search, training or torchrun launch; a test that runs one itself carries
# @pytest.mark.slow where it is defined (tests/test_layers.py checks that every name here is a fixture).
SLOW_FIXTURES = {"pretrain_then_search", "teacher_run", "student_run", "two_epoch_run", "two_ranks"}


def pytest_collection_modifyitems(config, items):
    """Mark each test by what it uses (pytest.ini registers the markers), so ``-m "not slow"`` is a quick run;
    a ``gpu`` test is skipped, with the reason, where torch sees no CUDA."""
    no_cuda = pytest.mark.skip(reason="needs a CUDA GPU") if not torch.cuda.is_available() else None
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & REFERENCE_FIXTURES:
            item.add_marker(pytest.mark.reference)
        if fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if no_cuda is not None and item.get_closest_marker("gpu") is not None:
            item.add_marker(no_cuda)


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
