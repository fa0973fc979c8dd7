"""Remove generated label images and file lists of a dataset root (--remove-splits: also the split copies of a
custom root). Source images and polygon files are never removed otherwise."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.data.prepare import LIST_NAMES, clean_up_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--layout", choices=tuple(LIST_NAMES), default="cityscapes")
    parser.add_argument("--remove-splits", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    args = parser.parse_args(argv)
    removed = clean_up_dataset(args.root, args.layout, args.remove_splits, args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {len(removed)} files")


if __name__ == "__main__":
    main()
