"""Lookup-table keys of FasterSeg's operators, read from the modules themselves.

Replaces the ``forward_latency`` methods of the original operators (search|train/operations.py, seg_oprs.py),
which each built their key, looked it up in a module-global table and returned the output size. Here one
function, :func:`op_spec`, inspects a module's original attributes (``C_in``, ``C_out``, ``stride``,
``dilation``, ``kernel_size``, ``ratio``, ``slimmable``; ``_in_planes``/``_out_planes`` for heads) and returns an
:class:`OpSpec` (key, output size, and how to build a plain module to time on a miss). The table lookup itself
lives in :mod:`tools.latency.table`.

Key formats are the original's, byte for byte (``%d`` formatting, so a float channel count is truncated as the
original's table script did):

* ``ConvNorm_H%d_W%d_Cin%d_Cout%d_kernel%d_stride%d``
* ``<op>_H%d_W%d_Cin%d_Cout%d_stride%d_dilation%d`` for the operators whose ``latency_key`` is "residual" in the
  operator table (tools/ops/primitives.py ``OPERATORS``: BasicResidual1x, BasicResidual_downup_1x,
  BasicResidual2x, BasicResidual_downup_2x)
* ``<op>_H%d_W%d_Cin%d_Cout%d_stride%d`` for those whose ``latency_key`` is "reduce" (FactorizedReduce)
* ``ff_H%d_W%d_C%d`` (FeatureFusion) and ``head_H%d_W%d_Cin%d_Cout%d`` (Head)
* glue (not in the original's table): ``interp_H%d_W%d_C%d_factor%d`` (bilinear upsampling by an integer
  factor, align_corners=True, as the derived network's refinements and its final x8) and
  ``cat_H%d_W%d_Cin%d_Cout%d`` (a channel concatenation whose first part has Cin of the Cout channels). The
  original's estimate skipped them; on a CPU they are ~5-15 % of a small network. Tables that hold them say so
  in their meta (``"glue": true``); the published 1080Ti table does not, and is read as before.

Bug B2 (train/operations.py:426): the original ``BasicResidual_downup_2x.forward_latency`` reads the
``BasicResidual2x_`` key and times a ``BasicResidual2x`` on a miss. We read its own key; ``legacy_b2=True``
reproduces the original.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.utils.errors import UserError
from tools.ops.heads import FeatureFusion, Head
from tools.ops.primitives import OPERATOR_KINDS, OPERATORS, ConvNorm

CELL_OPS = tuple(OPERATOR_KINDS)        # the search space's operators, by key prefix (their class names)
GLUE_KINDS = ("Interpolate", "Concat")
KINDS = CELL_OPS + ("ConvNorm", "FeatureFusion", "Head") + GLUE_KINDS
# the original latency_lookup_table.py times the convolutions first, then the skip: same grid order here
CELL_TABLE_ORDER = tuple(op.kind for op in OPERATORS if op.latency_key == "residual") + tuple(
    op.kind for op in OPERATORS if op.latency_key != "residual")


class LatencyKeyError(UserError, ValueError):
    """A module the latency code cannot key, or an input size the module cannot take."""


class Interpolate(nn.Module):
    """Bilinear upsampling by ``factor`` to an explicit size, align_corners=True (the derived network's DR8)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = int(factor)

    def forward(self, x):
        return F.interpolate(x, size=(x.size(2) * self.factor, x.size(3) * self.factor), mode="bilinear",
                             align_corners=True)


class Concat(nn.Module):
    """``torch.cat([x, other], dim=1)`` with ``other`` a fixed (1, c_extra, h, w) tensor: a concatenation's cost."""

    def __init__(self, c_extra, h, w):
        super().__init__()
        self.register_buffer("other", torch.zeros(1, int(c_extra), int(h), int(w)), persistent=False)

    def forward(self, x):
        return torch.cat([x, self.other.expand(x.size(0), -1, -1, -1)], dim=1)


@dataclass(frozen=True)
class OpSpec:
    """One table entry: operator kind, input (h, w, c_in), output channels and the conv settings."""
    kind: str
    h: int
    w: int
    c_in: int
    c_out: int
    stride: int = 1
    dilation: int = 1
    kernel_size: int = 3
    padding: int = None
    groups: int = 1
    factor: int = 1     # Interpolate only

    @property
    def key(self):
        if self.kind == "ConvNorm":
            return "ConvNorm_H%d_W%d_Cin%d_Cout%d_kernel%d_stride%d" % (
                self.h, self.w, self.c_in, self.c_out, self.kernel_size, self.stride)
        if self.kind == "FeatureFusion":
            return "ff_H%d_W%d_C%d" % (self.h, self.w, self.c_in)
        if self.kind == "Head":
            return "head_H%d_W%d_Cin%d_Cout%d" % (self.h, self.w, self.c_in, self.c_out)
        if self.kind == "Interpolate":
            return "interp_H%d_W%d_C%d_factor%d" % (self.h, self.w, self.c_in, self.factor)
        if self.kind == "Concat":
            return "cat_H%d_W%d_Cin%d_Cout%d" % (self.h, self.w, self.c_in, self.c_out)
        if OPERATOR_KINDS[self.kind].latency_key == "reduce":
            return "%s_H%d_W%d_Cin%d_Cout%d_stride%d" % (self.kind, self.h, self.w, self.c_in, self.c_out, self.stride)
        return "%s_H%d_W%d_Cin%d_Cout%d_stride%d_dilation%d" % (
            self.kind, self.h, self.w, self.c_in, self.c_out, self.stride, self.dilation)

    @property
    def input_size(self):
        """The (N, C, H, W) input a table entry is timed on."""
        return (1, int(self.c_in), int(self.h), int(self.w))

    @property
    def out_size(self):
        if self.kind == "Interpolate":
            return (int(self.c_out), self.h * self.factor, self.w * self.factor)
        if self.stride == 2:
            return (int(self.c_out), self.h // 2, self.w // 2)
        return (int(self.c_out), self.h, self.w)

    def build(self):
        """A fresh plain (non-slimmable) module of this entry, as the original's ``_latency`` built it."""
        c_in, c_out = int(self.c_in), int(self.c_out)
        if self.kind == "ConvNorm":
            return ConvNorm(c_in, c_out, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                            dilation=self.dilation, groups=self.groups, bias=False, slimmable=False)
        if self.kind == "FeatureFusion":
            return FeatureFusion(c_in, c_in)
        if self.kind == "Head":
            return Head(c_in, c_out)
        if self.kind == "Interpolate":
            return Interpolate(self.factor)
        if self.kind == "Concat":
            return Concat(c_out - c_in, self.h, self.w)
        operator = OPERATOR_KINDS[self.kind]
        if operator.latency_key == "reduce":
            return operator(c_in, c_out, self.stride, slimmable=False)
        return operator.cls(c_in, c_out, kernel_size=3, stride=self.stride, dilation=self.dilation,
                            groups=self.groups, slimmable=False)


def parse_key(key):
    """The :class:`OpSpec` of a table key (the inverse of ``OpSpec.key``), used to time table entries."""
    kind, _, rest = key.partition("_H")
    fields = {}
    for part in ("H" + rest).split("_"):
        name = part.rstrip("0123456789")
        if not name or name == part:
            raise LatencyKeyError(f"latency table key '{key}' is not in the original FasterSeg key format.")
        fields[name] = int(part[len(name):])
    try:
        if kind == "ff":
            return OpSpec("FeatureFusion", fields["H"], fields["W"], fields["C"], fields["C"])
        if kind == "head":
            return OpSpec("Head", fields["H"], fields["W"], fields["Cin"], fields["Cout"])
        if kind == "interp":
            return interp_spec(fields["H"], fields["W"], fields["C"], fields["factor"])
        if kind == "cat":
            return concat_spec(fields["H"], fields["W"], fields["Cin"], fields["Cout"])
        if kind == "ConvNorm":
            return OpSpec("ConvNorm", fields["H"], fields["W"], fields["Cin"], fields["Cout"], fields["stride"],
                          kernel_size=fields["kernel"])
        if kind in CELL_OPS:
            return OpSpec(kind, fields["H"], fields["W"], fields["Cin"], fields["Cout"], fields["stride"],
                          fields.get("dilation", 1))
    except KeyError:
        pass
    raise LatencyKeyError(f"latency table key '{key}' is not in the original FasterSeg key format.")


def interp_spec(h, w, c, factor):
    """The glue entry of upsampling a (c, h, w) feature by ``factor``."""
    return OpSpec("Interpolate", int(h), int(w), int(c), int(c), factor=int(factor))


def concat_spec(h, w, c_first, c_total):
    """The glue entry of concatenating a (c_first, h, w) feature with others to c_total channels."""
    if c_total < c_first:
        raise LatencyKeyError(f"a concatenation cannot shrink {c_first} channels to {c_total}.")
    return OpSpec("Concat", int(h), int(w), int(c_first), int(c_total))


def _channels(module, c_in, ratio=None):
    """c_out after checking c_in, with the original rule: int(C * ratio) when slimmable."""
    if module.slimmable:
        ratio = tuple(module.ratio) if ratio is None else tuple(ratio)
        expected, c_out = int(module.C_in * ratio[0]), int(module.C_out * ratio[1])
    else:
        expected, c_out = module.C_in, module.C_out
    if c_in != expected:
        raise LatencyKeyError(f"{type(module).__name__}(C_in={module.C_in}, C_out={module.C_out}) at ratio "
                              f"{ratio} expects {expected} input channels, got {c_in}.")
    return c_out


def op_spec(module, size, legacy_b2=False, ratio=None):
    """(OpSpec, out_size) of ``module`` for an input of ``size`` = (c, h, w), like the original forward_latency.

    ``ratio`` = (in, out) widths of a slimmable operator; default: the module's current ``ratio`` (the original
    set it with ``set_prun_ratio`` before reading the table, we pass it so the module is not mutated).
    """
    kind = type(module).__name__
    c_in, h, w = (int(v) for v in size)
    if kind == "ConvNorm":
        spec = OpSpec(kind, h, w, c_in, _channels(module, c_in, ratio), module.stride, module.dilation,
                      module.kernel_size, module.padding, module.groups)
    elif kind in CELL_OPS and OPERATOR_KINDS[kind].latency_key == "reduce":     # e.g. FactorizedReduce
        spec = OpSpec(kind, h, w, c_in, _channels(module, c_in, ratio), module.stride)
    elif kind in CELL_OPS:
        if legacy_b2 and kind == "BasicResidual_downup_2x":
            kind = "BasicResidual2x"
        spec = OpSpec(kind, h, w, c_in, _channels(module, c_in, ratio), module.stride, module.dilation,
                      module.kernel_size, None, module.groups)
    elif kind == "FeatureFusion":
        spec = OpSpec(kind, h, w, c_in, c_in)
    elif kind == "Interpolate":
        spec = interp_spec(h, w, c_in, module.factor)
    elif kind == "Concat":
        spec = concat_spec(h, w, c_in, c_in + module.other.size(1))
    elif kind == "Head":
        if c_in != module._in_planes:
            raise LatencyKeyError(f"Head was built for {module._in_planes} input channels, got {c_in}.")
        spec = OpSpec(kind, h, w, c_in, module._out_planes)
    else:
        raise LatencyKeyError(f"no latency-table key for a {kind} module; only {', '.join(KINDS)} are keyed.")
    return spec, spec.out_size


ORIGINAL_WIDTHS = (4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.)


def original_table_specs(height=1024, width=2048, fch_cells=(12,), fch_heads=(8, 12), widths=ORIGINAL_WIDTHS,
                         fch_max=12, num_classes=19):
    """[(section, OpSpec)] of every entry the original latency/latency_lookup_table.py measures, in its order.

    Cells: each of the five operators at 1/8, 1/16, 1/32 for every (in, out) width, stride 1 and (except at
    1/32) stride 2 to twice the channels. Stem, arms/refines (FFM section) and heads for each ``fch_heads``
    (8 = the student's 8/12 width of Fch 12). Duplicate keys (the original writes some twice) are kept once.
    """
    H, W = height, width
    specs, seen = [], set()

    def add(section, spec):
        if spec.key not in seen:
            seen.add(spec.key)
            specs.append((section, spec))

    for Fch in fch_cells:
        for scale in (8, 16, 32):
            for w_in in widths:
                for w_out in widths:
                    c_in = int(Fch * scale * w_in)
                    for kind in CELL_TABLE_ORDER:
                        add("cells", OpSpec(kind, H // scale, W // scale, c_in, int(Fch * scale * w_out), 1))
                        if scale < 32:
                            add("cells", OpSpec(kind, H // scale, W // scale, c_in, int(Fch * scale * 2 * w_out), 2))
    for Fch in fch_heads:
        add("stem", OpSpec("ConvNorm", H, W, 3, 2 * Fch * 2, 2, kernel_size=3, padding=1))
        add("stem", OpSpec("ConvNorm", H // 2, W // 2, 2 * Fch * 2, 4 * Fch * 2, 2, kernel_size=3, padding=1))
        add("stem", OpSpec("BasicResidual2x", H // 2, W // 2, 2 * Fch * 2, 4 * Fch * 2, 2))
        add("stem", OpSpec("BasicResidual2x", H // 4, W // 4, 4 * Fch * 2, 8 * Fch, 2))
    for Fch in fch_heads:
        add("ffm", OpSpec("ConvNorm", H // 32, W // 32, 32 * Fch, 16 * Fch, 1, kernel_size=1))
        for w_in in widths:
            add("ffm", OpSpec("ConvNorm", H // 16, W // 16, int(16 * Fch + 16 * fch_max * w_in), 16 * Fch, 1,
                              kernel_size=3, padding=1))
        add("ffm", OpSpec("ConvNorm", H // 16, W // 16, 16 * Fch, 8 * Fch, 1, kernel_size=1))
        for w_in in widths:
            add("ffm", OpSpec("ConvNorm", H // 8, W // 8, int(8 * Fch + 8 * fch_max * w_in), 8 * Fch, 1,
                              kernel_size=3, padding=1))
        for branch in range(1, 4):
            add("ffm", OpSpec("FeatureFusion", H // 8, W // 8, 8 * Fch * branch, 8 * Fch * branch))
    for Fch in fch_heads:
        for branch in range(1, 4):
            add("head", OpSpec("Head", H // 8, W // 8, 8 * Fch * branch, num_classes))
    return specs


def glue_table_specs(height, width, fch_heads=(8, 12), widths=ORIGINAL_WIDTHS, fch_max=12, num_classes=19):
    """[(section, OpSpec)] of the glue a derived network runs around the table's modules.

    For each head width: the x2 upsampling after each attention (1/32 -> 1/16 and 1/16 -> 1/8), the concatenation
    before each refinement (with a 1/16 or 1/8 feature of every cell width), and the concatenation of 1-3
    branches before the feature fusion; then the final x8 upsampling of the class scores. Same ranges as the FFM
    section of :func:`original_table_specs`.
    """
    H, W = height, width
    specs, seen = [], set()

    def add(spec):
        if spec.key not in seen:
            seen.add(spec.key)
            specs.append(("glue", spec))

    for Fch in fch_heads:
        add(interp_spec(H // 32, W // 32, 16 * Fch, 2))
        for w_in in widths:
            add(concat_spec(H // 16, W // 16, 16 * Fch, int(16 * Fch + 16 * fch_max * w_in)))
        add(interp_spec(H // 16, W // 16, 8 * Fch, 2))
        for w_in in widths:
            add(concat_spec(H // 8, W // 8, 8 * Fch, int(8 * Fch + 8 * fch_max * w_in)))
        for branch in range(1, 4):
            add(concat_spec(H // 8, W // 8, 8 * Fch, 8 * Fch * branch))
    add(interp_spec(H // 8, W // 8, num_classes, 8))
    return specs
