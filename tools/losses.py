"""Segmentation losses: ProbOhemCrossEntropy2d (OHEM on probability) and the OHEM ``min_kept`` rule;
replaces tools/seg_opr/loss_opr.py and the min_kept line of search/train_search.py.

OHEM keeps the "hard" pixels: those whose softmax probability of the true class is at most a threshold. The
threshold is ``thresh``, raised to the ``min_kept``-th smallest true-class probability when that is larger, so
at least ``min_kept`` pixels always count. Same numbers as the original (tests/data/ohem_cases.pt), including its
behaviour on an all-ignored target: the loss is NaN (a mean over zero pixels), with no exception -- callers that
can see empty crops must guard against it.

:class:`FusedProbOhemCrossEntropy2d` computes the same selection and loss from one ``log_softmax`` of the logits
(the true-class probability is the exponential of its entry), instead of a softmax, a channel-last copy of it,
and a second log-softmax inside the cross-entropy: the fast path of CPU training (tools/engine/fastpath.py).
"""
import logging

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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
    """:class:`ProbOhemCrossEntropy2d` from one ``log_softmax`` pass: the same hard pixels (the true-class
    probability ``exp(log p)`` against the same threshold rule) and the same mean cross-entropy over them,
    within float rounding; the gradient comes through ``log_softmax`` alone. Class weights give the same
    weighted mean as the parent's."""

    def __init__(self, ignore_label, reduction='mean', thresh=0.6, min_kept=256, down_ratio=1, use_weight=False,
                 weight=None):
        if reduction != 'mean':
            raise ValueError("the fused OHEM loss computes the mean; use ProbOhemCrossEntropy2d for another "
                             "reduction.")
        super().__init__(ignore_label, reduction, thresh, min_kept, down_ratio, use_weight, weight)

    def _kept(self, logp_true, valid):
        """The hard pixels among ``valid`` (flat bool), from the true-class log-probabilities (flat)."""
        num_valid = int(valid.sum())
        if self.min_kept > num_valid:
            logger.info('Labels: %d', num_valid)
            return valid
        if num_valid == 0 or self.min_kept <= 0:
            return valid
        prob = logp_true.detach().exp().masked_fill_(~valid, 1)
        kth = prob.kthvalue(min(len(prob), self.min_kept)).values
        threshold = kth if kth > self.thresh else self.thresh
        return valid & prob.le(threshold)

    def forward(self, pred, target):
        logp = F.log_softmax(pred, dim=1)
        target = target.reshape(pred.size(0), 1, pred.size(2), pred.size(3))
        valid = target.ne(self.ignore_label)
        classes = target * valid.long()                 # ignored pixels read class 0, then drop out of ``kept``
        logp_true = logp.gather(1, classes).reshape(-1)
        kept = self._kept(logp_true, valid.reshape(-1))
        if self.criterion.weight is not None:
            kept = self.criterion.weight.to(logp_true.dtype)[classes.reshape(-1)] * kept
        return -(logp_true * kept).sum() / kept.sum()
