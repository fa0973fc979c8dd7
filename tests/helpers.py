"""What several test files import: where the project, its test data and the reference files are, and the fake
CUDA runtime's record. Fixtures stay in tests/conftest.py (pytest finds them there); import these as
``from tests.helpers import REPO_ROOT`` (conftest.py is pytest's, not a module to import from).
"""
import os

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA = os.path.join(REPO_ROOT, "tests", "data")
REFERENCE_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "reference")


class FakeCuda:
    """What the faked CUDA runtime was asked: RNG states set, and the calls that must never happen."""

    def __init__(self, name, count):
        self.name, self.count = name, count
        self.states = [torch.ByteTensor([index] * 8) for index in range(count)]
        self.set_states = []
