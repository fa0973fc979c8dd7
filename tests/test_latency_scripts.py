"""latency/run_latency.py, latency/latency_lookup_table.py, latency/export_onnx.py and configs/latency.py."""
import importlib.util
import json
import os

import numpy as np
import onnxruntime
import pytest

from tests.reliability_helpers import Payload
from tools.config import ConfigError, load_config
from tools.latency.table import TableError, read_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["budget_s=0.05", "calib_s=0.01", "lut_budget_s=0.02", "lut_calib_s=0.005", "plots=False"]


def script(name):
    spec = importlib.util.spec_from_file_location(f"latency_{name}", os.path.join(REPO, "latency", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_modes_fill_the_original_keys():
    both = load_config("latency")
    assert both.arch_idx == [0, 1] and both.stem_head_width == [(1, 1), (8. / 12, 8. / 12)]
    student = load_config("latency", ["mode='student'"])
    assert student.arch_idx == [1] and student.stem_head_width == [(8. / 12, 8. / 12)]
    assert (student.image_height, student.image_width, student.Fch, student.layers) == (1024, 2048, 12, 16)
    assert student.save == "1024x2048_student"
    with pytest.raises(ValueError, match="mode must be"):
        load_config("latency", ["mode='both_nets'"])
    with pytest.raises(ConfigError, match="Did you mean: latency_backend"):
        load_config("latency", ["latency_backnd='pytorch'"])


def test_run_latency_published_student_report(tmp_path):
    out = str(tmp_path / "report.json")
    report = script("run_latency").main(["mode='student'", "measure=False", f"json='{out}'",
                                         f"output_root='{tmp_path}'", "plots=True"])
    with open(out) as handle:
        saved = json.load(handle)
    assert list(saved) == ["student"] and saved["student"]["lut_latency_ms"] == report["student"]["lut_latency_ms"]
    student = saved["student"]
    assert {"lasts", "ops", "paths", "widths", "params", "params_eval", "flops_g", "input_size", "lut_latency_ms",
            "latency_ms", "fps", "backend", "device", "precision"} <= set(student)
    assert student["lasts"] == [2, 1] and student["params"] == 4385689 and student["params_eval"] == 3454643
    assert student["ops"][0] == [3, 3, 4, 2, 4, 4, 4, 4, 4, 4] and student["paths"][1] == [0] * 6 + [1] * 3
    assert student["flops_g"] == pytest.approx(28.032106496, abs=1e-9)
    assert student["input_size"] == [1, 3, 1024, 2048]
    assert student["lut_latency_ms"] == pytest.approx(5.701835681642834, abs=1e-9)
    assert student["latency_ms"] is None and student["fps"] is None and student["backend"] == "pytorch"
    run_dir = [p for p in tmp_path.iterdir() if p.is_dir()][0]
    assert {"ops_1_2.png", "ops_1_1.png", "path_width1.png", "path_width_all1.png", "log.txt"} <= set(
        os.listdir(run_dir))


def test_run_latency_original_npy_legacy_b2_and_other_resolution(tmp_path, test_data_dir):
    main = script("run_latency").main
    npy = os.path.join(test_data_dir, "latency_lookup_table_1080ti.npy")
    report = main(["mode='student'", "measure=False", "legacy_b2=True", f"lut_path='{npy}'",
                   f"output_root='{tmp_path}'"] + FAST)
    assert report["student"]["lut_latency_ms"] == pytest.approx(6.4139770511337275, abs=1e-9)
    report = main(["mode='student'", "image_height=64", "image_width=128", f"output_root='{tmp_path}'"] + FAST)
    student = report["student"]
    assert student["lut_latency_ms"] is None and student["input_size"] == [1, 3, 64, 128]
    assert student["latency_ms"] > 0 and student["fps"] == pytest.approx(1000 / student["latency_ms"])
    assert student["device"].startswith("CPU") and student["precision"] == "fp32"


def test_run_latency_refuses_a_table_of_another_resolution(tmp_path, test_data_dir):
    npy = os.path.join(test_data_dir, "latency_lookup_table_1080ti.npy")
    with pytest.raises(TableError, match="image_height=512 image_width=1024"):
        script("run_latency").main(["mode='student'", "image_height=512", "image_width=1024", f"lut_path='{npy}'",
                                    "measure=False", f"output_root='{tmp_path}'"] + FAST)


def test_lookup_table_script_makes_a_resumable_calibrated_table_that_run_latency_reads(tmp_path):
    lut = str(tmp_path / "lut.json")
    args = ["mode='student'", "image_height=64", "image_width=128", "device='cpu'", "latency_backend='pytorch'",
            "lut_plan='derived'", f"lut_path='{lut}'", "lut_calibration_networks=1",
            "lut_calibration_budget_s=0.02"] + FAST
    script("latency_lookup_table").main(args)
    table = read_json(lut)
    assert table.meta["resolution"] == [64, 128] and table.meta["backend"] == "pytorch"
    assert table.meta["glue"] is True and table.meta["timing"]["rounds"] == 2
    assert table.meta["timing"]["budget_s"] == 0.02 and table.meta["timing"]["threads"] >= 1
    # the published student's 28 reads, its 8 glue reads (x2 upsampling + concatenation before each of its
    # three refinements, the branch concatenation, the final x8), and what the calibration network read
    assert "head_H8_W16_Cin128_Cout19" in table and "interp_H8_W16_C19_factor8" in table
    assert "cat_H8_W16_Cin64_Cout128" in table and len(table) > 28 + 8
    calibration = table.meta["calibration"]
    assert [row["seed"] for row in calibration["networks"]] == [1000] and calibration["pairing"] == "interleaved"
    row = calibration["networks"][0]
    assert len(row["paired_ratios"]) == 2 and row["measured_ms"] == min(row["measured_rounds_ms"])
    assert calibration["scale"] == pytest.approx(sum(row["paired_ratios"]) / 2)
    assert calibration["network"]["layers"] == 16 and calibration["network"]["stem_head_width"] == [8 / 12, 8 / 12]
    entries = dict(table.entries)
    script("latency_lookup_table").main(args)
    again = read_json(lut)
    assert again.entries == entries and again.meta["calibration"] == calibration   # nothing new: kept as it was
    report = script("run_latency").main(["mode='student'", "image_height=64", "image_width=128", "measure=False",
                                         f"lut_path='{lut}'", f"output_root='{tmp_path}'"] + FAST)
    assert report["student"]["lut_latency_ms"] > 0 and "calibrated x" in report["student"]["lut_table"]


def test_export_onnx_script_random_weights_by_name(tmp_path):
    meta = script("export_onnx").main(["--random-weights", "--size", "64", "128", "--no-eval", "--exporter",
                                       "torchscript", "--dynamic-batch", "--dynamic-hw", "--argmax", "--out",
                                       str(tmp_path)])
    assert meta["source"]["weights"] == "random (untrained)" and meta["output"]["kind"] == "class_ids_uint8"
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [["batch", 3, "height", "width"]]
    out = session.run(None, {"input": np.zeros((2, 3, 96, 160), np.float32)})[0]
    assert out.shape == (2, 96, 160) and out.dtype == np.uint8 and out.max() < 19



def test_a_malicious_npy_table_is_refused_and_nothing_runs(tmp_path):
    """The issue's reproduction: ``run_latency.py measure=False lut_path=evil.npy`` must not run the payload."""
    import numpy as np

    from tools.latency.table import import_npy, load_table
    pwned = str(tmp_path / "pwned")
    evil = str(tmp_path / "evil.npy")
    np.save(evil, np.array(Payload(pwned), dtype=object))
    words = r"latency lookup table .*evil.npy asks to run 'posix.mkdir' when loaded.*refused without running anything"
    for attempt in (lambda: import_npy(evil), lambda: load_table(evil, resolution=(1024, 2048)),
                    lambda: script("run_latency").main(["measure=False", f"lut_path='{evil}'",
                                                        f"output_root='{tmp_path / 'runs'}'", "plots=False"])):
        with pytest.raises(TableError, match=words):
            attempt()
    assert not os.path.exists(pwned)
