"""Training-loader throughput (images/s) at the search and the training crop sizes, with 0 and 2 workers.

Source images are demo scenes at Cityscapes size (1024x2048 by default) written to a temporary folder, so the
decode + down-sampling + transform costs are those of the real data. Profiles follow the original configs:
search (down_sampling 2, crop 256x512, labels down-sampled by 8, batch 3) and train (down_sampling 1, crop
512x1024, full-resolution labels, batch 12). Prints a table and writes JSON (default
benchmarks/results/loader.json).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from tools.data.demo import generate_demo_dataset  # noqa: E402
from tools.utils.fileio import write_text  # noqa: E402
from tools.data.loader import get_train_loader  # noqa: E402
from tools.data.prepare import create_label_images, create_mapping_lists  # noqa: E402

PROFILES = {
    "search": dict(down_sampling=2, image_height=256, image_width=512, gt_down_sampling=8, batch_size=3),
    "train": dict(down_sampling=1, image_height=512, image_width=1024, gt_down_sampling=1, batch_size=12),
}


def make_config(root, profile, batches):
    from easydict import EasyDict
    config = EasyDict(dataset="cityscapes", labels_file="", img_root_folder=root, gt_root_folder=root,
                      train_source=os.path.join(root, "cityscapes_train_fine.txt"),
                      eval_source=os.path.join(root, "cityscapes_val_fine.txt"), num_classes=19,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                      train_scale_array=[0.75, 1, 1.25], seed=12345, num_workers=0)
    config.update(PROFILES[profile])
    config.niters_per_epoch = batches
    return config


def measure(config, workers, batches):
    """Images/s over ``batches`` batches after the first one (worker start-up and warm-up excluded)."""
    loader, _ = get_train_loader(config, worker=workers)
    iterator = iter(loader)
    start_up = time.perf_counter()
    next(iterator)
    first = time.perf_counter() - start_up
    start = time.perf_counter()
    count = 0
    for batch in iterator:
        count += batch["data"].shape[0]
    seconds = time.perf_counter() - start
    return {"images_per_s": count / seconds, "images": count, "seconds": seconds, "first_batch_s": first}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source-height", type=int, default=1024)
    parser.add_argument("--source-width", type=int, default=2048)
    parser.add_argument("--images", type=int, default=8, help="distinct source images")
    parser.add_argument("--batches", type=int, default=6, help="batches per measurement (first one not timed)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "loader.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        generate_demo_dataset(root, counts={"train": args.images, "val": 1, "test": 0},
                              size=(args.source_height, args.source_width))
        create_label_images(root, progress=False, encodings=("trainIds",))
        create_mapping_lists(root)
        for profile in args.profiles:
            config = make_config(root, profile, args.batches)
            for workers in args.workers:
                result = measure(config, workers, args.batches)
                rows.append(dict(profile=profile, workers=workers, batch=config.batch_size,
                                 crop=f"{config.image_height}x{config.image_width}",
                                 down_sampling=config.down_sampling, **result))
    print(f"{'profile':8} {'crop':>9} {'batch':>5} {'workers':>7} {'images/s':>9} {'1st batch s':>11}")
    for r in rows:
        print(f"{r['profile']:8} {r['crop']:>9} {r['batch']:>5} {r['workers']:>7} {r['images_per_s']:>9.1f} "
              f"{r['first_batch_s']:>11.2f}")
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(), torch=torch.__version__,
                source=f"{args.source_height}x{args.source_width}", images=args.images)
    write_text(args.json, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
