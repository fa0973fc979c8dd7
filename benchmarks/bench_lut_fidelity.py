"""How well the lookup-table estimate ranks real latency: a CPU table vs measured networks.

    python benchmarks/bench_lut_fidelity.py                    # 20 random architectures at 256x512 on CPU

Draws random architecture parameters (alphas, betas, ratios ~ N(0, scale^2) plus a random per-architecture
preference for thin/wide widths and light/heavy operators; student-like: all widths, stem/head width 8/12,
lasts [2, 1] or [2, 0]), derives each network as train.py does, estimates its latency from
a lookup table measured on this machine (entries timed on demand and kept in benchmarks/results/ so a rerun
reuses them), measures the whole network with the same backend, and reports Spearman's rho between estimate
and measurement and the mean measured/estimated ratio. Target: rho >= 0.95. On a machine shared with other jobs,
``--threads 1 --clock process`` (CPU time of a single-threaded run) gives stable figures.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from tools.latency.backends import device_name, make_measurer, measure_latency  # noqa: E402
from tools.latency.expected import derived_latency  # noqa: E402
from tools.latency.table import load_table  # noqa: E402
from tools.models.derive import DerivationError  # noqa: E402
from tools.models.derived import Network_Multi_Path_Infer  # noqa: E402

WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2.0
        i = j + 1
    return result


def spearman(x, y):
    """Spearman's rank correlation (Pearson on average ranks)."""
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var


def random_network(seed, layers=16, Fch=12):
    """A derived network from random architecture parameters; None when the derivation rules reject it."""
    generator = torch.Generator().manual_seed(seed)
    scale = (0.5, 1.0, 3.0)[seed % 3]
    # per-architecture preferences (thin or wide, light or heavy operators) spread the latencies, as a search
    # under different latency weights would
    width_bias = 4 * (torch.rand(1, generator=generator) - 0.5) * torch.linspace(-1, 1, 5)
    op_bias = 2 * torch.randn(5, generator=generator)
    alphas = [scale * torch.randn(layers - k, 5, generator=generator) + op_bias for k in range(3)]
    betas = [None] + [scale * torch.randn(layers - k, 2, generator=generator) for k in (2, 3)]
    ratios = [scale * torch.randn(n, 5, generator=generator) + width_bias
              for n in (layers - 1, layers - 1, layers - 2)]
    lasts = [2, 1] if seed % 4 else [2, 0]
    try:
        net = Network_Multi_Path_Infer(alphas, betas, ratios, layers=layers, Fch=Fch, width_mult_list=WIDTHS,
                                       stem_head_width=(8. / 12, 8. / 12), aux_heads=False)
        return net.build_structure(lasts).eval()
    except DerivationError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lut-budget", type=float, default=0.3, help="seconds of timing per table entry")
    parser.add_argument("--net-budget", type=float, default=1.5, help="seconds of timing per network")
    parser.add_argument("--lut", default="", help="table file (default benchmarks/results/lut_<device>_HxW.json)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=("wall", "process"),
                        help="'process': CPU time, for single-threaded runs on a machine shared with other jobs")
    parser.add_argument("--repeats", type=int, default=5, help="timed groups per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved measurements of every network (min kept)")
    parser.add_argument("--statistic", default="median", choices=("median", "min"),
                        help="per-iteration time reported: median of the groups, or their minimum")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = (3, args.height, args.width)
    tag = f"{torch.device(args.device).type}_{torch.get_num_threads()}t_{args.clock}_{args.statistic}"
    lut = args.lut or os.path.join(RESULTS, f"lut_{tag}_{args.height}x{args.width}.json")
    timing = dict(repeats=args.repeats, statistic=args.statistic, clock=args.clock)
    measurer = make_measurer(args.backend, args.device, budget_s=args.lut_budget, calib_s=0.05, **timing)
    table = load_table(lut, resolution=(args.height, args.width), device=args.device, backend=measurer.backend,
                       precision="fp32", measure=True, measurer=measurer)
    table.autosave = False
    networks, seed = [], 0
    start = time.perf_counter()
    while len(networks) < args.count:
        net = random_network(seed)
        seed += 1
        if net is not None:
            networks.append((seed - 1, net, derived_latency(net, size, table).latency_ms))
            table.save()
    measured = {index: [] for index in range(len(networks))}
    for _ in range(args.rounds):  # interleaved rounds: a slow phase of the machine hits every network alike
        for index, (_, net, _) in enumerate(networks):
            measured[index].append(measure_latency(net, (1,) + size, backend=args.backend, device=args.device,
                                                   budget_s=args.net_budget, calib_s=0.2, **timing).latency_ms)
    rows = []
    for index, (seed, net, estimate) in enumerate(networks):
        best = min(measured[index])
        rows.append({"seed": seed, "lasts": net.lasts, "estimate_ms": estimate, "measured_ms": best,
                     "measured_rounds_ms": measured[index], "ratio": best / estimate})
        print(f"seed {seed:3d} lasts {net.lasts}: table {estimate:8.2f} ms, measured {best:8.2f} ms, "
              f"ratio {best / estimate:.3f}")
    rho = spearman([r["estimate_ms"] for r in rows], [r["measured_ms"] for r in rows])
    mean_ratio = sum(r["ratio"] for r in rows) / len(rows)
    result = {"device": device_name(args.device), "backend": measurer.backend, "precision": "fp32",
              "threads": torch.get_num_threads(), "clock": args.clock, "statistic": args.statistic,
              "repeats": args.repeats, "rounds": args.rounds, "load_average": list(os.getloadavg()),
              "resolution": [args.height, args.width], "batch": 1,
              "table": os.path.relpath(lut, os.path.dirname(RESULTS)), "table_entries": len(table),
              "spearman_rho": rho, "mean_ratio_measured_over_table": mean_ratio, "networks": rows,
              "seconds": time.perf_counter() - start, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"Spearman rho {rho:.3f}, mean measured/table {mean_ratio:.3f} over {len(rows)} networks "
          f"({len(table)} table entries, {result['seconds']:.0f} s)")
    name = f"lut_fidelity_{tag}_{args.height}x{args.width}.json"
    out = args.out or os.path.join(RESULTS, name)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
