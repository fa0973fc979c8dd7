"""The five FasterSeg candidate operators and ConvNorm, slimmable or plain; replaces search|train/operations.py.

Each class builds either slimmable layers (``slimmable=True``: USConv2d/USBatchNorm2d, used by the supernet and
switched with ``set_ratio((in_ratio, out_ratio))``) or plain ``nn.Conv2d``/``nn.BatchNorm2d`` (the derived
network), with the original module and attribute names so state_dicts and the latency code match. Latency
lookup is deliberately not here (tools/latency walks these modules from outside); ``output_size`` gives the
original ``forward_latency`` size rule: channels ``int(C * ratio)`` when slimmable, spatial size halved by
stride 2.

The search space is data: ``OPERATORS`` (bottom of this file) is the one table of candidate operators, and
``PRIMITIVES``, ``OPS``, the arch-file shapes (tools/models), the latency-table keys and grid (tools/latency/keys.py)
and the plots' operator names are all read from it. Adding an operator = one ``Operator`` row here plus its
module class (constructor ``(C_in, C_out, stride=, slimmable=, width_mult_list=)``, ``set_ratio``,
``output_size``); nothing else in tools/ lists the operators. Named elsewhere on purpose, not as lists: the
original's bug B2 (tools/latency/keys.py ``legacy_b2``) and the BatchNorm folding of FactorizedReduce's split BN
(tools/latency/fast.py, an optional speed path; a new operator with plain conv/bn pairs folds without a rule).
Arch files and latency tables of the old space no longer match a changed table: the alphas gain a column.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.ops.slimmable import USBatchNorm2d, USConv2d, make_divisible


class ChannelError(ValueError):
    """An input whose channel count does not match what the operator expects."""


def _check_stride(stride, name):
    if stride not in (1, 2):
        raise ValueError(f"{name}: stride {stride!r} is not supported; use 1 or 2")


class _SlimmableOp(nn.Module):
    """Shared bookkeeping: original attribute names, ``set_ratio`` guard and the forward_latency size rule."""

    def _init_common(self, C_in, C_out, stride, slimmable, width_mult_list):
        _check_stride(stride, type(self).__name__)
        self.C_in = C_in
        self.C_out = C_out
        self.stride = stride
        self.slimmable = slimmable
        self.width_mult_list = list(width_mult_list)
        self.ratio = (1., 1.)

    def _require_slimmable(self):
        if not self.slimmable:
            raise ValueError(f"{type(self).__name__} was built with slimmable=False and has a fixed width; "
                             f"set_ratio only applies to slimmable operators")

    def output_size(self, c_in, h, w):
        """(c_out, h_out, w_out) for an input (c_in, h, w), as the original ``forward_latency`` computes it.

        Slimmable: c_in must be ``int(C_in * ratio[0])`` and c_out is ``int(C_out * ratio[1])`` (plain int, not
        make_divisible: this is how the original names its latency-table keys).
        """
        if self.slimmable:
            expected, c_out = int(self.C_in * self.ratio[0]), int(self.C_out * self.ratio[1])
        else:
            expected, c_out = self.C_in, self.C_out
        if c_in != expected:
            raise ChannelError(f"{type(self).__name__}: input has {c_in} channels but C_in={self.C_in} at ratio "
                               f"{self.ratio} expects {expected}")
        if self.stride == 1:
            return c_out, h, w
        return c_out, h // 2, w // 2


class ConvNorm(_SlimmableOp):
    """conv => BatchNorm => ReLU in ``self.conv`` (nn.Sequential); padding keeps h_out = h_in / stride."""

    def __init__(self, C_in, C_out, kernel_size=3, stride=1, padding=None, dilation=1, groups=1, bias=False,
                 slimmable=True, width_mult_list=(1.,)):
        super().__init__()
        self._init_common(C_in, C_out, stride, slimmable, width_mult_list)
        self.kernel_size = kernel_size
        if padding is None:
            self.padding = int(np.ceil((dilation * (kernel_size - 1) + 1 - stride) / 2.))
        else:
            self.padding = padding
        self.dilation = dilation
        if not isinstance(groups, int):
            raise ValueError(f"ConvNorm: groups must be an int, got {groups!r}")
        self.groups = 1 if kernel_size == 1 else groups
        self.bias = bias
        if slimmable:
            self.conv = nn.Sequential(
                USConv2d(C_in, C_out, kernel_size, stride, padding=self.padding, dilation=dilation,
                         groups=self.groups, bias=bias, width_mult_list=self.width_mult_list),
                USBatchNorm2d(C_out, self.width_mult_list),
                nn.ReLU(inplace=True))
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(C_in, C_out, kernel_size, stride, padding=self.padding, dilation=dilation,
                          groups=self.groups, bias=bias),
                nn.BatchNorm2d(C_out),
                nn.ReLU(inplace=True))

    def set_ratio(self, ratio):
        self._require_slimmable()
        self.ratio = ratio
        self.conv[0].set_ratio(ratio)
        self.conv[1].set_ratio(ratio[1])

    def forward(self, x):
        expected = min(make_divisible(self.C_in * self.ratio[0]), self.C_in) if self.slimmable else self.C_in
        if x.size(1) != expected:
            raise ChannelError(f"ConvNorm: input has {x.size(1)} channels, expected {expected} "
                               f"(C_in={self.C_in}, ratio={self.ratio})")
        return self.conv(x)


class _Residual(_SlimmableOp):
    """Common constructor part of the four BasicResidual* operators (3x3 convs, stride 2 forces dilation 1)."""

    def _init_residual(self, C_in, C_out, kernel_size, stride, dilation, groups, slimmable, width_mult_list):
        self._init_common(C_in, C_out, stride, slimmable, width_mult_list)
        self.kernel_size = kernel_size
        self.dilation = 1 if stride == 2 else dilation
        self.groups = groups
        self.relu = nn.ReLU(inplace=True)

    def _conv_bn(self, c_in, c_out, stride, dilation, groups):
        """A 3x3 conv (slimmable or plain) and its BatchNorm, as the original builds conv1/bn1 and conv2/bn2."""
        if self.slimmable:
            conv = USConv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False,
                            width_mult_list=self.width_mult_list)
            return conv, USBatchNorm2d(c_out, self.width_mult_list)
        conv = nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)
        return conv, nn.BatchNorm2d(c_out)

    def set_ratio(self, ratio):
        self._require_slimmable()
        self.ratio = ratio
        self.conv1.set_ratio(ratio)
        self.bn1.set_ratio(ratio[1])
        if hasattr(self, 'conv2'):
            self.conv2.set_ratio((ratio[1], ratio[1]))
            self.bn2.set_ratio(ratio[1])


class BasicResidual1x(_Residual):
    """'conv': conv3x3(stride) -> BN -> ReLU."""

    def __init__(self, C_in, C_out, kernel_size=3, stride=1, dilation=1, groups=1, slimmable=True,
                 width_mult_list=(1.,)):
        super().__init__()
        self._init_residual(C_in, C_out, kernel_size, stride, dilation, groups, slimmable, width_mult_list)
        self.conv1, self.bn1 = self._conv_bn(C_in, C_out, stride, dilation, groups)

    def forward(self, x):
        return self.relu(self.bn1(self.conv1(x)))


class BasicResidual_downup_1x(_Residual):
    """'conv_downup': bilinear 1/2 -> conv3x3 -> BN -> (bilinear back up if stride 1) -> ReLU."""

    def __init__(self, C_in, C_out, kernel_size=3, stride=1, dilation=1, groups=1, slimmable=True,
                 width_mult_list=(1.,)):
        super().__init__()
        self._init_residual(C_in, C_out, kernel_size, stride, dilation, groups, slimmable, width_mult_list)
        self.conv1, self.bn1 = self._conv_bn(C_in, C_out, 1, dilation, groups)

    def forward(self, x):
        h, w = x.size(2), x.size(3)        # not int(): an ONNX export keeps them symbolic (DR8)
        out = F.interpolate(x, size=(h // 2, w // 2), mode='bilinear', align_corners=True)
        out = self.bn1(self.conv1(out))
        if self.stride == 1:
            out = F.interpolate(out, size=(h, w), mode='bilinear', align_corners=True)
        return self.relu(out)


class BasicResidual2x(_Residual):
    """'conv_2x': conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN -> ReLU."""

    def __init__(self, C_in, C_out, kernel_size=3, stride=1, dilation=1, groups=1, slimmable=True,
                 width_mult_list=(1.,)):
        super().__init__()
        self._init_residual(C_in, C_out, kernel_size, stride, dilation, groups, slimmable, width_mult_list)
        self.conv1, self.bn1 = self._conv_bn(C_in, C_out, stride, dilation, groups)
        self.conv2, self.bn2 = self._conv_bn(C_out, C_out, 1, dilation, groups)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class BasicResidual_downup_2x(_Residual):
    """'conv_2x_downup': bilinear 1/2 -> conv-BN-ReLU -> conv-BN -> (bilinear back up if stride 1) -> ReLU."""

    def __init__(self, C_in, C_out, kernel_size=3, stride=1, dilation=1, groups=1, slimmable=True,
                 width_mult_list=(1.,)):
        super().__init__()
        self._init_residual(C_in, C_out, kernel_size, stride, dilation, groups, slimmable, width_mult_list)
        self.conv1, self.bn1 = self._conv_bn(C_in, C_out, 1, dilation, groups)
        self.conv2, self.bn2 = self._conv_bn(C_out, C_out, 1, dilation, groups)

    def forward(self, x):
        h, w = x.size(2), x.size(3)        # not int(): an ONNX export keeps them symbolic (DR8)
        out = F.interpolate(x, size=(h // 2, w // 2), mode='bilinear', align_corners=True)
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        if self.stride == 1:
            out = F.interpolate(out, size=(h, w), mode='bilinear', align_corners=True)
        return self.relu(out)


class FactorizedReduce(_SlimmableOp):
    """'skip': identity (plain, stride 1), 1x1 conv-BN-ReLU (slimmable, stride 1), or two offset 1x1 stride-2
    convs concatenated -> BN -> ReLU (stride 2)."""

    def __init__(self, C_in, C_out, stride=1, slimmable=True, width_mult_list=(1.,)):
        super().__init__()
        self._init_common(C_in, C_out, stride, slimmable, width_mult_list)
        if C_out % 2 != 0:
            raise ValueError(f"FactorizedReduce: C_out={C_out} must be even")
        if stride == 1 and slimmable:
            self.conv1 = USConv2d(C_in, C_out, 1, stride=1, padding=0, bias=False,
                                  width_mult_list=self.width_mult_list)
            self.bn = USBatchNorm2d(C_out, self.width_mult_list)
            self.relu = nn.ReLU(inplace=True)
        elif stride == 2:
            self.relu = nn.ReLU(inplace=True)
            if slimmable:
                self.conv1 = USConv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False,
                                      width_mult_list=self.width_mult_list)
                self.conv2 = USConv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False,
                                      width_mult_list=self.width_mult_list)
                self.bn = USBatchNorm2d(C_out, self.width_mult_list)
            else:
                self.conv1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
                self.conv2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
                self.bn = nn.BatchNorm2d(C_out)

    def set_ratio(self, ratio):
        """Set the width; at stride 2 the two halves must add up to the BatchNorm width (clear error if not)."""
        self._require_slimmable()
        if self.stride == 2:
            halves = 2 * make_divisible(self.C_out // 2 * ratio[1])
            full = make_divisible(self.C_out * ratio[1])
            if halves != full:
                raise ValueError(
                    f"FactorizedReduce(C_out={self.C_out}) at width {ratio[1]!r}: its two stride-2 halves give "
                    f"{halves} channels but its BatchNorm has {full} (the original fails here too); choose Fch "
                    f"so that C_out * width is a multiple of 16 for every width (e.g. Fch 6 or 12)")
            self.conv2.set_ratio(ratio)
        self.ratio = ratio
        self.conv1.set_ratio(ratio)
        self.bn.set_ratio(ratio[1])

    def forward(self, x):
        if self.stride == 2:
            out = torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1)
            return self.relu(self.bn(out))
        if self.slimmable:
            return self.relu(self.bn(self.conv1(x)))
        return x


LATENCY_KEYS = ("residual", "reduce")


@dataclass(frozen=True)
class Operator:
    """One candidate operator of the search space.

    ``name``: its name in ``PRIMITIVES`` (and its column in the alphas); ``cls``: its module class, built as
    ``cls(C_in, C_out, stride=..., slimmable=..., width_mult_list=...)``; ``latency_key``: the format of its
    lookup-table key (tools/latency/keys.py): "residual" (``<class>_..._stride%d_dilation%d``, timed with the
    module's kernel/dilation/groups) or "reduce" (``<class>_..._stride%d``).
    """
    name: str
    cls: type
    latency_key: str = "residual"

    def __post_init__(self):
        if self.latency_key not in LATENCY_KEYS:
            raise ValueError(f"operator {self.name!r}: latency_key {self.latency_key!r} is not one of {LATENCY_KEYS}")

    @property
    def kind(self):
        """The latency-table key prefix: the class name, as the original's forward_latency wrote it."""
        return self.cls.__name__

    def __call__(self, C_in, C_out, stride, slimmable=True, width_mult_list=(1.,)):
        return self.cls(C_in, C_out, stride=stride, slimmable=slimmable, width_mult_list=width_mult_list)


# THE search space: its order is the alpha column order of every arch file; the derivation rules find the
# skip by name (SKIP). Every other list below, and in the rest of tools/, is derived from this table.
OPERATORS = (
    Operator("skip", FactorizedReduce, latency_key="reduce"),
    Operator("conv", BasicResidual1x),
    Operator("conv_downup", BasicResidual_downup_1x),
    Operator("conv_2x", BasicResidual2x),
    Operator("conv_2x_downup", BasicResidual_downup_2x),
)
PRIMITIVES = [op.name for op in OPERATORS]
OPS = {op.name: op for op in OPERATORS}
SKIP = PRIMITIVES.index("skip")
OPERATOR_KINDS = {op.kind: op for op in OPERATORS}
