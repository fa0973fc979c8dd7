"""How repeatable is a lookup table's calibration scale: one table calibrated again and again, two pairings.

    python benchmarks/bench_lut_calibration.py --height 128 --width 256 --repeats 4

Makes (or reuses, ``--lut``) a table holding the entries of the calibration's random networks, the way
latency/latency_lookup_table.py does, then recalibrates it ``--repeats`` times with each pairing in turn
(sequential, interleaved, sequential, ...), so both see the same stretch of the machine:

* ``sequential``: each network timed whole, then each of its entries timed alone right after it (the calibration
  in earlier tables; still the way for backends other than PyTorch eager);
* ``interleaved``: the network and its entries timed in turn, slice by slice (``--slices``), over one window.

The entries do not change between calibrations, so the spread of the scales is the calibration's own noise:
what a fresh table would carry into every lookup. Prints each scale with its paired ratios and writes JSON
(default benchmarks/results/lut_calibration_<tag>_HxW.json).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from tools.latency.backends import device_name, make_measurer  # noqa: E402
from tools.latency.calibrate import PAIR_SLICES, calibrate_table, network_measurer  # noqa: E402
from tools.latency.table import load_table  # noqa: E402
from tools.utils.fileio import write_json  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PAIRINGS = ("sequential", "interleaved")


def calibrate(table, size, pairing, args):
    """One calibration of ``table`` with ``pairing``; returns (scale, paired ratios, seconds)."""
    custom = {"measure_network": network_measurer(table, args.budget, 0.2)} if pairing == "sequential" else {}
    start = time.perf_counter()
    calibration = calibrate_table(table, size, count=args.networks, rounds=args.rounds, budget_s=args.budget,
                                  slices=args.slices, progress=False, **custom)
    assert calibration["pairing"] == pairing, calibration["pairing"]
    ratios = [ratio for row in calibration["networks"] for ratio in row["paired_ratios"]]
    return calibration["scale"], ratios, time.perf_counter() - start


def summary(scales):
    return {"mean": statistics.mean(scales), "sd": statistics.stdev(scales) if len(scales) > 1 else 0.0,
            "min": min(scales), "max": max(scales)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--lut-budget", type=float, default=0.5, help="seconds of timing per table entry")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per calibration network and pass")
    parser.add_argument("--networks", type=int, default=4, help="calibration networks")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the networks per calibration")
    parser.add_argument("--slices", type=int, default=PAIR_SLICES, help="slices of an interleaved pair")
    parser.add_argument("--repeats", type=int, default=4, help="calibrations per pairing")
    parser.add_argument("--lut", default="", help="table file to make or reuse (default: a new table in memory)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = (3, args.height, args.width)
    measurer = make_measurer("pytorch", "cpu", budget_s=args.lut_budget, calib_s=0.1, statistic="median",
                             clock="wall")
    table = load_table(args.lut or None, resolution=(args.height, args.width), device="cpu", backend="pytorch",
                       precision="fp32", measure=True, measurer=measurer)
    start = time.perf_counter()
    calibrate_table(table, size, count=args.networks, rounds=2, budget_s=args.budget, progress=False)
    print(f"table of {len(table)} entries ready ({time.perf_counter() - start:.0f} s)", flush=True)
    runs = {pairing: [] for pairing in PAIRINGS}
    for _ in range(args.repeats):
        for pairing in PAIRINGS:
            scale, ratios, seconds = calibrate(table, size, pairing, args)
            runs[pairing].append({"scale": scale, "paired_ratios": ratios, "seconds": seconds})
            print(f"{pairing:11s} scale {scale:.3f}  ratios " + " ".join(f"{r:.3f}" for r in ratios)
                  + f"  ({seconds:.0f} s)", flush=True)
    result = {"device": device_name("cpu"), "threads": torch.get_num_threads(), "clock": "wall",
              "resolution": [args.height, args.width], "batch": 1, "precision": "fp32",
              "table_entries": len(table), "networks": args.networks, "rounds": args.rounds,
              "budget_s": args.budget, "slices": args.slices, "runs": runs,
              "summary": {pairing: summary([run["scale"] for run in runs[pairing]]) for pairing in PAIRINGS},
              "load_average": list(os.getloadavg()), "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    for pairing, stats in result["summary"].items():
        print(f"{pairing:11s} scales: mean {stats['mean']:.3f}, sd {stats['sd']:.3f}, "
              f"{stats['min']:.3f} - {stats['max']:.3f} over {args.repeats}")
    out = args.out or os.path.join(RESULTS, f"lut_calibration_cpu_{torch.get_num_threads()}t_wall_"
                                            f"{args.height}x{args.width}.json")
    write_json(out, result, indent=1)
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
