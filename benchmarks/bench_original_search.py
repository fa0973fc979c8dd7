"""Seconds per search step (architecture part + weight part) of the ORIGINAL FasterSeg, from your own checkout.

    python benchmarks/bench_original_search.py --original ~/FasterSeg                      # search step
    python benchmarks/bench_original_search.py --original ~/FasterSeg --mode pretrain      # pretrain step
    python benchmarks/bench_original_search.py --original ~/FasterSeg --layers 8 --threads 1 --json /tmp/o.json

``--original`` is the root of a VITA-Group/FasterSeg checkout (the folder holding search/ and tools/). Run this
and benchmarks/bench_search_step.py on the same machine to compare our search step with the original's. The
project ships none of the original's code: this script only imports the original modules from that checkout
and leaves every file in it untouched. To run them on a CPU without editing them it

* makes ``Tensor.cuda()`` / ``Module.cuda()`` return self (the original calls ``.cuda()`` unconditionally) and,
  with ``--zero-grad torch1`` (the default), makes ``Optimizer.zero_grad()`` keep zero tensors as torch 1.x did
  (so SGD's weight decay and momentum, and ``clip_grad_norm_``, see every weight that ever had a gradient);
* puts a small in-memory module in ``sys.modules['utils.darts_utils']`` instead of the original file (which
  needs torchvision, TensorRT and pycuda): a latency-table miss then costs 0.0 ms and is counted;
* runs from a temporary working directory ``.../FasterSeg`` (operations.py derives its root from the cwd and
  reads, and on a miss rewrites, ``latency_lookup_table.npy`` there) holding the lookup table (default: the
  project's copy of the published 1080Ti table, tools/latency/published/) saved as the original's .npy dict;
* turns off .pyc writing, so no ``__pycache__`` appears in the checkout.

One timed step is the body of search/train_search.py ``train()`` (commit 478b0265) without data loading and
tensorboard logging: ``optimizer.zero_grad()``; arch part: ``architect.step(...)`` (search mode only); weight
part: ``optimizer.zero_grad()``, ``model._loss(imgs, target, pretrain)``, ``backward()``,
``clip_grad_norm_(model.parameters(), 5)``, ``optimizer.step()``, ``optimizer.zero_grad()``. The leading
``zero_grad()`` is timed with the arch part (search) or the weight part (pretrain). Each part is timed in wall
seconds and CPU seconds of this process; the summary covers the steps after ``--warmup``. Weights get the
from-scratch init (train_search.py would load ``<pretrain>/weights.pt``; timing does not depend on the values).
torch is imported only after ``--threads`` has set OMP_NUM_THREADS / MKL_NUM_THREADS. JSON to
benchmarks/results/.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

from tools.utils.fileio import write_json  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REQUIRED = ("search/model_search.py", "search/architect.py", "search/operations.py", "tools/utils/init_func.py",
            "tools/seg_opr/loss_opr.py")
SIZES = {"search": (2, 224, 448), "pretrain": (3, 256, 512)}   # batch, H, W of config_search.py
PRETRAIN_FOLDER = "search-pretrain-256x512_F12.L16_batch3-20200101-012345"   # train_search.py passes a str


class OriginalCheckoutError(FileNotFoundError):
    """--original does not point at a FasterSeg checkout."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="root of a VITA-Group/FasterSeg checkout")
    parser.add_argument("--mode", choices=list(SIZES), default="search")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--height", type=int, default=None, help="default 224 (search) / 256 (pretrain)")
    parser.add_argument("--width", type=int, default=None, help="default 448 (search) / 512 (pretrain)")
    parser.add_argument("--batch", type=int, default=None, help="default 2 (search) / 3 (pretrain)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-grad", choices=["torch1", "torch2"], default="torch1",
                        help="torch1: zero_grad() keeps zero tensors, as under the torch 1.x the original was "
                             "written for; torch2: the installed torch's default (set_to_none=True)")
    parser.add_argument("--lut", default=None, help="latency table (.json project table or original .npy); "
                                                    "default: the project's published 1080Ti table")
    parser.add_argument("--json", default=os.path.join(RESULTS, "original_search_step.json"))
    args = parser.parse_args(argv)
    batch, height, width = SIZES[args.mode]
    args.batch = batch if args.batch is None else args.batch
    args.height = height if args.height is None else args.height
    args.width = width if args.width is None else args.width
    args.original = os.path.abspath(os.path.expanduser(args.original))
    args.json = os.path.abspath(args.json)
    return args


def check_original(root):
    """(search dir, tools dir) of the checkout; fails before torch is imported so a wrong path costs nothing."""
    for name in REQUIRED:
        if not os.path.isfile(os.path.join(root, name)):
            raise OriginalCheckoutError(f"--original {root} does not hold {name}; pass the root folder of a "
                                        "VITA-Group/FasterSeg checkout (the one holding search/ and tools/).")
    return os.path.join(root, "search"), os.path.join(root, "tools")


def original_commit(root):
    """The checkout's commit, recorded because the original's files changed between commits (None if unknown)."""
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _proc_value(path, prefix):
    """The text after ':' of the first line starting with ``prefix`` in a /proc file (None off Linux)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(threads):
    """What the numbers depend on, taken at start (the load average says whether the machine was busy)."""
    import numpy
    import torch
    mem_kb = _proc_value("/proc/meminfo", "MemTotal")
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": _proc_value("/proc/cpuinfo", "model name"),
        "os_cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": round(int(mem_kb.split()[0]) / 1024 ** 2, 2) if mem_kb else None,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "requested_threads": threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def latency_stub():
    """Stands in for the original utils.darts_utils, which times a module on CUDA (TensorRT/PyTorch) on a table
    miss. Only ``compute_latency_ms_pytorch`` exists, so the original's ``import compute_latency_ms_tensorrt``
    fails and operations.py / seg_oprs.py take their own fallback; each miss returns 0.0 ms and is recorded."""
    stub = types.ModuleType("utils.darts_utils", "benchmark stub: a latency-table miss costs 0.0 ms")
    stub.MISS_CALLS = []

    def compute_latency_ms_pytorch(model, input_size, iterations=None, device=None):
        stub.MISS_CALLS.append((type(model).__name__, tuple(input_size)))
        return 0.0
    stub.compute_latency_ms_pytorch = compute_latency_ms_pytorch
    return stub


def lut_entries(path):
    """Key -> ms of a project JSON table or an original .npy; the original reads only a .npy dict from its cwd."""
    from tools.latency.table import PUBLISHED_TABLE, import_npy, read_json
    path = path or PUBLISHED_TABLE
    return (import_npy(path) if path.endswith(".npy") else read_json(path)).entries


@contextlib.contextmanager
def cpu_shims(zero_grad):
    """Patch torch so the unedited original runs on a CPU; undone on exit."""
    import torch
    import torch.nn as nn
    saved = (torch.Tensor.cuda, nn.Module.cuda, torch.optim.Optimizer.zero_grad, sys.dont_write_bytecode)
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    if zero_grad == "torch1":
        torch.optim.Optimizer.zero_grad = lambda self, set_to_none=False: saved[2](self, set_to_none=set_to_none)
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda, torch.optim.Optimizer.zero_grad, sys.dont_write_bytecode = saved


@contextlib.contextmanager
def original_workdir(tools_dir, entries):
    """A temporary cwd named FasterSeg holding the table as latency_lookup_table.npy and a ``tools`` link, which
    is what operations.py expects of the repository root; removed on exit, so a miss never touches a real table."""
    import numpy as np
    tmp = tempfile.mkdtemp(prefix="bench_original_")
    cwd = os.path.join(tmp, "FasterSeg")
    os.makedirs(cwd)
    os.symlink(tools_dir, os.path.join(cwd, "tools"))
    np.save(os.path.join(cwd, "latency_lookup_table.npy"), dict(entries))
    old_cwd = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def import_original(search_dir, tools_dir):
    """The original modules, imported as train_search.py does (search/ and tools/ on sys.path)."""
    import importlib
    stub = sys.modules["utils.darts_utils"] = latency_stub()
    for path in (tools_dir, search_dir):
        if path not in sys.path:
            sys.path.insert(0, path)
    names = ("utils.init_func", "seg_opr.loss_opr", "architect", "model_search", "operations")
    modules = types.SimpleNamespace(**{name.split(".")[-1]: importlib.import_module(name) for name in names})
    modules.darts_stub = stub
    return modules


def search_config(args):
    """The values of search/config_search.py that train_search.py and Architect read."""
    from easydict import EasyDict
    search = args.mode == "search"
    return EasyDict(
        seed=args.seed, num_classes=19, layers=args.layers, Fch=args.fch,
        width_mult_list=[4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.], prun_modes=['max', 'arch_ratio'],
        stem_head_width=[(1, 1), (8. / 12, 8. / 12)], bn_eps=1e-5, bn_momentum=0.1, momentum=0.9,
        weight_decay=5e-4, grad_clip=5, arch_learning_rate=3e-4, arch_weight_decay=0, gt_down_sampling=8,
        batch_size=args.batch, image_height=args.height, image_width=args.width,
        pretrain=PRETRAIN_FOLDER if search else True, lr=0.01 if search else 2e-2,
        latency_weight=[0, 1e-2] if search else [0, 0])


def build(C, orig):
    """Criterion, model, init, architect and weight optimizer exactly as train_search.py main() makes them."""
    import torch
    import torch.nn as nn
    from tools.losses import ohem_min_kept
    min_kept = ohem_min_kept(C.batch_size, C.image_height, C.image_width, C.gt_down_sampling)
    criterion = orig.loss_opr.ProbOhemCrossEntropy2d(ignore_label=255, thresh=0.7, min_kept=min_kept,
                                                     use_weight=False)
    model = orig.model_search.Network_Multi_Path(
        C.num_classes, C.layers, criterion, Fch=C.Fch, width_mult_list=C.width_mult_list,
        prun_modes=C.prun_modes, stem_head_width=C.stem_head_width)
    orig.init_func.init_weight(model, nn.init.kaiming_normal_, nn.BatchNorm2d, C.bn_eps, C.bn_momentum,
                               mode='fan_in', nonlinearity='relu')
    architect = orig.architect.Architect(model, C)
    parameters = []
    for part in ("stem", "cells", "refine32", "refine16", "head0", "head1", "head2", "head02", "head12"):
        parameters += list(getattr(model, part).parameters())
    optimizer = torch.optim.SGD(parameters, lr=C.lr, momentum=C.momentum, weight_decay=C.weight_decay)
    return model, architect, optimizer, min_kept


def make_data(C, n_steps, seed, search):
    """Seeded synthetic batches (labels at 1/8 with two ignored rows), made before timing starts."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    hl, wl = C.image_height // C.gt_down_sampling, C.image_width // C.gt_down_sampling

    def batch():
        images = torch.randn(C.batch_size, 3, C.image_height, C.image_width, generator=generator)
        labels = torch.randint(0, 19, (C.batch_size, hl, wl), generator=generator, dtype=torch.long)
        labels[:, :2, :] = 255
        return images, labels
    return [(batch(), batch() if search else None) for _ in range(n_steps)]


def _as_float(value):
    import torch
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def run_step(model, architect, optimizer, C, batches):
    """One train() body; returns the wall/CPU seconds of the arch part (search) and the weight part."""
    import torch.nn as nn
    (imgs, target), arch_batch = batches
    rec = {}
    w0, c0 = time.perf_counter(), time.process_time()
    optimizer.zero_grad()
    if arch_batch is not None:
        loss_arch = architect.step(imgs, target, *arch_batch)
        w1, c1 = time.perf_counter(), time.process_time()
        rec.update(arch_wall_s=w1 - w0, arch_cpu_s=c1 - c0, loss_arch=_as_float(loss_arch),
                   latency_supernet=_as_float(architect.latency_supernet))
        w0, c0 = w1, c1
    optimizer.zero_grad()
    loss = model._loss(imgs, target, C.pretrain)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), C.grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    w1, c1 = time.perf_counter(), time.process_time()
    rec.update(weight_wall_s=w1 - w0, weight_cpu_s=c1 - c0, loss=float(loss.detach()))
    rec["total_wall_s"] = rec["weight_wall_s"] + rec.get("arch_wall_s", 0.0)
    rec["total_cpu_s"] = rec["weight_cpu_s"] + rec.get("arch_cpu_s", 0.0)
    rec["maxrss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return rec


def print_step(rec, search):
    print(f"step {rec['step']}{' (warmup)' if rec['warmup'] else ''}: "
          + (f"arch {rec['arch_wall_s']:.3f}s wall / {rec['arch_cpu_s']:.3f}s cpu, " if search else "")
          + f"weight {rec['weight_wall_s']:.3f}s wall / {rec['weight_cpu_s']:.3f}s cpu, total "
            f"{rec['total_wall_s']:.3f}s wall | loss {rec['loss']:.4f}"
          + (f" loss_arch {rec['loss_arch']:.4f}" if search else "") + f" | maxrss {rec['maxrss_gb']:.2f} GB",
          flush=True)


def summarize(steps, keys):
    """mean / median / min / max / n of each timed part over the steps after warm-up."""
    summary = {}
    for key in keys:
        values = sorted(r[key] for r in steps if not r["warmup"])
        if values:
            summary[key] = {"mean": sum(values) / len(values), "median": statistics.median(values),
                            "min": values[0], "max": values[-1], "n": len(values)}
    return summary


def print_summary(summary, keys, n_timed, warmup, n_misses):
    print(f"\nsummary over {n_timed} timed step(s) (warmup {warmup} excluded), seconds:")
    print(f"{'part':16s} {'mean':>10s} {'median':>10s} {'min':>10s} {'max':>10s}")
    for key in keys:
        if key in summary:
            s = summary[key]
            print(f"{key:16s} {s['mean']:10.3f} {s['median']:10.3f} {s['min']:10.3f} {s['max']:10.3f}")
    print(f"latency-table misses during the steps: {n_misses} (stub returns 0.0 ms each)")


def bench(args, orig):
    """Build, time warmup + repeats steps, print and write the results."""
    import numpy as np
    import torch
    search = args.mode == "search"
    machine = machine_info(args.threads)
    C = search_config(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    t0 = time.perf_counter()
    model, architect, optimizer, min_kept = build(C, orig)
    build_s = time.perf_counter() - t0
    lut_size = len(orig.operations.latency_lookup_table)
    n_params = sum(p.numel() for p in model.parameters())
    n_arch = sum(p.numel() for ps in model._arch_parameters for p in ps)
    print(f"mode={args.mode} layers={C.layers} Fch={C.Fch} input={C.batch_size}x3x{C.image_height}x"
          f"{C.image_width} labels 1/8 min_kept={min_kept} params={n_params} (arch {n_arch}) "
          f"threads={torch.get_num_threads()} zero_grad={args.zero_grad} lut={lut_size} entries "
          f"build={build_s:.1f}s", flush=True)
    n_steps = args.warmup + args.repeats
    data = make_data(C, n_steps, args.seed, search)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model.train()
    steps = []
    misses_before = len(orig.darts_stub.MISS_CALLS)
    for step in range(n_steps):
        rec = {"step": step, "warmup": step < args.warmup}
        rec.update(run_step(model, architect, optimizer, C, data[step]))
        steps.append(rec)
        print_step(rec, search)
    misses = orig.darts_stub.MISS_CALLS[misses_before:]
    keys = (["arch_wall_s", "arch_cpu_s"] if search else []) + ["weight_wall_s", "weight_cpu_s", "total_wall_s",
                                                                "total_cpu_s"]
    summary = summarize(steps, keys)
    print_summary(summary, keys, args.repeats, args.warmup, len(misses))
    write_json(args.json, {
        "what": "original VITA-Group/FasterSeg search step (train_search.py train() body), CPU",
        "original_files": args.original, "original_commit": original_commit(args.original),
        "machine": machine, "args": vars(args),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in C.items()},
        "min_kept": min_kept, "params_total": n_params, "params_arch": n_arch, "build_s": build_s,
        "lut_entries_at_start": lut_size, "lut_misses_during_steps": len(misses),
        "lut_miss_examples": [list(m) for m in misses[:10]], "steps": steps, "summary": summary})
    print("wrote", args.json)
    return summary


def main(argv=None):
    args = parse_args(argv)
    search_dir, tools_dir = check_original(args.original)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    entries = lut_entries(args.lut)
    with cpu_shims(args.zero_grad), original_workdir(tools_dir, entries):
        orig = import_original(search_dir, tools_dir)
        return bench(args, orig)


if __name__ == "__main__":
    try:
        main()
    except OriginalCheckoutError as error:
        sys.exit(f"error: {error}")
