"""Evaluate a segmentation network on a dataset: whole image or sliding window, multi-scale, flip; mIoU.

Replaces the original ``tools/engine/evaluator.py`` (``Evaluator``) and ``train/eval.py`` (``SegEvaluator``),
with the same prediction math:

- one scale of 1 (``eval_scale_array == [1]``): the whole image, normalised, through the network;
- otherwise, per scale (image resized linearly): if the scaled image fits the crop it is padded to the crop,
  else windows of the crop size at ``ceil(crop * stride_rate)`` steps over the zero-padded image, whose scores
  are summed (not averaged) where windows overlap; every scale's score map is resized back and summed;
- the score of one pass is ``exp(logits + flipped logits of the flipped image)`` (``exp(logits)`` without flip);
  the prediction is the argmax.

It works for any ``nn.Module`` returning a tensor or a list/tuple of tensors (``out_idx`` picks one, as the
original), on any device, without the original's spawned processes: one process evaluates its share of the
images (all of them unless torch.distributed is initialised) and the confusion matrix is summed over
processes. Differences (docs/differences.md): flip uses the same ``out_idx`` output (the original flipped
output 0), a single scale other than 1 is honoured (the original ignored it), whole images whose size is not
a multiple of 32 are zero-padded and cropped back (the original crashed), scores are exponentiated in
float64 (the original's float32 could overflow to inf and tie), and outputs smaller than the input are
resized bilinearly to it.
"""
import math
import os

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from tools.utils.fileio import write_png
from tools.data.transforms import ceil_to_multiple, check_crop_size, get_2dshape, normalize, pad_image_to_shape
from tools.data.visualize import show_img
from tools.engine.metrics import all_reduce_hist, compute_score, confusion_matrix, format_iou_table


def _rank_and_world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Evaluator:
    """``run_online()`` -> ``(result_line, mIoU)`` as the original; ``evaluate()`` -> a dict of all scores."""

    def __init__(self, dataset, class_num, image_mean, image_std, network, multi_scales=(1,), is_flip=False,
                 device="cpu", out_idx=0, crop_size=None, stride_rate=2 / 3, class_names=None, background=-1,
                 save_path=None, show_image=False, logger=None, verbose=False, quiet=False, progress=False,
                 keep=0):
        self.dataset = dataset
        self.class_num = class_num
        self.image_mean = np.asarray(image_mean, np.float32)
        self.image_std = np.asarray(image_std, np.float32)
        self.network = network
        self.multi_scales = list(multi_scales)
        self.is_flip = is_flip
        self.device = torch.device(device)
        self.out_idx = out_idx
        if crop_size is not None:
            crop_h, crop_w = get_2dshape(crop_size)
            check_crop_size(crop_h, crop_w, "evaluation crop size", "eval_crop_size")
        self.crop_size = crop_size
        self.stride_rate = stride_rate
        self.class_names = class_names if class_names is not None else _names_of(dataset)
        self.background = background
        self.save_path = save_path
        self.show_image = show_image
        self.logger = logger
        self.verbose = verbose
        self.quiet = quiet
        self.progress = progress
        self.keep = keep                # (name, image, label, prediction) of the first ``keep`` items -> self.kept
        self.kept = []
        self.last_scores = None
        if save_path is not None:
            os.makedirs(save_path, exist_ok=True)

    @classmethod
    def from_config(cls, config, dataset, network, device="cpu", out_idx=0, **kwargs):
        """Keys: num_classes, image_mean/std, eval_scale_array, eval_flip, eval_crop_size, eval_stride_rate."""
        return cls(dataset, config.num_classes, config.image_mean, config.image_std, network,
                   config.eval_scale_array, config.eval_flip, device=device, out_idx=out_idx,
                   crop_size=config.get("eval_crop_size"), stride_rate=config.eval_stride_rate,
                   background=config.get("background", -1), **kwargs)

    # ------------------------------------------------------------------ running
    def run_online(self):
        """Evaluate the whole dataset with the network as it is (the original's online evaluation)."""
        scores = self.evaluate()
        return scores["result_line"], scores["mIoU"]

    run_online_multiprocess = run_online
    single_process_evaluation = run_online

    def evaluate(self):
        """Confusion matrix over this process's images, summed over processes; IoUs, mIoU, pixel accuracy."""
        rank, world = _rank_and_world()
        was_training = self.network.training
        self.network.to(self.device)
        hist = np.zeros((self.class_num, self.class_num), np.int64)
        indices = range(rank, self.dataset.get_length() if hasattr(self.dataset, "get_length")
                        else len(self.dataset), world)
        try:
            for idx in tqdm(indices, disable=not self.progress or rank != 0, desc="eval"):
                hist += self.func_per_iteration(self.dataset[idx], self.device, iter=idx)["hist"]
        finally:
            self.network.train(was_training)
        hist = all_reduce_hist(hist, self.device if self.device.type == "cuda" else None)
        return self._scores(hist, rank)

    def compute_metric(self, results):
        """The original API: sum ``results`` (dicts with 'hist') and return ``(result_line, mIoU)``."""
        hist = sum(np.asarray(r["hist"], np.int64) for r in results)
        scores = self._scores(hist, _rank_and_world()[0])
        return scores["result_line"], scores["mIoU"]

    def _scores(self, hist, rank):
        iou, miou, miou_no_back, pixel_acc = compute_score(hist)
        line = format_iou_table(iou, pixel_acc, self.class_names)
        if not self.quiet and rank == 0:
            print(line, flush=True)
        self.last_scores = dict(hist=hist, iou=iou, mIoU=miou, mIoU_no_back=miou_no_back,
                                pixel_acc=pixel_acc, result_line=line)
        return self.last_scores

    def func_per_iteration(self, data, device, iter=None):
        """Predict one dataset item and return its ``{'hist', 'labeled', 'correct'}``; save/show if asked."""
        if data["label"] is None:
            raise ValueError(f"item '{data['fn']}' has no label (an image-only test list); evaluate a list with "
                             f"labels, or write predictions with the Tester.")
        img, label, name = data["data"], np.asarray(data["label"]), data["fn"]
        pred = self.predict(img, device)
        hist = confusion_matrix(pred, label, self.class_num)
        if self.save_path is not None:
            write_png(os.path.join(self.save_path, name + ".png"), pred.astype(np.uint8))
        if iter is not None and iter < self.keep:
            self.kept.append((name, img, label, pred))
        if (self.show_image and self.save_path is not None) or self.logger is not None:
            colors = self.dataset.get_class_colors()
            comp = show_img(colors, self.background, img, label, pred)
            if self.show_image and self.save_path is not None:
                write_png(os.path.join(self.save_path, name + "_vis.png"), comp)
            if self.logger is not None and iter is not None:
                self.logger.add_image("vis", comp.transpose(2, 0, 1), iter)
        return dict(hist=hist, labeled=int(hist.sum()), correct=int(np.trace(hist)))

    # ------------------------------------------------------------------ prediction
    def predict(self, img, device=None):
        """Class map (H x W, int64) of an RGB uint8 image."""
        device = self.device if device is None else torch.device(device)
        if len(self.multi_scales) == 1 and self.multi_scales[0] == 1:
            return self.whole_eval(img, None, device=device)
        return self.sliding_eval(img, self.crop_size, self.stride_rate, device)

    def whole_eval(self, img, output_size=None, input_size=None, device=None):
        """The whole image at once (zero-padded to a multiple of 32 if needed, then cropped back)."""
        shape = input_size if input_size is not None else ceil_to_multiple(img.shape[:2])
        data, margin = self.process_image(img, shape)
        score = _crop_margin(self.val_func_process(data, device), margin)
        if output_size is not None:
            score = _resize_scores(score, output_size)
        return score.argmax(0).cpu().numpy()

    def sliding_eval(self, img, crop_size, stride_rate, device=None):
        """Sum over scales of the (sliding-window) score maps resized to the image; then argmax."""
        ori_rows, ori_cols = img.shape[:2]
        total = None
        for scale in self.multi_scales:
            img_scale = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            score = self.scale_process(img_scale, (ori_rows, ori_cols), crop_size, stride_rate, device)
            total = score if total is None else total + score
        return total.argmax(0).cpu().numpy()

    def scale_process(self, img, ori_shape, crop_size, stride_rate, device=None):
        """Score map (C x H x W, float64) of one scaled image, resized to ``ori_shape``."""
        rows, cols = img.shape[:2]
        crop_h, crop_w = get_2dshape(crop_size) if crop_size is not None else ceil_to_multiple((rows, cols))
        if rows <= crop_h and cols <= crop_w:
            data, margin = self.process_image(img, (crop_h, crop_w))
            score = _crop_margin(self.val_func_process(data, device), margin)
        else:
            score = self._slide(img, crop_h, crop_w, stride_rate, device)
        return _resize_scores(score, ori_shape)

    def _slide(self, img, crop_h, crop_w, stride_rate, device):
        stride_h, stride_w = int(math.ceil(crop_h * stride_rate)), int(math.ceil(crop_w * stride_rate))
        img_pad, margin = pad_image_to_shape(img, (crop_h, crop_w), cv2.BORDER_CONSTANT, 0)
        pad_rows, pad_cols = img_pad.shape[:2]
        r_grid = int(math.ceil((pad_rows - crop_h) / stride_h)) + 1
        c_grid = int(math.ceil((pad_cols - crop_w) / stride_w)) + 1
        data_scale = None
        for yi in range(r_grid):
            for xi in range(c_grid):
                e_x = min(xi * stride_w + crop_w, pad_cols)
                e_y = min(yi * stride_h + crop_h, pad_rows)
                s_x, s_y = e_x - crop_w, e_y - crop_h
                data, tmargin = self.process_image(img_pad[s_y:e_y, s_x:e_x], (crop_h, crop_w))
                window = _crop_margin(self.val_func_process(data, device), tmargin)
                if data_scale is None:
                    data_scale = window.new_zeros((window.shape[0], pad_rows, pad_cols))
                data_scale[:, s_y:e_y, s_x:e_x] += window
        return _crop_margin(data_scale, margin)

    def val_func_process(self, input_data, device=None):
        """``exp`` of the selected output's logits for one CHW float32 array (plus its flipped pass)."""
        device = self.device if device is None else torch.device(device)
        x = torch.from_numpy(np.ascontiguousarray(input_data[None], dtype=np.float32)).to(device)
        self.network.eval()
        with torch.no_grad():
            score = self._select(self.network(x), x.shape[2:])[0]
            if self.is_flip:
                flipped = self._select(self.network(x.flip(-1)), x.shape[2:])[0]
                score = score + flipped.flip(-1)
            dtype = torch.float32 if device.type == "mps" else torch.float64
            return torch.exp(score.to(dtype))

    def _select(self, output, size):
        if isinstance(output, (list, tuple)):
            output = output[self.out_idx] if len(output) > 1 else output[0]
        if output.shape[-2:] != size:
            output = F.interpolate(output, size=size, mode="bilinear", align_corners=False)
        return output

    def process_image(self, img, crop_size=None):
        """Normalise (gray images are repeated to 3 channels), zero-pad to ``crop_size``; CHW + margins."""
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape[2] < 3:
            img = np.concatenate([img, img, img], axis=2)
        p_img = normalize(img, self.image_mean, self.image_std)
        margin = np.zeros(4, np.int64)
        if crop_size is not None:
            p_img, margin = pad_image_to_shape(p_img, crop_size, cv2.BORDER_CONSTANT, 0)
        return p_img.transpose(2, 0, 1), margin


def _names_of(dataset):
    getter = getattr(dataset, "get_class_names", None)
    try:
        return getter() if getter is not None else None
    except (AttributeError, NotImplementedError):
        return None


def _crop_margin(score, margin):
    top, bottom, left, right = (int(m) for m in margin)
    return score[:, top:score.shape[1] - bottom, left:score.shape[2] - right]


def _resize_scores(score, size):
    """Bilinear resize of a C x H x W score map (cv2.INTER_LINEAR's sampling = align_corners=False)."""
    if tuple(score.shape[1:]) == tuple(size):
        return score
    return F.interpolate(score[None], size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)[0]
