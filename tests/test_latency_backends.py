"""tools/latency/backends.py: the timing protocol, the PyTorch and ONNX Runtime backends, clear errors."""
import dataclasses

import onnx
import pytest
import torch
import torch.nn as nn

from tools.latency import backends
from tools.latency.backends import (BackendUnavailableError, LatencyError, OnnxExportError, Timing,
                                    export_onnx, make_measurer, measure_interleaved, measure_latency, resolve_backend,
                                    time_callable, time_interleaved)

FAST = dict(calib_s=0.01, budget_s=0.03, warmup=2, repeats=3)


class FakeClock:
    """Every run() advances a virtual clock by ``step`` seconds."""

    def __init__(self, step):
        self.step, self.now, self.begin, self.runs = step, 0.0, 0.0, 0

    def run(self):
        self.runs += 1
        self.now += self.step

    def start(self):
        self.begin = self.now

    def stop(self):
        return self.now - self.begin


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_time_callable_follows_the_original_protocol():
    clock = FakeClock(0.002)
    median, repeats, iterations = time_callable(clock.run, clock, warmup=10, calib_s=1.0, budget_s=6.0, repeats=5)
    # warm-up 10, calibration 1+2+...+512 (first batch >= 1 s), then 6 s worth = 3000 iterations in 5 groups
    assert iterations == 3000 and len(repeats) == 5
    assert median == pytest.approx(2.0)
    assert clock.runs == 10 + 1023 + 3000


def test_slow_runs_cut_the_warm_up_short():
    clock = FakeClock(0.6)
    median, _, iterations = time_callable(clock.run, clock, warmup=10, calib_s=1.0, budget_s=6.0, repeats=5)
    # warm-up stops after 2 runs (1.2 s), calibration 1 + 2 runs, then 6 s / 0.6 s = 10 runs
    assert iterations == 10 and clock.runs == 2 + 3 + 10 and median == pytest.approx(600.0)


def test_time_callable_with_fixed_iterations_skips_calibration():
    clock = FakeClock(0.001)
    _, repeats, iterations = time_callable(clock.run, clock, warmup=0, iterations=10, repeats=5, calib_s=1.0)
    assert iterations == 10 and clock.runs == 10 and repeats == pytest.approx([1.0] * 5)


def test_time_interleaved_gives_every_callable_the_same_phases_of_a_drifting_machine():
    clock = FakeClock(0.001)
    phase = {"slow_from": 0.1015}     # the machine turns 2x slower half-way through the measured slices (below)
    order = []

    def callable_named(name):
        def run():
            order.append(name)
            clock.now += clock.step * (2 if clock.now > phase["slow_from"] else 1)
        return run
    # calibration: 1+2+4+8+16 runs per callable (0.062 s), then 4 slices of 10 runs (10 ms) each in turn
    results = time_interleaved([callable_named("a"), callable_named("b")], clock, warmup=0, calib_s=0.01,
                               budget_s=0.0404, slices=4)
    measured = order[62:]
    assert measured == (["a"] * 10 + ["b"] * 10) * 4          # one slice of each in turn
    for value, slices, iterations in results:
        assert slices == pytest.approx([1.0, 1.0, 2.0, 2.0]) and iterations == 40
        assert value == pytest.approx(1.5)                    # the same for both: the phases cancel
    clock.now, phase["slow_from"] = 0.0, 0.0515    # a: 31 calibration + 20 timed runs; b after that
    sequential = [time_callable(callable_named(name), clock, warmup=0, calib_s=0.01, budget_s=0.0202, repeats=2)[0]
                  for name in "ab"]
    assert sequential == pytest.approx([1.0, 2.0])     # one after the other, b lands in the slow phase alone
    clock.now, phase["slow_from"] = 0.0, 0.1015
    fastest = time_interleaved([callable_named("a"), callable_named("b")], clock, warmup=0, calib_s=0.01,
                               budget_s=0.0404, slices=4, statistic="min")
    assert [value for value, _, _ in fastest] == pytest.approx([1.0, 1.0])
    with pytest.raises(LatencyError, match="unknown statistic 'mean'"):
        time_interleaved([clock.run], clock, statistic="mean")


def test_time_interleaved_takes_one_budget_per_callable():
    clock = FakeClock(0.001)
    results = time_interleaved([clock.run, clock.run], clock, warmup=0, calib_s=0.01, budget_s=[0.041, 0.0041],
                               slices=2)
    assert [iterations for _, _, iterations in results] == [40, 4]
    with pytest.raises(LatencyError, match="budget_s has 3 values for 2 items"):
        time_interleaved([clock.run, clock.run], clock, budget_s=[1.0, 1.0, 1.0])


def test_measure_interleaved_gives_each_model_its_own_input_size():
    models = [nn.Conv2d(3, 4, 3), nn.Conv2d(8, 2, 1)]          # a shared input would fail the second one
    timings = measure_interleaved(models, [(1, 3, 16, 16), (1, 8, 4, 4)], slices=2, calib_s=0.005, budget_s=0.01,
                                  warmup=1)
    assert len(timings) == 2 and all(t.latency_ms > 0 for t in timings)
    with pytest.raises(LatencyError, match="input_size has 1 values for 2 items"):
        measure_interleaved(models, [(1, 3, 16, 16)])


def test_measure_interleaved_times_each_model_on_cpu():
    timings = measure_interleaved([small_net(), nn.Sequential(small_net(), nn.Conv2d(4, 4, 3, padding=1))],
                                  (1, 3, 16, 16), slices=3, calib_s=0.01, budget_s=0.03, warmup=2)
    assert len(timings) == 2 and all(t.latency_ms > 0 and len(t.repeats_ms) == 3 for t in timings)
    assert all(t.backend == "pytorch" and t.device.startswith("CPU") for t in timings)


def test_pytorch_backend_times_a_module_on_cpu():
    timing = measure_latency(small_net(), (1, 3, 16, 16), backend="pytorch", device="cpu", **FAST)
    assert isinstance(timing, Timing) and timing.latency_ms > 0
    assert timing.fps == pytest.approx(1000.0 / timing.latency_ms)
    assert timing.backend == "pytorch" and timing.device.startswith("CPU") and timing.precision == "fp32"
    assert len(timing.repeats_ms) == 3


def test_pytorch_backend_bf16_and_channels_last():
    timing = measure_latency(small_net(), (1, 3, 16, 16), backend="pytorch", precision="bf16", channels_last=True,
                             **FAST)
    assert timing.latency_ms > 0 and timing.precision == "bf16"


def test_auto_falls_back_to_pytorch_without_tensorrt():
    assert resolve_backend("auto", "cpu") == "pytorch"
    measure = make_measurer("auto", "cpu", **FAST)
    assert measure.backend == "pytorch" and measure(small_net(), (1, 3, 8, 8)) > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="tpu"), "unknown latency backend 'tpu'"),
    (dict(precision="fp16"), "only timed on CUDA"),
    (dict(precision="int4"), "unknown precision"),
    (dict(cuda_graphs=True), "cuda_graphs=True needs device='cuda'"),
])
def test_bad_requests_get_one_sentence(kwargs, message):
    with pytest.raises(LatencyError, match=message):
        measure_latency(small_net(), (1, 3, 8, 8), **{"backend": "pytorch", **kwargs})


def test_tensorrt_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backends, "tensorrt_available", lambda: (False, "the tensorrt Python package is not installed"))
    with pytest.raises(BackendUnavailableError, match="tensorrt Python package is not installed.*pytorch"):
        measure_latency(small_net(), (1, 3, 8, 8), backend="tensorrt")


def test_cuda_device_absent_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        measure_latency(small_net(), (1, 3, 8, 8), backend="pytorch", device="cuda")


def test_onnx_export_matches_pytorch_and_onnxruntime_times_it(tmp_path):
    net = small_net().eval()
    path = export_onnx(net, str(tmp_path / "net.onnx"), (1, 3, 16, 16))
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 16, 16]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    timing = measure_latency(net, (1, 3, 16, 16), backend="onnxruntime", **FAST)
    assert timing.backend == "onnxruntime" and timing.latency_ms > 0


def test_onnx_export_failure_names_the_operator(tmp_path):
    class Spectral(nn.Module):
        def forward(self, x):
            return torch.fft.fft2(x).real

    with pytest.raises(OnnxExportError, match="failed at operator aten::fft_fft2"):
        export_onnx(Spectral(), str(tmp_path / "bad.onnx"), (1, 3, 8, 8))
    assert not list(tmp_path.iterdir())


def test_process_clock_measures_cpu_time_and_is_cpu_only():
    timing = measure_latency(small_net(), (1, 3, 16, 16), backend="pytorch", clock="process", **FAST)
    assert timing.latency_ms > 0
    with pytest.raises(LatencyError, match="unknown clock 'gpu'"):
        measure_latency(small_net(), (1, 3, 8, 8), backend="pytorch", clock="gpu")
    with pytest.raises(LatencyError, match="only applies to device='cpu'"):
        backends.make_clock("process", "cuda")


def test_onnxruntime_on_a_gpu_box_without_its_cuda_provider_runs_on_the_cpu(fake_cuda, capsys, monkeypatch):
    """The default device ('auto' = CUDA here) with the CPU build of onnxruntime falls back to
    the CPU provider, says so in one line, and the timing and table meta name the CPU, not the GPU."""
    import onnxruntime
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(backends, "_SAID", set())
    timing = measure_latency(small_net(), (1, 3, 8, 8), backend="onnxruntime", device="auto", **FAST)
    measurer = make_measurer("onnxruntime", "auto")
    assert timing.device.startswith("CPU") and measurer.device.startswith("CPU")
    assert measurer.torch_device == torch.device("cpu")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "onnxruntime-gpu" in lines[0] and "CPU instead of cuda" in lines[0]


def test_cudnn_benchmark_is_restored_after_timing_on_cuda(fake_cuda, monkeypatch):
    """Timing a table miss on CUDA must not leave cudnn.benchmark switched for the search."""
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.backends.cudnn.benchmark)
            return x

    # the model and input stay on the CPU: only the CUDA decisions of measure_pytorch are exercised
    monkeypatch.setattr(backends, "_cast_model", lambda model, *args: model.eval())
    monkeypatch.setattr(backends, "make_input", lambda size, *args: torch.zeros(size))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    timing = measure_latency(Probe(), (1, 3, 4, 4), backend="pytorch", device="cuda", **FAST)
    assert timing.device == fake_cuda.name and seen and all(seen)
    assert torch.backends.cudnn.benchmark is False


# ---- the table of backends: one row per backend, read by every consumer -------------------------------------
def test_every_backend_row_is_complete():
    """Every field filled (callables callable), names and 'auto' ranks unique, and 'auto' always has a backend
    that runs on any device and needs nothing but torch, so it can always pick one."""
    rows = backends.BACKENDS
    names = [row.name for row in rows]
    assert len(names) == len(set(names))
    for row in rows:
        assert isinstance(row, backends.Backend) and row.name and row.name != backends.AUTO
        assert row.description and row.needs and row.devices and row.precisions
        assert set(row.precisions) <= set(backends.PRECISIONS)
        for function in (row.available, row.measure, row.timing_device):
            assert callable(function), (row.name, function)
        usable, why = row.available()
        assert isinstance(usable, bool) and isinstance(why, str) and (usable or why)
        assert row.auto_rank is None or isinstance(row.auto_rank, int)
        assert isinstance(row.interleaves, bool)
    ranks = [row.auto_rank for row in rows if row.auto_rank is not None]
    assert len(ranks) == len(set(ranks))
    assert any(backends.ANY_DEVICE in row.devices and row.available()[0] for row in rows if row.auto_rank is not None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].name = "renamed"                  # frozen, as the operators' rows


def test_a_row_named_auto_or_with_an_unknown_precision_is_refused():
    row = backends.BACKENDS[0]
    fields = {name: getattr(row, name) for name in row.__dataclass_fields__}
    with pytest.raises(ValueError, match="picks a backend"):
        backends.Backend(**dict(fields, name="auto"))
    with pytest.raises(ValueError, match="precisions"):
        backends.Backend(**dict(fields, precisions=("int4",)))


@pytest.mark.parametrize("name", [row.name for row in backends.BACKENDS])
def test_every_backend_usable_here_times_a_module_through_measure_latency(name):
    """Each registered backend, on a device it runs on; one this machine cannot run (TensorRT, or any CUDA-only
    backend on a CPU machine such as CI) is skipped with its reason."""
    row = backends.backend_record(name)
    usable, why = row.available()
    if not usable:
        pytest.skip(f"{name}: {why}")
    device = "cpu" if row.runs_on("cpu") else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{name} times on {row.devices} only and no CUDA device is visible")
    timing = measure_latency(small_net(), (1, 3, 16, 16), backend=name, device=device, **FAST)
    assert timing.backend == name and timing.latency_ms > 0 and timing.precision == "fp32"


def test_an_unknown_backend_is_one_sentence_naming_the_registered_ones():
    message = "unknown latency backend 'openvino'; choose one of auto, pytorch, onnxruntime, tensorrt."
    for call in (lambda: resolve_backend("openvino"), lambda: make_measurer("openvino"),
                 lambda: measure_latency(small_net(), (1, 3, 8, 8), backend="openvino")):
        with pytest.raises(LatencyError) as error:
            call()
        assert str(error.value) == message


@pytest.mark.parametrize("usable, picked", [(True, "tensorrt"), (False, "pytorch")])
def test_auto_keeps_the_original_rule(fake_cuda, monkeypatch, usable, picked):
    """TensorRT on a CUDA device when it imports, else PyTorch; PyTorch on the CPU either way."""
    monkeypatch.setattr(backends, "tensorrt_available", lambda: (usable, "" if usable else "not installed"))
    assert resolve_backend("auto", "cuda") == picked and resolve_backend("auto", "cuda:1") == picked
    assert resolve_backend("auto", "cpu") == "pytorch"


def test_a_usable_cuda_only_backend_refuses_a_cpu_device_in_one_sentence(monkeypatch):
    monkeypatch.setattr(backends, "tensorrt_available", lambda: (True, ""))
    with pytest.raises(LatencyError, match="the tensorrt backend times on cuda devices only, not on 'cpu'"):
        measure_latency(small_net(), (1, 3, 8, 8), backend="tensorrt", device="cpu")


def _made_up_backend(calls, **fields):
    """A backend that exists only in this test: it records each call and reports 2.5 ms."""
    def measure(model, input_size, device="cpu", precision="fp32", channels_last=False, cuda_graphs=False,
                **timing):
        calls.append({"input_size": input_size, "device": device, "precision": precision, "timing": timing})
        return Timing(2.5, [2.5], 1, "made_up", backends.device_name(device), precision)
    row = dict(name="made_up", description="a made-up backend for the tests", needs="nothing real",
               available=lambda: (True, ""), devices=("cpu",), precisions=("fp32",), measure=measure,
               timing_device=backends.resolve_device, auto_rank=-1)
    return backends.Backend(**dict(row, **fields))


def test_a_backend_added_to_the_table_alone_is_measured_through_the_normal_path(fake_cuda, monkeypatch):
    """One row added to BACKENDS (nothing else touched) is accepted by name, picked by 'auto' by its rank,
    dispatched by measure_latency and make_measurer, named in the unknown-name sentence and the docs table, held
    to its device rule, and not interleaved by a table's calibration."""
    from tools.latency.calibrate import interleaved_pair_measurer
    from tools.latency.table import LatencyTable
    calls = []
    monkeypatch.setattr(backends, "BACKENDS", backends.BACKENDS + (_made_up_backend(calls),))
    assert resolve_backend("made_up") == "made_up" and resolve_backend("auto", "cpu") == "made_up"
    timing = measure_latency(small_net(), (1, 3, 8, 8), backend="made_up", device="cpu", budget_s=0.5)
    assert timing.latency_ms == 2.5 and timing.backend == "made_up"
    assert calls == [{"input_size": (1, 3, 8, 8), "device": "cpu", "precision": "fp32", "timing": {"budget_s": 0.5}}]
    measure = make_measurer("made_up", "cpu", budget_s=0.5)
    assert measure(small_net(), (1, 3, 8, 8)) == 2.5 and measure.backend == "made_up"
    assert measure.torch_device == torch.device("cpu")
    with pytest.raises(LatencyError, match="choose one of auto, pytorch, onnxruntime, tensorrt, made_up\\.$"):
        resolve_backend("openvino")
    assert "| `'made_up'` | a made-up backend for the tests | nothing real | cpu | fp32 | 1 |" in \
        backends.backends_markdown()
    with pytest.raises(LatencyError, match="the made_up backend times on cpu devices only, not on 'cuda"):
        measure_latency(small_net(), (1, 3, 8, 8), backend="made_up", device="cuda")
    assert interleaved_pair_measurer(LatencyTable(measurer=measure)) is None
    assert len(calls) == 2


def test_an_unusable_registered_backend_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(backends, "BACKENDS", backends.BACKENDS + (
        _made_up_backend([], available=lambda: (False, "it is made up"), auto_rank=None),))
    assert resolve_backend("auto", "cpu") == "pytorch"       # 'auto' passes over it (and it has no rank)
    with pytest.raises(BackendUnavailableError, match="the made_up backend needs nothing real, but it is made up; "
                                                      "use latency_backend='pytorch'"):
        backends.require_available("made_up")


def test_the_docs_hold_the_backends_table_as_the_code_makes_it():
    import os
    from tests.helpers import REPO_ROOT
    with open(os.path.join(REPO_ROOT, "docs", "usage.md"), encoding="utf-8") as handle:
        assert backends.backends_markdown() in handle.read()
    with open(os.path.join(REPO_ROOT, "docs", "configs.md"), encoding="utf-8") as handle:
        row = next(line for line in handle if line.startswith("| `latency_backend` |"))
    assert all(f"`'{record.name}'`" in row for record in backends.BACKENDS)
