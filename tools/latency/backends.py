"""Latency measurement backends, one :class:`Backend` row each in :data:`BACKENDS` (bottom of this file).

Replaces the original's ``compute_latency_ms_pytorch`` / ``compute_latency_ms_tensorrt``
(tools/utils/darts_utils.py), which always moved the model to CUDA, used the TensorRT 5 API and reported one
mean. The protocol is the same (eval mode, no_grad, 10 warm-up runs, an iteration count calibrated by doubling
until a run takes ``calib_s`` seconds, then scaled to a time budget; device synchronisation on CUDA), and the
measured iterations are split into ``repeats`` groups whose median per-iteration time is reported, which is
robust to a stray slow group on a shared machine.

The backends are data: ``BACKENDS`` is the one table of them, and the names ``latency_backend`` accepts (and
its error message), what ``backend="auto"`` picks (as the original: TensorRT when it and CUDA import, else
PyTorch), the dispatch of :func:`measure_latency`, the device a table records, whether a table's calibration may
time slice by slice, and the backends table of docs/usage.md (:func:`backends_markdown`) are all read from it.
Adding a backend = its measure function plus one ``Backend`` row; nothing else lists the backends.
"""
import contextlib
import copy
import functools
import io
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from tools.utils.errors import UserError
from tools.utils import device as device_utils
from tools.utils.fileio import atomic_path

AUTO = "auto"             # not a backend: the rule that picks one (:func:`resolve_backend`)
ANY_DEVICE = "any"        # ``Backend.devices``: every device torch runs on
PRECISIONS = ("fp32", "fp16", "bf16")


class LatencyError(UserError, ValueError):
    """A latency request that cannot be served; the message says which value and what to do."""


class BackendUnavailableError(LatencyError):
    """The requested backend (or its device) is not installed on this machine."""


class OnnxExportError(LatencyError):
    """torch.onnx.export failed; the message names the operator that could not be exported."""


@dataclass
class Timing:
    """One latency measurement: the median over repeats of the mean time per iteration, in ms."""
    latency_ms: float
    repeats_ms: list = field(default_factory=list)
    iterations: int = 0
    backend: str = "pytorch"
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def fps(self):
        return 1000.0 / self.latency_ms if self.latency_ms > 0 else float("inf")


def resolve_device(device="cpu"):
    """The device to time on (:func:`tools.utils.device.resolve_device`: a bare 'cuda' stays torch's current
    device); a missing GPU is a :class:`BackendUnavailableError`."""
    return device_utils.resolve_device(device, error=BackendUnavailableError)


def device_name(device="cpu"):
    """Human-readable name of the device (GPU name, or the CPU model) recorded in tables and reports."""
    device = resolve_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return "CPU " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU " + (platform.processor() or platform.machine())


_SAID = set()


def say_once(message):
    """Print ``message`` on stderr once per process: a fallback the user must know about, said in one line."""
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr, flush=True)


def tensorrt_available():
    """True when TensorRT and a CUDA device both import; the reason string otherwise."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA device is visible to torch"
    return True, ""


def resolve_backend(backend="auto", device="cpu"):
    """The name of a registered backend; 'auto' is the one :func:`_auto_backend` picks for ``device``."""
    if backend != AUTO:
        return backend_record(backend).name
    return _auto_backend(device)


def backend_record(name):
    """The row of :data:`BACKENDS` named ``name``; any other name is one sentence naming the registered ones."""
    for record in BACKENDS:
        if record.name == name:
            return record
    choices = (AUTO,) + tuple(record.name for record in BACKENDS)
    raise LatencyError(f"unknown latency backend '{name}'; choose one of {', '.join(choices)}.")


def _auto_backend(device):
    """The usable backend of lowest ``auto_rank`` that runs on ``device``: with the table's ranks, the original's
    rule (TensorRT on a CUDA device when it imports, else PyTorch)."""
    device = resolve_device(device)
    for record in _auto_order():
        if record.runs_on(device) and record.available()[0]:
            return record.name
    raise LatencyError(f"no latency backend that 'auto' may pick runs on '{device}' here; name one with "
                       f"latency_backend.")


def _auto_order():
    """The backends 'auto' may pick, in the order it tries them (``auto_rank``)."""
    return sorted((record for record in BACKENDS if record.auto_rank is not None), key=lambda r: r.auto_rank)


def require_available(name):
    """Raise :class:`BackendUnavailableError` when backend ``name`` cannot run here, saying what it needs and why
    (a backend's measure function calls it before any work)."""
    record = backend_record(name)
    ok, why = record.available()
    if not ok:
        raise BackendUnavailableError(f"the {name} backend needs {record.needs}, but {why}; use "
                                      "latency_backend='pytorch' (or 'auto', which falls back to it).")


def _check_precision(precision, device):
    if precision not in PRECISIONS:
        raise LatencyError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise LatencyError("precision 'fp16' is only timed on CUDA (CPU fp16 convolutions are emulated and "
                           "meaningless); use precision='bf16' or 'fp32' on CPU.")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WallClock:
    """perf_counter timing with a device synchronisation before reading the clock (CUDA is asynchronous)."""

    def __init__(self, sync=lambda: None):
        self.sync = sync
        self._start = 0.0

    def start(self):
        self.sync()
        self._start = time.perf_counter()

    def stop(self):
        self.sync()
        return time.perf_counter() - self._start


class ProcessClock:
    """CPU time of this process (all its threads). On a machine shared with other jobs, the CPU time of a
    single-threaded CPU run approximates its latency on an idle machine far better than wall-clock time."""

    def __init__(self):
        self._start = 0.0

    def start(self):
        self._start = time.process_time()

    def stop(self):
        return time.process_time() - self._start


CLOCKS = ("wall", "process")


def make_clock(name, device, sync=lambda: None):
    """'wall' (perf_counter + sync, the default) or 'process' (CPU time, CPU devices only)."""
    if name not in CLOCKS:
        raise LatencyError(f"unknown clock '{name}'; choose one of {', '.join(CLOCKS)}.")
    if name == "process":
        if torch.device(device).type != "cpu":
            raise LatencyError("clock='process' measures CPU time and only applies to device='cpu'.")
        return ProcessClock()
    return WallClock(sync)


class CudaEventClock:
    """CUDA-event timing on one stream (used by the TensorRT backend)."""

    def __init__(self, stream):
        self.stream = stream
        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def start(self):
        self._events[0].record(self.stream)

    def stop(self):
        self._events[1].record(self.stream)
        self._events[1].synchronize()
        return self._events[0].elapsed_time(self._events[1]) / 1000.0


TIMING_DEFAULTS = {"budget_s": 6.0, "calib_s": 1.0, "repeats": 5, "statistic": "median", "clock": "wall"}


def _warm_up(run, clock, warmup=10, calib_s=1.0):
    """``warmup`` runs (the original: 10), cut short after ``calib_s`` seconds (at least 2 runs) so a network
    taking seconds per run on a CPU is not warmed for a minute."""
    clock.start()
    for done in range(1, warmup + 1):
        run()
        if done >= 2 and clock.stop() >= calib_s:
            break


def _rate(run, clock, calib_s=1.0):
    """Iterations per second of ``run``: a batch starting at one iteration (the original started at 100),
    doubled until it takes ``calib_s``."""
    count = 1
    while True:
        clock.start()
        for _ in range(count):
            run()
        elapsed = clock.stop()
        if elapsed >= calib_s:
            return count / max(elapsed, 1e-9)
        count *= 2


def _check_statistic(statistic):
    """Refuse an unknown statistic before any timing is spent."""
    if statistic not in ("median", "min"):
        raise LatencyError(f"unknown statistic '{statistic}'; use 'median' or 'min'.")


def _statistic(values, statistic):
    _check_statistic(statistic)
    return statistics.median(values) if statistic == "median" else min(values)


def time_callable(run, clock=None, warmup=10, iterations=None, calib_s=1.0, budget_s=6.0, repeats=5,
                  statistic="median"):
    """Time ``run()`` with the original protocol; returns (median ms, per-repeat ms, iterations).

    After the warm-up (:func:`_warm_up`) and, unless ``iterations`` is given, the calibration (:func:`_rate`), the
    measured iteration count is ``budget_s`` worth of iterations (the original used 6 s), at least ``repeats``.
    ``statistic``: the median of the repeat groups (default) or their minimum (robust when other jobs share the
    machine).
    """
    clock = clock or WallClock()
    _check_statistic(statistic)
    _warm_up(run, clock, warmup, calib_s)
    if iterations is None:
        iterations = max(int(_rate(run, clock, calib_s) * budget_s), repeats)
    per_repeat = max(iterations // repeats, 1)
    results = []
    for _ in range(repeats):
        clock.start()
        for _ in range(per_repeat):
            run()
        results.append(clock.stop() / per_repeat * 1000.0)
    return _statistic(results, statistic), results, per_repeat * repeats


def _per_item(value, count, name):
    """``value`` repeated ``count`` times, or ``value`` itself when it is already a list of ``count`` items."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise LatencyError(f"{name} has {len(value)} values for {count} items; give one value or one per item.")
        return list(value)
    return [value] * count


def time_interleaved(runs, clock=None, warmup=10, calib_s=0.2, budget_s=2.0, slices=10, statistic="median"):
    """Time several callables in turn, one slice of each at a time; returns [(ms, per-slice ms, iterations)].

    Why: the speed of a shared VM drifts in phases of tens of seconds (one network at 128x256 on 2 threads:
    15-27 ms over 45 s). Timed one after the other, each callable lands in one phase and the ranking of similar
    callables measures the phases: 20 random networks ranked against their own second measurement with
    Spearman 0.55-0.88. With each one's ``budget_s`` cut into ``slices`` taken in turn, every callable is
    sampled across the whole window: 0.985 on the same machine (docs/benchmarks.md). ``statistic``
    (median or min) is taken over the slices. ``budget_s``: seconds per callable, one number or one per callable
    (the table's calibration gives a whole network more than each of its operators).
    """
    clock = clock or WallClock()
    _check_statistic(statistic)
    slices = max(int(slices), 1)
    budgets = _per_item(budget_s, len(runs), "budget_s")
    per_slice = []
    for run, budget in zip(runs, budgets):
        _warm_up(run, clock, warmup, calib_s)
        per_slice.append(max(int(_rate(run, clock, calib_s) * budget / slices), 1))
    samples = [[] for _ in runs]
    for _ in range(slices):
        for run, count, times in zip(runs, per_slice, samples):
            clock.start()
            for _ in range(count):
                run()
            times.append(clock.stop() / count * 1000.0)
    return [(_statistic(times, statistic), times, count * slices) for times, count in zip(samples, per_slice)]


def _cast_model(model, device, precision, channels_last):
    """An eval-mode copy on ``device`` in ``precision`` (the caller's model is left as it was)."""
    model = copy.deepcopy(model).eval().to(device)
    if precision == "fp16":
        model = model.half()
    elif precision == "bf16":
        model = model.to(torch.bfloat16)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_input(input_size, device="cpu", precision="fp32", channels_last=False, seed=0):
    """A seeded random input of ``input_size`` (N, C, H, W) in the dtype of ``precision``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_size, generator=generator)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    x = x.to(device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@contextlib.contextmanager
def _cudnn_for_timing(device):
    """The original's timing set-up on CUDA (cudnn on, benchmark mode); restored after, so a search keeps its own."""
    saved = torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark = saved
        if device.type == "cuda":
            torch.cuda.empty_cache()


def measure_pytorch(model, input_size, device="cpu", precision="fp32", channels_last=False, cuda_graphs=False,
                    clock="wall", **timing):
    """Eager PyTorch latency of ``model`` on ``input_size``; ``cuda_graphs`` replays a captured CUDA graph."""
    device = resolve_device(device)
    timer = make_clock(clock, device, lambda: _sync(device))
    _check_precision(precision, device)
    if cuda_graphs and device.type != "cuda":
        raise LatencyError("cuda_graphs=True needs device='cuda'; CUDA graphs do not exist on CPU.")
    with _cudnn_for_timing(device):
        model = _cast_model(model, device, precision, channels_last)
        x = make_input(input_size, device, precision, channels_last)
        with torch.no_grad():
            run = _capture_cuda_graph(model, x, device) if cuda_graphs else functools.partial(model, x)
            median, repeats, iterations = time_callable(run, timer, **timing)
    return Timing(median, repeats, iterations, "pytorch", device_name(device), precision)


def measure_interleaved(models, input_size, device="cpu", precision="fp32", clock="wall", **timing):
    """Eager PyTorch latency of several models timed in turn, slice by slice (:func:`time_interleaved`);
    returns a :class:`Timing` per model (``repeats_ms``: the per-slice times).

    For comparing models on a machine whose speed drifts (benchmarks/bench_lut_fidelity.py, the table's
    calibration): all of them see the same phases. ``input_size``: one (N, C, H, W) for all models or a list of
    one per model. ``timing``: budget_s (per model: one number or a list), slices, statistic, warmup, calib_s.
    """
    device = resolve_device(device)
    timer = make_clock(clock, device, lambda: _sync(device))
    _check_precision(precision, device)
    per_model = isinstance(input_size[0], (list, tuple))
    sizes = _per_item(list(input_size), len(models), "input_size") if per_model else [tuple(input_size)] * len(models)
    with _cudnn_for_timing(device), torch.no_grad():
        runs = [functools.partial(_cast_model(model, device, precision, False), make_input(size, device, precision))
                for model, size in zip(models, sizes)]
        results = time_interleaved(runs, timer, **timing)
    return [Timing(value, slices, iterations, "pytorch", device_name(device), precision)
            for value, slices, iterations in results]


def _capture_cuda_graph(model, x, device):
    with torch.cuda.device(device):   # the capture stream is made on the current device: make it ``device``
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
    return graph.replay


def _first_output(output):
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def _failing_operator(message):
    match = re.search(r"operator '([^']+)'", message) or re.search(r"(aten::[A-Za-z0-9_.]+)", message)
    return match.group(1) if match else "unknown operator"


@contextlib.contextmanager
def _quiet():
    """Silence the tracer's per-operator warnings and its graph dumps (a failure is re-raised as one sentence);
    its deprecation warning is not hidden: it is re-issued as a FutureWarning (docs/differences.md LT7)."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, (DeprecationWarning, FutureWarning)) and "ONNX export" in str(warning.message):
            warnings.warn(f"{str(warning.message).splitlines()[0]} (latency timing exports use torch's TorchScript "
                          f"ONNX exporter for speed, docs/differences.md LT7; the deployment export of "
                          f"latency/export_onnx.py uses dynamo=True)", FutureWarning, stacklevel=3)


def export_onnx(model, path, input_size, opset=17, check=True, atol=1e-3, rtol=1e-3):
    """Export ``model`` (eval, static batch) to ONNX at ``path`` and check ONNX Runtime reproduces PyTorch.

    Uses the TorchScript exporter (``dynamo=False``): the derived networks are plain modules and this exporter
    needs no extra package. A failed export raises :class:`OnnxExportError` naming the operator.
    """
    model = copy.deepcopy(model).eval().cpu()
    x = make_input(input_size)
    with atomic_path(path) as tmp:
        try:
            with _quiet(), torch.no_grad():
                torch.onnx.export(model, (x,), tmp, input_names=["input"], output_names=["output"],
                                  opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as error:  # the exporter raises many types; all become one sentence
            raise OnnxExportError(f"ONNX export of {type(model).__name__} failed at operator "
                                  f"{_failing_operator(str(error))} (opset {opset}): "
                                  f"{str(error).splitlines()[0]}; try another opset or replace that operator."
                                  ) from error
    if check:
        check_onnx_output(model, path, x, atol=atol, rtol=rtol)
    return path


def _import_ort():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError("onnxruntime is not installed; pip install onnxruntime.") from error
    return onnxruntime


def ort_device(device="cpu"):
    """The device ONNX Runtime runs on when ``device`` is asked for: that CUDA device when onnxruntime has its
    CUDA provider (the onnxruntime-gpu build), else the CPU; a CUDA request served on the CPU is said in one
    line (the default device 'auto' is CUDA on a GPU box, where the CPU build of onnxruntime is common)."""
    device = resolve_device(device)
    if device.type != "cuda":
        return torch.device("cpu")
    if "CUDAExecutionProvider" in _import_ort().get_available_providers():
        return device
    say_once(f"onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu for it): ONNX Runtime "
             f"runs on the CPU instead of {device}.")
    return torch.device("cpu")


def ort_session(path, device="cpu", threads=None):
    """An ONNX Runtime session on the CPU provider, or on the CUDA provider of ``device`` (see :func:`ort_device`)."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    device = ort_device(device)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        providers = [("CUDAExecutionProvider", {"device_id": index})] + providers
    return ort.InferenceSession(path, options, providers=providers)


def check_onnx_output(model, path, x, atol=1e-3, rtol=1e-3):
    """Raise when the ONNX model's output differs from PyTorch's beyond tolerance (relative to its scale)."""
    with torch.no_grad():
        expected = _first_output(model(x)).float().numpy()
    got = ort_session(path).run(None, {"input": x.numpy()})[0]
    scale = max(float(np.abs(expected).max()), 1.0)
    err = float(np.abs(got - expected).max())
    if got.shape != expected.shape or err > atol * scale + rtol * scale:
        raise OnnxExportError(f"the ONNX model {path} differs from PyTorch (max abs diff {err:.3g}, shape "
                              f"{got.shape} vs {expected.shape}); the export is not trustworthy.")
    return err


def onnxruntime_available():
    """(True, "") when onnxruntime imports; (False, the reason) otherwise."""
    try:
        _import_ort()
    except BackendUnavailableError:
        return False, "the onnxruntime Python package is not installed"
    return True, ""


def measure_onnxruntime(model, input_size, device="cpu", precision="fp32", onnx_path=None, opset=17,
                        channels_last=False, cuda_graphs=False, **timing):
    """Export to ONNX (output checked against PyTorch) and time ONNX Runtime's session.run.

    ``channels_last`` and ``cuda_graphs`` shape PyTorch's eager run, which an exported graph does not have: they
    are accepted and ignored, so one set of options serves every backend.
    """
    precisions = backend_record("onnxruntime").precisions
    if precision not in precisions:
        raise LatencyError(f"the onnxruntime backend times {' or '.join(precisions)} graphs; precision '{precision}' "
                           f"is not supported (int8 comes from tools.latency.fast.quantize_onnx_int8).")
    with tempfile.TemporaryDirectory() as tmpdir:
        path = onnx_path or os.path.join(tmpdir, "model.onnx")
        if onnx_path is None or not os.path.exists(onnx_path):
            export_onnx(model, path, input_size, opset=opset)
        return time_onnx_file(path, input_size, device=device, **timing)


def time_onnx_file(path, input_size, device="cpu", precision="fp32", clock="wall", threads=None, **timing):
    """Time an existing ONNX file with ONNX Runtime (used for fp32 and quantised int8 graphs)."""
    device = ort_device(device)
    session = ort_session(path, device, threads=threads)
    feed = {session.get_inputs()[0].name: make_input(input_size).numpy()}
    median, repeats, iterations = time_callable(lambda: session.run(None, feed), make_clock(clock, device),
                                                **timing)
    return Timing(median, repeats, iterations, "onnxruntime", device_name(device), precision)


def measure_tensorrt(model, input_size, device="cuda", precision="fp32", opset=17, workspace_gb=1.0, clock="wall",
                     channels_last=False, cuda_graphs=False, **timing):
    """Build a TensorRT engine from the ONNX export (8.6 or 10 API) and time it with CUDA events.

    ``clock`` must be 'wall' (CUDA events are the only clock here); ``channels_last`` and ``cuda_graphs`` are
    PyTorch's eager options, ignored as by :func:`measure_onnxruntime`.
    """
    if clock != "wall":
        raise LatencyError("the tensorrt backend is timed with CUDA events; clock must be 'wall'.")
    require_available("tensorrt")
    precisions = backend_record("tensorrt").precisions
    if precision not in precisions:
        raise LatencyError(f"TensorRT is timed in {' or '.join(precisions)}, not '{precision}'.")
    device = resolve_device(device)
    with torch.cuda.device(device):   # TensorRT builds and runs on the current CUDA device: make it ``device``
        with tempfile.TemporaryDirectory() as tmpdir:
            path = export_onnx(model, os.path.join(tmpdir, "model.onnx"), input_size, opset=opset)
            engine = _build_trt_engine(path, precision, workspace_gb)
        run, stream = _trt_runner(engine, device, input_size)
        median, repeats, iterations = time_callable(run, CudaEventClock(stream), **timing)
    return Timing(median, repeats, iterations, "tensorrt", device_name(device), precision)


def _build_trt_engine(onnx_path, precision, workspace_gb):
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise OnnxExportError(f"TensorRT could not parse the ONNX export: {errors}.")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise LatencyError("TensorRT failed to build an engine from the ONNX export (see its log above).")
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def _trt_runner(engine, device, input_size):
    """Buffers as torch CUDA tensors: the input holds the same seeded input as the other backends, outputs are
    empty. TensorRT 10 uses named tensors, 8.6 binding indices. The engine runs on its own stream, which first
    waits for the default stream (where the buffers were filled)."""
    import tensorrt as trt
    context = engine.create_execution_context()
    stream = torch.cuda.Stream(device)
    buffers = []

    def buffer(shape, trt_dtype, is_input):
        dtype = torch.from_numpy(np.zeros(1, trt.nptype(trt_dtype))).dtype
        shape = tuple(shape)
        if is_input:
            buffers.append(make_input(shape if all(d > 0 for d in shape) else input_size, device).to(dtype))
        else:
            buffers.append(torch.empty(shape, dtype=dtype, device=device))
        return buffers[-1].data_ptr()

    if hasattr(engine, "num_io_tensors"):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            context.set_tensor_address(name, buffer(engine.get_tensor_shape(name), engine.get_tensor_dtype(name),
                                                    is_input))

        def run():
            context.execute_async_v3(stream.cuda_stream)
    else:
        bindings = [buffer(engine.get_binding_shape(i), engine.get_binding_dtype(i), engine.binding_is_input(i))
                    for i in range(engine.num_bindings)]

        def run():
            context.execute_async_v2(bindings, stream.cuda_stream)
    stream.wait_stream(torch.cuda.current_stream(device))
    run.buffers = buffers
    return run, stream


def measure_latency(model, input_size, backend="auto", device="cpu", precision="fp32", **options):
    """Latency of ``model`` in ms with the chosen backend's measure function; returns a :class:`Timing`."""
    record = backend_record(resolve_backend(backend, device))
    _check_device_rule(record, device)
    return record.measure(model, input_size, device=device, precision=precision, **options)


def _check_device_rule(record, device):
    """Refuse, in one sentence, a device the backend does not time on. A backend that cannot run here at all is
    let through to its measure function, whose message says what it needs (the better advice on a machine
    without TensorRT than naming a device)."""
    if ANY_DEVICE in record.devices or not record.available()[0]:
        return
    device = resolve_device(device)
    if not record.runs_on(device):
        raise LatencyError(f"the {record.name} backend times on {' or '.join(record.devices)} devices only, not on "
                           f"'{device}'; give such a device or use latency_backend='pytorch'.")


def make_measurer(backend="auto", device="cpu", precision="fp32", **timing):
    """A ``measure(module, input_size) -> ms`` function for lookup-table misses and table generation.

    ``measure.device`` names the device the entries are timed on (the backend's ``timing_device``: for
    onnxruntime without its CUDA provider the CPU, see :func:`ort_device`), ``measure.torch_device`` is that
    device.
    """
    backend = resolve_backend(backend, device)
    device = backend_record(backend).timing_device(device)

    def measure(module, input_size):
        return measure_latency(module, input_size, backend=backend, device=device, precision=precision,
                               **timing).latency_ms
    measure.backend, measure.device, measure.precision = backend, device_name(device), precision
    measure.timing = dict(TIMING_DEFAULTS, **timing)     # recorded in a table's meta
    measure.torch_device = device
    return measure


@dataclass(frozen=True)
class Backend:
    """One latency backend: everything the rest of the project asks about it, so that adding one is one row.

    ``measure(model, input_size, device=, precision=, **options)`` returns a :class:`Timing` named ``name`` and
    refuses in one sentence what it cannot do (:func:`require_available` says what it needs); it also receives
    PyTorch's ``channels_last`` and ``cuda_graphs`` options, which a backend without them accepts and ignores.
    """
    name: str                   # the value of latency_backend; Timing.backend and a table's meta
    description: str            # what it times, one line for the docs table
    needs: str                  # what it needs installed, completing "the <name> backend needs ..."
    available: Callable         # () -> (usable here, why not)
    devices: tuple              # the device types it times on; ANY_DEVICE: every device torch runs on
    precisions: tuple           # the precisions it times, some of PRECISIONS
    measure: Callable           # see above
    timing_device: Callable     # device -> the torch.device its timings are made on (a table records it)
    auto_rank: Optional[int] = None     # 'auto' takes the usable backend of lowest rank on the device; None: never
    interleaves: bool = False   # measure_interleaved times what measure times: a calibration may interleave pairs

    def __post_init__(self):
        if self.name == AUTO:
            raise ValueError(f"'{AUTO}' is the rule that picks a backend; a backend needs another name")
        if not self.devices:
            raise ValueError(f"backend {self.name!r}: devices is empty; name the device types it times on")
        if not self.precisions or not set(self.precisions) <= set(PRECISIONS):
            raise ValueError(f"backend {self.name!r}: precisions {self.precisions!r} must be some of {PRECISIONS} "
                             f"(the dtypes make_input makes inputs in)")

    def runs_on(self, device):
        """Whether it times on ``device`` (a torch.device or its name)."""
        return ANY_DEVICE in self.devices or torch.device(device).type in self.devices


def _torch_available():
    """(True, ""): the PyTorch backend needs only torch, which this project needs anyway."""
    return True, ""


def _tensorrt_ready():
    """:func:`tensorrt_available`, looked up when called, so that replacing the module's function (as the tests
    do) reaches the table too."""
    return tensorrt_available()


# THE latency backends: their order is the order of the names in messages and docs; 'auto' follows auto_rank.
# The accepted names and their error, 'auto', the dispatch, a table's recorded device, the calibration's pairing
# and the docs table are read from here; the fallback advice names 'pytorch' on purpose (it always runs).
BACKENDS = (
    Backend("pytorch", "eager PyTorch (fp16 on CUDA only; optional channels_last and CUDA graphs)",
            needs="torch", available=_torch_available, devices=(ANY_DEVICE,), precisions=PRECISIONS,
            measure=measure_pytorch, timing_device=resolve_device, auto_rank=1, interleaves=True),
    Backend("onnxruntime", "ONNX Runtime on the ONNX export (checked against PyTorch); CUDA with onnxruntime-gpu, "
                           "else the CPU",
            needs="onnxruntime (pip install onnxruntime)", available=onnxruntime_available, devices=(ANY_DEVICE,),
            precisions=("fp32",), measure=measure_onnxruntime, timing_device=ort_device),
    Backend("tensorrt", "a TensorRT engine built from the ONNX export, timed with CUDA events",
            needs="TensorRT and a CUDA GPU", available=_tensorrt_ready, devices=("cuda",),
            precisions=("fp32", "fp16"), measure=measure_tensorrt, timing_device=resolve_device, auto_rank=0),
)


def backends_markdown():
    """The backends table of docs/usage.md, made from :data:`BACKENDS` (a test checks the docs hold it as made)."""
    order = {record.name: str(place) for place, record in enumerate(_auto_order(), start=1)}
    lines = ["| `latency_backend` | what it times | needs | devices | precisions | `'auto'` tries it |",
             "|---|---|---|---|---|---|"]
    for record in BACKENDS:
        lines.append(f"| `'{record.name}'` | {record.description} | {record.needs} | {', '.join(record.devices)} | "
                     f"{', '.join(record.precisions)} | {order.get(record.name, 'never')} |")
    return "\n".join(lines)
