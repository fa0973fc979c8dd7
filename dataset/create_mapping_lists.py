"""Write the "image label" file lists (train, val, test, train+val) of a Cityscapes, custom, CamVid, masks or
LabelMe root (a flat masks/LabelMe folder is split here: --ratios, --seed; no file is copied)."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.data.prepare import DEFAULT_RATIOS, LIST_NAMES, create_mapping_lists, options_from_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", help="dataset root (default: the config's dataset_path)")
    parser.add_argument("--layout", choices=tuple(LIST_NAMES), help="default: the config's dataset")
    parser.add_argument("--out-dir", help="where the lists go (default: the root)")
    parser.add_argument("--ratios", type=float, nargs=3, default=DEFAULT_RATIOS, metavar=("TRAIN", "VAL", "TEST"),
                        help="masks/labelme without train/val/test subfolders: split ratios (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed of that split (default: %(default)s)")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    root, layout, _ = options_from_config(config_from_args(args))
    for split, path in create_mapping_lists(args.root or root, args.layout or layout, args.out_dir,
                                            ratios=tuple(args.ratios), seed=args.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
