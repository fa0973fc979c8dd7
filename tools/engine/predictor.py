"""Segment a user's images, folders of images or videos with a trained network: colour masks and overlays out.

The original had no such command (only the Cityscapes test-list writer). Here ``train/predict.py`` builds the
derived network from the arch file (``load_path``, default the published FasterSeg) and a trained
``weights0.pt``/``weights1.pt``, then predicts every input with the evaluator's prediction (whole image, or
sliding window / multi-scale / flip per the ``eval_*`` keys; any size, padded to a multiple of 32 and cropped
back) on any device, and writes for each input ``<name>_mask.png`` (class colours) and ``<name>_overlay.png``
(colours blended on the image), plus ``<name>_trainIds.png`` if asked; a video gives ``<name>_mask.mp4`` and
``<name>_overlay.mp4`` with the same frame rate and size.
"""
import os

import cv2
import numpy as np
from tqdm import tqdm

from tools.data.datasets import label_set_from_config, read_image
from tools.data.errors import DataError, DataFileNotFoundError
from tools.data.fileio import write_png
from tools.data.visualize import colorize, overlay
from tools.engine.evaluator import Evaluator

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class PredictInputError(DataFileNotFoundError):
    """An input path that does not exist or is neither an image, a video nor a folder holding images."""


def weights_arch_idx(path):
    """0 for ``weights0.pt`` (teacher), 1 for ``weights1.pt`` (student), from the file name train.py writes."""
    name = os.path.basename(path)
    if name in ("weights0.pt", "weights1.pt"):
        return int(name[len("weights")])
    raise PredictInputError(f"cannot tell teacher from student by the name of {path}; pass arch_idx=0 or 1 "
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
    """Expand folders (their images, sorted, not recursive) and check every path; returns [(kind, path)]."""
    items = []
    for path in paths:
        if os.path.isdir(path):
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
        raise PredictInputError("no input given; pass --input IMAGE, FOLDER or VIDEO (repeatable).")
    return items


class Predictor:
    """Class maps, colour masks and overlays for RGB uint8 frames with one trained network."""

    def __init__(self, config, model, device, label_set=None):
        self.label_set = label_set if label_set is not None else label_set_from_config(config)
        self.colors = self.label_set.colors
        self.background = config.get("background", -1)
        self.evaluator = Evaluator.from_config(config, None, model, device=device, quiet=True,
                                               class_names=list(self.label_set.names))

    def predict(self, image):
        """(class map HxW uint8, colour mask HxWx3, overlay HxWx3) of an RGB uint8 image."""
        pred = self.evaluator.predict(image).astype(np.uint8)
        return pred, colorize(pred, self.colors, self.background), overlay(image, pred, self.colors, self.background)

    def image(self, path, out_dir, save_ids=False):
        """Write ``<name>_mask.png`` and ``<name>_overlay.png`` (and ``<name>_trainIds.png``); returns the paths."""
        stem = os.path.splitext(os.path.basename(path))[0]
        pred, mask, blended = self.predict(read_image(path))
        written = [os.path.join(out_dir, f"{stem}_mask.png"), os.path.join(out_dir, f"{stem}_overlay.png")]
        write_png(written[0], mask)
        write_png(written[1], blended)
        if save_ids:
            written.append(os.path.join(out_dir, f"{stem}_trainIds.png"))
            write_png(written[2], pred)
        return written

    def video(self, path, out_dir, progress=True):
        """Write ``<name>_mask.mp4`` and ``<name>_overlay.mp4`` frame by frame; returns the paths."""
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise DataError(f"video {path} cannot be opened (corrupt or an unsupported codec).")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        stem = os.path.splitext(os.path.basename(path))[0]
        paths = [os.path.join(out_dir, f"{stem}_mask.mp4"), os.path.join(out_dir, f"{stem}_overlay.mp4")]
        writers = None
        bar = tqdm(total=frames, desc=stem, disable=not progress)
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                _, mask, blended = self.predict(np.ascontiguousarray(frame[:, :, ::-1]))
                if writers is None:
                    writers = [open_video_writer(p, fps, frame.shape[1], frame.shape[0]) for p in paths]
                for writer, image in zip(writers, (mask, blended)):
                    writer.write(np.ascontiguousarray(image[:, :, ::-1]))
                bar.update()
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


def load_predictor(config, weights, arch_idx=None):
    """The network of ``weights`` (a file or a run folder) built from the config's arch file, in eval mode."""
    from tools.engine.distributed import resolve_device
    from tools.engine.train_run import build_network
    from tools.engine.weights import load_weights
    path = resolve_weights(weights)
    arch_idx = weights_arch_idx(path) if arch_idx is None else int(arch_idx)
    if arch_idx not in config.arch_idx:
        raise PredictInputError(f"arch_idx {arch_idx} is not in the config's arch_idx {config.arch_idx}; use "
                                f"mode='student' (it knows the teacher 0 and the student 1).")
    device = resolve_device(config.device)
    model = build_network(config, list(config.arch_idx).index(arch_idx), arch_idx, device)
    load_weights(model, path)
    model.eval()
    return Predictor(config, model, device), path


def predict_inputs(predictor, inputs, out_dir, save_ids=False, progress=True):
    """Predict every input (see :func:`collect_inputs`) into ``out_dir``; returns the written paths."""
    items = collect_inputs(inputs)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    images = [path for kind, path in items if kind == "image"]
    for path in tqdm(images, desc="images", disable=not progress or not images):
        written += predictor.image(path, out_dir, save_ids)
    for kind, path in items:
        if kind == "video":
            written += predictor.video(path, out_dir, progress)
    return written
