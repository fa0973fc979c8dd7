"""Segmentation heads and feature fusion (ConvBnRelu, Head, FeatureFusion); replaces search|train/seg_oprs.py.

Only the three blocks FasterSeg uses are kept. Names of modules and private attributes (``_in_planes``,
``_out_planes``, ``_Fch``, ``_scale``, ``_branch``) are the original's, so the published weights load and the
latency code can read the sizes. FeatureFusion keeps the original train-time quirk B6 (train/seg_oprs.py:181-222):
its ``channel_attention`` convs are built (they are in the published state_dict and in parameter counts) but
``forward`` returns right after ``conv_1x1``.
"""
import torch.nn as nn


class ConvBnRelu(nn.Module):
    """conv (``self.conv``) -> optional BatchNorm (``self.bn``) -> optional ReLU (``self.relu``)."""

    def __init__(self, in_planes, out_planes, ksize, stride, pad, dilation=1, groups=1, has_bn=True,
                 norm_layer=nn.BatchNorm2d, bn_eps=1e-5, has_relu=True, inplace=True, has_bias=False):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=ksize, stride=stride, padding=pad,
                              dilation=dilation, groups=groups, bias=has_bias)
        self.has_bn = has_bn
        if has_bn:
            self.bn = norm_layer(out_planes, eps=bn_eps)
        self.has_relu = has_relu
        if has_relu:
            self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x):
        x = self.conv(x)
        if self.has_bn:
            x = self.bn(x)
        if self.has_relu:
            x = self.relu(x)
        return x


def head_mid_planes(in_planes):
    """Hidden width of a Head: ``in_planes`` up to 256 channels, half of it above (is_aux changes nothing)."""
    return in_planes if in_planes <= 256 else in_planes // 2


class Head(nn.Module):
    """ConvBnRelu 3x3 (``conv_3x3``) then a biased 1x1 classifier (``conv_1x1``)."""

    def __init__(self, in_planes, out_planes=19, Fch=16, scale=4, branch=2, is_aux=False,
                 norm_layer=nn.BatchNorm2d):
        super().__init__()
        mid_planes = head_mid_planes(in_planes)
        self.conv_3x3 = ConvBnRelu(in_planes, mid_planes, 3, 1, 1, has_bn=True, norm_layer=norm_layer,
                                   has_relu=True, has_bias=False)
        self.conv_1x1 = nn.Conv2d(mid_planes, out_planes, kernel_size=1, stride=1, padding=0)
        self._in_planes = in_planes
        self._out_planes = out_planes
        self._Fch = Fch
        self._scale = scale
        self._branch = branch

    def output_size(self, c_in, h, w):
        """(out_planes, h, w); the original forward_latency rejects any other input width."""
        if c_in != self._in_planes:
            raise ValueError(f"Head: input has {c_in} channels but the head was built for {self._in_planes}")
        return self._out_planes, h, w

    def forward(self, x):
        return self.conv_1x1(self.conv_3x3(x))


class FeatureFusion(nn.Module):
    """1x1 ConvBnRelu fusing the concatenated branches; ``channel_attention`` is built but unused (B6)."""

    def __init__(self, in_planes, out_planes, reduction=1, Fch=16, scale=4, branch=2, norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.conv_1x1 = ConvBnRelu(in_planes, out_planes, 1, 1, 0, has_bn=True, norm_layer=norm_layer,
                                   has_relu=True, has_bias=False)
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvBnRelu(out_planes, out_planes // reduction, 1, 1, 0, has_bn=False, norm_layer=norm_layer,
                       has_relu=True, has_bias=False),
            ConvBnRelu(out_planes // reduction, out_planes, 1, 1, 0, has_bn=False, norm_layer=norm_layer,
                       has_relu=False, has_bias=False),
            nn.Sigmoid())
        self._Fch = Fch
        self._scale = scale
        self._branch = branch

    def output_size(self, c_in, h, w):
        """The original forward_latency returns the input size unchanged (in_planes == out_planes in FasterSeg)."""
        return c_in, h, w

    def forward(self, fm):
        return self.conv_1x1(fm)
