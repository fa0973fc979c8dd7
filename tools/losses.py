"""Segmentation losses: ProbOhemCrossEntropy2d (OHEM on probability) and the OHEM ``min_kept`` rule;
replaces tools/seg_opr/loss_opr.py and the min_kept line of search/train_search.py.

OHEM keeps the "hard" pixels: those whose softmax probability of the true class is at most a threshold. The
threshold is ``thresh``, raised to the ``min_kept``-th smallest true-class probability when that is larger, so
at least ``min_kept`` pixels always count. Same numbers as the original (tests/data/ohem_cases.pt), including its
behaviour on an all-ignored target: the loss is NaN (a mean over zero pixels), with no exception -- callers that
can see empty crops must guard against it.
"""
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

CITYSCAPES_CLASS_WEIGHT = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023, 0.9539,
                           0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507]


def ohem_min_kept(batch_size, image_height, image_width, gt_down_sampling=1):
    """train_search.py's ``min_kept``: one 16th of the label pixels of a batch at label resolution."""
    return int(batch_size * image_height * image_width // (16 * gt_down_sampling ** 2))


class ProbOhemCrossEntropy2d(nn.Module):
    """Cross-entropy over the hard pixels only (see the module docstring); ``ignore_label`` pixels never count.

    ``down_ratio`` is accepted and unused, as in the original. ``use_weight`` applies the original's fixed
    Cityscapes class weights (a buffer of the inner ``criterion``, so ``.to(device)`` moves it).
    """

    def __init__(self, ignore_label, reduction='mean', thresh=0.6, min_kept=256, down_ratio=1, use_weight=False):
        super().__init__()
        self.ignore_label = ignore_label
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.down_ratio = down_ratio
        weight = torch.tensor(CITYSCAPES_CLASS_WEIGHT) if use_weight else None
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
