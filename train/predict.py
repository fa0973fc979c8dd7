"""Segment images, folders of images or videos with a trained FasterSeg network (colour masks and overlays).

    python train/predict.py --weights runs/train-512x1024_student_batch12-.../weights1.pt \\
        --input street.png --input photos/ --input drive.mp4 --output predictions/ [key=value ...]

The network comes from ``load_path`` (default: the published FasterSeg arch files) and the weights file
(weights0.pt = teacher, weights1.pt = student, or a run folder); ``device=cpu|cuda|auto`` and the ``eval_*``
keys (scales, flip, crop size) apply as in evaluation.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.engine.predictor import load_predictor, predict_inputs  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="weights0.pt / weights1.pt or a training run folder")
    parser.add_argument("--input", action="append", required=True, help="an image, a folder of images or a "
                                                                        "video; repeat for several")
    parser.add_argument("--output", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--arch-idx", type=int, default=None, help="0 teacher / 1 student (default: from the "
                                                                   "weights file name)")
    parser.add_argument("--save-ids", action="store_true", help="also write <name>_trainIds.png class maps")
    parser.add_argument("--quiet", action="store_true")
    add_config_arguments(parser, "train")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    predictor, weights = load_predictor(config, args.weights, args.arch_idx)
    written = predict_inputs(predictor, args.input, args.output, args.save_ids, progress=not args.quiet)
    print(f"{len(written)} files from {weights} written to {args.output}")
    return written


if __name__ == "__main__":
    main()
