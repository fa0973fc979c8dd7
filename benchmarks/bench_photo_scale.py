"""Pixel accuracy of train/predict.py on a photo much larger than the training images: default vs ``--native``.

A labelled frame is enlarged to a phone photo's size (bilinear; its label nearest) and predicted both ways by the
project's predictor: by default the photo is shrunk to the training images' pixel count and the mask scaled back;
``native`` runs the network on every pixel of the photo. Void (``--ignore``) is left out. Prints and writes JSON.

    python benchmarks/bench_photo_scale.py --weights pretrained/camvid --image data/camvid/val/0016E5_07959.jpg \\
        --label data/camvid/valannot/0016E5_07959.png --size 3000 4000
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402

import cv2  # noqa: E402

from tools.data.datasets import read_image, read_label  # noqa: E402
from tools.engine.predictor import config_for_weights, load_predictor  # noqa: E402
from tools.utils.fileio import write_text  # noqa: E402


def pixel_accuracy(pred, label, ignore):
    keep = label != ignore
    return float((pred[keep] == label[keep]).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="pretrained/camvid")
    parser.add_argument("--image", required=True)
    parser.add_argument("--label", required=True, help="its label image (values = the network's classes)")
    parser.add_argument("--size", type=int, nargs=2, default=(3000, 4000), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--ignore", type=int, default=11, help="label value left out (CamVid's Void: 11)")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       "photo_scale.json"))
    args = parser.parse_args(argv)
    image, label = read_image(args.image), read_label(args.label)
    height, width = args.size
    photo = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    photo_label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    config = config_for_weights(args.weights)
    rows = {}
    for native in (False, True):
        predictor, _ = load_predictor(config, args.weights, native=native)
        name = "native" if native else "default"
        rows[name] = {"training_size": predictor.training_size,
                      "frame_accuracy": pixel_accuracy(predictor.predict(image)[0], label, args.ignore),
                      "photo_accuracy": pixel_accuracy(predictor.predict(photo)[0], photo_label, args.ignore)}
        print(f"{name:8s}: the frame {rows[name]['frame_accuracy']:.3f}, its {height}x{width} copy "
              f"{rows[name]['photo_accuracy']:.3f} (training size {predictor.training_size})", flush=True)
    write_text(args.json, json.dumps({"weights": args.weights, "image": args.image, "photo_size": [height, width],
                                      "rows": rows}, indent=2) + "\n")
    print(f"written {args.json}")
    return rows


if __name__ == "__main__":
    main()
