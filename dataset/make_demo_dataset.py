"""Generate the embedded demo dataset (street-like scenes in the Cityscapes layout); --prepare also writes the
label images (cityscapesscripts) and the file lists, so the result is ready for search/train."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.data.demo import DEFAULT_COUNTS, DEFAULT_SIZE, generate_demo_dataset  # noqa: E402
from tools.data.prepare import create_label_images, create_mapping_lists  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    for split in ("train", "val", "test"):
        parser.add_argument(f"--{split}", type=int, default=DEFAULT_COUNTS[split], help=f"{split} images")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE[0])
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE[1])
    parser.add_argument("--prepare", action="store_true", help="also write label images and file lists")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    counts = {"train": args.train, "val": args.val, "test": args.test}
    written, seconds = generate_demo_dataset(args.root, args.seed, counts, (args.height, args.width),
                                             progress=not args.quiet)
    print(f"wrote {sum(len(v) for v in written.values())} images ({args.height}x{args.width}) to {args.root} "
          f"in {seconds:.1f} s")
    if args.prepare:
        create_label_images(args.root, "cityscapes", progress=not args.quiet)
        for split, path in create_mapping_lists(args.root, "cityscapes").items():
            print(f"{split}: {path}")


if __name__ == "__main__":
    sys.exit(run_script(main))
