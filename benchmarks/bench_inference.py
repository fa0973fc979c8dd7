"""Inference latency of the derived FasterSeg networks: eager fp32 and the fast paths, on CPU or CUDA.

    python benchmarks/bench_inference.py                                    # CPU, 512x1024, all paths
    python benchmarks/bench_inference.py --device cuda --height 1024 --width 2048 --nets student \
        --paths fp32 --cuda-fp16 --cuda-graphs                              # the GPU figures (one command)

CPU: eager fp32 latency (batch 1, warm-up, median of >= 10 groups) of the teacher and student with the achieved
GFLOP/s (2 x conv MACs / latency) over a dense fp32 matmul's GFLOP/s measured in the same run; then the student
through every path of tools.latency.fast (folded BN + channels_last, bf16, ONNX Runtime fp32 and int8) with its
speed-up over eager fp32 and its argmax agreement with fp32 on demo scenes. CUDA: fp32, fp16 and CUDA graphs,
recorded with the GPU name. The network is the published architecture, briefly trained on demo scenes (or
``--weights`` weights{idx}.pt), because agreement is meaningless on a random network. JSON goes to
benchmarks/results/.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tools.latency.backends import WallClock, device_name, make_clock, measure_pytorch, time_callable  # noqa: E402
from tools.latency.fast import argmax_agreement, demo_batch, make_runner  # noqa: E402
from tools.models.archfile import load_arch, published_arch_path  # noqa: E402
from tools.models.derived import build_derived, count_conv_macs  # noqa: E402
from tools.models.supernet import init_weight  # noqa: E402

STEM_HEAD = {0: (1., 1.), 1: (8. / 12, 8. / 12)}
NAMES = {"teacher": 0, "student": 1}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def matmul_gflops(device, size=2048, budget_s=1.0, clock="wall"):
    """Dense fp32 matmul throughput: the machine's practical peak the conv GFLOP/s is compared with."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    timer = make_clock(clock, device, sync) if device.type == "cpu" else WallClock(sync)
    median, _, _ = time_callable(lambda: a @ b, timer, warmup=3, calib_s=0.2, budget_s=budget_s, repeats=5)
    return 2 * size ** 3 / (median / 1000) / 1e9


def build(name, weights, train_steps, seed=0):
    """The published network; trained weights when given, else briefly trained on demo scenes at 128x256."""
    arch_idx = NAMES[name]
    torch.manual_seed(seed)
    net = build_derived(load_arch(published_arch_path(arch_idx)), arch_idx, stem_head_width=STEM_HEAD[arch_idx])
    init_weight(net, torch.nn.init.kaiming_normal_, torch.nn.BatchNorm2d, mode="fan_in", nonlinearity="relu")
    if weights:
        from tools.engine.weights import load_weights
        load_weights(net, weights)
    elif train_steps:
        images, labels = demo_batch(16, 128, 256, seed=11)
        optimizer = torch.optim.Adam(net.parameters(), 3e-3)
        net.train()
        for step in range(train_steps):
            batch = slice((2 * step) % 16, (2 * step) % 16 + 2)
            loss = F.cross_entropy(net(images[batch])[0], labels[batch], ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def time_runner(runner, x, timing, clock):
    prepared = runner.prepare(x)
    value, _, iterations = time_callable(lambda: runner.call(prepared), make_clock(clock, "cpu"), **timing)
    return value, iterations


def cpu_paths(net, args, timing, eager_ms):
    """Every fast path of the student: latency, speed-up over eager fp32, argmax agreement on demo scenes.

    The paths are timed in ``--rounds`` interleaved rounds (minimum kept), so a slow phase of a shared machine
    hits every path alike.
    """
    size = (1, 3, args.height, args.width)
    scenes = demo_batch(args.check_images + 8, args.height, args.width, seed=21)[0]
    check, calibration = scenes[:args.check_images], scenes[args.check_images:]
    with torch.no_grad():
        reference = torch.cat([net(check[i:i + 1]) for i in range(len(check))])
    runners, rows = {}, {}
    for path in args.paths:
        start = time.perf_counter()
        runners[path] = make_runner(path, net, size, calibration=calibration, threads=args.threads)
        output = torch.cat([runners[path](check[i:i + 1]) for i in range(len(check))])
        rows[path] = {"path": path, "setup_s": time.perf_counter() - start,
                      "agreement": argmax_agreement(reference, output), "rounds_ms": []}
    for _ in range(args.rounds):
        for path, runner in runners.items():
            rows[path]["rounds_ms"].append(time_runner(runner, check[:1], timing, args.clock)[0])
    if "fp32" in rows:
        eager_ms = min(rows["fp32"]["rounds_ms"])
    for row in rows.values():
        row["latency_ms"] = min(row["rounds_ms"])
        row["fps"] = 1000 / row["latency_ms"]
        row["speedup"] = eager_ms / row["latency_ms"]
        print(f"  {row['path']:10s} {row['latency_ms']:9.2f} ms  x{row['speedup']:5.2f}  "
              f"agreement {row['agreement']:.4f}")
    return list(rows.values())


def cuda_rows(net, args, timing):
    """fp32 / fp16, eager and CUDA graphs, channels_last on the GPU."""
    rows = []
    variants = [("fp32", False)] + ([("fp32", True)] if args.cuda_graphs else [])
    if args.cuda_fp16:
        variants += [("fp16", False)] + ([("fp16", True)] if args.cuda_graphs else [])
    for precision, graphs in variants:
        result = measure_pytorch(net, (1, 3, args.height, args.width), device=args.device, precision=precision,
                                 channels_last=args.channels_last, cuda_graphs=graphs, **timing)
        rows.append({"precision": precision, "cuda_graphs": graphs, "channels_last": args.channels_last,
                     "latency_ms": result.latency_ms, "fps": result.fps, "iterations": result.iterations})
        print(f"  {precision} graphs={graphs}: {result.latency_ms:.3f} ms, {result.fps:.0f} FPS")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--nets", default="teacher,student")
    parser.add_argument("--paths", default="fp32,folded_cl,bf16,ort_fp32,ort_int8",
                        help="student inference paths on CPU (tools.latency.fast.PATHS); empty: none")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed iterations per measurement")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved measurements (minimum kept)")
    parser.add_argument("--weights", default="", help="weights1.pt of a trained student (else brief demo training)")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--check-images", type=int, default=2)
    parser.add_argument("--cuda-fp16", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=("wall", "process"),
                        help="'process': CPU time, for single-threaded runs on a machine shared with other jobs")
    parser.add_argument("--statistic", default="median", choices=("median", "min"),
                        help="per-iteration time reported: median of the repeat groups, or their minimum")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    args.paths = [p for p in args.paths.split(",") if p]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    timing = dict(warmup=10, calib_s=0.5, budget_s=args.budget, repeats=args.repeats, statistic=args.statistic)
    result = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "clock": args.clock, "statistic": args.statistic, "rounds": args.rounds, "load_average": list(os.getloadavg()),
              "machine": platform.machine(), "resolution": [args.height, args.width], "batch": 1,
              "matmul_gflops": matmul_gflops(device, clock=args.clock), "networks": {},
              "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"{result['device']}, {result['threads']} threads, dense fp32 matmul {result['matmul_gflops']:.1f} GFLOP/s")
    for name in args.nets.split(","):
        train_steps = args.train_steps if name == "student" and device.type == "cpu" and args.paths else 0
        net = build(name, args.weights if name == "student" else "", train_steps)
        macs, _ = count_conv_macs(net, (1, 3, args.height, args.width))
        entry = {"conv_macs": macs}
        if device.type == "cuda":
            entry["cuda"] = cuda_rows(net, args, timing)
        else:
            rounds = [measure_pytorch(net, (1, 3, args.height, args.width), device="cpu", clock=args.clock,
                                      **timing).latency_ms for _ in range(args.rounds)]
            eager_ms = min(rounds)
            gflops = 2 * macs / (eager_ms / 1000) / 1e9
            entry.update(eager_fp32_ms=eager_ms, eager_rounds_ms=rounds, achieved_gflops=gflops,
                         fraction_of_matmul=gflops / result["matmul_gflops"])
            print(f"{name}: eager fp32 {eager_ms:.1f} ms, {gflops:.1f} GFLOP/s "
                  f"({100 * gflops / result['matmul_gflops']:.0f} % of matmul)")
            if name == "student" and args.paths:
                entry["paths"] = cpu_paths(net, args, timing, eager_ms)
        result["networks"][name] = entry
    tag = f"{device.type}_{torch.get_num_threads()}t_{args.clock}_{args.statistic}"
    out = args.out or os.path.join(RESULTS, f"inference_{tag}_{args.height}x{args.width}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main()
