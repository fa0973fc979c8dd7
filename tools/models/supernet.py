"""The FasterSeg search supernet (MixedOp, Cell, Network_Multi_Path); replaces search/model_search.py.

16 layers x 3 scales (1/8, 1/16, 1/32). Every cell holds a keep MixedOp and (except at 1/32 and in the last
layer) a stride-2 down MixedOp; all five slimmable PRIMITIVES run in every MixedOp and are summed with the
softmaxed operator weights (alphas). Scales 1/16 and 1/32 mix the "from down" and "from keep" inputs with the
softmaxed path weights (betas). Widths come from ``ratios``: fixed ('max', 'min', 'random') or sampled per layer
by hard gumbel-softmax ('arch_ratio'). There is one set of architecture parameters and one stem/refine/head set
per architecture (index 0 = teacher, 1 = student), selected by ``arch_idx``.

What a forward samples is explicit: ``with net.sampling(arch_idx=1, mode="max"): net(x)`` runs architecture 1 at
its widest widths and restores the previous selection on exit, exceptions included (the original set
``net.arch_idx`` / ``net.prun_mode`` by hand before each forward and left them set). The two attributes remain
the current selection (``select`` sets it without restoring; the reference tests set them directly).

Same math, parameter names, shapes and state_dict order as the original (checked against
../shared/reference/state_dict_shapes.json and supernet_tiny_equivalence.pt). The lookup-table latency
(``forward_latency``) lives in tools/latency, which walks this module using ``cell_ratio``/``sample_prun_ratio``.
"""
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.utils.errors import UserError
from tools.init_func import init_weight  # noqa: F401  (re-exported: the supernet's init)
from tools.ops.heads import Head
from tools.ops.primitives import OPERATORS, PRIMITIVES, BasicResidual2x, ConvNorm
from tools.ops.slimmable import USBatchNorm2d, WidthError, make_divisible

PRUN_MODES = ("max", "min", "random", "arch_ratio")
KEEP = "keep"   # sampling()/select(): leave the current width mode as it is


class InputSizeError(UserError, ValueError):
    """An input whose height or width the network cannot process."""


class ConfigError(UserError, ValueError):
    """A supernet configuration the original would only fail on deep inside a forward pass."""


def sample_gumbel(shape, device=None, dtype=None, eps=1e-20):
    """Gumbel(0, 1) noise drawn on ``device`` (the original drew on the CPU and moved the noise to the GPU)."""
    U = torch.rand(shape, device=device, dtype=dtype)
    return -torch.log(-torch.log(U + eps) + eps)


def gumbel_softmax(logits, temperature=1, hard=False):
    """Gumbel-softmax over the last dim; ``hard`` gives a one-hot with the soft sample's gradient (ST)."""
    y = F.softmax((logits + sample_gumbel(logits.size(), logits.device, logits.dtype)) / temperature, dim=-1)
    if not hard:
        return y
    shape = y.size()
    _, ind = y.max(dim=-1)
    y_hard = torch.zeros_like(y).view(-1, shape[-1])
    y_hard.scatter_(1, ind.view(-1, 1), 1)
    y_hard = y_hard.view(*shape)
    return (y_hard - y).detach() + y


def resolve_ratio(ratio, width_mult_list, index=None):
    """(width, score) of one ratio: a float forces that width (score 1.); a tensor (arch_ratio) picks
    ``width_mult_list[argmax]`` and scores with its own value, so gradients reach the ratio parameters."""
    if isinstance(ratio, torch.Tensor):
        if index is None:
            index = int(ratio.argmax())
        return width_mult_list[index], ratio[index]
    return ratio, 1.


class MixedOp(nn.Module):
    """All PRIMITIVES (slimmable) on one input, summed with operator weights and width scores."""

    def __init__(self, C_in, C_out, stride=1, width_mult_list=(1.,)):
        super().__init__()
        self.C_in = C_in
        self.C_out = C_out
        self.stride = stride
        self._width_mult_list = list(width_mult_list)
        self._ops = nn.ModuleList([op(C_in, C_out, stride, True, self._width_mult_list) for op in OPERATORS])
        self._batch_norms = [m for m in self._ops.modules() if isinstance(m, USBatchNorm2d)]
        self._batch_groups = 1

    def set_prun_ratio(self, ratio):
        for op in self._ops:
            op.set_ratio(ratio)

    def set_batch_groups(self, groups):
        """Number of independent inputs stacked along the batch (BatchNorm statistics are kept per group)."""
        if groups != self._batch_groups:
            for bn in self._batch_norms:
                bn.batch_groups = groups
            self._batch_groups = groups

    def forward(self, x, weights, ratios, batch_groups=1):
        """``ratios`` = (in, out), each a width float, an arch_ratio tensor, or a resolved (width, score) pair;
        ``batch_groups`` inputs stacked along the batch are processed as if one after the other."""
        self.set_batch_groups(batch_groups)
        ratio0, r_score0 = ratios[0] if isinstance(ratios[0], tuple) else resolve_ratio(ratios[0],
                                                                                       self._width_mult_list)
        ratio1, r_score1 = ratios[1] if isinstance(ratios[1], tuple) else resolve_ratio(ratios[1],
                                                                                       self._width_mult_list)
        self.set_prun_ratio((ratio0, ratio1))
        scored0 = isinstance(r_score0, torch.Tensor)
        scored1 = isinstance(r_score1, torch.Tensor)
        result = None
        for w, op in zip(weights, self._ops):
            term = op(x) * w
            if scored0:
                term = term * r_score0
            if scored1:
                term = term * r_score1
            result = term if result is None else result + term
        return result


class Cell(nn.Module):
    """A keep MixedOp (``_op``) and, when ``down``, a stride-2 MixedOp to the next scale (``downsample``)."""

    def __init__(self, C_in, C_out=None, down=True, width_mult_list=(1.,)):
        super().__init__()
        self._C_in = C_in
        if C_out is None:
            C_out = C_in
        self._C_out = C_out
        self._down = down
        self._width_mult_list = list(width_mult_list)
        self._op = MixedOp(C_in, C_out, width_mult_list=self._width_mult_list)
        if down:
            self.downsample = MixedOp(C_in, C_in * 2, stride=2, width_mult_list=self._width_mult_list)

    def forward(self, input, alphas, ratios, batch_groups=1):
        """``ratios`` = (in, out, down); the keep and down MixedOps share the same operator weights."""
        if self._down != (ratios[2] is not None):
            raise ValueError(f"Cell(down={self._down}) needs a down ratio exactly when it has a down MixedOp, "
                             f"got {ratios[2]!r}")
        out = self._op(input, alphas, (ratios[0], ratios[1]), batch_groups)
        down = self.downsample(input, alphas, (ratios[0], ratios[2]), batch_groups) if self._down else None
        return out, down

    def forward_pair(self, first, second, alphas, ratios):
        """``[self(first), self(second)]`` in one pass: the two inputs share weights and widths, so they are
        stacked along the batch (one convolution call instead of two; BatchNorm statistics stay per input)."""
        out, down = self(torch.cat([first, second], dim=0), alphas, ratios, batch_groups=2)
        downs = down.chunk(2) if down is not None else (None, None)
        return list(zip(out.chunk(2), downs))


def _round_filters(scale, Fch, width):
    return int(np.round(scale * Fch * width))


def channel_mismatch(Fch, stem_head_width):
    """First place where the stem/head (plain ``round``) and the cells (``make_divisible``) disagree, as a
    sentence, or None. The original then fails inside F.conv2d (README: Fch 4 with width 8/12)."""
    for stem_ratio, head_ratio in stem_head_width:
        stem, first = _round_filters(8, Fch, stem_ratio), make_divisible(8 * Fch * stem_ratio)
        if stem != first:
            return (f"Fch={Fch} with stem width {stem_ratio:.4g} gives a stem of {stem} channels but the first "
                    f"cell expects make_divisible(8*{Fch}*{stem_ratio:.4g})={first}")
        for scale in (8, 16, 32):
            head, last = _round_filters(scale, Fch, head_ratio), make_divisible(scale * Fch * head_ratio)
            if head != last:
                return (f"Fch={Fch} with head width {head_ratio:.4g} gives last cells of {last} channels at "
                        f"scale 1/{scale} but the refine/head layers expect {head}")
    return None


def _good_fch(Fch, stem_head_width, span=64):
    good = [f for f in range(1, Fch + span) if channel_mismatch(f, stem_head_width) is None]
    below = [f for f in good if f < Fch][-1:]
    above = [f for f in good if f > Fch][:2]
    return below + above


class Network_Multi_Path(nn.Module):
    """The supernet. ``with net.sampling(arch_idx=..., mode=...):`` selects the architecture (0 teacher,
    1 student) and the widths (None: the architecture's own ``_prun_modes[arch_idx]``; else
    'max'|'min'|'random'|'arch_ratio') of the forwards inside it; ``arch_idx``/``prun_mode`` hold the selection.

    ``criterion`` defaults to ``nn.CrossEntropyLoss(ignore_index=-1)`` like the original. Build the full search
    config under ``torch.device('meta')`` to inspect it without allocating its 252M parameters.
    ``pair_inputs`` (default True) runs the two inputs of a 1/16 or 1/32 cell in one stacked pass
    (``Cell.forward_pair``; same outputs, gradients and BatchNorm statistics as the original's two calls, fewer
    and larger convolutions); False calls the cell twice, as the original does.
    """

    def __init__(self, num_classes=19, layers=16, criterion=None, Fch=12, width_mult_list=(1.,),
                 prun_modes=('arch_ratio',), stem_head_width=((1., 1.),)):
        super().__init__()
        if layers < 3:
            raise ConfigError(f"layers={layers} is too small: the supernet needs at least 3 layers")
        self._num_classes = num_classes
        self._layers = layers
        self._criterion = nn.CrossEntropyLoss(ignore_index=-1) if criterion is None else criterion
        self._Fch = Fch
        self._width_mult_list = list(width_mult_list)
        self._prun_modes = list(prun_modes)
        self.prun_mode = None
        self.pair_inputs = True
        self._stem_head_width = [tuple(sh) for sh in stem_head_width]
        self._check_config()
        self._flops = 0
        self._params = 0

        self.stem = nn.ModuleList([self._build_stem(stem_ratio) for stem_ratio, _ in self._stem_head_width])
        self.cells = nn.ModuleList([self._build_layer(layer) for layer in range(layers)])
        self.refine32 = nn.ModuleList([self._build_refine32(h) for _, h in self._stem_head_width])
        self.refine16 = nn.ModuleList([self._build_refine16(h) for _, h in self._stem_head_width])
        for name, mult in (("head0", 1), ("head1", 1), ("head2", 1), ("head02", 2), ("head12", 2)):
            setattr(self, name, nn.ModuleList([Head(self.num_filters(8, h) * mult, num_classes, Fch=Fch)
                                               for _, h in self._stem_head_width]))

        self._arch_names = []
        self._arch_parameters = []
        for idx in range(len(self._prun_modes)):
            names, params = self._build_arch_parameters(idx)
            self._arch_names.append(names)
            self._arch_parameters.append(params)
        self.arch_idx = 0

    # ---- construction -------------------------------------------------------------------------------------
    def _check_config(self):
        if len(self._stem_head_width) != len(self._prun_modes):
            raise ConfigError(f"stem_head_width has {len(self._stem_head_width)} entries but prun_modes has "
                              f"{len(self._prun_modes)}: give one (stem, head) width per architecture")
        for mode in self._prun_modes:
            if mode not in PRUN_MODES:
                raise ConfigError(f"prun_modes entry {mode!r} is not one of {PRUN_MODES}")
        for stem_ratio, head_ratio in self._stem_head_width:
            for what, r in (("stem", stem_ratio), ("head", head_ratio)):
                if r not in self._width_mult_list:
                    raise WidthError(f"stem_head_width: {what} width {r!r} is not in width_mult_list "
                                     f"{self._width_mult_list}; add it or use one of those widths")
        problem = channel_mismatch(self._Fch, self._stem_head_width)
        if problem is not None:
            raise ConfigError(f"{problem} (the original crashes in F.conv2d); choose Fch "
                              f"{' or '.join(map(str, _good_fch(self._Fch, self._stem_head_width)))} instead")

    def num_filters(self, scale, width=1.0):
        return _round_filters(scale, self._Fch, width)

    def _build_stem(self, stem_ratio):
        nf = self.num_filters
        return nn.Sequential(
            ConvNorm(3, nf(2, stem_ratio) * 2, kernel_size=3, stride=2, padding=1, bias=False, groups=1,
                     slimmable=False),
            BasicResidual2x(nf(2, stem_ratio) * 2, nf(4, stem_ratio) * 2, kernel_size=3, stride=2, groups=1,
                            slimmable=False),
            BasicResidual2x(nf(4, stem_ratio) * 2, nf(8, stem_ratio), kernel_size=3, stride=2, groups=1,
                            slimmable=False))

    def _build_layer(self, layer):
        wml = self._width_mult_list
        last = layer == self._layers - 1
        cells = nn.ModuleList([Cell(self.num_filters(8), down=not last, width_mult_list=wml)])
        if layer >= 1:
            cells.append(Cell(self.num_filters(16), down=not last, width_mult_list=wml))
        if layer >= 2:
            cells.append(Cell(self.num_filters(32), down=False, width_mult_list=wml))
        return cells

    def _convnorm(self, c_in, c_out, kernel_size):
        padding = 1 if kernel_size == 3 else None
        return ConvNorm(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=False, groups=1,
                        slimmable=False)

    def _build_refine32(self, h):
        nf = self.num_filters
        return nn.ModuleList([self._convnorm(nf(32, h), nf(16, h), 1), self._convnorm(nf(32, h), nf(16, h), 3),
                              self._convnorm(nf(16, h), nf(8, h), 1), self._convnorm(nf(16, h), nf(8, h), 3)])

    def _build_refine16(self, h):
        nf = self.num_filters
        return nn.ModuleList([self._convnorm(nf(16, h), nf(8, h), 1), self._convnorm(nf(16, h), nf(8, h), 3)])

    def _arch_shapes(self, idx):
        """{name: shape} of architecture ``idx``'s parameters, in the original registration order."""
        L, num_ops = self._layers, len(PRIMITIVES)
        num_widths = len(self._width_mult_list) if self._prun_modes[idx] == 'arch_ratio' else 1
        return {f"alpha_{idx}_0": (L, num_ops), f"alpha_{idx}_1": (L - 1, num_ops),
                f"alpha_{idx}_2": (L - 2, num_ops),
                f"beta_{idx}_1": (L - 2, 2), f"beta_{idx}_2": (L - 3, 2),
                f"ratio_{idx}_0": (L - 1, num_widths), f"ratio_{idx}_1": (L - 1, num_widths),
                f"ratio_{idx}_2": (L - 2, num_widths)}

    def _build_arch_parameters(self, idx):
        shapes = self._arch_shapes(idx)
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(1e-3 * torch.ones(*shape)))
        names = {"alphas": [f"alpha_{idx}_{s}" for s in (0, 1, 2)], "betas": [f"beta_{idx}_{s}" for s in (1, 2)],
                 "ratios": [f"ratio_{idx}_{s}" for s in (0, 1, 2)]}
        return names, [getattr(self, name) for name in shapes]

    def _reset_arch_parameters(self, idx):
        """Set architecture ``idx``'s parameters back to 1e-3 (their value at construction)."""
        with torch.no_grad():
            for name in self._arch_shapes(idx):
                getattr(self, name).fill_(1e-3)

    def init_weights(self, bn_eps=1e-5, bn_momentum=0.1):
        """Kaiming-normal (fan_in, relu) convs and unit BatchNorms, as train_search.py initialises the supernet."""
        init_weight(self, nn.init.kaiming_normal_, nn.BatchNorm2d, bn_eps, bn_momentum, mode='fan_in',
                    nonlinearity='relu')

    # ---- parameter groups ---------------------------------------------------------------------------------
    def arch_parameters(self):
        """All architecture parameters, flat: arch 0 (alphas, betas, ratios), then arch 1..."""
        return [p for params in self._arch_parameters for p in params]

    def weight_parameters(self):
        """The network weights in train_search.py's optimizer order (stem, cells, refines, heads)."""
        params = []
        for name in ("stem", "cells", "refine32", "refine16", "head0", "head1", "head2", "head02", "head12"):
            params += list(getattr(self, name).parameters())
        return params

    # ---- architecture sampling ----------------------------------------------------------------------------
    def select(self, arch_idx=None, mode=KEEP):
        """Make architecture ``arch_idx`` (None: unchanged) and width mode ``mode`` (a PRUN_MODES entry; None: the
        architecture's own prun mode; KEEP: unchanged) current for later forwards; returns the previous
        ``(arch_idx, prun_mode)``. Prefer :meth:`sampling`, which restores it."""
        previous = (self.arch_idx, self.prun_mode)
        if arch_idx is not None:
            if not 0 <= arch_idx < len(self._prun_modes):
                raise ValueError(f"arch_idx {arch_idx!r} is not one of this supernet's architectures "
                                 f"0..{len(self._prun_modes) - 1}")
            self.arch_idx = arch_idx
        if mode != KEEP:
            if mode is not None and mode not in PRUN_MODES:
                raise ValueError(f"prun mode {mode!r} is not one of {PRUN_MODES} (or None: the architecture's own)")
            self.prun_mode = mode
        return previous

    @contextmanager
    def sampling(self, arch_idx=None, mode=KEEP):
        """``with net.sampling(arch_idx=1, mode=None): ...``: forwards inside run architecture ``arch_idx`` at the
        widths of ``mode`` (see :meth:`select`); the previous selection is back on exit, exceptions included."""
        previous = self.select(arch_idx, mode)
        try:
            yield self
        finally:
            self.arch_idx, self.prun_mode = previous

    def sample_prun_ratio(self, mode="arch_ratio"):
        """Per-layer widths [ratios0 (L-1), ratios1 (L-1), ratios2 (L-2)] for one forward pass.

        'max'/'min' give width_mult_list[-1]/[0]; 'random' draws with np.random.choice (the original's RNG);
        'arch_ratio' gives hard gumbel-softmax one-hots of this architecture's ratio parameters.
        """
        if mode not in PRUN_MODES:
            raise ValueError(f"prun mode {mode!r} is not one of {PRUN_MODES}")
        counts = (self._layers - 1, self._layers - 1, self._layers - 2)
        if mode == "arch_ratio":
            names = self._arch_names[self.arch_idx]["ratios"]
            return [[gumbel_softmax(F.log_softmax(getattr(self, name)[layer], dim=-1), hard=True)
                     for layer in range(n)] for name, n in zip(names, counts)]
        if mode == "min":
            return [[self._width_mult_list[0]] * n for n in counts]
        if mode == "max":
            return [[self._width_mult_list[-1]] * n for n in counts]
        return [[np.random.choice(self._width_mult_list) for _ in range(n)] for n in counts]

    def _resolve_ratios(self, ratios):
        """Turn sampled ratio tensors into (width, score) pairs with one device sync for the whole network."""
        flat = [r for row in ratios for r in row]
        if not flat or not isinstance(flat[0], torch.Tensor):
            return ratios
        indices = torch.stack([r.detach() for r in flat]).argmax(dim=-1).tolist()
        it = iter(indices)
        return [[resolve_ratio(r, self._width_mult_list, next(it)) for r in row] for row in ratios]

    def cell_ratio(self, i, j, ratios):
        """(in, out, down) widths of the cell at layer ``i``, scale ``j``, as the original forward indexes them."""
        stem_ratio, head_ratio = self._stem_head_width[self.arch_idx]
        if i == 0 and j == 0:
            return stem_ratio, ratios[0][0], ratios[1][0]
        if i == self._layers - 1:
            if j == 0:
                return ratios[0][i - 1], head_ratio, None
            return ratios[j][i - j], head_ratio, None
        if j == 2:
            return ratios[2][i - 2], ratios[2][i - 1], None
        if j == 0:
            return ratios[0][i - 1], ratios[0][i], ratios[1][i]
        return ratios[j][i - j], ratios[j][i - j + 1], ratios[j + 1][i - j]

    def arch_weights(self):
        """Softmaxed (alphas [3], betas [None, 1/16, 1/32]) of the current architecture."""
        names = self._arch_names[self.arch_idx]
        alphas = [F.softmax(getattr(self, name), dim=-1) for name in names["alphas"]]
        betas = [None] + [F.softmax(getattr(self, name), dim=-1) for name in names["betas"]]
        return alphas, betas

    def current_ratios(self):
        mode = self.prun_mode if self.prun_mode is not None else self._prun_modes[self.arch_idx]
        return self.sample_prun_ratio(mode=mode)

    # ---- forward ------------------------------------------------------------------------------------------
    def _check_input(self, input):
        h, w = input.shape[-2:]
        if h % 32 or w % 32:
            raise InputSizeError(f"input size {h}x{w} is not a multiple of 32 (the network downsamples 32x and "
                                 f"the original fails with 'Sizes of tensors must match'); resize or crop it")

    def _cells_forward(self, x, alphas, betas, ratios):
        beta_on = [None] + [b.detach().gt(0).tolist() for b in betas[1:]]
        out_prev = [[x, None]]
        for i, cells in enumerate(self.cells):
            out = []
            for j, cell in enumerate(cells):
                alpha = alphas[j][i - j]
                ratio = self.cell_ratio(i, j, ratios)
                if j == 0:
                    out.append(cell(out_prev[0][0], alpha, ratio))
                elif i == j:
                    out.append(cell(out_prev[j - 1][1], alpha, ratio))
                else:
                    beta, on = betas[j][i - j - 1], beta_on[j][i - j - 1]
                    if self.pair_inputs and on[0] and on[1]:
                        outs = cell.forward_pair(out_prev[j - 1][1], out_prev[j][0], alpha, ratio)
                    else:
                        outs = [cell(out_prev[j - 1][1], alpha, ratio) if on[0] else (None, None),
                                cell(out_prev[j][0], alpha, ratio) if on[1] else (None, None)]
                    out.append((_weighted_sum(beta, [o for o, _ in outs]),
                                _weighted_sum(beta, [d for _, d in outs])))
            out_prev = out
        return out

    def forward(self, input):
        self._check_input(input)
        k = self.arch_idx
        refine16, refine32 = self.refine16[k], self.refine32[k]
        alphas, betas = self.arch_weights()
        ratios = self._resolve_ratios(self.current_ratios())
        out = self._cells_forward(self.stem[k](input), alphas, betas, ratios)

        out0 = out[0][0]
        out1 = F.interpolate(refine16[0](out[1][0]), scale_factor=2, mode='bilinear', align_corners=True)
        out1 = refine16[1](torch.cat([out1, out[0][0]], dim=1))
        out2 = F.interpolate(refine32[0](out[2][0]), scale_factor=2, mode='bilinear', align_corners=True)
        out2 = refine32[1](torch.cat([out2, out[1][0]], dim=1))
        out2 = F.interpolate(refine32[2](out2), scale_factor=2, mode='bilinear', align_corners=True)
        out2 = refine32[3](torch.cat([out2, out[0][0]], dim=1))

        preds = (self.head0[k](out0), self.head1[k](out1), self.head2[k](out2),
                 self.head02[k](torch.cat([out0, out2], dim=1)), self.head12[k](torch.cat([out1, out2], dim=1)))
        if not self.training:
            preds = tuple(F.interpolate(p, scale_factor=8, mode='bilinear', align_corners=True) for p in preds)
        return preds

    def _loss_of(self, input, target):
        return sum(self._criterion(logit, target) for logit in self(input))

    def _loss(self, input, target, pretrain=False):
        """The sandwich rule. Search (``pretrain`` not True): every architecture with its own sampled widths,
        then 'max' and 'min' -- these two run with the last architecture, which stays selected afterwards, as
        the original's loop left it (behaviour B8). Pretrain: 'max', 'min' and two 'random' (only 'max' when
        there is a single width) with the selected architecture."""
        loss = 0
        if pretrain is not True:
            for idx in range(len(self._arch_names)):
                with self.sampling(arch_idx=idx, mode=None):
                    loss = loss + self._loss_of(input, target)
            self.select(arch_idx=len(self._arch_names) - 1)
        if len(self._width_mult_list) > 1:
            modes = ["max", "min"] + (["random", "random"] if pretrain is True else [])
        else:
            modes = ["max"] if pretrain is True else []
        for mode in modes:
            with self.sampling(mode=mode):
                loss = loss + self._loss_of(input, target)
        return loss


def _weighted_sum(weights, tensors):
    """sum(w * t) over the present tensors (absent = path weight not > 0, or no down output -> 0)."""
    result = 0
    for w, t in zip(weights, tensors):
        if t is not None:
            result = result + w * t
    return result


Supernet = Network_Multi_Path
