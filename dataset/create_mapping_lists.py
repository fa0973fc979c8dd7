"""Write the "image label" file lists (train, val, test, train+val) of a Cityscapes, custom, CamVid, masks or
LabelMe root (a flat masks/LabelMe folder is split here: --ratios, --seed; no file is copied). --hold-out DRIVE
also writes training lists without one drive and the list of its frames, to choose recipes on a street the
model never trained on (config key hold_out=DRIVE reads them; docs/usage.md "CamVid")."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.data.prepare import DEFAULT_RATIOS, create_mapping_lists, layout_names, options_from_config  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", help="dataset root (default: the config's dataset_path)")
    parser.add_argument("--layout", choices=layout_names(), help="default: the config's dataset")
    parser.add_argument("--out-dir", help="where the lists go (default: the root)")
    parser.add_argument("--ratios", type=float, nargs=3, default=DEFAULT_RATIOS, metavar=("TRAIN", "VAL", "TEST"),
                        help="masks/labelme without train/val/test subfolders: split ratios (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed of that split (default: %(default)s)")
    parser.add_argument("--hold-out", metavar="DRIVE", default=None,
                        help="also write the lists that hold out this drive (the file names' start before the "
                             "first '_', e.g. 0006R0 for CamVid): <train>_noDRIVE, <train_val>_noDRIVE and its "
                             "frames' heldout_DRIVE list")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    root, layout, _ = options_from_config(config_from_args(args))
    for split, path in create_mapping_lists(args.root or root, args.layout or layout, args.out_dir,
                                            ratios=tuple(args.ratios), seed=args.seed,
                                            hold_out=args.hold_out).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    sys.exit(run_script(main))
