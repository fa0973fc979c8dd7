"""Seconds per search step (architecture step + weight step) and per pretrain step of the supernet.

    python benchmarks/bench_search_step.py                              # CPU, the original sizes, both modes
    python benchmarks/bench_search_step.py --modes search --repeats 3   # only the search step
    python benchmarks/bench_search_step.py --layers 8 --threads 1       # a smaller supernet, one thread

Sizes are the original's (config_search.py): search batch 2 at 224x448, pretrain batch 3 at 256x512, the full
supernet (16 layers, Fch 12, widths 4/12..1, teacher 'max' + student 'arch_ratio'), OHEM loss at 1/8, latency
loss from the published 1080Ti table at 1024x2048. Two step implementations run on the same model and data:

* ``original``: the original's step order and autograd use: the architecture loss backpropagated into every
  parameter (weights included, then zeroed by the loop), the weight loss into every parameter (architecture
  included), ``clip_grad_norm_(model.parameters())``, SGD as a per-tensor loop, and every cell called once per
  input (``pair_inputs=False``);
* ``ours``: tools/search (architecture step: gradients of the architecture parameters only; weight step:
  gradients of the weights only, clip over the weights, multi-tensor SGD) with the two inputs of a 1/16 or
  1/32 cell run as one stacked pass (``pair_inputs=True``).

The variants run interleaved, step by step, on the same batches and sampled widths. Each phase (architecture
step, weight step) is timed separately, in wall seconds and in CPU seconds of this process; the median over
``--repeats`` steps after ``--warmup`` is reported with the load average. On a shared
machine run with ``--threads 1`` and compare CPU seconds: they do not depend on what else runs (with several
threads the CPU time also counts threads spinning at barriers). JSON to benchmarks/results/.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from tools.latency.backends import device_name  # noqa: E402
from tools.latency.table import PUBLISHED_RESOLUTION, table_for  # noqa: E402
from tools.engine.recipe import resolve_search_fast_path  # noqa: E402
from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d, ohem_min_kept  # noqa: E402
from tools.models.supernet import Network_Multi_Path  # noqa: E402
from tools.search.architect import Architect  # noqa: E402
from tools.search.steps import weight_optimizer, weight_step  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
SIZES = {"search": (2, 224, 448, 1e-2), "pretrain": (3, 256, 512, 2e-2)}   # batch, H, W, lr


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args, device, batch, height, width):
    ohem = FusedProbOhemCrossEntropy2d if args.fast != "False" else ProbOhemCrossEntropy2d
    criterion = ohem(255, thresh=0.7, min_kept=ohem_min_kept(batch, height, width, 8))
    model = Network_Multi_Path(19, args.layers, criterion, Fch=args.fch, width_mult_list=WIDTHS,
                               prun_modes=["max", "arch_ratio"], stem_head_width=[(1, 1), (8. / 12, 8. / 12)])
    model.init_weights()
    return model.to(device).train()


def make_batch(batch, height, width, device, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, height, width, generator=generator)
    labels = torch.randint(0, 19, (batch, height // 8, width // 8), generator=generator)
    labels[:, :2] = 255
    return images.to(device), labels.to(device)


class OriginalStep:
    """The original's autograd use around the same supernet (search/architect.py + train_search.py train())."""

    def __init__(self, model, lr, table, latency_size):
        self.model = model
        self.helper = Architect(model, [0, 1e-2], table, latency_size) if table is not None else None
        self.arch_optimizers = [torch.optim.Adam(p, lr=3e-4, betas=(0.5, 0.999)) for p in model._arch_parameters]
        self.optimizer = torch.optim.SGD(model.weight_parameters(), lr=lr, momentum=0.9, weight_decay=5e-4,
                                         foreach=False)

    def arch_step(self, images, labels):
        for optimizer in self.arch_optimizers:
            optimizer.zero_grad(set_to_none=False)
        loss = self.model._loss(images, labels)
        loss_latency = self.helper.latency_loss()
        loss.backward()
        loss_latency.backward()
        for optimizer in self.arch_optimizers:
            optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)

    def weight_step(self, images, labels, pretrain):
        self.optimizer.zero_grad(set_to_none=False)
        loss = self.model._loss(images, labels, pretrain)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)


class OurStep:
    bf16 = False            # --fast on a CPU with native bf16: the weight step under bf16 autocast, as the search

    def __init__(self, model, lr, table, latency_size):
        self.model = model
        self.architect = Architect(model, [0, 1e-2], table, latency_size) if table is not None else None
        self.optimizer = weight_optimizer(model, lr)

    def arch_step(self, images, labels):
        self.architect.step(images, labels)

    def weight_step(self, images, labels, pretrain):
        weight_step(self.model, self.optimizer, images, labels, pretrain, 5, self.bf16)


def timed(fn, device):
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time of a one-thread run is
    the figure that does not depend on what else runs."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def bench_mode(mode, args, device, table):
    """Time the variants on one model, interleaved step by step: the machine's speed drifts by 10-30 % over
    minutes (shared host), so variant A's steps and variant B's steps must see the same conditions. Each step
    index reseeds torch and numpy, so every variant samples the same widths on the same batches."""
    batch, height, width, lr = SIZES[mode]
    model = build(args, device, batch, height, width)
    pretrain = True if mode == "pretrain" else "search"
    latency = table if mode == "search" else None
    steps = {v: (OriginalStep if v == "original" else OurStep)(model, lr, latency, (3,) + PUBLISHED_RESOLUTION)
             for v in args.variants}
    times = {v: {"arch": [], "weight": []} for v in args.variants}
    for i in range(args.warmup + args.repeats):
        images, labels = make_batch(batch, height, width, device, seed=i)
        arch_images, arch_labels = make_batch(batch, height, width, device, 100 + i)
        for variant, step in steps.items():
            torch.manual_seed(1000 + i)
            np.random.seed(1000 + i)
            model.pair_inputs = variant == "ours"
            a = timed(lambda: step.arch_step(arch_images, arch_labels), device) if mode == "search" else (0., 0.)
            w = timed(lambda: step.weight_step(images, labels, pretrain), device)
            if i >= args.warmup:
                times[variant]["arch"].append(a)
                times[variant]["weight"].append(w)
            print(f"  {mode} {variant} step {i}: arch {a[0]:.2f} s ({a[1]:.2f} CPU s), weight {w[0]:.2f} s "
                  f"({w[1]:.2f} CPU s){' (warm-up)' if i < args.warmup else ''}", flush=True)
    return [summary_row(mode, variant, batch, height, width, times[variant]) for variant in args.variants]


def summary_row(mode, variant, batch, height, width, times):
    row = {"mode": mode, "variant": variant, "batch": batch, "height": height, "width": width,
           "load_after": os.getloadavg()[0]}
    for k, name in ((0, "s"), (1, "cpu_s")):
        arch = [t[k] for t in times["arch"]]
        weight = [t[k] for t in times["weight"]]
        row.update({f"arch_{name}": statistics.median(arch), f"weight_{name}": statistics.median(weight),
                    f"step_{name}": statistics.median([a + w for a, w in zip(arch, weight)]),
                    f"arch_{name}_all": arch, f"weight_{name}_all": weight})
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["search", "pretrain"], choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=["original", "ours"], choices=["original", "ours"])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=os.path.join(RESULTS, "search_step.json"))
    parser.add_argument("--fast", default="False", choices=("False", "auto", "True"),
                        help="the search's fast path as tools/search/loop.py resolves it: 'auto' (the default of "
                        "configs/search.py) the fused OHEM loss for both variants and, on a CPU, glibc's freed "
                        "memory kept for the whole process; 'True' also the 'ours' weight step under bf16 "
                        "autocast; 'False' (this script's default) the original's fp32 loss")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fast = resolve_search_fast_path({"False": False, "True": True}.get(args.fast, args.fast), device)
    fast.apply()
    OurStep.bf16 = fast.bf16
    table = table_for(PUBLISHED_RESOLUTION)
    info = {"machine": platform.processor() or platform.machine(), "device": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "layers": args.layers, "Fch": args.fch,
            "precision": "fp32", "fast": f"fast={args.fast}: {fast.why}", "load_before": os.getloadavg()[0]}
    print(json.dumps(info))
    rows = []
    for mode in args.modes:
        rows += bench_mode(mode, args, device, table)
    print(f"\n{'mode':9s} {'variant':9s} {'batch':>5s} {'size':>8s} {'arch s':>8s} {'weight s':>9s} {'step s':>8s}"
          f" {'arch CPU s':>11s} {'weight CPU s':>13s} {'step CPU s':>11s}")
    for r in rows:
        print(f"{r['mode']:9s} {r['variant']:9s} {r['batch']:5d} {r['height']}x{r['width']:<4d} {r['arch_s']:8.2f} "
              f"{r['weight_s']:9.2f} {r['step_s']:8.2f} {r['arch_cpu_s']:11.2f} {r['weight_cpu_s']:13.2f} "
              f"{r['step_cpu_s']:11.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({"info": info, "rows": rows}, handle, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
