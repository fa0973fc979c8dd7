"""Derivation rules: from searched architecture parameters to concrete branches (ops, path, downs, widths).

Replaces the module-level functions of the original ``train/model_seg.py`` (``path2downs``, ``downs2path``,
``alphas2ops_path_width``, ``betas2path``, ``path2widths``, ``network_metas``) and ``objective_acc_lat`` of
``tools/utils/darts_utils.py``, plus the ``lasts`` choice of ``train/train.py``.

tools/models/genotype.py collects what these rules choose into a Genotype record (``derive_genotype``).

All arithmetic stays in torch float32 as in the original (softmax of the rows, products of beta probabilities),
because float64 could flip near-ties and change a derived network.

The original ``Network_Multi_Path_Infer.__init__`` calls ``network_metas`` for last 0, 1 and 2 on the SAME
list objects, which it mutates (bug B5): ``betas[1]``/``betas[2]`` are replaced by their softmax (so last 1
sees softmax twice and last 2 three times) and ``-inf`` is written into the alpha rows, which changes the skip
pruning of later calls. ``derive_all(mode="sequential")`` reproduces that (on private copies, so the caller's
tensors stay untouched) and is the default, because the published networks, the recorded derivations and
every architecture the original trained were derived that way. ``mode="fresh"`` derives each ``last`` from
untouched copies.
"""
import copy
import math

import numpy as np
import torch.nn.functional as F

from tools.utils.errors import UserError
from tools.ops.primitives import SKIP

LASTS = (0, 1, 2)
DERIVATION_MODES = ("sequential", "fresh")


class DerivationError(UserError, ValueError):
    """The architecture parameters cannot be turned into a network (the original fails an assert there)."""


def path2downs(path):
    """Per layer: 1 where the next layer is one scale lower, else 0; the last entry is always 0."""
    downs = []
    for prev, node in zip(path[:-1], path[1:]):
        if node - prev not in (0, 1):
            raise DerivationError(f"path {list(path)} jumps by {node - prev} scales; only 0 or 1 is allowed.")
        downs.append(1 if node > prev else 0)
    downs.append(0)
    return downs


def downs2path(downs):
    """Inverse of ``path2downs``: the path starts at scale 0 and goes one scale down after each 1."""
    path = [0]
    for down in downs[:-1]:
        path.append(path[-1] + 1 if down == 1 else path[-1])
    return path


def betas2path(betas, last, layers):
    """The path of the branch ending at scale ``last`` from the (already softmaxed) betas.

    last 1: one down, where betas[1][.,0] is largest over rows 1..layers-4.
    last 2: two downs maximising betas[1][i,0] * betas[2][j,0] (float32) over 1 <= i <= j-2, j < layers-4.
    """
    downs = [0] * layers
    if last == 1:
        column = betas[1][1:-1, 0].detach().cpu().numpy()
        downs[int(np.argmax(column)) + 1] = 1
    elif last == 2:
        beta1 = betas[1][:, 0].detach().cpu().numpy().astype(np.float32)
        beta2 = betas[2][:, 0].detach().cpu().numpy().astype(np.float32)
        max_prob, max_ij = 0, (0, 1)
        for j in range(layers - 4):
            for i in range(1, j - 1):
                prob = beta1[i] * beta2[j]
                if prob > max_prob:
                    max_ij, max_prob = (i, j), prob
        downs[max_ij[0] + 1] = 1
        downs[max_ij[1] + 2] = 1
    path = downs2path(downs)
    if path[-1] != last:
        raise DerivationError(f"betas give a path ending at scale {path[-1]} instead of {last} (layers={layers}).")
    return path


def path2widths(path, ratios, width_mult_list):
    """Width multiplier of every layer transition: argmax of the ratio row of the next layer's scale."""
    widths = []
    for layer in range(1, len(path)):
        scale = path[layer]
        row = layer - 1 if scale == 0 else layer - scale
        widths.append(width_mult_list[int(ratios[scale][row].argmax())])
    return widths


def _skip_score(alphas, scale, pos):
    """softmax(alpha row)[skip] in float32, as a Python float (exact conversion, same ordering)."""
    return float(F.softmax(alphas[scale][pos - scale], dim=-1)[SKIP])


def _forbid_skip(alphas, scale, pos):
    """Write -inf into the skip logit of layer ``pos`` (in place, as the original)."""
    alphas[scale][pos - scale][SKIP] = -float("inf")


def _argmax_op(alphas, scale, pos):
    return int(alphas[scale][pos - scale].argmax())


def _collect_skips(alphas, path, ignore_skip):
    """(position, skip score) of every layer whose best op is skip and that does not go down."""
    skips = []
    for i, scale in enumerate(path):
        if ignore_skip:
            _forbid_skip(alphas, scale, i)
        if _argmax_op(alphas, scale, i) == SKIP and (i == len(path) - 1 or path[i] == path[i + 1]):
            skips.append((i, _skip_score(alphas, scale, i)))
    return skips


def _forbid_all_skip_segments(alphas, path, pos_skips):
    """Between two downs (and from the last down to the end) not every layer may be a skip:
    the skip with the lowest score (last one on ties) in such a segment gets -inf."""
    pos_downs = [pos for pos in range(len(path) - 1) if path[pos] < path[pos + 1]]
    if not pos_downs:
        return
    pos_downs.append(len(path))
    for pos1, pos2 in zip(pos_downs[:-1], pos_downs[1:]):
        first, last = pos1 + 1, pos2 - 1
        if first in pos_skips and last in pos_skips and pos_skips.index(last) - pos_skips.index(first) == last - first:
            min_score, min_pos = 1, -1
            for j in range(first, pos2):
                score = _skip_score(alphas, path[j], j)
                if score <= min_score:
                    min_score, min_pos = score, j
            _forbid_skip(alphas, path[min_pos], min_pos)


def alphas2ops_path_width(alphas, path, widths, ignore_skip=False):
    """Choose the op of every layer and drop skip layers, keeping at least ``min_len`` layers.

    Mutates ``alphas`` in place exactly as the original (B5). Returns (ops, path, widths) compacted.
    """
    if len(path) != len(widths) + 1:
        raise DerivationError(f"len(path) {len(path)} must be len(widths) {len(widths)} + 1.")
    min_len = int(np.round(len(path) / 3.0)) + path[-1] * 2
    skips = _collect_skips(alphas, path, ignore_skip)
    _forbid_all_skip_segments(alphas, path, [pos for pos, _ in skips])
    if len(skips) > len(path) - min_len:
        skips = sorted(skips, key=lambda item: item[1], reverse=True)[:len(path) - min_len]
    pos_skips = [pos for pos, _ in skips]
    ops, path_compact, widths_compact = [], [], []
    for i, scale in enumerate(path):
        op = _argmax_op(alphas, scale, i)
        if op == SKIP:
            if i in pos_skips:
                if i == len(path) - 1:
                    widths_compact = widths_compact[:-1]
                continue
            _forbid_skip(alphas, scale, i)
            op = _argmax_op(alphas, scale, i)
        path_compact.append(scale)
        if i < len(widths):
            widths_compact.append(widths[i])
        ops.append(op)
    if len(path_compact) < min_len:
        raise DerivationError(f"only {len(path_compact)} layers are left after skip pruning, fewer than the "
                              f"minimum {min_len} for a path of {len(path)} layers ending at scale {path[-1]}.")
    return ops, path_compact, widths_compact


def network_metas(alphas, betas, ratios, width_mult_list, layers, last, ignore_skip=False):
    """(ops, path, downs, widths) of the branch ending at scale ``last``.

    As the original: replaces betas[1]/betas[2] in the given list by their softmax and writes -inf into
    ``alphas`` (B5); use ``derive_all`` to control that.
    """
    betas[1] = F.softmax(betas[1], dim=-1)
    betas[2] = F.softmax(betas[2], dim=-1)
    path = betas2path(betas, last, layers)
    widths = path2widths(path, ratios, width_mult_list)
    ops, path, widths = alphas2ops_path_width(alphas, path, widths, ignore_skip=ignore_skip)
    if not len(ops) == len(path) == len(widths) + 1:
        raise DerivationError(f"inconsistent derivation: {len(ops)} ops, {len(path)} path entries, "
                              f"{len(widths)} widths.")
    return ops, path, path2downs(path), widths


WIDTH_RULES = ("train", "search")


def effective_width_mult_list(ratios, width_mult_list, ignore_skip, rule="train"):
    """The width list the original derives with.

    One-column ratios (a fixed-width architecture: the teacher) mean one width, which depends on the module that
    derives: ``rule="train"`` is train/model_seg.py, which train.py builds ([1.0] with ``ignore_skip``, i.e. the
    teacher, else [4/12]); ``rule="search"`` is search/model_seg.py, through which the original's search logged
    the FPS of its derived networks (always [1.0], :180-181).
    """
    if rule not in WIDTH_RULES:
        raise ValueError(f"width rule {rule!r} is unknown; use one of {WIDTH_RULES}.")
    if ratios[0].size(1) == 1:
        return [1.0] if ignore_skip or rule == "search" else [4.0 / 12]
    if ratios[0].size(1) != len(width_mult_list):
        raise DerivationError(f"ratios have {ratios[0].size(1)} columns but width_mult_list has "
                              f"{len(width_mult_list)} entries; pass the width_mult_list used in the search.")
    return list(width_mult_list)


def _private_copy(tensors):
    return [None if t is None else t.detach().clone().float() for t in tensors]


def derive_all(alphas, betas, ratios, width_mult_list, layers, ignore_skip=False, mode="sequential"):
    """Derive the three branches {0, 1, 2: (ops, path, downs, widths)} as the original constructor does.

    ``width_mult_list`` is used as given (see ``effective_width_mult_list``). ``mode`` "sequential" (default,
    the original's B5 behaviour: shared, mutated copies) or "fresh" (untouched copies for every last).
    The caller's tensors are never modified.
    """
    if mode not in DERIVATION_MODES:
        raise ValueError(f"derivation mode '{mode}' is unknown; use one of {DERIVATION_MODES}.")
    shared = (_private_copy(alphas), _private_copy(betas), _private_copy(ratios))
    metas = {}
    for last in LASTS:
        a, b, r = shared if mode == "sequential" else copy.deepcopy(shared)
        metas[last] = network_metas(a, b, r, width_mult_list, layers, last, ignore_skip=ignore_skip)
    return metas


def objective_acc_lat(acc, lat, lat_target=8.3, alpha=-0.07, beta=-0.07):
    """Accuracy-latency objective of the original: acc * (lat / lat_target) ** w."""
    w = alpha if lat <= lat_target else beta
    return acc * math.pow(lat / lat_target, w)


def choose_lasts(mIoU02, latency02, mIoU12, latency12):
    """train.py's choice of branches: [2, 0] if the 1/8+1/32 pair scores higher, else [2, 1]."""
    obj02 = objective_acc_lat(float(mIoU02), float(latency02))
    obj12 = objective_acc_lat(float(mIoU12), float(latency12))
    return [2, 0] if obj02 > obj12 else [2, 1]
