"""How well the lookup-table estimate ranks real latency: a CPU table vs measured networks.

    python benchmarks/bench_lut_fidelity.py                    # 20 random architectures at 256x512 on CPU

Draws random architecture parameters (alphas, betas, ratios ~ N(0, scale^2) plus a random per-architecture
preference for thin/wide widths and light/heavy operators; student-like: all widths, stem/head width 8/12,
lasts [2, 1] or [2, 0]), derives each network as train.py does, estimates its latency from
a lookup table measured on this machine (entries timed on demand and kept in benchmarks/results/ so a rerun
reuses them), measures the whole network with the same backend, and reports Spearman's rho between estimate
and measurement and the mean measured/estimated ratio. Target: rho >= 0.95. On a machine shared with other jobs,
``--threads 1 --clock process`` (CPU time of a single-threaded run) gives stable figures.

The table is made the way latency/latency_lookup_table.py makes one: the entries the networks read,
glue included, timed in ``--entry-rounds`` passes in shuffled orders (median kept), then calibrated against
``--calibration-networks`` other random networks of the same family (seeds from 1000; this benchmark's networks
come from seeds 0, 1, ...). ``--plain`` makes the plain table (one pass, no glue, no calibration).

The networks are measured in ``--rounds`` rounds; within a round each network's ``--net-budget`` is cut into
``--slices`` slices taken in turn over all networks (tools.latency.backends.time_interleaved), so every network
sees the same phases of a machine whose speed drifts, and a network's figure is the mean of its rounds. With
``--slices 1`` (the earlier protocol) each network is timed in one piece and its fastest round kept: on
a shared VM that ranked the networks against their own second round with rho 0.55-0.88 only.

The machine's level: the table is measured minutes before the networks, and a shared VM's speed moves by up to
25 % over minutes. So (with ``--slices`` > 1 and unless ``--no-level-probe``) the calibration's own networks,
rebuilt from their seeds, are measured again within the same rounds; ``level_probe.level`` = their latency now /
their latency during the calibration (> 1: the machine is slower now than when the table was made), and
``mean_ratio_at_calibration_level`` = the mean ratio divided by it. The headline ratio is not corrected; the probe
says how much of a miss is the machine's level rather than the table.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from tools.latency.backends import device_name, make_measurer, measure_interleaved, measure_latency  # noqa: E402,E501
from tools.latency.calibrate import calibrate_table, random_network, random_networks  # noqa: E402
from tools.latency.expected import derived_latency, derived_specs, table_has_glue  # noqa: E402
from tools.latency.table import fill_table, load_table  # noqa: E402
from tools.utils.fileio import write_json  # noqa: E402

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


def measure_networks(nets, input_size, args, timing):
    """ms of every network in one round: sliced and interleaved (``--slices`` > 1) or one after the other."""
    if args.slices > 1:
        return [t.latency_ms for t in measure_interleaved(nets, input_size, device=args.device, clock=args.clock,
                                                          budget_s=args.net_budget, slices=args.slices,
                                                          statistic=args.statistic, calib_s=0.2)]
    return [measure_latency(net, input_size, backend=args.backend, device=args.device, budget_s=args.net_budget,
                            calib_s=0.2, **timing).latency_ms for net in nets]


def network_latency(rounds, args):
    """One figure per network from its rounds' figures. With slices, their mean: each round is already taken
    across its whole window, and the machine's level moves between rounds (by up to 40 % on the shared VM of
    docs/benchmarks.md), so the mean is the typical speed (a median pooled over both rounds' slices falls in the gap
    between the two levels and ranked the networks worse: rho 0.91 where the mean gave 0.98). Without slices, the
    fastest round: each round sat in one phase of the machine, and the fastest is the least disturbed."""
    return sum(rounds) / len(rounds) if args.slices > 1 else min(rounds)


def calibration_probe(table):
    """[(seed, network, its whole-network ms during the calibration: mean of its passes)] of the table's
    calibration, rebuilt from the seeds and settings stored in ``meta["calibration"]``."""
    calibration = table.meta.get("calibration") or {}
    probe = []
    for row in calibration.get("networks", []):
        net = random_network(row["seed"], **calibration.get("network", {}))
        if net is not None and list(net.lasts) == list(row["lasts"]):
            probe.append((row["seed"], net, sum(row["measured_rounds_ms"]) / len(row["measured_rounds_ms"])))
    return probe


def level_probe(probe, measured_rounds):
    """The probe networks' latency now over their latency during the calibration (mean over networks)."""
    now = [sum(rounds) / len(rounds) for rounds in measured_rounds]
    then = [ms for _, _, ms in probe]
    return {"seeds": [seed for seed, _, _ in probe], "calibration_ms": then, "now_ms": now,
            "level": sum(a / b for a, b in zip(now, then)) / len(probe)}


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="measurements of every network (with --slices: their mean kept, else their minimum)")
    parser.add_argument("--slices", type=int, default=10,
                        help="each round's --net-budget cut into this many slices taken in turn over all networks, so "
                             "every network is sampled across the round (1: one network after the other, the "
                             "earlier protocol; pytorch backend only for > 1)")
    parser.add_argument("--statistic", default="median", choices=("median", "min"),
                        help="per-iteration time reported: median of the groups, or their minimum")
    parser.add_argument("--entry-rounds", type=int, default=2, help="interleaved timing passes over the entries")
    parser.add_argument("--calibration-networks", type=int, default=4,
                        help="random networks measured whole to calibrate the table (0: none)")
    parser.add_argument("--calibration-budget", type=float, default=1.0, help="seconds per calibration network")
    parser.add_argument("--plain", action="store_true",
                        help="the plain table: one pass, no glue entries, no calibration")
    parser.add_argument("--no-level-probe", action="store_true",
                        help="do not measure the calibration's networks again beside the test networks")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.slices > 1 and args.backend != "pytorch":
        parser.error(f"--slices {args.slices} interleaves PyTorch eager networks only; add --slices 1 for "
                     f"--backend {args.backend}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    size = (3, args.height, args.width)
    tag = f"{torch.device(args.device).type}_{torch.get_num_threads()}t_{args.clock}_{args.statistic}" + (
        "_plain" if args.plain else "")
    lut = args.lut or os.path.join(RESULTS, f"lut_{tag}_{args.height}x{args.width}.json")
    timing = dict(repeats=args.repeats, statistic=args.statistic, clock=args.clock)
    measurer = make_measurer(args.backend, args.device, budget_s=args.lut_budget, calib_s=0.05, **timing)
    table = load_table(lut, resolution=(args.height, args.width), device=args.device, backend=measurer.backend,
                       precision="fp32", measure=True, measurer=measurer)
    if args.plain:
        args.entry_rounds, args.calibration_networks = 1, 0
        table.meta["glue"] = False
    glue = table_has_glue(table)
    start = time.perf_counter()
    found = random_networks(args.count, 0)
    added = fill_table(table, [("bench", spec) for _, net in found
                               for _, spec in derived_specs(net, size, glue=glue)[0]],
                       progress=False, rounds=args.entry_rounds)
    # as latency_lookup_table.py: calibrated once; a rerun on a complete table measures the networks only
    if args.calibration_networks and (added or "calibration" not in table.meta):
        calibration = calibrate_table(table, size, count=args.calibration_networks, rounds=args.entry_rounds,
                                      budget_s=args.calibration_budget, progress=False)
        print(f"calibration over {len(calibration['networks'])} networks: scale {calibration['scale']:.3f}")
    networks = [(seed, net, derived_latency(net, size, table).latency_ms) for seed, net in found]
    probe = calibration_probe(table) if args.slices > 1 and not args.no_level_probe else []
    measured = {index: [] for index in range(len(networks) + len(probe))}
    for _ in range(args.rounds):  # interleaved rounds: a slow phase of the machine hits every network alike
        nets = [net for _, net, _ in networks] + [net for _, net, _ in probe]
        for index, value in enumerate(measure_networks(nets, (1,) + size, args, timing)):
            measured[index].append(value)
    level = level_probe(probe, [measured[len(networks) + k] for k in range(len(probe))]) if probe else None
    rows = []
    for index, (seed, net, estimate) in enumerate(networks):
        best = network_latency(measured[index], args)
        rows.append({"seed": seed, "lasts": net.lasts, "estimate_ms": estimate, "measured_ms": best,
                     "measured_rounds_ms": measured[index], "ratio": best / estimate})
        print(f"seed {seed:3d} lasts {net.lasts}: table {estimate:8.2f} ms, measured {best:8.2f} ms, "
              f"ratio {best / estimate:.3f}")
    rho = spearman([r["estimate_ms"] for r in rows], [r["measured_ms"] for r in rows])
    mean_ratio = sum(r["ratio"] for r in rows) / len(rows)
    # the measurement's own repeatability: the ranking of the networks by their first vs their second round. On a
    # machine whose speed drifts (a shared VM), this bounds the rho any table can show against one measurement.
    tested = range(len(networks))
    retest = spearman([measured[i][0] for i in tested], [measured[i][1] for i in tested]) \
        if args.rounds >= 2 else None
    # and its level: the mean measured/table of each round alone (how far the machine's speed moved between rounds)
    round_ratios = [sum(measured[i][k] / networks[i][2] for i in tested) / len(rows) for k in range(args.rounds)]
    result = {"device": device_name(args.device), "backend": measurer.backend, "precision": "fp32",
              "threads": torch.get_num_threads(), "clock": args.clock, "statistic": args.statistic,
              "repeats": args.repeats, "rounds": args.rounds, "slices": args.slices,
              "load_average": list(os.getloadavg()),
              "resolution": [args.height, args.width], "batch": 1,
              "table": os.path.relpath(lut, os.path.dirname(RESULTS)), "table_entries": len(table),
              "table_glue": glue, "entry_rounds": args.entry_rounds,
              "calibration": table.meta.get("calibration"),
              "spearman_rho": rho, "mean_ratio_measured_over_table": mean_ratio,
              "retest_rho_round1_vs_round2": retest, "mean_ratio_by_round": round_ratios,
              "level_probe": level, "mean_ratio_at_calibration_level": mean_ratio / level["level"] if level else None,
              "networks": rows,
              "seconds": time.perf_counter() - start, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"Spearman rho {rho:.3f}, mean measured/table {mean_ratio:.3f} over {len(rows)} networks "
          f"({len(table)} table entries, {result['seconds']:.0f} s)"
          + (f"; the measurement itself, round 1 vs round 2: rho {retest:.3f}" if retest is not None else "")
          + "; mean measured/table by round: " + ", ".join(f"{ratio:.3f}" for ratio in round_ratios))
    if level:
        print(f"level probe: the calibration's {len(probe)} networks now take {level['level']:.3f}x their time "
              f"during the calibration; at the calibration's level the mean ratio would be "
              f"{result['mean_ratio_at_calibration_level']:.3f}")
    name = f"lut_fidelity_{tag}_{args.height}x{args.width}.json"
    out = args.out or os.path.join(RESULTS, name)
    write_json(out, result, indent=1)
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
