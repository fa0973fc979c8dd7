"""Segment images, folders of images, videos or a camera with the FasterSeg model of this folder.

Needs only onnxruntime, opencv-python(-headless) and numpy (no torch, no training code):

    python predict.py --input street.jpg --input photos/ --input drive.mp4 --output predictions/
    python predict.py --input 0 --max-frames 300            # camera 0
    python predict.py --input photos/ --model model_int8.onnx

An image larger than the training images is shrunk to their pixel count (meta.json ``training_size``; the project's
train/predict.py follows the same rule) and its class map scaled back; ``--native`` keeps full resolution where the
model takes any size. Each image gives ``<name>_labels.png`` (the class index of every pixel, 8-bit) and
``<name>_overlay.png`` (class colours blended on the image); a video or camera gives ``<name>_overlay.mp4``;
``legend.png`` names the colours. meta.json (beside this file) holds the classes, colours, normalisation and input
size. The FPS of the model (normalisation, ONNX Runtime, argmax) is printed at the end.
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))


def _image_files():
    """The copy of tools/utils/image_files.py beside predict.py in a deployment folder (loaded by path: predict.py
    may be run from any folder); this template, run inside the repository, uses the original."""
    path = os.path.join(HERE, "image_files.py")
    if not os.path.isfile(path):
        from tools.utils import image_files
        return image_files
    spec = importlib.util.spec_from_file_location("image_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


decode_file = _image_files().decode_file
TRACEBACK_ENV = "FASTERSEG_TRACEBACK"             # as in the project: set to 1 to see every traceback
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class Segmenter:
    """The model of a deployment folder: RGB uint8 image in, class map (uint8) out."""

    def __init__(self, folder=HERE, model=None, threads=None, native=False):
        meta_path = os.path.join(folder, "meta.json")
        with open(meta_path) as handle:
            try:
                self.meta = json.load(handle)
            except ValueError as error:
                fail(f"{meta_path} is not valid JSON ({error}); export the folder again with latency/export_onnx.py.")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = os.path.join(folder, model or self.meta["models"]["fp32"]["file"])
        if not os.path.isfile(path):
            models = ", ".join(sorted(name for name in os.listdir(folder) if name.endswith(".onnx")))
            fail(f"model {path} does not exist; give --model a model file of this folder ({models}).")
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a damaged model
            fail(f"model {path} cannot be loaded ({str(error).strip().splitlines()[0]}); export the folder again.")
        spec = self.meta["input"]
        self.input_name = spec["name"]
        self.mean = np.asarray(spec["mean"], np.float32)
        self.std = np.asarray(spec["std"], np.float32)
        self.size = (spec["height"], spec["width"])
        self.dynamic_hw = spec.get("dynamic_hw", False)
        self.divisor = spec.get("size_divisor", 32)
        self.training_size = None if native else spec.get("training_size")
        self.colors = np.asarray(self.meta["classes"]["colors"], np.uint8)
        self.background = self.meta["classes"]["background"]
        self.frames = 0
        self.seconds = 0.0

    def classes(self, image):
        """The class map (H x W, uint8) of an RGB uint8 image: shrunk to the training images' pixel count when
        larger (:meth:`scale`), normalised, zero-padded to the model's input size (a model of dynamic
        height/width: to the next multiple of 32), one pass, argmax, scaled back to the image."""
        start = time.perf_counter()
        height, width = image.shape[:2]
        scale = self.scale(height, width)
        if scale < 1.0:
            size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if self.dynamic_hw:
            h, w = image.shape[:2]
            self.size = (-(-h // self.divisor) * self.divisor, -(-w // self.divisor) * self.divisor)
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        h, w = min(x.shape[0], self.size[0]), min(x.shape[1], self.size[1])
        x = x[:h, :w]
        padded = np.zeros((self.size[0], self.size[1], 3), np.float32)
        padded[:h, :w] = x
        out = self.session.run(None, {self.input_name: padded.transpose(2, 0, 1)[None]})[0][0]
        classes = out if out.ndim == 2 else out.argmax(0)
        classes = classes[:h, :w].astype(np.uint8)
        if scale < 1.0:
            classes = cv2.resize(classes, (width, height), interpolation=cv2.INTER_NEAREST)
        self.seconds += time.perf_counter() - start
        self.frames += 1
        return classes

    def scale(self, height, width):
        """The factor (<= 1) an image is shrunk by: to the training images' pixel count (tools/data/transforms.py
        ``training_scale``, the same rule), and for a fixed-size model also to fit its input."""
        scale = 1.0
        if self.training_size:
            scale = min(1.0, math.sqrt(self.training_size[0] * self.training_size[1] / float(height * width)))
        if not self.dynamic_hw:
            scale = min(scale, self.size[0] / height, self.size[1] / width)
        return scale

    def overlay(self, image, classes):
        """0.55 x class colour + 0.45 x image where a class (not the background) is drawn."""
        drawn = classes < len(self.colors)
        if 0 <= self.background < len(self.colors):
            drawn &= classes != self.background
        colours = self.colors[np.minimum(classes, len(self.colors) - 1)]
        blended = (0.55 * colours + 0.45 * image + 0.5).astype(np.uint8)
        return np.where(drawn[:, :, None], blended, image)


def collect(inputs):
    """[(kind, source)]: images of folders (sorted), images, videos, camera indices; a bad input stops here."""
    items = []
    for path in inputs:
        if path.isdigit() and not os.path.exists(path):
            items.append(("camera", int(path)))
        elif os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                fail(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
            items += [("image", os.path.join(path, n)) for n in names]
        elif not os.path.isfile(path):
            fail(f"input {path} does not exist.")
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            items.append(("image", path))
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            items.append(("video", path))
        else:
            fail(f"input {path} is neither an image, a video nor a camera index.")
    seen = {}
    for kind, source in items:              # a/x.jpg and b/x.png would overwrite each other's outputs
        key = (kind == "image", output_stem(source))
        if key in seen:
            fail(f"inputs {seen[key]} and {source} would both write {key[1]}_* files; predict them into "
                     f"separate --output folders, or rename one.")
        seen[key] = source
    return items


def output_stem(source):
    """The name an input's outputs start with: ``<stem>`` of a file, ``camera<i>`` of a camera index."""
    return f"camera{source}" if isinstance(source, int) else os.path.splitext(os.path.basename(source))[0]


def write(path, image):
    if not cv2.imwrite(path, image):
        fail(f"cannot write {path} (disk full or folder not writable); free space or choose another --output.")


def fail(sentence):
    """Stop with the project's one line for a user error (tools/utils/cli.py): ``error: ...``, exit code 1."""
    sys.exit(f"error: {sentence}")


def predict_image(segmenter, path, out_dir):
    bgr, problem = decode_file(path, cv2.IMREAD_COLOR)
    if bgr is None:
        fail(f"image {path} cannot be read ({problem}); replace it or leave it out.")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    classes = segmenter.classes(rgb)
    stem = output_stem(path)
    write(os.path.join(out_dir, stem + "_labels.png"), classes)
    write(os.path.join(out_dir, stem + "_overlay.png"), segmenter.overlay(rgb, classes)[:, :, ::-1])
    return [os.path.join(out_dir, stem + "_labels.png"), os.path.join(out_dir, stem + "_overlay.png")]


def predict_stream(segmenter, source, out_dir, max_frames=None):
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        fail(f"{'camera' if isinstance(source, int) else 'video'} {source} cannot be opened.")
    stem = output_stem(source)
    path = os.path.join(out_dir, stem + "_overlay.mp4")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer, count = None, 0
    try:
        while max_frames is None or count < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            blended = segmenter.overlay(rgb, segmenter.classes(rgb))
            if writer is None:
                writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (bgr.shape[1], bgr.shape[0]))
            writer.write(np.ascontiguousarray(blended[:, :, ::-1]))
            count += 1
    except KeyboardInterrupt:
        pass
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return [path] if writer is not None else []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", action="append", required=True, help="image, folder, video or camera index")
    parser.add_argument("--output", default="predictions", help="output folder (default: %(default)s)")
    parser.add_argument("--model", default=None, help="model file of this folder (default: the fp32 model.onnx)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop videos/cameras after this many frames")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its choice)")
    parser.add_argument("--native", action="store_true", help="keep an image's own resolution (a model of fixed "
                                                              "size still shrinks an image that does not fit it)")
    args = parser.parse_args(argv)
    items = collect(args.input)
    segmenter = Segmenter(HERE, args.model, args.threads, native=args.native)
    os.makedirs(args.output, exist_ok=True)
    legend = cv2.imread(os.path.join(HERE, "legend.png"))
    written = []
    if legend is not None:
        write(os.path.join(args.output, "legend.png"), legend)
        written.append(os.path.join(args.output, "legend.png"))
    for kind, source in items:
        if kind == "image":
            written += predict_image(segmenter, source, args.output)
        else:
            written += predict_stream(segmenter, source, args.output, args.max_frames)
    fps = segmenter.frames / segmenter.seconds if segmenter.seconds else float("nan")
    print(f"{len(written)} files written to {args.output}; {segmenter.frames} frame(s) in {segmenter.seconds:.2f} s: "
          f"{fps:.1f} FPS")
    return written


def run_script(main):
    """The project's one handler (tools/utils/cli.py), without the project's code: a missing or unreadable file
    is one line and exit code 1, Ctrl-C 130; anything else keeps its traceback."""
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        main()
        return 0
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C).", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}; check the path and its permissions.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
