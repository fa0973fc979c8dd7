"""Segment images, folders of images, videos or a camera with a trained FasterSeg network (colour masks, overlays,
a colour legend; the prediction speed in FPS is printed).

    python train/predict.py --weights runs/train-512x1024_student_batch12-.../weights1.pt \\
        --input street.png --input photos/ --input drive.mp4 --input 0 --max-frames 300 --output predictions/

The network comes from the weights file (weights0.pt = teacher, weights1.pt = student, weights1_best.pt, or a
run folder) and the settings of its run folder (config.json: classes, arch files, widths), or ``--config`` with
``key=value`` overrides (``device=cpu|cuda|auto``). One forward pass of the whole image; ``--tta`` predicts as
the evaluation does (the ``eval_*`` keys: scales, flip, sliding window). An image larger than the training
images (a phone photo) is shrunk to their pixel count and its masks scaled back, so that objects appear at the
scale the network learned; ``--native`` keeps full resolution. A number as ``--input`` is a camera.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments  # noqa: E402
from tools.engine.predictor import config_for_weights, load_predictor, predict_inputs  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="weights0.pt / weights1.pt or a training run folder")
    parser.add_argument("--input", action="append", required=True, help="an image, a folder of images, a video "
                                                                        "or a camera index; repeat for several")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video or camera after this many "
                                                                      "frames (default: the end, or Ctrl-C)")
    parser.add_argument("--tta", action="store_true", help="predict as the evaluation (eval_* keys) instead of "
                                                           "one forward pass")
    parser.add_argument("--output", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--arch-idx", type=int, default=None, help="0 teacher / 1 student (default: from the "
                                                                   "weights file name)")
    parser.add_argument("--save-ids", action="store_true", help="also write <name>_trainIds.png class maps")
    parser.add_argument("--native", action="store_true", help="predict every image at its own resolution "
                                                              "(default: larger images are shrunk to the training "
                                                              "images' pixel count, the masks scaled back)")
    parser.add_argument("--quiet", action="store_true")
    add_config_arguments(parser, None)
    args = parser.parse_args(argv)
    config = config_for_weights(args.weights, args.config, args.overrides)
    predictor, weights = load_predictor(config, args.weights, args.arch_idx, tta=args.tta, native=args.native)
    if predictor.training_size is not None and not args.quiet:
        print(f"images larger than {predictor.training_size[0]}x{predictor.training_size[1]} pixels (the training "
              f"images' size) are shrunk to that pixel count and their masks scaled back; --native keeps full "
              f"resolution")
    written = predict_inputs(predictor, args.input, args.output, args.save_ids, progress=not args.quiet,
                             max_frames=args.max_frames)
    print(f"{len(written)} files from {weights} written to {args.output}")
    print(f"{predictor.frames} frame(s) in {predictor.seconds:.2f} s: {predictor.fps:.1f} FPS (normalisation, "
          f"network and argmax on {predictor.evaluator.device})")
    return written


if __name__ == "__main__":
    sys.exit(run_script(main))
