"""Remove the label images and file lists that createTrainIdLabelImgs.py and create_mapping_lists.py wrote into a
dataset root, as recorded in its prepared_files.json (--remove-splits: also split_dataset.py's copies of a custom
root). A file the scripts did not record, or the only copy of an image, is never removed."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.data.prepare import clean_up_dataset, layout_names  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--layout", choices=layout_names(), default="cityscapes",
                        help="custom for --remove-splits (the recorded label images and lists are removed whatever "
                             "the layout)")
    parser.add_argument("--remove-splits", action="store_true",
                        help="also remove the image and annotation files that split_dataset.py copied into "
                             "original_images/ and annotations/; refused, removing nothing, unless every file there "
                             "is such a copy whose source still holds the same bytes (not after --move)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    removed = clean_up_dataset(args.root, args.layout, args.remove_splits, args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {len(removed)} files")


if __name__ == "__main__":
    sys.exit(run_script(main))
