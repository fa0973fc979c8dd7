"""Image/label transforms of the training pipeline and the padding helpers shared with the evaluator.

Replaces the original ``tools/utils/img_utils.py`` functions used by ``search/dataloader.py`` and
``train/dataloader.py`` (``TrainPre``): random mirror, a random scale chosen from ``train_scale_array`` (``train_scale_range=True``: drawn uniformly
in its ``[min, max]`` instead),
normalisation with ``image_mean``/``image_std`` (RGB, on 0..1 values), a random crop padded to the crop size
(image with 0, label with 255), and nearest down-sampling of the label by ``gt_down_sampling``.

Randomness comes from a ``random.Random`` owned by the transform (the original used the global ``random``
module), so a loader is reproducible with 0 workers and with workers (see ``tools.data.loader``).
"""
import math
import random

import cv2
import numpy as np

from tools.data.errors import DataError

cv2.setNumThreads(0)

SIZE_DIVISOR = 32


def check_crop_size(height, width, what="crop size", keys="image_height/image_width", divisor=SIZE_DIVISOR):
    """FasterSeg down-samples by 32, so every crop fed to it must be a multiple of 32 in both dimensions."""
    if height % divisor or width % divisor or height <= 0 or width <= 0:
        suggestion = f"{max(divisor, height // divisor * divisor)}x{max(divisor, width // divisor * divisor)}"
        raise DataError(f"{what} {height}x{width} (config keys {keys}) is not a positive multiple of {divisor}; "
                        f"use e.g. {suggestion}.")


def ceil_to_multiple(shape, divisor=SIZE_DIVISOR):
    """(height, width) rounded up to multiples of ``divisor``: the size a whole image is zero-padded to."""
    return tuple(-(-int(side) // divisor) * divisor for side in shape)


def training_scale(shape, size):
    """The factor (<= 1) that brings an image of ``shape`` (h, w, ...) to the pixel count of the training images
    ``size`` (h, w): a phone photo many times larger than the training data is shrunk so that its objects appear
    at about the scale the network learned (whatever its orientation); an image at or below that size is left
    alone. tools/latency/deploy_predict.py applies the same rule without the project's code."""
    height, width = shape[:2]
    return min(1.0, math.sqrt(float(size[0]) * float(size[1]) / (float(height) * float(width))))


def scaled_shape(shape, scale):
    """(h, w) of ``shape`` scaled by ``scale`` and rounded, at least 1 x 1."""
    return max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))


def get_2dshape(shape):
    """An int means a square; anything else is (height, width)."""
    if np.isscalar(shape):
        return int(shape), int(shape)
    height, width = shape
    return int(height), int(width)


def pad_image_to_shape(img, shape, border_mode=cv2.BORDER_CONSTANT, value=0):
    """Pad (never crop) to at least ``shape``, half before and half (+1) after; return the image and margins.

    margin = (top, bottom, left, right) so that ``x[top:H-bottom, left:W-right]`` undoes the padding.
    """
    height, width = get_2dshape(shape)
    pad_h = max(height - img.shape[0], 0)
    pad_w = max(width - img.shape[1], 0)
    margin = np.array([pad_h // 2, pad_h // 2 + pad_h % 2, pad_w // 2, pad_w // 2 + pad_w % 2], dtype=np.int64)
    if pad_h or pad_w:
        img = cv2.copyMakeBorder(img, int(margin[0]), int(margin[1]), int(margin[2]), int(margin[3]),
                                 border_mode, value=value)
    return img, margin


def generate_random_crop_pos(ori_size, crop_size, rng=random):
    """Top-left corner of a random crop; 0 along a dimension that is not larger than the crop.

    The original drew ``randint(0, h - crop_h + 1)`` (inclusive), which could start one pixel too far and
    leave a padded row; we draw from the valid range only (docs/differences.md DA3).
    """
    h, w = get_2dshape(ori_size)
    crop_h, crop_w = get_2dshape(crop_size)
    pos_h = rng.randint(0, h - crop_h) if h > crop_h else 0
    pos_w = rng.randint(0, w - crop_w) if w > crop_w else 0
    return pos_h, pos_w


def random_crop_pad_to_shape(img, crop_pos, crop_size, pad_label_value):
    """Crop at ``crop_pos`` then pad with ``pad_label_value`` up to ``crop_size``."""
    h, w = img.shape[:2]
    start_h, start_w = crop_pos
    if not (0 <= start_h < h and 0 <= start_w < w):
        raise ValueError(f"crop position {crop_pos} lies outside an image of size {h}x{w}.")
    crop_h, crop_w = get_2dshape(crop_size)
    img_crop = img[start_h:start_h + crop_h, start_w:start_w + crop_w, ...]
    return pad_image_to_shape(img_crop, (crop_h, crop_w), cv2.BORDER_CONSTANT, pad_label_value)


def random_scale(img, gt, scales, rng=random, continuous=False):
    """Resize by a factor chosen from ``scales`` (image linear, label nearest), as the original's ``random.choice``.

    ``continuous=True`` draws the factor uniformly in ``[min(scales), max(scales)]`` instead (a key of ours,
    ``train_scale_range``; docs/differences.md DA14).
    """
    scale = rng.uniform(min(scales), max(scales)) if continuous else rng.choice(list(scales))
    sh = int(img.shape[0] * scale)
    sw = int(img.shape[1] * scale)
    img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
    gt = cv2.resize(gt, (sw, sh), interpolation=cv2.INTER_NEAREST)
    return img, gt, scale


def random_mirror(img, gt, rng=random):
    """Flip both horizontally with probability 1/2."""
    if rng.random() >= 0.5:
        img = cv2.flip(img, 1)
        gt = cv2.flip(gt, 1)
    return img, gt


def color_jitter(img, strength, rng=random):
    """Brightness, contrast and saturation of an RGB image, each scaled by a factor drawn uniformly in
    ``[1 - strength, 1 + strength]``, in a random order, clipped to [0, 255] after each (torchvision's
    ColorJitter without hue); float32 out. A key of ours (``train_color_jitter``), off in the original's presets."""
    x = img.astype(np.float32)
    order = [0, 1, 2]
    rng.shuffle(order)
    for op in order:
        factor = rng.uniform(1.0 - strength, 1.0 + strength)
        if op == 0:
            x *= factor
        else:
            grey = x @ np.asarray([0.299, 0.587, 0.114], np.float32)
            anchor = grey.mean() if op == 1 else grey[..., None]
            x = (x - anchor) * factor + anchor
        np.clip(x, 0, 255, out=x)
    return x


def normalize(img, mean, std):
    """uint8 RGB -> float32 ``(x / 255 - mean) / std`` (ImageNet statistics in the configs)."""
    img = img.astype(np.float32) / 255.0
    img -= np.asarray(mean, dtype=np.float32)
    img /= np.asarray(std, dtype=np.float32)
    return img


class TrainTransform:
    """The original ``TrainPre``: mirror, scale, normalise, crop/pad, label down-sampling; returns CHW float32."""

    def __init__(self, image_height, image_width, image_mean, image_std, train_scale_array=None,
                 gt_down_sampling=1, seed=None, train_scale_range=False, color_jitter=0.0):
        check_crop_size(image_height, image_width)
        if image_height % gt_down_sampling or image_width % gt_down_sampling:
            raise DataError(f"gt_down_sampling {gt_down_sampling} does not divide the crop size "
                            f"{image_height}x{image_width}; choose a divisor such as 1, 2, 4 or 8.")
        self.image_height = image_height
        self.image_width = image_width
        self.image_mean = np.asarray(image_mean, dtype=np.float32)
        self.image_std = np.asarray(image_std, dtype=np.float32)
        self.train_scale_array = train_scale_array
        self.train_scale_range = bool(train_scale_range)
        self.color_jitter = float(color_jitter)
        self.gt_down_sampling = gt_down_sampling
        self.rng = random.Random(seed)

    @classmethod
    def from_config(cls, config, seed=None):
        return cls(config.image_height, config.image_width, config.image_mean, config.image_std,
                   config.train_scale_array, config.gt_down_sampling, seed=config.seed if seed is None else seed,
                   train_scale_range=config.get("train_scale_range", False),
                   color_jitter=config.get("train_color_jitter", 0.0))

    def reseed(self, seed):
        """Called in each loader worker so that workers draw different, reproducible augmentations."""
        self.rng.seed(seed)

    def __call__(self, img, gt):
        img, gt = random_mirror(img, gt, self.rng)
        if self.train_scale_array is not None:
            img, gt, _ = random_scale(img, gt, self.train_scale_array, self.rng, self.train_scale_range)
        crop_size = (self.image_height, self.image_width)
        crop_pos = generate_random_crop_pos(img.shape[:2], crop_size, self.rng)
        # Normalising the crop instead of the whole image (then padding with 0) gives the original's values
        # exactly, for a quarter of the work at the training size.
        top, left = crop_pos
        img = img[top:top + crop_size[0], left:left + crop_size[1]]
        if self.color_jitter > 0:              # drawn after the crop, so the original's draws are unchanged without it
            img = color_jitter(img, self.color_jitter, self.rng)
        img = normalize(img, self.image_mean, self.image_std)
        p_img, _ = pad_image_to_shape(img, crop_size, cv2.BORDER_CONSTANT, 0)
        p_gt, _ = random_crop_pad_to_shape(gt, crop_pos, crop_size, 255)
        if self.gt_down_sampling != 1:
            size = (self.image_width // self.gt_down_sampling, self.image_height // self.gt_down_sampling)
            p_gt = cv2.resize(p_gt, size, interpolation=cv2.INTER_NEAREST)
        return p_img.transpose(2, 0, 1), p_gt, None


TrainPre = TrainTransform
