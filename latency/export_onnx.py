"""Export trained FasterSeg networks to ONNX (checked against PyTorch), optionally also as int8.

    python latency/export_onnx.py weights_path=runs/train-...-student image_height=1024 image_width=2048
    python latency/export_onnx.py mode=student onnx_int8=True onnx_dir=deploy

For each network of the config (the published teacher and student by default, or ``load_path``), the derived
network is built as train.py builds it, ``weights_path/weights{idx}.pt`` is loaded when given, and
``onnx_dir/fasterseg_<name>.onnx`` is written with a static 1x3xHxW input named ``input`` and the eval output
(full-resolution logits) named ``output``. ONNX Runtime's output is checked against PyTorch's; a failed export
names the operator. ``onnx_int8=True`` adds ``fasterseg_<name>_int8.onnx`` (static int8, calibrated on demo scenes).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.engine.weights import load_weights, weights_path  # noqa: E402
from tools.latency.backends import export_onnx  # noqa: E402
from tools.latency.fast import demo_images, quantize_onnx_int8  # noqa: E402
from tools.latency.report import build_networks  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, "latency")
    config = config_from_args(parser.parse_args(argv))
    input_size = (1, 3, config.image_height, config.image_width)
    os.makedirs(config.onnx_dir, exist_ok=True)
    written = []
    for name, arch_idx, net in build_networks(config):
        if config.weights_path:
            load_weights(net, weights_path(config.weights_path, arch_idx))
        path = os.path.join(config.onnx_dir, f"fasterseg_{name}.onnx")
        written.append(export_onnx(net.eval(), path, input_size, opset=config.opset))
        if config.onnx_int8:
            calibration = demo_images(8, config.image_height, config.image_width, seed=config.seed)
            written.append(quantize_onnx_int8(path, path.replace(".onnx", "_int8.onnx"), calibration))
        print(f"{name}: " + ", ".join(p for p in written if f"_{name}" in p))
    return written


if __name__ == "__main__":
    main()
