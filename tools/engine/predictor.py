"""Segment a user's images, folders of images or videos with a trained network: colour masks and overlays out.

The original had no such command (only the Cityscapes test-list writer). Here ``train/predict.py`` builds the
derived network from the arch file (``load_path``, default the published FasterSeg) and a trained
``weights0.pt``/``weights1.pt``, then predicts every input with the evaluator's prediction (whole image, or
sliding window / multi-scale / flip per the ``eval_*`` keys; any size, padded to a multiple of 32 and cropped
back) on any device, and writes for each input ``<name>_mask.png`` (class colours) and ``<name>_overlay.png``
(colours blended on the image), plus ``<name>_trainIds.png`` if asked; a video gives ``<name>_mask.mp4`` and
``<name>_overlay.mp4`` with the same frame rate and size, a camera index ``camera<i>_*.mp4``. ``legend.png``
names the colours, and the prediction speed (FPS) is measured. By default one forward pass of the whole image
(``tta``: the evaluation's scales, flip and sliding window) at the training images' scale: an image larger than
them (a phone photo) is shrunk to their pixel count and its class map scaled back (``native``: its own
resolution), the rule of the deployment folder's predict.py too (tools/data/transforms.py ``training_scale``).
"""
import os
import time

import cv2
import numpy as np
from tqdm import tqdm

from tools.data.datasets import label_set_from_config, read_image, training_image_size
from tools.data.transforms import scaled_shape, training_scale
from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils.fileio import write_png
from tools.data.visualize import colorize, legend, overlay
from tools.engine.evaluator import Evaluator

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class PredictInputError(DataFileNotFoundError):
    """An input path that does not exist or is neither an image, a video nor a folder holding images."""


def weights_arch_idx(path):
    """0 for ``weights0.pt`` / ``weights0_best.pt`` (teacher), 1 for ``weights1.pt`` / ``weights1_best.pt``
    (student), from the file names train.py writes."""
    name = os.path.basename(path)
    if name in ("weights0.pt", "weights1.pt", "weights0_best.pt", "weights1_best.pt"):
        return int(name[len("weights")])
    raise PredictInputError(f"cannot tell teacher from student by the name of {path}; pass --arch-idx 0 or 1 "
                            f"(train.py writes weights0.pt for the teacher and weights1.pt for the student).")


def resolve_weights(path):
    """A weights file, or a run folder (its weights1.pt, else weights0.pt)."""
    if os.path.isdir(path):
        for name in ("weights1.pt", "weights0.pt"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise PredictInputError(f"run folder {path} holds neither weights1.pt nor weights0.pt; train a network "
                                f"first (python train/train.py).")
    if not os.path.isfile(path):
        raise PredictInputError(f"weights file {path} does not exist; it is written by python train/train.py.")
    return path


def collect_inputs(paths):
    """Expand folders (their images, sorted, not recursive) and check every path; returns [(kind, path)]. A
    number that is not a file is a camera index (kind 'camera', the path an int)."""
    items = []
    for path in paths:
        if str(path).isdigit() and not os.path.exists(path):
            items.append(("camera", int(path)))
        elif os.path.isdir(path):
            images = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not images:
                raise PredictInputError(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
            items += [("image", image) for image in images]
        elif not os.path.isfile(path):
            raise PredictInputError(f"input {path} does not exist.")
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            items.append(("image", path))
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            items.append(("video", path))
        else:
            raise PredictInputError(f"input {path} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                                    f"({', '.join(VIDEO_EXTENSIONS)}).")
    if not items:
        raise PredictInputError("no input given; pass --input IMAGE, FOLDER, VIDEO or a camera index (repeatable).")
    _refuse_shared_outputs(items)
    return items


def output_stem(kind, path):
    """The name an input's outputs start with: ``<stem>`` of a file, ``camera<i>`` of a camera."""
    return f"camera{path}" if kind == "camera" else os.path.splitext(os.path.basename(path))[0]


def _refuse_shared_outputs(items):
    """Two inputs whose outputs would have one name (a/x.jpg and b/x.png) would overwrite each other."""
    seen = {}
    for kind, path in items:
        key = ("video" if kind == "camera" else kind, output_stem(kind, path))
        if key in seen:
            raise PredictInputError(f"inputs {seen[key]} and {path} would both write {key[1]}_* files; predict "
                                    f"them into separate --output folders, or rename one.")
        seen[key] = path


class Predictor:
    """Class maps, colour masks and overlays for RGB uint8 frames with one trained network."""

    def __init__(self, config, model, device, label_set=None, tta=False, training_size=None):
        self.label_set = label_set if label_set is not None else label_set_from_config(config)
        self.colors = self.label_set.colors
        self.background = config.get("background", -1)
        self.evaluator = Evaluator.from_config(config, None, model, device=device, quiet=True,
                                               class_names=list(self.label_set.names))
        if not tta:     # one forward pass of the whole image; tta: the eval_* keys (scales, flip, sliding window)
            self.evaluator.multi_scales, self.evaluator.is_flip = [1], False
        self.training_size = training_size      # None: every image at its own resolution
        self.frames = 0
        self.seconds = 0.0

    def classes(self, image):
        """The class map (H x W, uint8) of an RGB uint8 image: shrunk to the training images' pixel count when
        larger (INTER_AREA), predicted, and scaled back (nearest)."""
        scale = training_scale(image.shape, self.training_size) if self.training_size else 1.0
        if scale >= 1.0:
            return self.evaluator.predict(image).astype(np.uint8)
        height, width = scaled_shape(image.shape, scale)
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        pred = self.evaluator.predict(small).astype(np.uint8)
        return cv2.resize(pred, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)

    def predict(self, image):
        """(class map HxW uint8, colour mask HxWx3, overlay HxWx3) of an RGB uint8 image."""
        start = time.perf_counter()
        pred = self.classes(image)
        self.seconds += time.perf_counter() - start
        self.frames += 1
        return pred, colorize(pred, self.colors, self.background), overlay(image, pred, self.colors, self.background)

    @property
    def fps(self):
        """Frames per second of the prediction itself (normalisation, network, argmax), over every frame so far."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def legend(self, out_dir):
        """``legend.png``: every class's colour and name, for reading the masks and overlays."""
        path = os.path.join(out_dir, "legend.png")
        write_png(path, legend(self.label_set.names, self.colors, self.background))
        return path

    def image(self, path, out_dir, save_ids=False):
        """Write ``<name>_mask.png`` and ``<name>_overlay.png`` (and ``<name>_trainIds.png``); returns the paths."""
        stem = output_stem("image", path)
        pred, mask, blended = self.predict(read_image(path))
        written = [os.path.join(out_dir, f"{stem}_mask.png"), os.path.join(out_dir, f"{stem}_overlay.png")]
        write_png(written[0], mask)
        write_png(written[1], blended)
        if save_ids:
            written.append(os.path.join(out_dir, f"{stem}_trainIds.png"))
            write_png(written[2], pred)
        return written

    def video(self, path, out_dir, progress=True, max_frames=None):
        """Write ``<name>_mask.mp4`` and ``<name>_overlay.mp4`` frame by frame; returns the paths. ``path`` may be
        a camera index (int; ``camera<index>_*.mp4``, until ``max_frames`` frames or Ctrl-C)."""
        camera = isinstance(path, int)
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise DataError(f"camera {path} cannot be opened (no such device, or it is in use)." if camera else
                            f"video {path} cannot be opened (corrupt or an unsupported codec).")
        fps = capture.get(cv2.CAP_PROP_FPS) or (30.0 if camera else 25.0)
        frames = None if camera else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        stem = output_stem("camera" if camera else "video", path)
        paths = [os.path.join(out_dir, f"{stem}_mask.mp4"), os.path.join(out_dir, f"{stem}_overlay.mp4")]
        writers = None
        bar = tqdm(total=frames, desc=stem, disable=not progress)
        read = 0
        try:
            while max_frames is None or read < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                read += 1
                _, mask, blended = self.predict(np.ascontiguousarray(frame[:, :, ::-1]))
                if writers is None:
                    writers = [open_video_writer(p, fps, frame.shape[1], frame.shape[0]) for p in paths]
                for writer, image in zip(writers, (mask, blended)):
                    writer.write(np.ascontiguousarray(image[:, :, ::-1]))
                bar.update()
        except KeyboardInterrupt:               # Ctrl-C ends a camera stream; the videos so far are kept
            if not camera:
                raise
        finally:
            bar.close()
            capture.release()
            for writer in writers or ():
                writer.release()
        if writers is None:
            raise DataError(f"video {path} holds no readable frame.")
        return paths


def open_video_writer(path, fps, width, height):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write the video {path} (OpenCV has no mp4v encoder here).")
    return writer


def config_for_weights(weights, preset=None, overrides=()):
    """The config to predict (or export) with: the preset ``preset`` with ``overrides`` when one is named, else
    the ``config.json`` of the weights' run folder (the classes, arch and widths the network was trained with)
    with ``overrides``, else the train preset."""
    from easydict import EasyDict

    from tools.config import ConfigError, check_value, load_config, parse_value
    from tools.engine.run import saved_config
    folder = weights if os.path.isdir(weights) else os.path.dirname(os.path.abspath(weights))
    saved = saved_config(folder) if preset is None and os.path.isdir(folder) else None
    if saved is None:
        return load_config(preset or "train", list(overrides))
    config = EasyDict(saved)
    for override in overrides:
        key, _, raw = override.partition("=")
        key, raw = key.strip(), raw.strip()
        if not _ or key not in config:
            raise ConfigError(f"override '{override}' does not set a key of {os.path.join(folder, 'config.json')} "
                              f"(write key=value with one of its keys, e.g. device='cpu').")
        config[key] = check_value(key, parse_value(raw), config[key], raw)
    return config


def load_predictor(config, weights, arch_idx=None, tta=False, native=False):
    """The network of ``weights`` (a file or a run folder) built from the config's arch file, in eval mode;
    ``tta``: predict as the evaluation does (eval_* keys) instead of one forward pass of the whole image;
    ``native``: every image at its own resolution instead of the training images' scale
    (:func:`tools.data.datasets.training_image_size`)."""
    from tools.engine.distributed import resolve_device
    from tools.engine.weights import load_weights
    from tools.models.build import derived_from_config
    path = resolve_weights(weights)
    arch_idx = weights_arch_idx(path) if arch_idx is None else int(arch_idx)
    if arch_idx not in config.arch_idx:
        raise PredictInputError(f"arch_idx {arch_idx} is not in the config's arch_idx {config.arch_idx}; use "
                                f"mode='student' (it knows the teacher 0 and the student 1).")
    device = resolve_device(config.device)
    model = derived_from_config(config, arch_idx, device)
    load_weights(model, path)
    model.eval()
    training_size = None if native else training_image_size(config)[0]
    return Predictor(config, model, device, tta=tta, training_size=training_size), path


def predict_inputs(predictor, inputs, out_dir, save_ids=False, progress=True, max_frames=None):
    """Predict every input (see :func:`collect_inputs`) into ``out_dir`` with ``legend.png``; returns the written
    paths (``predictor.fps`` then holds the prediction speed)."""
    items = collect_inputs(inputs)
    os.makedirs(out_dir, exist_ok=True)
    written = [predictor.legend(out_dir)]
    images = [path for kind, path in items if kind == "image"]
    for path in tqdm(images, desc="images", disable=not progress or not images):
        written += predictor.image(path, out_dir, save_ids)
    for kind, path in items:
        if kind in ("video", "camera"):
            written += predictor.video(path, out_dir, progress, max_frames)
    return written
