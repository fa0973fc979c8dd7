"""GPU smoke test: every CUDA path of the project in one run, under 10 minutes on one GPU.

    python benchmarks/gpu_smoke.py                               # every part; JSON in benchmarks/results/
    python benchmarks/gpu_smoke.py --json runs/gpu_smoke.json --workdir runs/gpu_smoke --parts demo amp

Parts, one table row each (a part whose requirement is missing is 'skip' with the reason, never an error):

* ``demo``: ``python run_demo.py`` as a user runs it (device 'auto', so CUDA; tiny presets, every stage); its
  lookup table must be made for this GPU.
* ``ddp``: ``torchrun --nproc_per_node=2 train/train.py`` (teacher, 1 epoch) on the demo's data and search [2 GPUs].
* ``amp``: fp16 autocast + GradScaler training steps of the published student on one fixed batch of demo scenes
  at 512x1024 (tools.train.trainer.Trainer): every loss finite and the last ones below the first ones.
* ``latency``: the published student at 1x3x1024x2048 with the PyTorch backend: fp32, fp16, fp16 + CUDA graphs.
* ``tensorrt``: TensorRT engine built from the ONNX export, and its latency (fp16) [tensorrt].
* ``ort_cuda``: ONNX Runtime's CUDA provider on the same export [onnxruntime-gpu].

Prints one table (Markdown, for docs/benchmarks.md) and writes JSON with the GPU's name. Exit status: 0 when no
part failed, 1 when one did, 2 on a machine where torch sees no CUDA GPU (one line says so; nothing is run).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import torch  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("demo", "ddp", "amp", "latency", "tensorrt", "ort_cuda")
LATENCY_SIZE = (1, 3, 1024, 2048)


class Skip(Exception):
    """A part whose requirement (a second GPU, tensorrt, onnxruntime-gpu, an earlier part) is not there."""


def no_cuda_line():
    """The one line printed where torch sees no CUDA GPU, or None when it sees one."""
    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"gpu_smoke: torch {torch.__version__} ({build}) sees no CUDA GPU, so there is nothing to check here; "
            f"run it on a GPU box (README, 'GPU box (Docker)').")


def run_command(argv, timeout, log_path):
    """Run ``argv`` in the repository with ``timeout`` seconds; output goes to ``log_path``; raise on failure."""
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"did not finish in {timeout} s (log: {log_path})") from None
    if result.returncode != 0:
        with open(log_path) as log:
            tail = [line.strip() for line in log.read().splitlines() if line.strip()][-1:]
        raise RuntimeError(f"exit status {result.returncode}: {tail[0] if tail else ''} (log: {log_path})")


# ---- parts ------------------------------------------------------------------------------------------------------
def part_demo(args, state):
    """The main job on CUDA; the table it measures must name this GPU (the search refused a CPU table before)."""
    root, data_root = os.path.join(args.workdir, "demo"), os.path.join(args.workdir, "data")
    run_command([sys.executable, "run_demo.py", "--root", root, "--data-root", data_root],   # device 'auto'
                args.demo_timeout, os.path.join(args.workdir, "demo.log"))
    with open(os.path.join(root, "pipeline.json")) as handle:
        pipeline = json.load(handle)
    with open(pipeline["lut"]["file"]) as handle:
        table_device = json.load(handle)["meta"].get("device")
    gpu = torch.cuda.get_device_name(0)
    if table_device != gpu:
        raise RuntimeError(f"the demo's lookup table was made for {table_device!r}, not {gpu!r}")
    state["demo_root"], state["data_root"] = root, data_root
    val = pipeline["evaluate"].get("val_mIoU") or {}
    latency = pipeline["latency"]["report"].get("student", {})
    return (f"student val mIoU {val.get('student', float('nan')):.3f}, {latency.get('latency_ms', float('nan')):.2f}"
            f" ms at {latency.get('input_size')}", {"val_mIoU": val, "table_device": table_device,
                                                    "stage_seconds": {s: pipeline[s].get("seconds") for s in pipeline
                                                                      if isinstance(pipeline[s], dict)},
                                                    "student_latency": latency})


def part_ddp(args, state):
    """Two processes of train/train.py under torchrun, on the demo's data and searched architecture."""
    if torch.cuda.device_count() < 2:
        raise Skip(f"{torch.cuda.device_count()} GPU visible; DDP needs 2")
    if "demo_root" not in state:
        raise Skip("needs the demo part's search folder (run it with --parts demo ddp)")
    from tools.pipeline import Pipeline
    pipeline = Pipeline(state["demo_root"], state["data_root"], device="cuda")
    out = os.path.join(args.workdir, "ddp")
    overrides = [a for a in pipeline.train_args("teacher") if not a.startswith(("output_root=", "device="))]
    run_command([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                 "train/train.py", "--config", "train_tiny"] + overrides +
                [f"output_root='{out}'", "device='cuda'", "nepochs=1", "niters_per_epoch=5", "plots=False"],
                args.ddp_timeout, os.path.join(args.workdir, "ddp.log"))
    runs = [name for name in os.listdir(out) if os.path.isfile(os.path.join(out, name, "DONE"))]
    if len(runs) != 1:
        raise RuntimeError(f"expected one finished run folder in {out}, found {runs}")
    with open(os.path.join(out, runs[0], "log.txt")) as handle:
        processes = re.search(r"(\d+) process", handle.read())
    if not processes or processes.group(1) != "2":
        raise RuntimeError(f"{runs[0]}/log.txt does not report 2 processes")
    return "2 processes, 1 epoch of 5 steps, finished", {"run": os.path.join(out, runs[0])}


def part_amp(args, state):
    """fp16 autocast + GradScaler on one fixed batch: losses finite, the last five below the first five."""
    from benchmarks.bench_train_step import make_trainer
    from tools.utils.checkpoint import rng_state
    from tools.latency.fast import demo_batch
    device = torch.device("cuda")
    torch.manual_seed(0)
    trainer = make_trainer("student", device, True, 512, 1024, 2)
    trainer.teacher = trainer.distill = None      # the student alone: the check is fp16 training, not the KL term
    images, labels = demo_batch(2, 512, 1024)
    losses, start = [], time.perf_counter()
    for step in range(args.amp_steps):
        losses.append(trainer.train_step(images, labels, step)["loss"])
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    state_cuda = rng_state().get("cuda")
    details = {"losses": losses, "grad_scale": trainer.scaler.get_scale(), "s_per_step": seconds / len(losses),
               "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30,
               "checkpoint_cuda_rng_is_one_device": torch.is_tensor(state_cuda)}
    if not all(math.isfinite(loss) for loss in losses):
        raise RuntimeError(f"a non-finite loss in {losses}")
    if not last < first:
        raise RuntimeError(f"the loss did not decrease: first five {first:.4f}, last five {last:.4f}")
    if not torch.is_tensor(state_cuda):
        raise RuntimeError("the checkpoint's CUDA RNG state is not one device's tensor")
    return f"loss {first:.3f} -> {last:.3f} in {len(losses)} steps, {seconds / len(losses) * 1000:.0f} ms/step", \
        details


def published_student():
    from tools.models.archfile import load_arch, published_arch_path
    from tools.models.derived import build_derived
    return build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12),
                         aux_heads=False).eval()


def part_latency(args, state):
    """The published student at 1024x2048: fp32, fp16, fp16 with CUDA graphs; cudnn.benchmark left as found."""
    from tools.latency.backends import measure_latency
    timing = dict(budget_s=args.budget_s, calib_s=args.calib_s)
    before = torch.backends.cudnn.benchmark
    rows = {}
    for name, options in (("fp32", dict(precision="fp32")), ("fp16", dict(precision="fp16")),
                          ("fp16 + CUDA graphs", dict(precision="fp16", cuda_graphs=True))):
        result = measure_latency(published_student(), LATENCY_SIZE, backend="pytorch", device="cuda", **options,
                                 **timing)
        rows[name] = {"latency_ms": result.latency_ms, "fps": result.fps}
    if torch.backends.cudnn.benchmark != before:
        raise RuntimeError("measuring latency left torch.backends.cudnn.benchmark changed")
    return ", ".join(f"{name} {row['latency_ms']:.2f} ms ({row['fps']:.0f} FPS)" for name, row in rows.items()), rows


def part_tensorrt(args, state):
    from tools.latency.backends import measure_latency, tensorrt_available
    usable, why = tensorrt_available()
    if not usable:
        raise Skip(why)
    rows = {}
    for precision in args.trt_precisions:
        result = measure_latency(published_student(), LATENCY_SIZE, backend="tensorrt", device="cuda",
                                 precision=precision, budget_s=args.budget_s, calib_s=args.calib_s)
        rows[precision] = {"latency_ms": result.latency_ms, "fps": result.fps}
    import tensorrt
    rows["tensorrt"] = tensorrt.__version__
    return ", ".join(f"{p} {rows[p]['latency_ms']:.2f} ms ({rows[p]['fps']:.0f} FPS)" for p in args.trt_precisions) \
        + f" (TensorRT {tensorrt.__version__})", rows


def part_ort_cuda(args, state):
    try:
        import onnxruntime
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise Skip(f"onnxruntime {onnxruntime.__version__} has no CUDA provider (pip install onnxruntime-gpu)")
    from tools.latency.backends import measure_latency
    result = measure_latency(published_student(), LATENCY_SIZE, backend="onnxruntime", device="cuda",
                             budget_s=args.budget_s, calib_s=args.calib_s)
    if result.device != torch.cuda.get_device_name(0):
        raise RuntimeError(f"ONNX Runtime ran on {result.device}, not the GPU")
    return f"fp32 {result.latency_ms:.2f} ms ({result.fps:.0f} FPS)", {"latency_ms": result.latency_ms,
                                                                       "onnxruntime": onnxruntime.__version__}


# ---- driver -----------------------------------------------------------------------------------------------------
def run_parts(args):
    rows, state = [], {}
    for name in args.parts:
        began = time.perf_counter()
        row = {"part": name, "status": "ok", "result": "", "details": {}}
        try:
            row["result"], row["details"] = globals()[f"part_{name}"](args, state)
        except Skip as reason:
            row.update(status="skip", result=str(reason))
        except Exception as error:  # a failed part is reported and the others still run
            row.update(status="FAIL", result=f"{type(error).__name__}: {error}".splitlines()[0],
                       details={"traceback": traceback.format_exc()})
        finally:
            torch.cuda.empty_cache()
        row["seconds"] = round(time.perf_counter() - began, 1)
        rows.append(row)
        print(f"[{name}] {row['status']}: {row['result']} ({row['seconds']} s)", flush=True)
    return rows


def environment():
    info = {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for module in ("tensorrt", "onnxruntime", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def format_table(info, rows):
    lines = [f"GPU smoke test on {info['gpu']} (x{info['gpus']}), torch {info['torch']}, CUDA {info['cuda']}, "
             f"cuDNN {info['cudnn']}, TensorRT {info['tensorrt']}, onnxruntime {info['onnxruntime']}, {info['date']}",
             "", "| part | status | result | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['status']} | {r['result']} | {r['seconds']} |" for r in rows]
    return "\n".join(lines)


def default_json(gpu):
    slug = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_").lower()
    return os.path.join(REPO_ROOT, "benchmarks", "results", f"gpu_smoke_{slug}.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--json", default="", help="default: benchmarks/results/gpu_smoke_<gpu>.json")
    parser.add_argument("--workdir", default="", help="demo data, runs and logs (default: a new temporary folder)")
    parser.add_argument("--budget-s", type=float, default=2.0, help="timed seconds per latency figure")
    parser.add_argument("--calib-s", type=float, default=0.25)
    parser.add_argument("--amp-steps", type=int, default=30)
    parser.add_argument("--trt-precisions", nargs="+", default=["fp16"], choices=["fp16", "fp32"])
    parser.add_argument("--demo-timeout", type=int, default=360)
    parser.add_argument("--ddp-timeout", type=int, default=180)
    args = parser.parse_args(argv)
    line = no_cuda_line()
    if line:
        print(line)
        return 2
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="fasterseg_gpu_smoke_")
    os.makedirs(args.workdir, exist_ok=True)
    info = environment()
    rows = run_parts(args)
    table = format_table(info, rows)
    print("\n" + table)
    path = args.json or default_json(info["gpu"])
    from tools.utils.fileio import write_json
    write_json(path, {"environment": info, "workdir": args.workdir, "parts": rows, "table": table})
    print(f"\nwritten {path} (logs and runs in {args.workdir})")
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
