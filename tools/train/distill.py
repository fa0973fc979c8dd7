"""Knowledge distillation from the teacher to the student (the KL term of the original train/train.py).

The original builds ``nn.KLDivLoss()`` (default reduction 'mean': the mean over every element N*C*H*W) and calls
it as ``distill(F.softmax(student, 1).log(), F.softmax(teacher, 1))`` (train/train.py:216). ``softmax().log()``
underflows to ``-inf`` where a class probability rounds to 0, and ``0 * -inf`` then makes the loss and the
gradients NaN (reported upstream: VITA-Group/FasterSeg#54). Here the student's log-probabilities come from
``log_softmax``, which is finite everywhere and equal to ``log(softmax)`` wherever that one is finite, so the
default value is the original's number without the NaN.

Two config keys go beyond the original: ``distill_reduction`` ('mean' as the original, 'batchmean' for the
mathematically proper KL per image, 'pixelmean' for the KL per pixel, 'sum') and ``distill_temperature``
(Hinton's softening; the term is multiplied by T**2 so its gradient scale does not shrink with T; T=1 is the
original). The term is always computed in float32, also under autocast.
"""
import torch.nn as nn
import torch.nn.functional as F

from tools.utils.errors import UserError

REDUCTIONS = ("mean", "batchmean", "pixelmean", "sum")


class DistillConfigError(UserError, ValueError):
    """A distillation setting that cannot be used; the message names the config key."""


class DistillationLoss(nn.Module):
    """KL(teacher || student) over the class dimension of (N, C, H, W) logits.

    ``forward(student_logits, teacher_logits)``: the teacher side is detached (the teacher is frozen).
    """

    def __init__(self, reduction="mean", temperature=1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise DistillConfigError(f"distill_reduction {reduction!r} is unknown; use one of {REDUCTIONS} "
                                     f"('mean' is the original's KLDivLoss default).")
        if not float(temperature) > 0:
            raise DistillConfigError(f"distill_temperature must be a positive number, got {temperature!r}.")
        self.reduction = reduction
        self.temperature = float(temperature)

    def forward(self, student_logits, teacher_logits):
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"distillation needs student and teacher logits of the same shape, got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}; the two networks "
                             f"must predict the same num_classes at the same resolution.")
        t = self.temperature
        student_logits, teacher_logits = student_logits.float(), teacher_logits.detach().float()
        if t != 1.0:                    # T=1 (the original) divides nothing: no copy of the full-size logits
            student_logits, teacher_logits = student_logits / t, teacher_logits / t
        log_p_student = F.log_softmax(student_logits, dim=1)
        p_teacher = F.softmax(teacher_logits, dim=1)
        pointwise = F.kl_div(log_p_student, p_teacher, reduction="none")
        return reduce_kl(pointwise, self.reduction) * (t * t)


def reduce_kl(pointwise, reduction):
    """Reduce the element-wise KL terms of (N, C, H, W) as ``reduction`` says."""
    if reduction == "mean":
        return pointwise.mean()
    if reduction == "batchmean":
        return pointwise.sum() / pointwise.size(0)
    if reduction == "pixelmean":
        return pointwise.sum(dim=1).mean()
    return pointwise.sum()


def original_distillation(student_logits, teacher_logits):
    """The original's formula, kept only so a test can show where it turns NaN and that we agree elsewhere."""
    return nn.KLDivLoss()(F.softmax(student_logits, dim=1).log(), F.softmax(teacher_logits, dim=1))


def build_distillation(config):
    """The distillation loss from the config keys ``distill_reduction`` and ``distill_temperature``."""
    return DistillationLoss(reduction=config.get("distill_reduction", "mean"),
                            temperature=config.get("distill_temperature", 1.0))
