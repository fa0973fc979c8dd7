"""benchmarks/bench_original_search.py without the original code: the checkout check and the latency stub."""
import os
import subprocess
import sys

import pytest

from tools.pipeline import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "bench_original_search.py")


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_original_search.py")


def test_empty_folder_is_refused_before_anything_runs(bench, tmp_path):
    out = tmp_path / "out.json"
    with pytest.raises(bench.OriginalCheckoutError, match=r"does not hold search/model_search\.py; pass the root"):
        bench.main(["--original", str(tmp_path), "--json", str(out)])
    assert sorted(os.listdir(tmp_path)) == []


def test_a_checkout_without_tools_names_the_missing_file(bench, tmp_path):
    (tmp_path / "search").mkdir()
    for name in ("model_search.py", "architect.py", "operations.py"):
        (tmp_path / "search" / name).write_text("")
    with pytest.raises(FileNotFoundError, match=r"does not hold tools/utils/init_func\.py"):
        bench.main(["--original", str(tmp_path)])


def test_command_line_prints_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, "--original", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: --original {tmp_path} does not hold search/model_search.py; pass the "
                                   "root folder of a VITA-Group/FasterSeg checkout (the one holding search/ and "
                                   "tools/).")


def test_latency_stub_counts_misses_and_has_no_tensorrt(bench):
    stub = bench.latency_stub()
    assert not hasattr(stub, "compute_latency_ms_tensorrt")
    assert stub.compute_latency_ms_pytorch(object(), [1, 8, 32, 64]) == 0.0
    assert stub.MISS_CALLS == [("object", (1, 8, 32, 64))]


def test_default_table_is_the_published_one(bench):
    entries = bench.lut_entries(None)
    assert len(entries) == 667
    assert entries["BasicResidual1x_H128_W256_Cin32_Cout128_stride2_dilation1"] == 0.09723017067656016
