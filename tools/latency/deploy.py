"""A deployment folder from a training run: the trained network as ONNX, with everything needed to run it without
this project (the Blueoil-style "train, then convert into something that runs without the training code").

``export_deployment(weights, out_dir, ...)`` writes:

* ``model.onnx`` (fp32; input ``input`` N x 3 x H x W, normalised RGB; output ``output``: logits N x C x H x W,
  or with ``argmax`` the uint8 class map N x H x W computed inside the graph), checked against PyTorch;
* optionally ``model_int8.onnx`` (static int8, QDQ) calibrated on images of the config's own train list;
* ``meta.json``: class names, colours, ignore value, mean/std, channel order, input size, the arch and run it
  came from, the exporter, and the val mIoU of each model file, measured by the project's evaluator running the
  ONNX Runtime session (:class:`OrtNetwork`);
* ``predict.py`` (a copy of tools/latency/deploy_predict.py, which needs only onnxruntime, opencv and numpy), the
  ``image_files.py`` it imports (a copy of tools/utils/image_files.py: damaged images are refused as in training)
  and ``legend.png``;
* with ``tensorrt`` and where TensorRT is installed, ``model_<precision>.engine`` and its measured latency.

A deployment folder holds the files of one export only (meta.json's ``files`` lists them): the export is written
to a new folder beside ``out_dir`` that then takes its place, so a new export into the folder of an earlier one
leaves none of the earlier files (an fp32-only export after an int8 one: no model_int8.onnx), and a failed export
leaves the earlier folder as it was. A folder holding anything else (or that is no deployment folder and not
empty) is refused in one sentence and left untouched.

Exporting the untrained (randomly initialised) network is refused unless asked for by name (``random_weights``).
"""
import json
import os

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.utils.errors import UserError
from tools.data.datasets import (dataset_from_config, label_set_from_config, read_file_list, read_image,
                                 training_image_size)
from tools.utils import image_files
from tools.utils.fileio import atomic_folder, atomic_write, copy_file, is_temp_file, write_json, write_png
from tools.data.transforms import SIZE_DIVISOR, ceil_to_multiple, normalize
from tools.data.visualize import legend
from tools.engine.evaluator import Evaluator
from tools.engine.predictor import config_for_weights, resolve_weights, weights_arch_idx
from tools.engine.weights import load_weights
from tools.latency.backends import check_onnx_output, ort_session, tensorrt_available
from tools.models.build import arch_name, derived_from_config

META_NAME = "meta.json"
FP32_NAME = "model.onnx"
INT8_NAME = "model_int8.onnx"
PREDICT_NAME = "predict.py"
LEGEND_NAME = "legend.png"
DEPLOY_FORMAT = "fasterseg-deployment"
PREDICT_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy_predict.py")
# predict.py refuses damaged images with the project's own check: a copy of tools/utils/image_files.py beside it
IMAGE_FILES_NAME = "image_files.py"
IMAGE_FILES_SOURCE = image_files.__file__
EXPORTERS = ("dynamo", "torchscript")


class DeployError(UserError, ValueError):
    """An export that cannot (or should not) be made; one sentence saying what to do."""


class ExportModel(nn.Module):
    """The derived network's eval output (full-resolution logits), or its uint8 argmax with ``argmax``."""

    def __init__(self, network, argmax=False):
        super().__init__()
        self.network = network
        self.argmax = argmax

    def forward(self, x):
        logits = self.network(x)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        return logits.argmax(1).to(torch.uint8) if self.argmax else logits


class OrtNetwork(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface the project's Evaluator calls.

    Inputs smaller than a static model's input are zero-padded (as the evaluator pads) and the output cropped
    back; a uint8 class-map output becomes one-hot scores, so the evaluator's argmax returns it unchanged.
    """

    def __init__(self, path, num_classes, device="cpu"):
        super().__init__()
        self.path = path
        self.session = ort_session(path, device)
        self.input = self.session.get_inputs()[0]
        self.num_classes = num_classes

    def forward(self, x):
        height, width = x.shape[2:]
        static = [d if isinstance(d, int) else None for d in self.input.shape[2:]]
        pad_h, pad_w = (static[0] or height) - height, (static[1] or width) - width
        if pad_h < 0 or pad_w < 0:
            raise DeployError(f"{self.path} takes {static[0]}x{static[1]} images but got {height}x{width}; export "
                              f"with dynamic height/width or a larger size.")
        feed = F.pad(x, (0, pad_w, 0, pad_h)).cpu().float().numpy()
        out = torch.from_numpy(self.session.run(None, {self.input.name: feed})[0])
        if out.dtype == torch.uint8:
            out = F.one_hot(out.long(), self.num_classes).permute(0, 3, 1, 2).float()
        return out[:, :, :height, :width].to(x.device)


def find_weights(weights, arch_idx=None, random_weights=False):
    """``(weights file or None, arch_idx)``; refuses to go on without trained weights unless ``random_weights``."""
    if not weights:
        if not random_weights:
            raise DeployError("no trained weights given: pass a training run folder (or its weights0.pt / weights1.pt) "
                              "to export; to export the untrained, randomly initialised network on purpose, pass "
                              "--random-weights.")
        return None, 1 if arch_idx is None else int(arch_idx)
    path = resolve_weights(weights)
    return path, weights_arch_idx(path) if arch_idx is None else int(arch_idx)


def default_export_size(config, log=print):
    """The size val is evaluated at, up to multiples of 32 (tools.data.datasets.training_image_size): a network
    exported at a larger size than it is run at sees zero padding in its global pooling."""
    (height, width), source = training_image_size(config)
    size = ceil_to_multiple((height, width))        # what the evaluator pads a whole val image to
    log(f"export size {size[0]}x{size[1]}: {source}, up to multiples of {SIZE_DIVISOR}; --size chooses another")
    return size


def calibration_images(config, count, size):
    """``count`` normalised CHW tensors of the config's own train list (evenly spread over it), resized to ``size``."""
    entries = read_file_list(config.train_source)
    picks = np.linspace(0, len(entries) - 1, num=min(count, len(entries))).round().astype(int)
    images = []
    for index in picks:
        image = read_image(os.path.join(config.img_root_folder, entries[index][0]))
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        images.append(torch.from_numpy(normalize(image, config.image_mean, config.image_std).transpose(2, 0, 1)))
    return images


def export_model(model, path, size, dynamic=False, argmax=False, opset=18, exporter="dynamo", dynamic_hw=False):
    """Write ``model`` (eval) to ONNX at ``path`` (input ``input``, output ``output``; ``dynamic``: any batch size,
    ``dynamic_hw``: any height and width that are multiples of 32) and check it against PyTorch on a seeded input.
    ``exporter``: 'dynamo' (torch.export, the exporter torch keeps) or 'torchscript' (the deprecated tracer)."""
    if exporter not in EXPORTERS:
        raise DeployError(f"exporter {exporter!r} is unknown; use one of {', '.join(EXPORTERS)}.")
    export = ExportModel(model, argmax).eval()
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if exporter == "dynamo":
            dims = {0: torch.export.Dim("batch", min=1, max=1024)} if dynamic else {}
            if dynamic_hw:
                dims.update({2: SIZE_DIVISOR * torch.export.Dim("h32", min=1, max=256),
                             3: SIZE_DIVISOR * torch.export.Dim("w32", min=1, max=256)})
            shapes = {"x": dims} if dims else None
            try:
                program = torch.onnx.export(export, (x,), None, input_names=["input"], output_names=["output"],
                                            opset_version=opset, dynamo=True, dynamic_shapes=shapes, verbose=False)
            except ImportError as error:
                raise DeployError(f"the dynamo ONNX exporter needs onnxscript ({error}); pip install onnxscript, "
                                  f"or pass --exporter torchscript.") from error
            except Exception as error:  # torch.export raises many types; all become one sentence
                line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise DeployError(f"the dynamo ONNX export failed ({type(error).__name__}: {line}); try "
                                  f"--exporter torchscript or another --opset.") from error
            atomic_write(path, lambda handle: handle.write(program.model_proto.SerializeToString()))
        else:
            names = {**({0: "batch"} if dynamic else {}), **({2: "height", 3: "width"} if dynamic_hw else {})}
            out_names = {(k - 1 if argmax and k > 0 else k): v for k, v in names.items()}     # argmax: N x H x W
            axes = {"input": names, "output": out_names} if names else None
            atomic_write(path, lambda handle: torch.onnx.export(
                export, (x,), handle, input_names=["input"], output_names=["output"], opset_version=opset,
                dynamo=False, do_constant_folding=True, dynamic_axes=axes))
    if argmax:
        got = ort_session(path).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            agree = float((torch.from_numpy(got).long() == export(x).long()).float().mean())
        if agree < 0.999:
            raise DeployError(f"the ONNX model {path} agrees with PyTorch on only {agree:.4f} of the pixels; the "
                              f"export is not trustworthy.")
    else:
        check_onnx_output(export, path, x)
    return path


def onnx_val_miou(path, config, dataset, device="cpu"):
    """val mIoU of an ONNX file by the project's Evaluator running the ONNX Runtime session (one pass per image)."""
    evaluator = Evaluator(dataset, config.num_classes, config.image_mean, config.image_std,
                          OrtNetwork(path, config.num_classes, device), multi_scales=(1,), is_flip=False,
                          background=config.get("background", -1), quiet=True)
    return float(evaluator.evaluate()["mIoU"])


def deployment_meta(config, label_set, arch_idx, weights, size, dynamic, argmax, opset, models, exporter,
                    dynamic_hw=False):
    """The contents of meta.json (see the module docstring)."""
    return {
        "format": DEPLOY_FORMAT, "version": 1,
        "classes": {"names": list(label_set.names), "colors": [list(map(int, c)) for c in label_set.colors],
                    "num_classes": int(label_set.num_classes), "ignore_value": int(config.ignore_label),
                    "background": int(config.get("background", -1))},
        "input": {"name": "input", "layout": "NCHW", "channel_order": "RGB", "scale": 1.0 / 255,
                  "mean": list(config.image_mean), "std": list(config.image_std), "height": int(size[0]),
                  "width": int(size[1]), "dynamic_batch": bool(dynamic), "dynamic_hw": bool(dynamic_hw),
                  "size_divisor": SIZE_DIVISOR, "training_size": [int(v) for v in training_image_size(config)[0]]},
        "output": {"name": "output", "kind": "class_ids_uint8" if argmax else "logits",
                   "shape": ["N", "H", "W"] if argmax else ["N", int(label_set.num_classes), "H", "W"]},
        "models": models,
        "arch": {"arch_idx": int(arch_idx), "network": arch_name(arch_idx),
                 "load_path": config.get("load_path") or "published FasterSeg", "layers": int(config.layers),
                 "Fch": int(config.Fch), "width_mult_list": list(config.width_mult_list),
                 "stem_head_width": [list(p) for p in config.stem_head_width]},
        "source": {"weights": os.path.abspath(weights) if weights else "random (untrained)",
                   "run": os.path.dirname(os.path.abspath(weights)) if weights else None,
                   "dataset": config.get("dataset", "cityscapes"), "labels_file": config.get("labels_file", ""),
                   "val_list": config.eval_source, "train_list": config.train_source},
        "export": {"exporter": exporter, "opset": int(opset), "torch": torch.__version__},
    }


def read_meta(folder):
    """The meta.json of a deployment folder."""
    with open(os.path.join(folder, META_NAME)) as handle:
        return json.load(handle)


def export_deployment(weights, out_dir, preset=None, overrides=(), arch_idx=None, random_weights=False, size=None,
                      int8=False, calib_images=16, dynamic=False, argmax=False, opset=18, evaluate=True,
                      tensorrt=None, exporter="dynamo", dynamic_hw=False, log=print):
    """Write the deployment folder ``out_dir`` (see the module docstring); returns its meta.json contents."""
    path, arch_idx = find_weights(weights, arch_idx, random_weights)
    config = config_for_weights(path or "", preset, overrides) if path else \
        config_for_weights("", preset or "train", ["mode='student'"] * (arch_idx == 1) + list(overrides))
    if arch_idx not in config.arch_idx:
        raise DeployError(f"arch_idx {arch_idx} is not among the config's networks {list(config.arch_idx)}.")
    model = derived_from_config(config, arch_idx, "cpu")
    if path:
        load_weights(model, path)
    model.eval()
    size = tuple(size or default_export_size(config, log))
    if size[0] % SIZE_DIVISOR or size[1] % SIZE_DIVISOR:
        raise DeployError(f"export size {size[0]}x{size[1]} is not a multiple of {SIZE_DIVISOR}; pass --size with "
                          f"multiples of {SIZE_DIVISOR}.")
    label_set = label_set_from_config(config)
    if os.path.lexists(out_dir):
        replaceable_files(out_dir)          # refused now, not after minutes of exporting
    with atomic_folder(out_dir, replaceable_files) as stage:     # out_dir is replaced only when all is written
        files = {"fp32": os.path.join(stage, FP32_NAME)}
        export_model(model, files["fp32"], size, dynamic, argmax, opset, exporter, dynamic_hw)
        log(f"{os.path.join(out_dir, FP32_NAME)}: fp32 ({exporter} exporter), checked against PyTorch")
        models = {"fp32": {"file": FP32_NAME}}
        if int8:
            from tools.latency.fast import quantize_onnx_int8
            files["int8"] = os.path.join(stage, INT8_NAME)
            quantize_onnx_int8(files["fp32"], files["int8"], calibration_images(config, calib_images, size))
            models["int8"] = {"file": INT8_NAME, "calibration_images": min(calib_images, len(
                read_file_list(config.train_source))), "calibration_list": config.train_source}
            log(f"{os.path.join(out_dir, INT8_NAME)}: int8, calibrated on {models['int8']['calibration_images']} "
                f"images of {config.train_source}")
        if evaluate:
            dataset = dataset_from_config(config, "val")
            for kind, file in files.items():
                models[kind]["val_mIoU"] = onnx_val_miou(file, config, dataset)
                log(f"{os.path.basename(file)}: val mIoU {models[kind]['val_mIoU']:.4f} on {config.eval_source}")
        meta = deployment_meta(config, label_set, arch_idx, path, size, dynamic, argmax, opset, models, exporter,
                               dynamic_hw)
        if tensorrt:
            meta["tensorrt"] = tensorrt_engine(files["fp32"], stage, tensorrt, size, log)
        meta["files"] = listed_files(meta)
        write_json(os.path.join(stage, META_NAME), meta)
        copy_file(PREDICT_TEMPLATE, os.path.join(stage, PREDICT_NAME))
        copy_file(IMAGE_FILES_SOURCE, os.path.join(stage, IMAGE_FILES_NAME))
        write_png(os.path.join(stage, LEGEND_NAME), legend(label_set.names, label_set.colors,
                                                           config.get("background", -1)))
    return meta


def listed_files(meta):
    """The names of the files of a deployment folder, from its meta.json: its ``files`` list, or for a folder
    written before that list existed, its model files, TensorRT engine, meta.json, predict.py (and its
    image_files.py) and legend.png."""
    if isinstance(meta.get("files"), list):
        return sorted(meta["files"])
    models = [model.get("file") for model in (meta.get("models") or {}).values() if isinstance(model, dict)]
    engine = [meta["tensorrt"].get("file")] if isinstance(meta.get("tensorrt"), dict) else []
    return sorted(name for name in set(models + engine + [META_NAME, PREDICT_NAME, IMAGE_FILES_NAME, LEGEND_NAME])
                  if isinstance(name, str))


def replaceable_files(out_dir):
    """The names in ``out_dir`` that a new export may delete: all of them when it is empty or a deployment folder
    an export wrote (its meta.json lists them; temporary files of a killed write count as its own). A folder
    holding anything else is refused, so that no export deletes a file it did not write."""
    if not os.path.isdir(out_dir):
        raise DeployError(f"{out_dir} exists and is not a folder; choose another --out.")
    present = set(os.listdir(out_dir))
    if not present:
        return present
    try:
        meta = read_meta(out_dir)
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != DEPLOY_FORMAT:
        raise DeployError(f"{out_dir} is not empty and is not a deployment folder (it has no {META_NAME} of an "
                          f"export); choose another --out, or an empty folder, since an export replaces the whole "
                          f"folder.")
    owned = set(listed_files(meta))
    foreign = sorted(name for name in present if (name not in owned and not is_temp_file(name))
                     or os.path.isdir(os.path.join(out_dir, name)))
    if foreign:
        raise DeployError(f"deployment folder {out_dir} also holds files no export wrote ({', '.join(foreign)}); "
                          f"move them elsewhere or choose another --out, since an export replaces the whole folder "
                          f"and deletes only its own files.")
    return present


def tensorrt_engine(onnx_path, out_dir, precision, size, log=print):
    """``model_<precision>.engine`` and its latency where TensorRT runs; else one line saying why not (None)."""
    ok, why = tensorrt_available()
    if not ok:
        log(f"no TensorRT engine written: {why} (the deployment folder's ONNX files run without it).")
        return None
    from tools.latency.backends import CudaEventClock, _build_trt_engine, _trt_runner, resolve_device, time_callable
    device = resolve_device("cuda")
    with torch.cuda.device(device):
        engine = _build_trt_engine(onnx_path, precision, 1.0)
        path = os.path.join(out_dir, f"model_{precision}.engine")
        atomic_write(path, lambda handle: handle.write(bytes(engine.serialize())))
        run, stream = _trt_runner(engine, device, (1, 3, *size))
        median, _, _ = time_callable(run, CudaEventClock(stream), budget_s=2.0)
    log(f"{path}: TensorRT {precision}, {median:.2f} ms at 1x3x{size[0]}x{size[1]}")
    return {"file": os.path.basename(path), "precision": precision, "latency_ms": median}
