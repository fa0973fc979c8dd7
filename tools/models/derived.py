"""The derived (searched) FasterSeg network; replaces ``Network_Multi_Path_Infer`` of the original
``train/model_seg.py`` and the model construction in ``train/train.py``.

Built in one step from a :class:`~tools.models.genotype.Genotype` (``from_genotype``: the three candidate
branches ending at 1/8, 1/16, 1/32 and the chosen ``lasts``): the chosen branches are kept, the cells of branches
that agree layer by layer are shared (``branch_groups``), and the aggregation is added: arms/refines that bring
the 1/32 and 1/16 features up to 1/8, the FeatureFusion (``ffm``), the 1/8 head and the auxiliary 1/16 and 1/32
heads used only in training. The original's two-step form (arch tensors to the constructor, which derives the
branches, then ``build_structure(lasts)``) still works. Module and attribute names are the original's so the
original's weights load without a key map and tools/latency can walk the network.

Deliberate differences (docs/differences.md): the aux heads depend on the ``aux_heads`` flag instead of the
module's training mode at build time (B7; default True = what train.py does); the derivation does not mutate
the caller's tensors (B5, results unchanged); the unused ``criterion`` argument and the unused ``avgpool`` are
dropped; a clear error for an input size that is not a multiple of the network's stride.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.utils.errors import UserError
from tools.init_func import init_weight
from tools.models.archfile import record_genotype
from tools.models.derive import LASTS, DerivationError
from tools.models.genotype import derive_genotype
from tools.ops.heads import FeatureFusion, Head
from tools.ops.primitives import OPERATORS, BasicResidual2x, ConvNorm

BatchNorm2d = nn.BatchNorm2d


class InputSizeError(UserError, ValueError):
    """An input whose height or width the network cannot process."""


class MixedOp(nn.Module):
    """A single chosen operator (plain, not slimmable), kept under ``_op`` as in the original."""

    def __init__(self, C_in, C_out, op_idx, stride=1):
        super().__init__()
        self._op = OPERATORS[op_idx](C_in, C_out, stride, slimmable=False, width_mult_list=[1.])

    def forward(self, x):
        return self._op(x)


class Cell(nn.Module):
    """One layer of one branch group: the chosen op, stride 2 when the branch goes one scale down."""

    def __init__(self, op_idx, C_in, C_out, down):
        super().__init__()
        self._C_in = C_in
        self._C_out = C_out
        self._down = down
        self._op = MixedOp(C_in, C_out, op_idx, stride=2 if down else 1)

    def forward(self, input):
        return self._op(input)


def _upsample2x(x):
    return F.interpolate(x, size=(x.size(2) * 2, x.size(3) * 2), mode='bilinear', align_corners=True)   # DR8


class Network_Multi_Path_Infer(nn.Module):
    """Derived network; build it with ``from_genotype(genotype)`` (or ``build_derived`` from an arch record).

    The original's form also works: arch tensors alphas [alpha_0, alpha_1, alpha_2], betas [None, beta_1,
    beta_2], ratios [ratio_0, ratio_1, ratio_2] (as train.py passes them) are derived here (``derivation``:
    "sequential", the original's B5 behaviour, or "fresh"), then ``build_structure(lasts)``. ``genotype``: a
    Genotype instead of the tensors (built at once when it has ``lasts``). ``aux_heads``: build heads16/heads32
    for training (train.py: True).
    """

    def __init__(self, alphas=None, betas=None, ratios=None, num_classes=19, layers=9, Fch=12, width_mult_list=(1.,),
                 stem_head_width=(1., 1.), ignore_skip=False, derivation="sequential", aux_heads=True, genotype=None):
        super().__init__()
        if genotype is None:
            if alphas is None or betas is None or ratios is None:
                raise ValueError("give the arch tensors (alphas, betas, ratios) or a genotype (from_genotype).")
            if layers < 2:
                raise ValueError(f"layers={layers} is too small; the derived network needs at least 2 layers.")
            genotype = derive_genotype(alphas, betas, ratios, width_mult_list, layers, ignore_skip, derivation)
        self.genotype = genotype
        self._num_classes = num_classes
        self._layers = genotype.layers
        self._Fch = Fch
        self._width_mult_list = list(genotype.width_mult_list)
        self._stem_head_width = tuple(stem_head_width)
        self._aux_heads = bool(aux_heads)
        self.latency = 0
        # training returns the heads' logits upsampled to the input size (the original); False: at 1/8, 1/16,
        # 1/32, for a loss that upsamples them itself (the CPU fast path: FusedProbOhemCrossEntropy2d)
        self.upsample_train_logits = True
        self.stem = self._build_stem()
        for last in LASTS:      # the original's attributes ops0, path0, downs0, widths0, ... (lists)
            setattr(self, f"ops{last}", list(genotype.ops[last]))
            setattr(self, f"path{last}", list(genotype.paths[last]))
            setattr(self, f"downs{last}", genotype.downs(last))
            setattr(self, f"widths{last}", list(genotype.widths[last]))
        if genotype.lasts is not None:
            self.build_structure(genotype.lasts)

    @classmethod
    def from_genotype(cls, genotype, num_classes=19, Fch=12, stem_head_width=(1., 1.), aux_heads=True):
        """The network of a Genotype with chosen ``lasts``, in one step."""
        if genotype.lasts is None:
            raise ValueError("the genotype has no lasts (chosen branches); use genotype.with_lasts([2, 1]).")
        return cls(num_classes=num_classes, Fch=Fch, stem_head_width=stem_head_width, aux_heads=aux_heads,
                   genotype=genotype)

    def init_weights(self, bn_eps=1e-5, bn_momentum=0.1):
        """Kaiming-normal (fan_in, relu) convs and unit BatchNorms, as train.py initialises the derived network."""
        init_weight(self, nn.init.kaiming_normal_, nn.BatchNorm2d, bn_eps, bn_momentum, mode='fan_in',
                    nonlinearity='relu')
        return self

    def num_filters(self, scale, width=1.0):
        return int(np.round(scale * self._Fch * width))

    def _build_stem(self):
        width = self._stem_head_width[0]
        c2, c4, c8 = self.num_filters(2, width) * 2, self.num_filters(4, width) * 2, self.num_filters(8, width)
        return nn.Sequential(
            ConvNorm(3, c2, kernel_size=3, stride=2, padding=1, bias=False, groups=1, slimmable=False),
            BasicResidual2x(c2, c4, kernel_size=3, stride=2, groups=1, slimmable=False),
            BasicResidual2x(c4, c8, kernel_size=3, stride=2, groups=1, slimmable=False))

    def build_structure(self, lasts):
        """Keep the branches ending at the scales in ``lasts`` (e.g. [2, 1]) and build cells and heads."""
        lasts = [int(last) for last in lasts]
        if not lasts or any(last not in (0, 1, 2) for last in lasts) or len(set(lasts)) != len(lasts):
            raise ValueError(f"lasts {lasts} must be distinct branch scales from 0, 1, 2 (train.py uses [2, 1]).")
        self._branch = len(lasts)
        self.lasts = lasts
        self.genotype = self.genotype.with_lasts(lasts)
        self.ops = [getattr(self, f"ops{last}") for last in lasts]
        self.paths = [getattr(self, f"path{last}") for last in lasts]
        self.downs = [getattr(self, f"downs{last}") for last in lasts]
        self.widths = [getattr(self, f"widths{last}") for last in lasts]
        self.branch_groups, self.cells = self.get_branch_groups_cells(self.ops, self.paths, self.downs,
                                                                      self.widths, self.lasts)
        self.build_arm_ffm_head()
        return self

    def _head_width(self, scale):
        return self.num_filters(scale, self._stem_head_width[1])

    def build_arm_ffm_head(self):
        if self._aux_heads:
            if 2 in self.lasts:
                self.heads32 = Head(self._head_width(32), self._num_classes, Fch=self._Fch, is_aux=True,
                                    norm_layer=BatchNorm2d)
                in16 = self._head_width(16) + self.ch_16 if 1 in self.lasts else self.ch_16
            else:
                in16 = self._head_width(16)
            self.heads16 = Head(in16, self._num_classes, Fch=self._Fch, is_aux=True, norm_layer=BatchNorm2d)
        c8 = self._head_width(8)
        self.heads8 = Head(c8 * self._branch, self._num_classes, Fch=self._Fch, scale=4, branch=self._branch,
                           is_aux=False, norm_layer=BatchNorm2d)
        if 2 in self.lasts:
            self.arms32 = nn.ModuleList([
                ConvNorm(self._head_width(32), self._head_width(16), 1, 1, 0, slimmable=False),
                ConvNorm(self._head_width(16), c8, 1, 1, 0, slimmable=False)])
            self.refines32 = nn.ModuleList([
                ConvNorm(self._head_width(16) + self.ch_16, self._head_width(16), 3, 1, 1, slimmable=False),
                ConvNorm(c8 + self.ch_8_2, c8, 3, 1, 1, slimmable=False)])
        if 1 in self.lasts:
            self.arms16 = ConvNorm(self._head_width(16), c8, 1, 1, 0, slimmable=False)
            self.refines16 = ConvNorm(c8 + self.ch_8_1, c8, 3, 1, 1, slimmable=False)
        self.ffm = FeatureFusion(c8 * self._branch, c8 * self._branch, reduction=1, Fch=self._Fch, scale=8,
                                 branch=self._branch, norm_layer=BatchNorm2d)

    @staticmethod
    def _layer_connections(ops, paths, widths, layer):
        """connections[i, j] = 1 when branches i and j have the same next scale, op and width at ``layer``."""
        num_branch = len(ops)
        connections = np.ones((num_branch, num_branch))
        for i in range(num_branch):
            for j in range(i + 1, num_branch):
                if (len(paths[i]) <= layer + 1 or len(paths[j]) <= layer + 1
                        or paths[i][layer + 1] != paths[j][layer + 1] or ops[i][layer] != ops[j][layer]
                        or widths[i][layer] != widths[j][layer]):
                    connections[i, j] = connections[j, i] = 0
        return connections

    @staticmethod
    def _group_branches(branch_connections, paths, layer):
        """Branches still alive at ``layer`` grouped with every earlier group head they are connected to."""
        groups = []
        for branch in range(len(paths)):
            if len(paths[branch]) < layer + 1:
                continue
            inserted = False
            for group in groups:
                if branch_connections[group[0], branch] == 1:
                    group.append(branch)
                    inserted = True
            if not inserted:
                groups.append([branch])
        return groups

    @staticmethod
    def _check_group(group, ops, paths, downs, widths, layer):
        for a, b in zip(group[:-1], group[1:]):
            if not (ops[a][layer] == ops[b][layer] and paths[a][layer + 1] == paths[b][layer + 1]
                    and downs[a][layer] == downs[b][layer] and widths[a][layer] == widths[b][layer]):
                raise DerivationError(f"branches {a} and {b} share layer {layer} but differ in op/scale/down/width.")
        path, down = paths[group[0]], downs[group[0]][layer]
        if down not in (0, 1) or (layer < len(path) - 1 and down != path[layer + 1] - path[layer]):
            raise DerivationError(f"branch {group[0]} has down={down} at layer {layer} inconsistent with its path.")
        if layer == len(path) - 1 and down != 0:
            raise DerivationError(f"branch {group[0]} goes down in its last layer {layer}.")

    def _make_cell(self, group, ops, paths, downs, widths, layer):
        """The cell of a branch group: stem width in, head width out at the branch end, searched widths between."""
        first = group[0]
        op, down = ops[first][layer], downs[first][layer]
        scale = 2 ** (paths[first][layer] + 3)
        if layer == 0:
            c_in = self.num_filters(scale, self._stem_head_width[0])
        else:
            c_in = self.num_filters(scale, widths[first][layer - 1])
        if layer == len(paths[first]) - 1:
            c_out = self.num_filters(scale, self._stem_head_width[1])
        else:
            c_out = self.num_filters(scale * (down + 1), widths[first][layer])
        return Cell(op, c_in, c_out, down), scale, down

    def _record_fusion_channels(self, cell, group, scale, down):
        """Channels of the last 1/16 and 1/8 features of the 1/32 branch and the last 1/8 of the 1/16 branch."""
        if not down:
            return
        if 2 in self.lasts and self.lasts.index(2) in group:
            if scale == 16:
                self.ch_16 = cell._C_in
            elif scale == 8:
                self.ch_8_2 = cell._C_in
        if 1 in self.lasts and self.lasts.index(1) in group and scale == 8:
            self.ch_8_1 = cell._C_in

    def get_branch_groups_cells(self, ops, paths, downs, widths, lasts):
        """Per layer, the groups of branches sharing one cell; cells keyed "layer-branch" (shared modules
        appear under every branch key, as in the original state_dict)."""
        num_branch = len(ops)
        layers = max(len(path) for path in paths)
        self.ch_16 = 0
        self.ch_8_2 = 0
        self.ch_8_1 = 0
        cells = nn.ModuleDict()
        branch_connections = np.ones((num_branch, num_branch))
        groups_all = []
        for layer in range(layers):
            branch_connections *= self._layer_connections(ops, paths, widths, layer)
            groups = self._group_branches(branch_connections, paths, layer)
            for group in groups:
                self._check_group(group, ops, paths, downs, widths, layer)
                cell, scale, down = self._make_cell(group, ops, paths, downs, widths, layer)
                self._record_fusion_channels(cell, group, scale, down)
                for branch in group:
                    cells[f"{layer}-{branch}"] = cell
            groups_all.append(groups)
        return groups_all, cells

    def _aux_head(self, name):
        head = getattr(self, name, None)
        if head is None:
            raise RuntimeError(f"this network was built with aux_heads=False and has no {name}, so it cannot run "
                               f"in training mode; call .eval() or build it with aux_heads=True.")
        return head

    def agg_ffm(self, outputs8, outputs16, outputs32):
        pred32, pred16, pred8 = [], [], []
        for branch, last in enumerate(self.lasts):
            if last == 2:
                if self.training:
                    pred32.append(outputs32[branch])
                out = _upsample2x(self.arms32[0](outputs32[branch]))
                out = self.refines32[0](torch.cat([out, outputs16[branch]], dim=1))
                if self.training:
                    pred16.append(outputs16[branch])
                out = _upsample2x(self.arms32[1](out))
                pred8.append(self.refines32[1](torch.cat([out, outputs8[branch]], dim=1)))
            elif last == 1:
                if self.training:
                    pred16.append(outputs16[branch])
                out = _upsample2x(self.arms16(outputs16[branch]))
                pred8.append(self.refines16(torch.cat([out, outputs8[branch]], dim=1)))
            else:
                pred8.append(outputs8[branch])
        pred32 = self._aux_head("heads32")(torch.cat(pred32, dim=1)) if pred32 else None
        pred16 = self._aux_head("heads16")(torch.cat(pred16, dim=1)) if pred16 else None
        pred8 = self.heads8(self.ffm(torch.cat(pred8, dim=1)))
        if self.training:
            return pred8, pred16, pred32
        return pred8

    def input_multiple(self):
        """Height and width must be multiples of this: the deepest feature is at 1/8 * 2**(deepest scale)."""
        return 8 * 2 ** max(max(path) for path in self.paths)

    def _check_input(self, input):
        if not hasattr(self, "lasts"):
            raise RuntimeError("call build_structure(lasts) (or use build_derived) before running the network.")
        if input.dim() != 4:
            raise InputSizeError(f"input must be a 4-d batch (N, 3, H, W), got shape {tuple(input.shape)}.")
        multiple = self.input_multiple()
        _, _, H, W = input.shape
        if H % multiple or W % multiple:
            raise InputSizeError(f"input height {H} and width {W} must both be multiples of {multiple} for this "
                                 f"network (its deepest feature is at 1/{multiple}); resize or pad the image.")

    def forward(self, input):
        self._check_input(input)
        H = input.size(2)
        stem = self.stem(input)
        outputs8 = [stem] * self._branch
        outputs16 = [stem] * self._branch
        outputs32 = [stem] * self._branch
        outputs = [stem] * self._branch
        for layer, groups in enumerate(self.branch_groups):
            for group in groups:
                output = self.cells[f"{layer}-{group[0]}"](outputs[group[0]])
                scale = int(H // output.size(2))
                for branch in group:
                    outputs[branch] = output
                    if scale == 8:
                        outputs8[branch] = output
                    elif scale == 16:
                        outputs16[branch] = output
                    elif scale == 32:
                        outputs32[branch] = output
        if self.training:
            pred8, pred16, pred32 = self.agg_ffm(outputs8, outputs16, outputs32)
            if not self.upsample_train_logits:
                return pred8, pred16, pred32
            pred8 = upsample_logits(pred8, scale_factor=8, mode='bilinear', align_corners=True)
            if pred16 is not None:
                pred16 = upsample_logits(pred16, scale_factor=16, mode='bilinear', align_corners=True)
            if pred32 is not None:
                pred32 = upsample_logits(pred32, scale_factor=32, mode='bilinear', align_corners=True)
            return pred8, pred16, pred32
        pred8 = self.agg_ffm(outputs8, outputs16, outputs32)
        return upsample_logits(pred8, size=(pred8.size(2) * 8, pred8.size(3) * 8), mode='bilinear',   # DR8
                               align_corners=True)


def upsample_logits(logits, **kwargs):
    """``F.interpolate`` of a head's logits to the label size; bf16 logits (CPU autocast) are upsampled in
    float32, where the losses read them, instead of being enlarged in bf16 and copied to float32 after (less
    work and 16 more mantissa bits; fp32 and fp16 logits are upsampled as they are)."""
    return F.interpolate(logits.float() if logits.dtype == torch.bfloat16 else logits, **kwargs)


DerivedNetwork = Network_Multi_Path_Infer


def build_derived(arch_record, arch_idx, num_classes=19, layers=16, Fch=12,
                  width_mult_list=(4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.), stem_head_width=(1., 1.),
                  aux_heads=True, derivation="sequential", lasts=None, ignore_skip=None, device=None):
    """Build the derived network exactly as train.py does from an arch record (tools.models.archfile).

    The record's genotype (``record_genotype``: stored, else derived; ignore_skip defaults to ``arch_idx == 0``,
    the teacher; ``lasts`` to train.py's choice from the record's mIoU/latency). ``stem_head_width`` is the
    per-network entry of the config's list (teacher (1, 1), student (8/12, 8/12)).
    """
    genotype = record_genotype(arch_record, arch_idx, layers, width_mult_list, ignore_skip, derivation, lasts)
    model = Network_Multi_Path_Infer.from_genotype(genotype, num_classes=num_classes, Fch=Fch,
                                                   stem_head_width=stem_head_width, aux_heads=aux_heads)
    if device is not None:
        model.to(device)
    return model


def count_conv_macs(model, input_shape, device=None):
    """Multiply-accumulates of every nn.Conv2d call in one eval() forward of a zero input:
    out.numel() * (C_in / groups) * kh * kw (no bias, BN or interpolation), and the number of calls."""
    totals = {"macs": 0, "calls": 0}

    def hook(module, inputs, output):
        kh, kw = module.kernel_size
        totals["macs"] += output.numel() * (module.in_channels // module.groups) * kh * kw
        totals["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return totals["macs"], totals["calls"]
