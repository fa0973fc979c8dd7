"""Architecture gradients of the search step in fp32 and under bf16 autocast: how far apart, and how much faster.

    python benchmarks/bench_arch_precision.py --threads 2            # full supernet, search batch 2 at 224x448
    python benchmarks/bench_arch_precision.py --layers 6 --fch 6     # a small supernet, quick

Why: the search's fast path (``fast=True``) runs the weight step under bf16 autocast but keeps the architecture
step in fp32 (tools/search/steps.py). This script measures what bf16 would do to the architecture step: on the
same supernet, batch and sampled widths (the original's search loss ``model._loss``: teacher, student, 'max'
and 'min'), the gradient of every architecture parameter (alphas, betas, ratios) in fp32 and in bf16, their
cosine similarity (all parameters together and per parameter), the fraction of entries whose sign agrees, and
the wall time of forward + backward of each. As a scale for the disagreement it also gives the cosine between
the fp32 gradients of two different batches (minibatch noise) and between fp32 gradients computed with a
different thread count (reduction-order noise). The supernet is at its initialisation (Kaiming, random
images and labels), as bench_search_step.py. JSON to benchmarks/results/arch_precision.json.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench_search_step import RESULTS, build, make_batch  # noqa: E402
from tools.utils.device import cpu_native_bf16  # noqa: E402
from tools.utils.fileio import write_text  # noqa: E402

BATCH, HEIGHT, WIDTH = 2, 224, 448          # the original's search batch and crop (config_search.py)


def arch_gradients(model, seed, bf16, device):
    """Forward + backward of the search loss on batch ``seed`` (widths sampled from the same seed); returns
    (seconds, one gradient per architecture parameter, zeros where the loss does not reach it)."""
    params = list(model.arch_parameters())
    images, labels = make_batch(BATCH, HEIGHT, WIDTH, device, seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    for p in params:
        p.grad = None
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model._loss(images, labels)
    loss.backward(inputs=[p for p in params if p.requires_grad])
    seconds = time.perf_counter() - start
    return seconds, [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def flat(grads):
    """One vector of a list of gradients."""
    return torch.cat([g.flatten() for g in grads])


def cosine(a, b):
    """Cosine similarity of two gradient lists; None where neither has a non-zero entry (not reached)."""
    a, b = flat(a), flat(b)
    if not (a.any() or b.any()):
        return None
    return float(F.cosine_similarity(a, b, dim=0))


def sign_agreement(a, b):
    """The fraction of entries, among those either list reaches, whose signs agree."""
    a, b = flat(a), flat(b)
    reached = (a != 0) | (b != 0)
    return float((torch.sign(a) == torch.sign(b))[reached].float().mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the default)")
    parser.add_argument("--batches", type=int, default=2, help="batches compared (after one warm-up of each)")
    parser.add_argument("--json", default=os.path.join(RESULTS, "arch_precision.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(argparse.Namespace(fast="auto", layers=args.layers, fch=args.fch), device, BATCH, HEIGHT, WIDTH)
    model.pair_inputs = True
    names = {id(p): n for n, p in model.named_parameters()}
    param_names = [names[id(p)] for p in model.arch_parameters()]
    info = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "layers": args.layers, "Fch": args.fch,
            "native_bf16": cpu_native_bf16() if device.type == "cpu" else None, "size": [BATCH, HEIGHT, WIDTH]}
    print(json.dumps(info))
    arch_gradients(model, 0, False, device)
    arch_gradients(model, 0, True, device)
    rows, fp32 = [], []
    for seed in range(1, args.batches + 1):
        t32, g32 = arch_gradients(model, seed, False, device)
        t16, g16 = arch_gradients(model, seed, True, device)
        fp32.append(g32)
        row = {"batch": seed, "fp32_s": t32, "bf16_s": t16, "time_ratio": t16 / t32, "cosine": cosine(g32, g16),
               "sign_agreement": sign_agreement(g32, g16),
               "cosine_per_parameter": {n: cosine([a], [b]) for n, a, b in zip(param_names, g32, g16)}}
        rows.append(row)
        print(f"batch {seed}: fp32 {t32:.2f} s, bf16 {t16:.2f} s ({t16 / t32:.2f}x); cosine fp32/bf16 "
              f"{row['cosine']:.3f}, signs agree {row['sign_agreement']:.1%}; per parameter "
              + ", ".join(f"{n} {c:.2f}" for n, c in row["cosine_per_parameter"].items() if c is not None), flush=True)
    scale = {"cosine_fp32_batch1_vs_batch2": cosine(fp32[0], fp32[1]) if len(fp32) > 1 else None}
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    scale["cosine_fp32_threads"] = cosine(fp32[0], arch_gradients(model, 1, False, device)[1])
    torch.set_num_threads(threads)
    print(f"scale: fp32 batch 1 vs batch 2 cosine {scale['cosine_fp32_batch1_vs_batch2']}, fp32 with another "
          f"thread count {scale['cosine_fp32_threads']:.7f}")
    write_text(args.json, json.dumps({"info": info, "rows": rows, "scale": scale}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
