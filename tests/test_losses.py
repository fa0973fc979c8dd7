"""tools/losses.py: ProbOhemCrossEntropy2d equals the original on tests/data/ohem_cases.pt; min_kept rule; the
fused OHEM of the CPU fast path gives the same pixels, loss and gradient."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d, class_weights, ohem_min_kept


DATA = os.path.join(os.path.dirname(__file__), "data")
CASES = torch.load(os.path.join(DATA, "ohem_cases.pt"), weights_only=True)["cases"]


@pytest.fixture(scope="module")
def ohem_cases():
    return CASES


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
def test_ohem_cases_equal_the_original(ohem_cases, name):
    case = next(c for c in ohem_cases if c["name"] == name)
    criterion = ProbOhemCrossEntropy2d(ignore_label=case["ignore_label"], thresh=case["thresh"],
                                       min_kept=case["min_kept"])
    target = case["target"].clone()
    loss = criterion(case["logits"], target)
    assert torch.equal(target, case["target"])  # the caller's target is not modified
    if case["loss_is_nan"]:
        assert math.isnan(loss.item())  # all pixels ignored: the original's NaN, kept on purpose
    else:
        torch.testing.assert_close(loss, case["loss"], rtol=1e-5, atol=0)


def test_ohem_equals_plain_ce_over_the_kept_pixels(ohem_cases):
    case = next(c for c in ohem_cases if c["name"] == "K_small_confident_threshold_raised")
    logits, target = case["logits"], case["target"]
    prob = F.softmax(logits, dim=1).gather(1, target.clamp(max=18)[:, None])[:, 0]
    kept = (target != 255) & (prob <= case["threshold_used"])
    assert int(kept.sum()) == case["num_kept"]
    expected = F.cross_entropy(logits, torch.where(kept, target, torch.full_like(target, 255)), ignore_index=255)
    loss = ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=case["min_kept"])(logits, target)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_ohem_gradient_flows_to_the_logits():
    logits = torch.randn(2, 19, 8, 8, requires_grad=True)
    target = torch.randint(0, 19, (2, 8, 8))
    ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=16)(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_min_kept_formula_matches_train_search(test_data_dir):
    with open(os.path.join(test_data_dir, "figures.json")) as f:
        figures = json.load(f)["supernet"]["min_kept"]
    assert ohem_min_kept(3, 256, 512, 8) == figures["pretrain_config"] == 384
    assert ohem_min_kept(2, 224, 448, 8) == figures["search_config"] == 196
    assert ohem_min_kept(2, 256, 512, 8) == figures["pretrain_if_batch2"]


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
def test_fused_ohem_gives_the_originals_loss_and_gradient(ohem_cases, name):
    """Every recorded case of the original (threshold raised to the k-th probability, all kept, all ignored,
    min_kept above the valid pixels): the fused loss equals the reference value, and its gradient equals the
    faithful criterion's, within float rounding."""
    case = next(c for c in ohem_cases if c["name"] == name)
    args = dict(ignore_label=case["ignore_label"], thresh=case["thresh"], min_kept=case["min_kept"])
    target = case["target"].clone()
    fused_logits = case["logits"].clone().requires_grad_(True)
    loss = FusedProbOhemCrossEntropy2d(**args)(fused_logits, target)
    assert torch.equal(target, case["target"])
    if case["loss_is_nan"]:
        assert math.isnan(loss.item())
        return
    torch.testing.assert_close(loss, case["loss"], rtol=1e-5, atol=0)
    faithful_logits = case["logits"].clone().requires_grad_(True)
    ProbOhemCrossEntropy2d(**args)(faithful_logits, target).backward()
    loss.backward()
    torch.testing.assert_close(fused_logits.grad, faithful_logits.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("learned, kth_needed", [(0.0, False), (0.97, True)])
def test_fused_ohem_keeps_the_same_hard_pixels_at_training_size(learned, kth_needed):
    """A CamVid-sized batch (2 x 11 x 352 x 480, one 16th of the pixels kept at least): the fused loss keeps the
    faithful one's pixels and value, both where enough pixels are below ``thresh`` (no k-th value needed) and
    where the threshold is raised to the k-th probability (a network that has ``learned`` 97 % of the pixels:
    fewer than one 16th below 0.7)."""
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 11, 352, 480, generator=g) * 3
    target = torch.randint(0, 11, (2, 352, 480), generator=g)
    right = (torch.rand(2, 1, 352, 480, generator=g) < learned).float() * 20
    logits.scatter_add_(1, target[:, None], right)
    target[torch.rand(2, 352, 480, generator=g) < 0.1] = 255
    min_kept = ohem_min_kept(2, 352, 480)
    faithful = ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=min_kept)
    fused = FusedProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=min_kept)
    hard = faithful._hard_pixel_target(logits, target).ne(255)
    valid = target.ne(255).reshape(-1)
    prob = F.softmax(logits, 1).gather(1, (target * target.ne(255))[:, None]).reshape(-1)
    assert (int((prob.le(0.7) & valid).sum()) < min_kept) is kth_needed
    kept = fused._kept(prob, valid)
    assert torch.equal(kept, hard) and 0 < int(kept.sum()) < int(valid.sum())
    torch.testing.assert_close(fused(logits, target), faithful(logits, target), rtol=1e-5, atol=0)


@pytest.mark.parametrize("scale", [8, 16, 32])
@pytest.mark.parametrize("weight", [None, [1.0, 4.0, 0.5, 2.0, 8.0]])
def test_fused_ohem_upsamples_small_logits_as_the_network_would(scale, weight):
    """Logits at 1/8, 1/16, 1/32 of the labels: the fused loss (upsampling inside, as matrix products) gives the
    faithful loss of the logits upsampled by F.interpolate (bilinear, align_corners=True: the derived network's
    training output) and the same gradient at the small logits, within float rounding."""
    g = torch.Generator().manual_seed(scale)
    target = torch.randint(0, 5, (2, 64, 96), generator=g)
    target[torch.rand(2, 64, 96, generator=g) < 0.1] = 255
    small = torch.randn(2, 5, 64 // scale, 96 // scale, generator=g) * 2
    losses, grads = [], []
    for criterion, upsample in ((ProbOhemCrossEntropy2d, True), (FusedProbOhemCrossEntropy2d, False)):
        x = small.clone().requires_grad_(True)
        logits = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True) if upsample else x
        loss = criterion(255, thresh=0.7, min_kept=200, weight=weight)(logits, target)
        loss.backward()
        losses.append(loss.detach())
        grads.append(x.grad)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-8)


def test_fused_ohem_is_exact_where_the_true_class_probability_underflows():
    """A pixel whose true class is 200 logits below another (softmax 1e-87: zero in float32) costs its exact
    cross-entropy (~200), as in the faithful criterion, not an infinite loss."""
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = 200.0
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    faithful = ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=4)(logits, target)
    fused = FusedProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=4)(logits, target)
    assert math.isfinite(fused.item()) and fused.item() > 50
    torch.testing.assert_close(fused, faithful, rtol=1e-6, atol=0)


def test_fused_ohem_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="computes the mean"):
        FusedProbOhemCrossEntropy2d(255, reduction="sum")
    with pytest.raises(ValueError, match=r"logits of size \(8, 8\) are larger than the labels \(4, 8\)"):
        FusedProbOhemCrossEntropy2d(255)(torch.randn(1, 3, 8, 8), torch.zeros(1, 4, 8, dtype=torch.long))


def _weighted_case():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 16, 24, generator=g) * 2
    target = torch.randint(0, 5, (2, 16, 24), generator=g)
    target[torch.rand(2, 16, 24, generator=g) < 0.1] = 255
    return logits, target


@pytest.mark.parametrize("criterion", [ProbOhemCrossEntropy2d, FusedProbOhemCrossEntropy2d])
def test_class_weights_give_the_weighted_mean_over_the_hard_pixels(criterion):
    """With weights, the loss is sum(w[t] * nll) / sum(w[t]) over the pixels OHEM keeps -- the pixels chosen
    without weights, as the unweighted loss chooses them -- for the faithful and the fused criterion alike."""
    logits, target = _weighted_case()
    weight = [1.0, 4.0, 0.5, 2.0, 8.0]
    loss = criterion(255, thresh=0.7, min_kept=100, weight=weight)(logits, target)
    hard = ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=100)._hard_pixel_target(logits, target)
    assert 0 < int(hard.ne(255).sum()) < int(target.ne(255).sum())
    expected = F.cross_entropy(logits, hard.view_as(target), weight=torch.tensor(weight), ignore_index=255)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)
    unweighted = criterion(255, thresh=0.7, min_kept=100)(logits, target)
    assert not torch.isclose(loss, unweighted)


def test_fused_weighted_gradient_equals_the_faithful_one():
    logits, target = _weighted_case()
    weight = [1.0, 4.0, 0.5, 2.0, 8.0]
    grads = []
    for criterion in (ProbOhemCrossEntropy2d, FusedProbOhemCrossEntropy2d):
        x = logits.clone().requires_grad_(True)
        criterion(255, thresh=0.7, min_kept=100, weight=weight)(x, target).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-9)


def test_enet_class_weights_follow_the_papers_formula():
    """1 / ln(1.02 + p): a class with half the pixels weighs 1/ln(1.52), an absent one 1/ln(1.02) (the cap)."""
    weights = class_weights("enet", [50, 30, 20, 0])
    expected = [1 / math.log(1.02 + p) for p in (0.5, 0.3, 0.2, 0.0)]
    assert weights == pytest.approx(expected, rel=1e-12)
    assert class_weights("", [1, 2]) is None and class_weights(None, [1, 2]) is None
    assert class_weights([1, 2.5], None) == [1.0, 2.5]
