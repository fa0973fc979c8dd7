"""Latency of a deployment folder (latency/export_onnx.py) next to the eager PyTorch network it came from.

    python latency/export_onnx.py pretrained/camvid --out deploy_camvid --size 384 480 --int8 --calib-images 32
    python benchmarks/bench_deploy.py deploy_camvid --threads 2 --rounds 3

Times, at the folder's input size and batch 1, the eager fp32 PyTorch network of the run the folder names
(meta.json ``source.weights``; the config.json beside it) and every ONNX file of the folder with ONNX Runtime, interleaved
in ``--rounds`` rounds (the minimum of the round medians is kept, so a slow phase of the machine hits each
alike), and writes the figures with the val mIoU that export_onnx.py recorded in meta.json. JSON goes to
benchmarks/results/deploy_<folder name>.json.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from tools.engine.predictor import config_for_weights, load_predictor  # noqa: E402
from tools.latency.backends import device_name, measure_pytorch, time_onnx_file  # noqa: E402
from tools.utils.fileio import write_json  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def eager_network(meta):
    """The PyTorch network the folder was exported from (its run folder or weights file, as meta.json names it)."""
    weights = meta["source"]["weights"]
    config = config_for_weights(weights, overrides=["device='cpu'"])
    predictor, _ = load_predictor(config, weights, arch_idx=meta["arch"]["arch_idx"])
    return predictor.evaluator.network.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a deployment folder written by latency/export_onnx.py")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed iterations per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(os.path.join(args.folder, "meta.json")) as handle:
        meta = json.load(handle)
    size = (1, 3, meta["input"]["height"], meta["input"]["width"])
    miou_by_file = {model["file"]: model.get("val_mIoU") for model in meta["models"].values()}
    net = eager_network(meta)
    files = sorted(name for name in os.listdir(args.folder) if name.endswith(".onnx"))
    timing = dict(budget_s=args.budget, calib_s=0.3, repeats=5)
    runs = {"pytorch eager fp32": lambda: measure_pytorch(net, size, **timing).latency_ms}
    for name in files:
        runs[name] = (lambda path: lambda: time_onnx_file(path, size, threads=args.threads, **timing).latency_ms)(
            os.path.join(args.folder, name))
    measured = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            measured[name].append(run())
    eager = min(measured["pytorch eager fp32"])
    rows = []
    for name, values in measured.items():
        row = {"model": name, "latency_ms": min(values), "rounds_ms": values, "vs_eager_fp32": min(values) / eager,
               "val_mIoU": miou_by_file.get(name)}
        rows.append(row)
        miou = "" if row["val_mIoU"] is None else f"{row['val_mIoU']:.4f}"
        print(f"{name:28s} {row['latency_ms']:8.2f} ms  {row['vs_eager_fp32']:.2f}x eager  val mIoU {miou}")
    result = {"folder": os.path.abspath(args.folder), "input": list(size), "threads": torch.get_num_threads(),
              "device": device_name("cpu"), "cpu": platform.processor() or platform.machine(),
              "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
              "load_average": list(os.getloadavg()), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    out = args.out or os.path.join(RESULTS, f"deploy_{os.path.basename(os.path.normpath(args.folder))}.json")
    write_json(out, result, indent=1)
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
