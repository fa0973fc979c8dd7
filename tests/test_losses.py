"""tools/losses.py: ProbOhemCrossEntropy2d equals the original on tests/data/ohem_cases.pt; min_kept rule."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from tools.losses import ProbOhemCrossEntropy2d, ohem_min_kept


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
