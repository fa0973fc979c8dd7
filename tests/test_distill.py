"""The KL distillation term: the original's number by default, without its NaN (reported upstream:
VITA-Group/FasterSeg#54)."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from easydict import EasyDict

from tools.train.distill import DistillConfigError, DistillationLoss, build_distillation, original_distillation


def original(student, teacher):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KLDivLoss warns that reduction='mean' is not the true KL
        return original_distillation(student, teacher)


def logits(*shape, scale=3.0):
    return torch.randn(*shape) * scale


def test_default_equals_the_original_formula():
    student, teacher = logits(2, 19, 8, 16), logits(2, 19, 8, 16)
    ours = DistillationLoss()(student, teacher)
    assert torch.allclose(ours, original(student, teacher), rtol=1e-6, atol=1e-8)


def test_original_formula_gives_nan_where_ours_stays_finite():
    student = torch.zeros(1, 3, 2, 2)
    student[:, 0] = 200.0                      # softmax of classes 1 and 2 underflows to exactly 0
    teacher = torch.zeros(1, 3, 2, 2)
    teacher[:, 0] = 200.0                      # teacher puts (numerically) zero mass on 1 and 2: 0 * -inf
    assert torch.isnan(original(student, teacher))
    student.requires_grad_(True)
    ours = DistillationLoss()(student, teacher)
    ours.backward()
    assert torch.isfinite(ours) and ours.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(student.grad).all()


def test_extreme_student_logits_give_a_large_finite_loss():
    student = torch.zeros(1, 3, 1, 1)
    student[:, 0] = 500.0
    teacher = torch.zeros(1, 3, 1, 1)         # uniform teacher: the student is very wrong
    assert torch.isinf(original(student, teacher)) or torch.isnan(original(student, teacher))
    ours = DistillationLoss(reduction="sum")(student, teacher)
    expected = sum((1 / 3) * (torch.log(torch.tensor(1 / 3)) - F.log_softmax(student, 1)[0, c, 0, 0])
                   for c in range(3))
    assert torch.isfinite(ours) and ours.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("reduction, divisor", [("mean", 2 * 5 * 4 * 6), ("batchmean", 2), ("pixelmean", 2 * 4 * 6),
                                                ("sum", 1)])
def test_reductions_divide_the_summed_kl(reduction, divisor):
    student, teacher = logits(2, 5, 4, 6), logits(2, 5, 4, 6)
    total = DistillationLoss(reduction="sum")(student, teacher)
    assert DistillationLoss(reduction=reduction)(student, teacher).item() == pytest.approx(total.item() / divisor,
                                                                                           rel=1e-5)


def test_temperature_softens_and_rescales_by_t_squared():
    student, teacher = logits(2, 4, 3, 3), logits(2, 4, 3, 3)
    t = 2.5
    p = F.softmax(teacher / t, 1)
    expected = (p * (p.log() - F.log_softmax(student / t, 1))).mean() * t * t
    assert DistillationLoss(temperature=t)(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)


def test_zero_for_identical_logits_positive_otherwise_and_teacher_gets_no_gradient():
    student = logits(1, 6, 4, 4).requires_grad_(True)
    teacher = student.detach().clone().requires_grad_(True)
    assert DistillationLoss()(student, teacher).item() == pytest.approx(0.0, abs=1e-7)
    other = logits(1, 6, 4, 4).requires_grad_(True)
    loss = DistillationLoss()(student, other)
    loss.backward()
    assert loss.item() > 0 and other.grad is None and student.grad.abs().sum() > 0


def test_low_precision_inputs_are_reduced_in_float32():
    student, teacher = logits(1, 4, 2, 2), logits(1, 4, 2, 2)
    low = DistillationLoss()(student.bfloat16(), teacher.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(DistillationLoss()(student, teacher).item(), rel=0.05)


def test_config_keys_build_the_loss():
    loss = build_distillation(EasyDict(distill_reduction="batchmean", distill_temperature=3.0))
    assert (loss.reduction, loss.temperature) == ("batchmean", 3.0)
    assert build_distillation(EasyDict()).reduction == "mean"


@pytest.mark.parametrize("kwargs, words", [(dict(reduction="avg"), "distill_reduction 'avg' is unknown"),
                                           (dict(temperature=0), "distill_temperature must be a positive")])
def test_bad_settings_name_the_key(kwargs, words):
    with pytest.raises(DistillConfigError, match=words):
        DistillationLoss(**kwargs)


def test_shape_mismatch_is_one_clear_sentence():
    with pytest.raises(ValueError, match="same num_classes at the same resolution"):
        DistillationLoss()(torch.zeros(1, 19, 4, 4), torch.zeros(1, 11, 4, 4))
