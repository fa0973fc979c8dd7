"""Split a flat folder of *_raw.png images and *_polygons.json annotations into original_images/{train,val,test}
and annotations/{train,val,test} of a custom dataset root, by ratio and deterministically. The files are copied
(--move: moved) and recorded in the root's prepared_files.json; an existing different file is never overwritten."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.data.prepare import split_dataset  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", help="flat folder with the image/annotation pairs")
    parser.add_argument("--root", required=True, help="custom dataset root to fill")
    parser.add_argument("--ratios", type=float, nargs=3, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--seed", type=int, default=None, help="shuffle with this seed (default: sorted order)")
    parser.add_argument("--move", action="store_true",
                        help="move the image and annotation files out of SOURCE instead of copying them: the root "
                             "then holds the only copies, and clean_up_datasets.py --remove-splits refuses to "
                             "delete them")
    args = parser.parse_args(argv)
    assignment = split_dataset(args.source, args.root, tuple(args.ratios), args.seed, args.move)
    print(", ".join(f"{split}: {len(stems)}" for split, stems in assignment.items()))


if __name__ == "__main__":
    sys.exit(run_script(main))
