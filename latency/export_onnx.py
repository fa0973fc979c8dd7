"""Export a trained FasterSeg network into a self-contained deployment folder (ONNX; runs without this project).

    python latency/export_onnx.py runs/train-512x1024_student_batch12-... --out deploy/ --int8 --calib-images 32
    python latency/export_onnx.py runs/train-...-teacher/weights0_best.pt --size 512 1024 --dynamic-batch --dynamic-hw
    python deploy/predict.py --input photo.jpg --output predictions/          # needs onnxruntime, opencv, numpy

The network, its classes and widths come from the run folder (config.json, weights1.pt or weights0.pt; a
weights file names itself); ``--config PRESET key=value ...`` overrides. The folder gets model.onnx (fp32, checked
against PyTorch), with ``--int8`` model_int8.onnx (calibrated on images of the config's train list), meta.json
(classes, colours, normalisation, input size, arch, run, val mIoU of each model file by the project's evaluator
running ONNX Runtime), predict.py and legend.png; ``--tensorrt fp16`` also a TensorRT engine where TensorRT is
installed. Exporting the untrained network is refused unless ``--random-weights`` asks for it.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments  # noqa: E402
from tools.latency.deploy import EXPORTERS, export_deployment  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", default=None, help="training run folder or its weights file")
    parser.add_argument("--out", default="deploy", help="deployment folder (default: %(default)s)")
    parser.add_argument("--arch-idx", type=int, default=None, help="0 teacher / 1 student (default: from the weights)")
    parser.add_argument("--random-weights", action="store_true", help="export the untrained network (no weights)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="input size, multiples of 32 (default: the size val is evaluated at: the first val "
                             "image after down_sampling, else the config's eval_height eval_width; rounded up "
                             "to multiples of 32)")
    parser.add_argument("--dynamic-batch", action="store_true", help="any batch size")
    parser.add_argument("--dynamic-hw", action="store_true", help="any height and width (multiples of 32)")
    parser.add_argument("--argmax", action="store_true", help="argmax inside the graph: uint8 class map output")
    parser.add_argument("--int8", action="store_true", help="also model_int8.onnx (static int8, ONNX Runtime)")
    parser.add_argument("--calib-images", type=int, default=16, help="int8 calibration images (default: %(default)s)")
    parser.add_argument("--no-eval", action="store_true", help="skip the val mIoU of the model files")
    parser.add_argument("--tensorrt", choices=("fp32", "fp16"), default=None, help="also a TensorRT engine")
    parser.add_argument("--exporter", choices=EXPORTERS, default="dynamo", help="default: %(default)s")
    parser.add_argument("--opset", type=int, default=18)
    add_config_arguments(parser, None)
    args = parser.parse_intermixed_args(argv)
    meta = export_deployment(args.weights, args.out, args.config, args.overrides, args.arch_idx, args.random_weights,
                             args.size, args.int8, args.calib_images, args.dynamic_batch, args.argmax, args.opset,
                             not args.no_eval, args.tensorrt, args.exporter, args.dynamic_hw)
    print(f"deployment folder {args.out}: " + ", ".join(m["file"] for m in meta["models"].values()) +
          ", meta.json, predict.py, legend.png")
    return meta


if __name__ == "__main__":
    sys.exit(run_script(main))
