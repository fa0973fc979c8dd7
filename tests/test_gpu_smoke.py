"""benchmarks/gpu_smoke.py away from a GPU: one clear line without CUDA, parts without their requirement skip."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import REPO_ROOT


def test_without_cuda_it_says_so_in_one_line_and_writes_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the smoke test would run")
    result = subprocess.run([sys.executable, "benchmarks/gpu_smoke.py", "--json", str(tmp_path / "smoke.json")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "sees no CUDA GPU" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_parts_whose_requirement_is_missing_are_skipped_with_the_reason(fake_cuda, monkeypatch):
    from benchmarks import gpu_smoke
    from tools.latency import backends
    monkeypatch.setattr(backends, "tensorrt_available", lambda: (False, "tensorrt is not installed"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    rows = gpu_smoke.run_parts(SimpleNamespace(parts=["ddp", "tensorrt"]))
    assert [(r["part"], r["status"]) for r in rows] == [("ddp", "skip"), ("tensorrt", "skip")]
    assert rows[0]["result"] == "1 GPU visible; DDP needs 2" and rows[1]["result"] == "tensorrt is not installed"
    table = gpu_smoke.format_table({"gpu": fake_cuda.name, "gpus": 1, "torch": "t", "cuda": "c", "cudnn": 1,
                                    "tensorrt": None, "onnxruntime": None, "date": "d"}, rows)
    assert table.count("\n| ") == 3 and fake_cuda.name in table
