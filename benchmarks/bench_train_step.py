"""Seconds per training iteration of the teacher, the distilled student and the student alone, per precision path.

One iteration is exactly what train/train.py runs per step (tools.train.trainer.Trainer.train_step): forward,
OHEM(pred8) + 0.2 (OHEM(pred16) + OHEM(pred32)) [+ KL to the frozen teacher], backward, SGD step. The networks
are the published FasterSeg teacher and student (Kaiming init), on random images and labels, so data loading
is left out (see bench_loader.py). Defaults are the original sizes: 512x1024 crops, batch 12.

Paths: ``fp32`` (``fast=False``: the original's fp32 eager step), ``fast`` (the default ``fast='auto'`` as
resolved on this machine: fused OHEM, bf16 autocast where the CPU has native bf16, freed memory kept by glibc;
tools/engine/recipe.py), ``amp`` (``amp=True`` alone: fp16 + GradScaler on CUDA, bf16 autocast on CPU, the
original's loss) and ``fp32_keep`` (the fp32 step with the fast path's allocator setting alone). The allocator
is process-wide, so it is set before every step as that step's path has it (``keep_freed_memory``; glibc's
defaults back, heap trimmed, for the others). The paths of one network are timed in turn, one step each per
round, so a drifting machine slows them alike; the figure is the median over rounds. Each row gives the achieved GFLOP/s (2 x thop's multiply-adds per image: forward, twice
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


def path_settings(path, device):
    """(fused loss, autocast, freed memory kept) of a path on ``device``."""
    if path == "fast":
        fast = resolve_fast_path("auto", device)
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


def timed_step(trainer, images, target, step, device, keep_memory):
    keep_freed_memory(keep_memory)
    synchronize(device)
    start = time.perf_counter()
    result = trainer.train_step(images, target, step)
    synchronize(device)
    return time.perf_counter() - start, result


def measure_network(name, paths, device, height, width, batch, warmup, rounds):
    """Rows of every path of one network, timed in turn (one step each per round) after ``warmup`` steps."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, height, width, device=device)
    target = torch.randint(0, 19, (batch, height, width), device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainers = {path: make_trainer(name, device, path, height, width, batch) for path in paths}
    keeps = {path: path_settings(path, device)[2] for path in paths}
    results = {}
    for path, trainer in trainers.items():
        for step in range(warmup):
            _, results[path] = timed_step(trainer, images, target, step, device, keeps[path])
    times = {path: [] for path in paths}
    for step in range(rounds):
        for path, trainer in trainers.items():
            seconds, results[path] = timed_step(trainer, images, target, warmup + step, device, keeps[path])
            times[path].append(seconds)
    gflop = step_gflop(name, height, width, batch)
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    base = statistics.median(times[paths[0]])
    rows = []
    for path in paths:
        median = statistics.median(times[path])
        fused, amp, keep = path_settings(path, device)
        rows.append({"network": name, "path": path, "fused_loss": fused, "autocast": amp, "keep_memory": keep,
                     "s_per_iter": median, "min_s": min(times[path]), "times": times[path],
                     "ratio_to_first": median / base, "images_per_s": batch / median, "step_gflop": gflop,
                     "gflops": gflop / median, "rounds": rounds, "peak_memory_gib": memory / 2 ** 30,
                     "memory_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS (all paths)",
                     "loss": results[path]["loss"]})
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
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"matmul 2048x2048: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16 "
          f"(native bf16 flags: {', '.join(cpu_native_bf16()) or 'none'}); fast path: "
          f"{resolve_fast_path('auto', device).why}", flush=True)
    rows = []
    for name in args.networks:
        for row in measure_network(name, args.paths, device, args.height, args.width, args.batch, args.warmup,
                                   args.rounds):
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
               "matmul_gflops": peaks,
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    write_text(path, json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
