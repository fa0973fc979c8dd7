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
