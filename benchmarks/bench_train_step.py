"""Seconds per training iteration of the teacher, the distilled student and the student alone, per precision path.

One iteration is exactly what train/train.py runs per step (tools.train.trainer.Trainer.train_step): forward,
OHEM(pred8) + 0.2 (OHEM(pred16) + OHEM(pred32)) [+ KL to the frozen teacher], backward, SGD step. The networks
are the published FasterSeg teacher and student (Kaiming init), on random images and labels, so data loading
is left out (see bench_loader.py). Defaults are the original sizes: 512x1024 crops, batch 12.

Paths: ``fp32`` (``fast=False``: the original's fp32 eager step), ``fast`` (the default ``fast='auto'`` as
resolved on this machine: fused OHEM, bf16 autocast where the CPU has native bf16, freed memory kept by glibc;
tools/engine/recipe.py), ``amp`` (``amp=True`` alone: fp16 + GradScaler on CUDA, bf16 autocast on CPU, the
original's loss) and ``fp32_keep`` (the fp32 step with the fast path's allocator setting alone). The allocator
setting is process-wide and cannot be undone (glibc's thresholds stop adapting once set), so paths that differ
in it are timed in fresh child processes, one per group of paths and round, the groups alternating; paths that
share it are timed in turn in one process, one step each per round. Either way a drifting machine slows them
alike; the figure is the median over rounds. Each row gives the achieved GFLOP/s (2 x thop's multiply-adds per image: forward, twice
that for the backward of the trained network, plus the teacher's forward) beside this machine's measured
2048x2048 matmul rate in fp32 and bf16. Prints a table and writes JSON (default
benchmarks/results/train_step.json).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from easydict import EasyDict  # noqa: E402

from tools.utils.fileio import write_text  # noqa: E402
from tools.utils.device import cpu_native_bf16, keep_freed_memory  # noqa: E402
from tools.engine.distributed import resolve_device  # noqa: E402
from tools.engine.recipe import build_criterion, resolve_fast_path  # noqa: E402
from tools.models.archfile import load_arch, published_arch_path  # noqa: E402
from tools.models.derived import build_derived  # noqa: E402
from tools.models.flops import thop_flops  # noqa: E402
from tools.train.distill import DistillationLoss  # noqa: E402
from tools.train.trainer import Trainer, build_optimizer  # noqa: E402

STEM_HEAD = {0: (1.0, 1.0), 1: (8. / 12, 8. / 12)}
NETWORKS = {"teacher": (0, False), "student": (1, True), "student_alone": (1, False)}   # (arch, distilled)
PATHS = ("fp32", "fast", "amp", "fp32_keep")


def network(arch_idx, device):
    model = build_derived(load_arch(published_arch_path(arch_idx)), arch_idx, stem_head_width=STEM_HEAD[arch_idx])
    return model.init_weights().to(device)


NATIVE_BF16 = None      # --no-native-bf16: () (decide as on a CPU without native bf16); None: this CPU's flags


def path_settings(path, device):
    """(fused loss, autocast, freed memory kept) of a path on ``device``."""
    if path == "fast":
        fast = resolve_fast_path("auto", device, native_bf16=NATIVE_BF16)
        return fast.fused_loss, fast.bf16, fast.keep_memory
    return False, path == "amp", path == "fp32_keep"


def make_trainer(name, device, path, height, width, batch):
    config = EasyDict(lr=0.01, momentum=0.9, weight_decay=5e-4, image_height=height, image_width=width,
                      gt_down_sampling=1, ignore_label=255)
    arch_idx, distilled = NETWORKS[name]
    fused, amp, _ = path_settings(path, device)
    model = network(arch_idx, device)
    teacher = network(0, device) if distilled else None
    return Trainer(model, build_optimizer(model, config), build_criterion(config, batch, fused), device,
                   teacher=teacher, distill=DistillationLoss() if teacher is not None else None, amp=amp,
                   show_progress=False)


def step_gflop(name, height, width, batch):
    """Floating-point operations of one step (GFLOP): 2 x multiply-adds x (forward + 2 x forward for the
    backward) of the trained network, plus the teacher's forward when distilled."""
    arch_idx, distilled = NETWORKS[name]
    total = 3 * 2 * thop_flops(network(arch_idx, "cpu").train(), (1, 3, height, width))
    if distilled:
        total += 2 * thop_flops(network(0, "cpu"), (1, 3, height, width), eval_mode=True)
    return total * batch / 1e9


def matmul_gflops(dtype, size=2048, seconds=1.0):
    """This machine's matmul rate (GFLOP/s) in ``dtype``: the ceiling a step could reach."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - start) / 1e9


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(trainer, images, target, step, device):
    synchronize(device)
    start = time.perf_counter()
    result = trainer.train_step(images, target, step)
    synchronize(device)
    return time.perf_counter() - start, result


def time_paths(name, paths, device, height, width, batch, warmup, rounds):
    """``{path: {times, loss}}`` of paths timed in turn in this process (one step each per round) after
    ``warmup`` steps each, and the process's peak memory (bytes)."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, height, width, device=device)
    target = torch.randint(0, 19, (batch, height, width), device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainers = {path: make_trainer(name, device, path, height, width, batch) for path in paths}
    timed = {path: {"times": [], "loss": None} for path in paths}
    for path, trainer in trainers.items():
        for step in range(warmup):
            timed_step(trainer, images, target, step, device)
    for step in range(rounds):
        for path, trainer in trainers.items():
            seconds, result = timed_step(trainer, images, target, warmup + step, device)
            timed[path]["times"].append(seconds)
            timed[path]["loss"] = result["loss"]
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return timed, memory


def time_in_children(name, groups, args):
    """The groups of paths that need different allocator settings (process-wide), each timed in a fresh child
    process per round (warm-up steps, then one timed step of each path), the groups alternating round by round
    so a drifting machine slows them alike; a fresh process keeps glibc's own adaptive defaults."""
    timed, memory = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for keep, paths in groups.items():
                out = os.path.join(folder, f"{round_index}_{keep}.json")
                subprocess.run([sys.executable, os.path.abspath(__file__), "--device", args.device, "--height",
                                str(args.height), "--width", str(args.width), "--batch", str(args.batch),
                                "--threads", str(args.threads), "--warmup", str(args.warmup), "--rounds", "1",
                                "--networks", name, "--paths", *paths, "--child", out]
                               + (["--no-native-bf16"] if args.no_native_bf16 else []), check=True)
                with open(out) as handle:
                    child = json.load(handle)
                for path in paths:
                    entry = timed.setdefault(path, {"times": [], "loss": None})
                    entry["times"] += child["timed"][path]["times"]
                    entry["loss"] = child["timed"][path]["loss"]
                    memory[path] = max(memory.get(path, 0), child["memory"])
    return timed, memory


def measure_network(name, paths, device, args):
    """Rows of every path of one network: in this process when the paths share one allocator setting, else
    in child processes (:func:`time_in_children`)."""
    keeps = {path: path_settings(path, device)[2] for path in paths}
    groups = {keep: [path for path in paths if keeps[path] == keep] for keep in dict.fromkeys(keeps.values())}
    if len(groups) == 1:
        if next(iter(groups)):
            keep_freed_memory()
        timed, peak = time_paths(name, paths, device, args.height, args.width, args.batch, args.warmup,
                                 args.rounds)
        memory, memory_kind = {path: peak for path in paths}, "process max RSS (all paths)"
    else:
        timed, memory = time_in_children(name, groups, args)
        memory_kind = "max RSS of the child processes timing this path"
    if device.type == "cuda":
        memory_kind = "cuda max allocated"
    gflop = step_gflop(name, args.height, args.width, args.batch)
    base = statistics.median(timed[paths[0]]["times"])
    rows = []
    for path in paths:
        times = timed[path]["times"]
        median = statistics.median(times)
        fused, amp, keep = path_settings(path, device)
        rows.append({"network": name, "path": path, "fused_loss": fused, "autocast": amp, "keep_memory": keep,
                     "s_per_iter": median, "min_s": min(times), "times": times,
                     "ratio_to_first": median / base, "images_per_s": args.batch / median, "step_gflop": gflop,
                     "gflops": gflop / median, "rounds": args.rounds, "peak_memory_gib": memory[path] / 2 ** 30,
                     "memory_kind": memory_kind, "loss": timed[path]["loss"]})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps of each path, interleaved")
    parser.add_argument("--networks", nargs="+", default=["teacher", "student"], choices=tuple(NETWORKS))
    parser.add_argument("--paths", nargs="+", default=["fp32", "fast"], choices=PATHS,
                        help="the first is the baseline of the ratios")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "train_step.json"))
    parser.add_argument("--no-native-bf16", action="store_true",
                        help="resolve the fast path as on a CPU without native bf16 (with ATEN_CPU_CAPABILITY=avx2 "
                             "ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 set: an AVX2-only CPU's kernels)")
    parser.add_argument("--child", help=argparse.SUPPRESS)     # time one group of paths, write its JSON here
    args = parser.parse_args(argv)
    global NATIVE_BF16
    NATIVE_BF16 = () if args.no_native_bf16 else None
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        if path_settings(args.paths[0], device)[2]:
            keep_freed_memory()
        timed, memory = time_paths(args.networks[0], args.paths, device, args.height, args.width, args.batch,
                                   args.warmup, args.rounds)
        write_text(args.child, json.dumps({"timed": timed, "memory": memory}))
        return []
    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"matmul 2048x2048: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16 "
          f"(native bf16 flags: {', '.join(cpu_native_bf16()) or 'none'}; kernels "
          f"{torch.backends.cpu.get_cpu_capability()}); fast path: "
          f"{resolve_fast_path('auto', device, native_bf16=NATIVE_BF16).why}", flush=True)
    rows = []
    for name in args.networks:
        for row in measure_network(name, args.paths, device, args):
            row.update(batch=args.batch, resolution=f"{args.height}x{args.width}")
            rows.append(row)
            print(f"{name:13s} {row['path']:9s} {row['resolution']} batch {args.batch}: {row['s_per_iter']:.3f} s/iter "
                  f"({row['ratio_to_first']:.2f}x of {args.paths[0]}, {row['images_per_s']:.2f} img/s, "
                  f"{row['gflops']:.0f} GFLOP/s = {row['gflops'] / peaks['fp32']:.0%} of fp32 matmul, "
                  f"{row['gflops'] / peaks['bf16']:.0%} of bf16)", flush=True)
        write_results(args.json, device, rows, peaks)      # after every network, so a cut-off run keeps its figures
    print(f"written {args.json}")
    return rows


def write_results(path, device, rows, peaks):
    machine = {"device": str(device), "cpu": platform.processor() or platform.machine(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": list(cpu_native_bf16()),
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "fast_path_as_without_native_bf16": NATIVE_BF16 == (),
               "isa_limits": {key: os.environ[key] for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                               "MKL_ENABLE_INSTRUCTIONS") if key in os.environ},
               "matmul_gflops": peaks,
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    write_text(path, json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
