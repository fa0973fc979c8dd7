"""Segmentation losses: ProbOhemCrossEntropy2d (OHEM on probability) and the OHEM ``min_kept`` rule;
replaces tools/seg_opr/loss_opr.py and the min_kept line of search/train_search.py.

OHEM keeps the "hard" pixels: those whose softmax probability of the true class is at most a threshold. The
threshold is ``thresh``, raised to the ``min_kept``-th smallest true-class probability when that is larger, so
at least ``min_kept`` pixels always count. Same numbers as the original (tests/data/ohem_cases.pt), including its
behaviour on an all-ignored target: the loss is NaN (a mean over zero pixels), with no exception -- callers that
can see empty crops must guard against it.

:class:`FusedProbOhemCrossEntropy2d` computes the same selection and loss from one softmax of the logits, with
a hand-written backward, and takes logits smaller than the labels (it upsamples them itself, as two matrix
products): the fast path of CPU training (tools/engine/recipe.py ``resolve_fast_path``).
"""
import logging

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.ops.interpolation import upsample_bilinear, upsample_bilinear_transposed

logger = logging.getLogger(__name__)

CITYSCAPES_CLASS_WEIGHT = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023, 0.9539,
                           0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507]


def ohem_min_kept(batch_size, image_height, image_width, gt_down_sampling=1):
    """train_search.py's ``min_kept``: one 16th of the label pixels of a batch at label resolution."""
    return int(batch_size * image_height * image_width // (16 * gt_down_sampling ** 2))


ENET_C = 1.02


def class_weights(kind, class_pixels):
    """The weight of each class for the ``class_weight`` key (a key of ours; '' in every faithful preset).

    ``'enet'``: ``1 / ln(1.02 + p_c)`` with ``p_c`` the share of class ``c`` among the labelled training pixels
    (ENet, Paszke et al. 2016, section 4: rare classes such as Pole and SignSymbol weigh ~30x, Road and Sky
    ~3x); a list: those weights; ``''``/None: None (unweighted, the original). ``class_pixels``: the pixels of
    each class in the training labels (tools/data/datasets.py ``scan_labels``)."""
    if not kind:
        return None
    if kind == "enet":
        pixels = np.asarray(class_pixels, dtype=np.float64)
        share = pixels / max(pixels.sum(), 1.0)
        return [float(w) for w in 1.0 / np.log(ENET_C + share)]
    return [float(w) for w in kind]


class ProbOhemCrossEntropy2d(nn.Module):
    """Cross-entropy over the hard pixels only (see the module docstring); ``ignore_label`` pixels never count.

    ``down_ratio`` is accepted and unused, as in the original. ``use_weight`` applies the original's fixed
    Cityscapes class weights, ``weight`` (one per class) any others: a weighted mean over the hard pixels, as
    ``nn.CrossEntropyLoss(weight=...)`` (a buffer of the inner ``criterion``, so ``.to(device)`` moves it). The
    hard pixels are chosen without weights, as in the original.
    """

    def __init__(self, ignore_label, reduction='mean', thresh=0.6, min_kept=256, down_ratio=1, use_weight=False,
                 weight=None):
        super().__init__()
        self.ignore_label = ignore_label
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.down_ratio = down_ratio
        if use_weight and weight is not None:
            raise ValueError("give use_weight (the Cityscapes weights) or weight, not both.")
        weight = torch.tensor(CITYSCAPES_CLASS_WEIGHT) if use_weight else weight
        weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.criterion = nn.CrossEntropyLoss(reduction=reduction, weight=weight, ignore_index=ignore_label)

    def _hard_pixel_target(self, pred, target):
        """The flat target with every pixel that is ignored or not hard set to ``ignore_label``."""
        c = pred.size(1)
        target = target.reshape(-1)
        valid_mask = target.ne(self.ignore_label)
        target = target * valid_mask.long()
        num_valid = int(valid_mask.sum())
        if self.min_kept > num_valid:
            logger.info('Labels: %d', num_valid)
        elif num_valid > 0 and self.min_kept > 0:
            prob = F.softmax(pred, dim=1).transpose(0, 1).reshape(c, -1)
            prob = prob.masked_fill_(~valid_mask, 1)
            mask_prob = prob[target, torch.arange(len(target), device=target.device)]
            kth = mask_prob.kthvalue(min(len(mask_prob), self.min_kept)).values
            threshold = kth if kth > self.thresh else self.thresh
            kept_mask = mask_prob.le(threshold)
            target = target * kept_mask.long()
            valid_mask = valid_mask & kept_mask
        return target.masked_fill_(~valid_mask, self.ignore_label)

    def forward(self, pred, target):
        b, _, h, w = pred.size()
        with torch.no_grad():
            target = self._hard_pixel_target(pred.detach(), target)
        return self.criterion(pred, target.view(b, h, w))


class FusedProbOhemCrossEntropy2d(ProbOhemCrossEntropy2d):
    """:class:`ProbOhemCrossEntropy2d` in one pass over the logits, with its gradient written by hand: the same
    hard pixels (the softmax probability of the true class against the same threshold rule) and the same mean
    cross-entropy over them, within float rounding. Class weights give the same weighted mean as the parent's.

    ``pred`` may be smaller than ``target``: it is then upsampled to the label size inside the loss (bilinear,
    ``align_corners=True``: what the derived network does to its training logits, tools/ops/interpolation.py),
    so the full-size logits are never a tensor of the autograd graph. The forward keeps one full-size tensor,
    the softmax; the backward is ``w / sum(w) * (softmax - onehot)`` over the kept pixels (their weights ``w``),
    then the upsampling's transpose. The k-th smallest probability is looked for only when fewer than
    ``min_kept`` pixels are below ``thresh`` (otherwise it is at most ``thresh`` and the threshold stays
    ``thresh``): the same pixels without a selection over the whole batch at most steps.
    """

    upsamples_logits = True         # the trainer hands it the heads' logits at their own size (tools/train)

    def __init__(self, ignore_label, reduction='mean', thresh=0.6, min_kept=256, down_ratio=1, use_weight=False,
                 weight=None):
        if reduction != 'mean':
            raise ValueError("the fused OHEM loss computes the mean; use ProbOhemCrossEntropy2d for another "
                             "reduction.")
        super().__init__(ignore_label, reduction, thresh, min_kept, down_ratio, use_weight, weight)

    def _kept(self, prob_true, valid):
        """The hard pixels among ``valid`` (flat bool), from the true-class probabilities (flat)."""
        num_valid = int(valid.sum())
        if self.min_kept > num_valid:
            logger.info('Labels: %d', num_valid)
            return valid
        if num_valid == 0 or self.min_kept <= 0:
            return valid
        prob = prob_true.detach().masked_fill(~valid, 1)
        k = min(len(prob), self.min_kept)
        below = prob.le(self.thresh)
        if int(below.sum()) >= k:                       # the k-th smallest is <= thresh: the threshold is thresh
            return valid & below
        kth = prob.kthvalue(k).values
        threshold = kth if kth > self.thresh else self.thresh
        return valid & prob.le(threshold)

    def forward(self, pred, target):
        return _FusedOhem.apply(pred, target, self)


SOFTMAX_TINY = 1e-30   # below it log(softmax) loses digits in float32: those pixels take the exact log-softmax


class _FusedOhem(torch.autograd.Function):
    """The forward and backward of :class:`FusedProbOhemCrossEntropy2d` (float32, autocast off)."""

    @staticmethod
    def forward(ctx, pred, target, criterion):
        n, c = pred.shape[:2]
        height, width = target.shape[-2:]
        with torch.autocast(pred.device.type, enabled=False):
            logits = pred.float()
            upsampling = tuple(logits.shape[2:]) != (height, width)
            if logits.size(2) > height or logits.size(3) > width:
                raise ValueError(f"logits of size {tuple(logits.shape[2:])} are larger than the labels "
                                 f"{(height, width)}; the fused OHEM loss only upsamples.")
            if upsampling:
                logits = upsample_bilinear(logits, (height, width))
            prob = torch.softmax(logits, 1)
            target = target.reshape(n, 1, height, width)
            valid = target.ne(criterion.ignore_label)
            classes = target * valid.long()             # ignored pixels read class 0, then drop out of ``kept``
            prob_true = prob.gather(1, classes).reshape(-1)
            logp_true = _log_prob_true(prob_true, logits, classes)
            del logits
            weight = criterion._kept(prob_true, valid.reshape(-1)).to(prob.dtype)
            if criterion.criterion.weight is not None:
                weight = criterion.criterion.weight.to(prob)[classes.reshape(-1)] * weight
            weight = weight / weight.sum()
            ctx.save_for_backward(prob, classes, weight)
            ctx.pred_dtype = pred.dtype
            ctx.small_size = tuple(pred.shape[2:]) if upsampling else None
            return -(logp_true * weight).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        prob, classes, weight = ctx.saved_tensors
        with torch.autocast(prob.device.type, enabled=False):
            coef = (weight * grad_loss).reshape(classes.shape)
            grad = prob * coef
            grad.scatter_add_(1, classes, -coef)
        if ctx.small_size is not None:
            grad = upsample_bilinear_transposed(grad, ctx.small_size)
        return grad.to(ctx.pred_dtype), None, None


def _log_prob_true(prob_true, logits, classes):
    """log of the true-class probabilities (flat); where one underflows, the exact log-softmax of its pixel."""
    logp = prob_true.log()
    tiny = (prob_true < SOFTMAX_TINY).nonzero().squeeze(1)
    if len(tiny):
        n, c, height, width = logits.shape
        pixels = logits.reshape(n, c, height * width)[tiny // (height * width), :, tiny % (height * width)]
        true = pixels.gather(1, classes.reshape(-1)[tiny, None])[:, 0]
        logp[tiny] = true - pixels.logsumexp(1)
    return logp
