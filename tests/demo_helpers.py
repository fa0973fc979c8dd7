"""Shared by the data/evaluation tests: a very small demo dataset (64x128) prepared like the real one."""
import os

import numpy as np
import torch.nn as nn
import torch.nn.functional as F
from easydict import EasyDict

from tools.data.demo import generate_demo_dataset
from tools.data.prepare import create_label_images, create_mapping_lists

SMALL_COUNTS = {"train": 4, "val": 4, "test": 2}
SMALL_SIZE = (64, 128)


def make_small_demo(root, counts=None, size=SMALL_SIZE, seed=0):
    """Generate, convert the polygons with cityscapesscripts and write the lists; returns a config."""
    generate_demo_dataset(root, seed=seed, counts=counts or SMALL_COUNTS, size=size)
    create_label_images(root, progress=False)
    create_mapping_lists(root)
    return small_config(root)


def small_config(root, **overrides):
    """The data keys of configs/ pointed at ``root`` with tiny crops."""
    config = EasyDict(
        dataset="cityscapes", labels_file="", dataset_path=str(root), img_root_folder=str(root),
        gt_root_folder=str(root), train_source=os.path.join(root, "cityscapes_train_fine.txt"),
        eval_source=os.path.join(root, "cityscapes_val_fine.txt"),
        test_source=os.path.join(root, "cityscapes_test.txt"),
        train_eval_source=os.path.join(root, "cityscapes_train_val_fine.txt"),
        num_classes=19, background=-1, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        down_sampling=1, image_height=32, image_width=64, gt_down_sampling=1, train_scale_array=[0.75, 1, 1.25],
        eval_stride_rate=2 / 3, eval_scale_array=[1], eval_flip=False, eval_crop_size=64, eval_height=64,
        eval_width=128, eval_base_size=64, num_workers=0, batch_size=2, niters_per_epoch=3, seed=12345)
    config.update(overrides)
    return config


def rgb_coded(label):
    """An image whose colour encodes its label, so transforms can be checked for image/label alignment."""
    label = np.asarray(label, np.int64)
    return np.stack([label, (label * 7) % 256, 255 - label], axis=2).astype(np.uint8)


class SmallNet(nn.Module):
    """A 3x3 conv (not flip-equivariant) and a 1x1 classifier; optional several outputs."""

    def __init__(self, num_classes=19, outputs=1, pointwise=False, multiple=1):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1 if pointwise else 3, padding=0 if pointwise else 1)
        self.heads = nn.ModuleList(nn.Conv2d(8, num_classes, 1) for _ in range(outputs))
        self.multiple = multiple

    def forward(self, x):
        if x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise RuntimeError("input size must be a multiple of %d" % self.multiple)
        f = F.relu(self.conv(x))
        outs = [head(f) for head in self.heads]
        return outs[0] if len(outs) == 1 else tuple(outs)
