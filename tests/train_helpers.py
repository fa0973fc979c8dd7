"""Shared by the training tests: a small stand-in segmentation network, street-like images, fixed batches.

The stand-in has the derived network's interface (train mode: pred8, pred16, pred32 at input resolution; eval
mode: pred8) so the engine can be tested in milliseconds.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F



class StandIn(nn.Module):
    """conv -> (optional BN) -> relu, with three 1x1 heads at 1/1, 1/2 and 1/4 resolution."""

    def __init__(self, num_classes=4, width=8, batch_norm=True):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.heads8 = nn.Conv2d(width, num_classes, 1)
        self.heads16 = nn.Conv2d(width, num_classes, 1)
        self.heads32 = nn.Conv2d(width, num_classes, 1)
        self.unused = nn.Conv2d(width, width, 1)      # like FeatureFusion.channel_attention: never called

    def forward(self, x):
        size = x.shape[2:]
        f = F.relu(self.bn(self.conv(x)))
        pred8 = self.heads8(f)
        if not self.training:
            return pred8
        up = dict(size=size, mode="bilinear", align_corners=True)
        pred16 = F.interpolate(self.heads16(F.avg_pool2d(f, 2)), **up)
        pred32 = F.interpolate(self.heads32(F.avg_pool2d(f, 4)), **up)
        return pred8, pred16, pred32


def street_scene(rng, height, width):
    """An RGB image and its train ids: sky (10), building (2), road (0), and a car (13) of random size/place."""
    label = np.zeros((height, width), np.uint8)
    horizon = int(height * rng.uniform(0.3, 0.45))
    label[: horizon // 2] = 10
    label[horizon // 2: horizon] = 2
    car_h, car_w = int(height * rng.uniform(0.15, 0.3)), int(width * rng.uniform(0.1, 0.25))
    top, left = rng.integers(horizon, height - car_h), rng.integers(0, width - car_w)
    label[top: top + car_h, left: left + car_w] = 13
    palette = {10: (120, 160, 215), 2: (150, 140, 125), 0: (90, 90, 95), 13: (150, 30, 30)}
    image = np.zeros((height, width, 3), np.float32)
    for value, color in palette.items():
        image[label == value] = color
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def fixed_batch(batch=2, num_classes=4, size=(16, 16), seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, *size, generator=generator)
    target = torch.randint(0, num_classes, (batch, *size), generator=generator)
    return images, target
