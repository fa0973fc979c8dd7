"""Slimmable (width-switchable) conv and BatchNorm of the FasterSeg supernet; replaces search/slimmable_ops.py.

A slimmable layer is built at its maximum width and run at a fraction of it: ``USConv2d`` slices its weight to
``make_divisible(C * ratio)`` input/output channels, ``USBatchNorm2d`` keeps one private ``nn.BatchNorm2d`` per
width in ``width_mult_list`` (the "switchable BN" of the original), so the running statistics of different
widths never mix. The state_dict layout (outer ``weight``/``bias`` with ``track_running_stats=False``, inner
``bn.<i>`` with full statistics) is the original's, so its checkpoints load unchanged.

``USBatchNorm2d.batch_groups`` lets one call carry several independent inputs stacked along the batch dimension
(the supernet runs a cell's two inputs through its convolutions at once): each group is normalised with its own
batch statistics and updates the running statistics in turn, exactly as separate calls would.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class WidthError(ValueError):
    """A width (ratio) that is not one of the layer's ``width_mult_list``."""


def make_divisible(v, divisor=8, min_value=1):
    """Round ``v`` to the nearest multiple of ``divisor`` (never below ``min_value``, never 10% below ``v``).

    Same rule as the original (forked from TF-slim mobilenet); it decides every slimmable channel count.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def check_width(ratio, width_mult_list, where):
    """Raise WidthError unless ``ratio`` is one of ``width_mult_list`` (the original only asserted this)."""
    if ratio not in width_mult_list:
        raise WidthError(f"{where}: width {ratio!r} is not in width_mult_list {list(width_mult_list)}; "
                         f"use one of those widths or add it to width_mult_list")


class USConv2d(nn.Conv2d):
    """Conv2d whose weight is sliced to ``make_divisible(C_max * ratio)`` input/output channels.

    ``ratio`` is ``(in_ratio, out_ratio)``; ``depthwise=True`` sets ``groups`` to the active input channels.
    The active ``in_channels``/``out_channels``/``groups`` attributes follow the ratio, as in the original.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 depthwise=False, bias=True, width_mult_list=(1.,)):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.depthwise = depthwise
        self.in_channels_max = in_channels
        self.out_channels_max = out_channels
        self.groups_max = groups
        self.width_mult_list = list(width_mult_list)
        self.ratio = (1., 1.)

    def set_ratio(self, ratio):
        """Select the active (in, out) width; both must be in ``width_mult_list``."""
        check_width(ratio[0], self.width_mult_list, "USConv2d input")
        check_width(ratio[1], self.width_mult_list, "USConv2d output")
        self.ratio = ratio
        self.in_channels = make_divisible(self.in_channels_max * ratio[0])
        self.out_channels = make_divisible(self.out_channels_max * ratio[1])
        self.groups = self.in_channels if self.depthwise else self.groups_max

    def forward(self, input):
        weight = self.weight
        bias = self.bias
        if self.out_channels != self.out_channels_max or self.in_channels != self.in_channels_max:
            weight = weight[:self.out_channels, :self.in_channels]
            if bias is not None:
                bias = bias[:self.out_channels]
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class USBatchNorm2d(nn.BatchNorm2d):
    """Switchable BatchNorm: one inner ``nn.BatchNorm2d`` per width; ``ratio`` picks which one runs.

    The outer module's own ``weight``/``bias`` exist (and are initialised/saved) but are never used in forward,
    exactly like the original; it tracks no running statistics itself.
    """

    def __init__(self, num_features, width_mult_list=(1.,)):
        super().__init__(num_features, affine=True, track_running_stats=False)
        self.num_features_max = num_features
        self.width_mult_list = list(width_mult_list)
        self.bn = nn.ModuleList([nn.BatchNorm2d(make_divisible(num_features * w), affine=True)
                                 for w in self.width_mult_list])
        self.ratio = 1.
        self._idx = self.width_mult_list.index(1.) if 1. in self.width_mult_list else None
        self.batch_groups = 1

    def set_ratio(self, ratio):
        """Select the active width (one of ``width_mult_list``)."""
        check_width(ratio, self.width_mult_list, "USBatchNorm2d")
        self.ratio = ratio
        self._idx = self.width_mult_list.index(ratio)

    def forward(self, input):
        if self._idx is None:
            check_width(self.ratio, self.width_mult_list, "USBatchNorm2d")
        bn = self.bn[self._idx]
        if self.batch_groups == 1 or not bn.training:
            return bn(input)
        if input.size(0) % self.batch_groups:
            raise ValueError(f"USBatchNorm2d: batch of {input.size(0)} cannot hold {self.batch_groups} equal groups")
        return torch.cat([bn(group) for group in input.chunk(self.batch_groups)], dim=0)
