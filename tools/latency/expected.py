"""Lookup-table latency of the supernet (differentiable, expected over the architecture) and of derived networks.

Replaces ``Network_Multi_Path.forward_latency`` (search/model_search.py:404-475), the latency mix of
``Architect._backward_step`` (search/architect.py) and ``Network_Multi_Path_Infer.forward_latency``
(train/model_seg.py:369-410). The modules are walked from outside through their original attributes.

Supernet: every MixedOp costs ``sum_k alpha_k * T[op_k] * r_in * r_out`` (``r`` = the score of the sampled width
when widths are architecture parameters, else 1), and the expected latency of reaching each scale is carried
layer by layer, mixing the "from keep" and "from down" inputs with the path probabilities (betas). The result is
the sum over the three output scales of the expected stem+cells latency, as the original returns.

Fixed original bugs (``legacy=True`` reproduces them, to match numbers recorded from the original):

* B3 (search/model_search.py:456-469): the accumulation read ``betas[j][i-j-1]`` with ``j`` left over from the
  cell loop (the last scale of the layer) instead of the scale being accumulated, built the down total from
  the keep total after it had been updated for this layer, and read the previous scale's down total after it
  had been overwritten for this layer. We use the betas of the scale itself and the previous layer's totals.
* B2 (train/operations.py:426): conv_2x_downup read the conv_2x key (see :mod:`tools.latency.keys`).
* B1 (train/model_seg.py:388): the derived network never recorded its 1/8 outputs (``scale == 4``), so a branch
  ending at 1/8 would cost the FFM for the stem's output size. We record them.
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tools.latency.keys import concat_spec, interp_spec, op_spec

ARCHITECT_MIX = (1. / 500, 497. / 500, 2. / 500)
ARCHITECT_MIX_SINGLE_WIDTH = (1. / 500, 499. / 500)


@dataclass
class LatencyEstimate:
    """A derived network's table latency: total (ms), every table read in order, and the output size."""
    latency_ms: float
    reads: list = field(default_factory=list)
    parts: list = field(default_factory=list)
    out_size: tuple = None

    def part_ms(self, *names):
        """Sum of the reads of the given parts ('stem', 'cell', 'arm', 'refine', 'ff', 'head', 'glue'), in order."""
        total = 0.0
        for (_, value), part in zip(self.reads, self.parts):
            if part in names:
                total += value
        return total


# ---- derived network ---------------------------------------------------------------------------------------
def derived_specs(net, size, legacy_b1=False, legacy_b2=False, glue=False):
    """[(part, OpSpec)] of every table read of a built derived network, in the original's order.

    ``glue``: also the upsamplings and concatenations between the modules and the final x8 upsampling (part
    "glue"), read only from tables that hold them (``table_has_glue``); the original read none.
    The returned size is the head's output (before the final upsampling), as the original's.
    """
    _, H, _ = size
    specs = []

    def read(part, module, in_size):
        spec, out = op_spec(module, in_size, legacy_b2=legacy_b2)
        specs.append((part, spec))
        return out

    def upsample_and_concat(size, c_other):
        """The input of a refinement: the attention's output upsampled x2, concatenated with c_other channels."""
        if not glue:
            return (size[0] + c_other, size[1] * 2, size[2] * 2)
        spec = interp_spec(size[1], size[2], size[0], 2)
        specs.append(("glue", spec))
        _, h, w = spec.out_size
        spec = concat_spec(h, w, size[0], size[0] + c_other)
        specs.append(("glue", spec))
        return spec.out_size

    for module in net.stem:
        size = read("stem", module, size)
    outputs = {scale: [size] * net._branch for scale in (8, 16, 32)}
    current = [size] * net._branch
    for layer, groups in enumerate(net.branch_groups):
        for group in groups:
            out = read("cell", net.cells[f"{layer}-{group[0]}"]._op._op, current[group[0]])
            scale = int(H // out[1])
            for branch in group:
                current[branch] = out
                if scale in (16, 32) or (scale == 8 and not legacy_b1):
                    outputs[scale][branch] = out
    out_size = size
    for branch, last in enumerate(net.lasts):
        if last == 2:
            size = read("arm", net.arms32[0], outputs[32][branch])
            size = read("refine", net.refines32[0], upsample_and_concat(size, net.ch_16))
            size = read("arm", net.arms32[1], size)
            out_size = read("refine", net.refines32[1], upsample_and_concat(size, net.ch_8_2))
        elif last == 1:
            size = read("arm", net.arms16, outputs[16][branch])
            out_size = read("refine", net.refines16, upsample_and_concat(size, net.ch_8_1))
        else:
            out_size = outputs[8][branch]
    fused = (out_size[0] * net._branch, out_size[1], out_size[2])
    if glue:
        specs.append(("glue", concat_spec(out_size[1], out_size[2], out_size[0], fused[0])))
    size = read("ff", net.ffm, fused)
    size = read("head", net.heads8, size)
    if glue:
        specs.append(("glue", interp_spec(size[1], size[2], size[0], 8)))
    return specs, size


def table_has_glue(table):
    """Whether a table's estimates include the glue (its meta says ``"glue": true``)."""
    return bool(getattr(table, "meta", {}).get("glue"))


def derived_latency(net, size, table, legacy_b1=False, legacy_b2=False, glue=None):
    """Table latency (ms) of a derived network for an input ``size`` = (3, H, W), summed in read order.

    ``glue`` (default: whether the table holds glue entries) adds the upsamplings and concatenations.
    """
    glue = table_has_glue(table) if glue is None else glue
    specs, out_size = derived_specs(net, tuple(size), legacy_b1=legacy_b1, legacy_b2=legacy_b2, glue=glue)
    total, reads = 0.0, []
    for _, spec in specs:
        value = table.get(spec)
        reads.append((spec.key, value))
        total += value
    return LatencyEstimate(total, reads, [part for part, _ in specs], out_size)


# ---- supernet ----------------------------------------------------------------------------------------------
def _resolve(ratio, width_mult_list):
    """(width, score): a tensor ratio (sampled one-hot) picks its argmax width and scores with its value;
    a float is a fixed width with score 1; a (width, score) pair is already resolved."""
    if isinstance(ratio, tuple):
        return ratio
    if isinstance(ratio, torch.Tensor):
        index = int(ratio.detach().argmax())
        return width_mult_list[index], ratio[index]
    return ratio, 1.


def _resolve_all(ratios, width_mult_list):
    """Resolve every tensor ratio with one device synchronisation (instead of one per MixedOp)."""
    flat = [r for row in ratios for r in row if isinstance(r, torch.Tensor)]
    if not flat:
        return ratios
    indices = iter(torch.stack([r.detach() for r in flat]).argmax(dim=-1).tolist())
    resolved = []
    for row in ratios:
        resolved.append([])
        for r in row:
            if isinstance(r, torch.Tensor):
                index = next(indices)
                r = (width_mult_list[index], r[index])
            resolved[-1].append(r)
    return resolved


def mixed_op_latency(mixed, size, weights, ratios, table, legacy_b2=False):
    """Expected latency of one MixedOp: sum_k w_k * T[op_k] * r_score_in * r_score_out (original order)."""
    wml = mixed._width_mult_list
    (width0, score0), (width1, score1) = _resolve(ratios[0], wml), _resolve(ratios[1], wml)
    result, size_out = 0, None
    for w, op in zip(weights, mixed._ops):
        spec, size_out = op_spec(op, size, legacy_b2=legacy_b2, ratio=(width0, width1))
        result = result + table.get(spec) * w * score0 * score1
    return result, size_out


def supernet_weights(net, alpha=True, beta=True, ratio=True):
    """(alphas, betas, ratios) as the original forward_latency builds them for the selected architecture.

    alpha/beta False: uniform operator / path weights; ratio False: 'max' widths; ratio True: the widths of the
    selected mode (``net.sampling``; None: the architecture's own, 'arch_ratio' samples a hard gumbel-softmax).
    """
    names = net._arch_names[net.arch_idx]
    params = {key: [getattr(net, name) for name in names[key]] for key in ("alphas", "betas")}
    if alpha:
        alphas = [F.softmax(p, dim=-1) for p in params["alphas"]]
    else:
        alphas = [torch.ones_like(p) * (1. / p.shape[-1]) for p in params["alphas"]]
    if beta:
        betas = [None] + [F.softmax(p, dim=-1) for p in params["betas"]]
    else:
        betas = [None] + [torch.ones_like(p) * (1. / 2) for p in params["betas"]]
    ratios = net.current_ratios() if ratio else net.sample_prun_ratio(mode="max")
    return alphas, betas, ratios


def _cell_latencies(net, i, cells, sizes_in, alphas, ratios, table, legacy_b2):
    """Per scale of layer ``i``: ((keep latency, keep size), (down latency, down size) or None)."""
    result = []
    for j, cell in enumerate(cells):
        r_in, r_out, r_down = net.cell_ratio(i, j, ratios)
        size = sizes_in[j]
        keep = mixed_op_latency(cell._op, size, alphas[j][i - j], (r_in, r_out), table, legacy_b2)
        down = None
        if cell._down:
            down = mixed_op_latency(cell.downsample, size, alphas[j][i - j], (r_in, r_down), table, legacy_b2)
        result.append((keep, down))
    return result


def _stem(net, size, table, legacy_b2):
    total = 0
    for module in net.stem[net.arch_idx]:
        spec, size = op_spec(module, size, legacy_b2=legacy_b2)
        total = total + table.get(spec)
    return total, size


def _inputs_of_layer(i, num_cells, prev_sizes):
    """Input size of each scale's cell: scale 0 from keep, a new scale from down, else from keep."""
    sizes = []
    for j in range(num_cells):
        if j == 0 or i != j:
            sizes.append(prev_sizes[j][0])
        else:
            sizes.append(prev_sizes[j - 1][1])
    return sizes


def supernet_latency(net, size, table, alpha=True, beta=True, ratio=True, arch_idx=None, weights=None,
                     legacy=False, legacy_b2=None, per_scale=False):
    """Expected stem+cells table latency of the supernet (a tensor that carries gradients to the arch params).

    ``weights`` = (alphas, betas, ratios) overrides the architecture's own (e.g. one-hot probabilities);
    ``legacy`` reproduces the original's accumulation bugs B3 (and B2 unless ``legacy_b2`` says otherwise);
    ``per_scale`` returns the three expected latencies of reaching 1/8, 1/16, 1/32 instead of their sum.
    """
    legacy_b2 = legacy if legacy_b2 is None else legacy_b2
    with net.sampling(arch_idx=arch_idx):
        alphas, betas, ratios = weights if weights is not None else supernet_weights(net, alpha, beta, ratio)
        ratios = _resolve_all(ratios, net._width_mult_list)
        stem_latency, size = _stem(net, tuple(size), table, legacy_b2)
        accumulate = _accumulate_legacy if legacy else _accumulate
        totals = accumulate(net, size, stem_latency, alphas, betas, ratios, table, legacy_b2)
    if per_scale:
        return totals
    return sum(totals)


def _accumulate(net, size, stem_latency, alphas, betas, ratios, table, legacy_b2):
    """Expected latency to reach each scale: keep[s] and down[s] totals of the previous layer feed this one."""
    prev_sizes = [(size, None)]
    prev = [[stem_latency, 0], [0, 0], [0, 0]]
    for i, cells in enumerate(net.cells):
        lats = _cell_latencies(net, i, cells, _inputs_of_layer(i, len(cells), prev_sizes), alphas, ratios,
                               table, legacy_b2)
        new = [list(pair) for pair in prev]
        for s, (keep, down) in enumerate(lats):
            if s == 0:
                base = prev[0][0]
            elif i == s:
                base = prev[s - 1][1]
            else:
                beta = betas[s][i - s - 1]
                base = beta[1] * prev[s][0] + beta[0] * prev[s - 1][1]
            new[s][0] = base + keep[0]
            if down is not None:
                new[s][1] = base + down[0]
        prev = new
        prev_sizes = [(keep[1], down[1] if down is not None else None) for keep, down in lats]
    return [prev[s][0] for s in range(3)]


def _accumulate_legacy(net, size, stem_latency, alphas, betas, ratios, table, legacy_b2):
    """The original accumulation, bug B3 included, with its exact operation order (float32 results match)."""
    prev_sizes = [(size, None)]
    total = [[stem_latency, 0], [0, 0], [0, 0]]
    for i, cells in enumerate(net.cells):
        lats = _cell_latencies(net, i, cells, _inputs_of_layer(i, len(cells), prev_sizes), alphas, ratios,
                               table, legacy_b2)
        latency = []
        for j, (keep, down) in enumerate(lats):
            if j == 0 or i == j:
                latency.append([keep[0], down[0] if down is not None else None])
            else:
                beta = betas[j][i - j - 1]
                latency.append([sum(w * v for w, v in zip(beta, [keep[0], keep[0]])),
                                sum(w * v if v is not None else 0 for w, v in
                                    zip(beta, [down[0] if down is not None else None] * 2))])
        j = len(cells) - 1  # the stale loop variable the original reads below (B3a)
        for ii, lat in enumerate(latency):
            if ii == 0:
                if lat[0] is not None:
                    total[ii][0] = total[ii][0] + lat[0]
                if lat[1] is not None:
                    total[ii][1] = total[ii][0] + lat[1]
            elif i == ii:
                if lat[0] is not None:
                    total[ii][0] = total[ii - 1][1] + lat[0]
                if lat[1] is not None:
                    total[ii][1] = total[ii - 1][1] + lat[1]
            else:
                beta = betas[j][i - j - 1]
                if lat[0] is not None:
                    total[ii][0] = beta[1] * total[ii][0] + beta[0] * total[ii - 1][1] + lat[0]
                if lat[1] is not None:
                    total[ii][1] = beta[1] * total[ii][0] + beta[0] * total[ii - 1][1] + lat[1]
        prev_sizes = [(keep[1], down[1] if down is not None else None) for keep, down in lats]
    return [total[0][0], total[1][0], total[2][0]]


def architect_latency(net, size, table, arch_idx=None, legacy=False, legacy_b2=None):
    """The architect's latency term: 1/500 alpha-only + 497/500 beta-only + 2/500 ratio-only estimates.

    With a single width the original (search/architect.py:65) uses 1/500 alpha-only + 499/500 beta-only,
    as we do.
    """
    kwargs = dict(arch_idx=arch_idx, legacy=legacy, legacy_b2=legacy_b2)
    with net.sampling(mode=None):       # the ratio-only estimate samples the architecture's own widths
        if len(net._width_mult_list) == 1:
            r0, r1 = ARCHITECT_MIX_SINGLE_WIDTH
            return (0 + r0 * supernet_latency(net, size, table, True, False, False, **kwargs)
                    + r1 * supernet_latency(net, size, table, False, True, False, **kwargs))
        r0, r1, r2 = ARCHITECT_MIX
        return (0 + r0 * supernet_latency(net, size, table, True, False, False, **kwargs)
                + r1 * supernet_latency(net, size, table, False, True, False, **kwargs)
                + r2 * supernet_latency(net, size, table, False, False, True, **kwargs))
