"""Fast inference paths for a derived (trained) FasterSeg network, each checked against eager fp32.

Beyond the original, which only timed eager PyTorch and TensorRT. Paths:

* ``fp32``: eager PyTorch, the reference.
* ``folded_cl``: BatchNorm folded into the preceding convolutions (``fold_bn``) and channels_last tensors.
* ``bf16``: the folded network in bfloat16 with channels_last (fast where the CPU has AVX-512 bf16 / AMX).
* ``ort_fp32``: ONNX Runtime, CPU provider, on the exported graph.
* ``ort_int8``: ONNX Runtime with static int8 quantisation (QDQ, per-channel weights) calibrated on images.

Every path returns logits comparable with the reference; :func:`argmax_agreement` is the check used by the
tests and benchmarks (fraction of pixels whose predicted class is unchanged).
"""
import copy
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from tools.latency.backends import LatencyError, export_onnx, ort_session

PATHS = ("fp32", "folded_cl", "bf16", "ort_fp32", "ort_int8")
_CONV_BN_PAIRS = (("conv", "bn"), ("conv1", "bn1"), ("conv2", "bn2"))


def _fold_split_bn(module):
    """FactorizedReduce at stride 2: bn(cat(conv1(x), conv2(x'))) -> each conv takes its half of the BN."""
    half = module.conv1.out_channels
    bn = module.bn
    for index, name in enumerate(("conv1", "conv2")):
        part = nn.BatchNorm2d(half, eps=bn.eps, device=bn.running_mean.device,
                              dtype=bn.running_mean.dtype).eval()   # beside the conv it is fused into
        rows = slice(index * half, (index + 1) * half)
        with torch.no_grad():
            part.weight.copy_(bn.weight[rows])
            part.bias.copy_(bn.bias[rows])
            part.running_mean.copy_(bn.running_mean[rows])
            part.running_var.copy_(bn.running_var[rows])
        setattr(module, name, fuse_conv_bn_eval(getattr(module, name), part))
    module.bn = nn.Identity()


def _foldable(conv, bn):
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
            and conv.out_channels == bn.num_features)


def fold_bn(model):
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a conv folded into it.

    Folds the pairs FasterSeg's modules use: ``conv``/``bn`` (ConvBnRelu), ``conv1``/``bn1`` and
    ``conv2``/``bn2`` (the BasicResidual operators), Sequential(Conv2d, BatchNorm2d, ...) (ConvNorm) and the
    split BatchNorm of the stride-2 FactorizedReduce. Folded BNs become ``nn.Identity``.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if type(module).__name__ == "FactorizedReduce" and module.stride == 2 and \
                isinstance(getattr(module, "bn", None), nn.BatchNorm2d):
            _fold_split_bn(module)
            continue
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if _foldable(conv, bn):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                if _foldable(module[index], module[index + 1]):
                    module[index] = fuse_conv_bn_eval(module[index], module[index + 1])
                    module[index + 1] = nn.Identity()
    return model


def count_batchnorms(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def argmax_agreement(reference, other):
    """Fraction of pixels where two (N, classes, H, W) logits pick the same class."""
    reference = torch.as_tensor(np.asarray(reference, dtype=np.float32) if not torch.is_tensor(reference)
                                else reference.float())
    other = torch.as_tensor(np.asarray(other, dtype=np.float32) if not torch.is_tensor(other) else other.float())
    if reference.shape != other.shape:
        raise LatencyError(f"cannot compare outputs of shapes {tuple(reference.shape)} and {tuple(other.shape)}.")
    return float((reference.argmax(1) == other.argmax(1)).float().mean())


IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


def demo_batch(count, height, width, seed=0):
    """``count`` demo street scenes (tools.data.demo) as normalised images and Cityscapes train-id labels.

    Used to calibrate int8 quantisation and to compare the inference paths on image-like inputs (white noise
    makes every pixel's logits nearly equal, so argmax agreement on it says little).
    """
    from tools.data.demo import make_scene, polygon_mask
    from tools.data.labels import cityscapes_labels
    labels_set = cityscapes_labels()
    images, labels = [], []
    for index in range(count):
        image, objects = make_scene(np.random.default_rng([seed, index]), height, width)
        label = np.full((height, width), 255, np.int64)
        for obj in objects:
            value = labels_set.polygon_value(obj["label"], "trainIds") if labels_set.knows(obj["label"]) else None
            if value is not None:
                label[polygon_mask(obj["polygon"], height, width)] = value
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
        labels.append(torch.from_numpy(label))
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (torch.stack(images) - mean) / std, torch.stack(labels)


def demo_images(count, height, width, seed=0):
    """The normalised images of :func:`demo_batch`."""
    return demo_batch(count, height, width, seed)[0]


class _Runner:
    """A callable ``x -> logits (float32 tensor)`` plus what the timing needs (model/session and input)."""

    def __init__(self, name, call, prepare):
        self.name = name
        self.call = call
        self.prepare = prepare

    def __call__(self, x):
        return self.call(self.prepare(x))


def _torch_runner(name, model, dtype, channels_last):
    def prepare(x):
        x = x.to(dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def call(x):
        with torch.no_grad():
            out = model(x)
        return out.float()
    return _Runner(name, call, prepare)


def _ort_runner(name, path, threads=None):
    session = ort_session(path, threads=threads)
    input_name = session.get_inputs()[0].name

    def call(x):
        return torch.from_numpy(session.run(None, {input_name: x})[0])
    runner = _Runner(name, call, lambda x: x.detach().float().cpu().numpy())
    runner.session = session
    return runner


def _tail_nodes(onnx_path):
    """Names of the last Conv (the classifier) and every node after it (the final upsampling)."""
    import onnx
    nodes = onnx.load(onnx_path).graph.node
    last_conv = max(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    return [node.name for node in nodes[last_conv:]]


def quantize_onnx_int8(onnx_path, out_path, calibration, per_channel=True, fp32_classifier=True):
    """Static int8 quantisation (QDQ, per-channel weights, MinMax calibration) of an fp32 ONNX file.

    ``fp32_classifier`` keeps the last 1x1 classifier conv and the final upsampling in fp32 (they are cheap,
    and quantising the logits costs several points of argmax agreement).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x.unsqueeze(0).detach().float().cpu().numpy()} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    prepared = out_path + ".pre.onnx"
    quant_pre_process(onnx_path, prepared, skip_symbolic_shape=True)
    try:
        exclude = _tail_nodes(prepared) if fp32_classifier else []
        quantize_static(prepared, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    finally:
        if os.path.exists(prepared):
            os.remove(prepared)
    return out_path


def make_runner(path, model, input_size, workdir=None, calibration=None, threads=None):
    """A runner for inference path ``path`` (see PATHS) of an eval-mode ``model`` at ``input_size``.

    ``threads``: ONNX Runtime intra-op threads (default: its own choice; PyTorch paths use torch's setting).
    """
    if path not in PATHS:
        raise LatencyError(f"unknown inference path '{path}'; choose one of {', '.join(PATHS)}.")
    model = model.eval()
    if path == "fp32":
        return _torch_runner(path, model, torch.float32, False)
    if path in ("folded_cl", "bf16"):
        dtype = torch.bfloat16 if path == "bf16" else torch.float32
        fast = fold_bn(model).to(dtype).to(memory_format=torch.channels_last)
        return _torch_runner(path, fast, dtype, True)
    workdir = workdir or tempfile.mkdtemp(prefix="fasterseg_onnx_")
    onnx_path = os.path.join(workdir, "model_fp32.onnx")
    if not os.path.exists(onnx_path):
        export_onnx(model, onnx_path, input_size)
    if path == "ort_fp32":
        return _ort_runner(path, onnx_path, threads)
    if calibration is None:
        calibration = demo_images(8, input_size[2], input_size[3], seed=1)
    int8_path = quantize_onnx_int8(onnx_path, os.path.join(workdir, "model_int8.onnx"), calibration)
    return _ort_runner(path, int8_path, threads)


def calibrate_bn(model, images, batches=4):
    """Set BatchNorm running statistics from ``images`` (cumulative average), for untrained demo networks.

    A freshly initialised network has running mean 0 / var 1 everywhere, which makes its eval-mode logits
    nearly constant; calibrated statistics give realistic, spatially varying predictions to compare paths on.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in images.chunk(batches):
            model(chunk)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()
