"""Seconds per training iteration of the teacher and the student (with its teacher forward and the KL term).

One iteration is exactly what train/train.py runs per step (tools.train.trainer.Trainer.train_step): forward,
OHEM(pred8) + 0.2 (OHEM(pred16) + OHEM(pred32)) [+ KL to the frozen teacher], backward, SGD step. The networks
are the published FasterSeg teacher and student (Kaiming init), on random images and labels, so data loading
is left out (see bench_loader.py). Defaults are the original sizes: 512x1024 crops, batch 12. Precision fp32
and amp (fp16 + GradScaler on CUDA, bf16 autocast on CPU). Prints a table and writes JSON (default
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
from tools.engine.distributed import resolve_device  # noqa: E402
from tools.engine.recipe import build_criterion  # noqa: E402
from tools.models.archfile import load_arch, published_arch_path  # noqa: E402
from tools.models.derived import build_derived  # noqa: E402
from tools.train.distill import DistillationLoss  # noqa: E402
from tools.train.trainer import Trainer, build_optimizer  # noqa: E402

STEM_HEAD = {0: (1.0, 1.0), 1: (8. / 12, 8. / 12)}


def network(arch_idx, device):
    model = build_derived(load_arch(published_arch_path(arch_idx)), arch_idx, stem_head_width=STEM_HEAD[arch_idx])
    return model.init_weights().to(device)


def make_trainer(name, device, amp, height, width, batch):
    config = EasyDict(lr=0.01, momentum=0.9, weight_decay=5e-4, image_height=height, image_width=width,
                      gt_down_sampling=1, ignore_label=255)
    model = network(0 if name == "teacher" else 1, device)
    teacher = network(0, device) if name == "student" else None
    return Trainer(model, build_optimizer(model, config), build_criterion(config, batch), device, teacher=teacher,
                   distill=DistillationLoss() if teacher is not None else None, amp=amp, show_progress=False)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name, device, amp, height, width, batch, warmup, iters):
    """Median seconds per step after ``warmup`` steps (allocator / oneDNN / cuDNN warm-up excluded)."""
    torch.manual_seed(0)
    trainer = make_trainer(name, device, amp, height, width, batch)
    images = torch.randn(batch, 3, height, width, device=device)
    target = torch.randint(0, 19, (batch, height, width), device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + iters):
        synchronize(device)
        start = time.perf_counter()
        result = trainer.train_step(images, target, step)
        synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"network": name, "precision": "amp" if amp else "fp32", "s_per_iter": statistics.median(times),
            "min_s": min(times), "images_per_s": batch / statistics.median(times), "iters": iters,
            "peak_memory_gib": memory / 2 ** 30, "memory_kind": "cuda max allocated" if device.type == "cuda"
            else "process max RSS", "loss": result["loss"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--networks", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "amp"], choices=["fp32", "amp"])
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "train_step.json"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.networks:
        for precision in args.precisions:
            row = measure(name, device, precision == "amp", args.height, args.width, args.batch, args.warmup,
                          args.iters)
            row.update(batch=args.batch, resolution=f"{args.height}x{args.width}")
            rows.append(row)
            print(f"{name:8s} {precision:5s} {row['resolution']} batch {args.batch}: {row['s_per_iter']:.3f} s/iter "
                  f"({row['images_per_s']:.2f} img/s), peak {row['peak_memory_gib']:.1f} GiB", flush=True)
            write_results(args.json, device, rows)      # after every row, so a time-limited run keeps its figures
    print(f"written {args.json}")
    return rows


def write_results(path, device, rows):
    machine = {"device": str(device), "cpu": platform.processor() or platform.machine(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
               "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    write_text(path, json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
