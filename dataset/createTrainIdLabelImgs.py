"""Polygons (*_polygons.json) -> *_labelTrainIds.png and *_labelIds.png (+ *_instanceIds.png for Cityscapes
classes) through cityscapesscripts' json2labelImg, for a Cityscapes root or a custom (Gaussianer) root; LabelMe
JSON files drawn the same way (--layout labelme); masks (grey or palette PNGs) mapped through the labels file
(--layout masks). All annotations are checked first; nothing is written if one names an unknown label or value."""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.data.labels import load_labels_file  # noqa: E402
from tools.data.prepare import create_label_images, layout_names, options_from_config  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", help="dataset root (default: the config's dataset_path)")
    parser.add_argument("--layout", choices=layout_names(convertible=True),
                        help="default: from the config's dataset (masks: images/ + masks/ folders; labelme: "
                             "LabelMe .json files)")
    parser.add_argument("--labels-file", help="custom classes (default: the config's labels_file)")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    root, layout, label_set = options_from_config(config_from_args(args))
    root = args.root or root
    layout = args.layout or layout
    if args.labels_file:
        label_set = load_labels_file(args.labels_file)
    written = create_label_images(root, layout, label_set)
    print(f"wrote {len(written)} label images under {root}")


if __name__ == "__main__":
    sys.exit(run_script(main))
