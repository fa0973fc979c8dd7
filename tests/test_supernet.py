"""tools/models/supernet.py: structure of the search-config supernet, the tiny equivalence contract with the
original, gradients to every architecture parameter, the sandwich rule and the clear config errors."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tools.losses import ProbOhemCrossEntropy2d
from tools.models.supernet import (Cell, ConfigError, InputSizeError, MixedOp, Network_Multi_Path, Supernet,
                                   gumbel_softmax)
from tools.ops.primitives import PRIMITIVES
from tools.ops.slimmable import WidthError

W = [4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.]
SEARCH = dict(num_classes=19, layers=16, Fch=12, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
              stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
OUTPUT_NAMES = ['pred0', 'pred1', 'pred2', 'pred02', 'pred12']


@pytest.fixture(scope="module")
def meta_supernet():
    with torch.device("meta"):
        return Supernet(**SEARCH)


@pytest.fixture(scope="module")
def figures():
    with open(os.path.join(os.path.dirname(__file__), "data", "figures.json")) as f:
        return json.load(f)["supernet"]


def test_search_config_state_dict_equals_the_original(meta_supernet):
    with open(os.path.join(os.path.dirname(__file__), "data", "state_dict_shapes.json")) as f:
        expected = json.load(f)["supernet"]
    ours = {k: list(v.shape) for k, v in meta_supernet.state_dict().items()}
    assert list(ours) == list(expected)  # same keys in the same order
    assert ours == expected


def test_search_config_parameter_counts(meta_supernet, figures):
    params = figures["params"]
    assert figures["build"]["layers"] == 16 and figures["build"]["Fch"] == 12
    assert sum(p.numel() for p in meta_supernet.parameters()) == params["total_numel"] == 252057316
    assert sum(p.numel() for p in meta_supernet.arch_parameters()) == params["arch_params_numel"] == 822
    assert sum(p.numel() for p in meta_supernet.weight_parameters()) == params["weights_non_arch_numel"]
    for group, numel in params["per_group"].items():
        assert sum(p.numel() for p in getattr(meta_supernet, group).parameters()) == numel, group


def test_arch_parameter_names_shapes_and_storage(meta_supernet):
    net = meta_supernet
    assert net._arch_names[1] == {"alphas": ["alpha_1_0", "alpha_1_1", "alpha_1_2"],
                                  "betas": ["beta_1_1", "beta_1_2"],
                                  "ratios": ["ratio_1_0", "ratio_1_1", "ratio_1_2"]}
    assert [tuple(p.shape) for p in net._arch_parameters[0]] == [
        (16, 5), (15, 5), (14, 5), (14, 2), (13, 2), (15, 1), (15, 1), (14, 1)]
    assert [tuple(p.shape) for p in net._arch_parameters[1]][5:] == [(15, 5), (15, 5), (14, 5)]
    assert net._arch_parameters[1][0] is net.alpha_1_0
    assert [len(cells) for cells in net.cells] == [1, 2] + [3] * 13 + [3]
    assert [c._down for c in net.cells[5]] == [True, True, False]
    assert [c._down for c in net.cells[15]] == [False, False, False]
    cell = net.cells[3][1]
    assert isinstance(cell, Cell) and isinstance(cell._op, MixedOp) and isinstance(cell.downsample, MixedOp)
    assert (cell._op.C_in, cell._op.C_out, cell.downsample.C_out, cell.downsample.stride) == (192, 192, 384, 2)
    assert [type(op).__name__ for op in cell._op._ops] == [
        "FactorizedReduce", "BasicResidual1x", "BasicResidual_downup_1x", "BasicResidual2x",
        "BasicResidual_downup_2x"]
    assert Supernet is Network_Multi_Path and len(PRIMITIVES) == 5


def test_cell_ratio_indexing():
    net = Supernet(num_classes=19, layers=4, Fch=3, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
                   stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
    net.arch_idx = 1
    ratios = [["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0", "c1"]]
    assert net.cell_ratio(0, 0, ratios) == (8 / 12, "a0", "b0")
    assert net.cell_ratio(1, 0, ratios) == ("a0", "a1", "b1")
    assert net.cell_ratio(1, 1, ratios) == ("b0", "b1", "c0")
    assert net.cell_ratio(2, 2, ratios) == ("c0", "c1", None)
    assert net.cell_ratio(3, 0, ratios) == ("a2", 8 / 12, None)
    assert net.cell_ratio(3, 2, ratios) == ("c1", 8 / 12, None)


# ---- tiny equivalence with the original --------------------------------------------------------------------
_TINY = {}


@pytest.fixture
def tiny_reference(reference_dir):
    if "ref" not in _TINY:
        path = os.path.join(reference_dir, "supernet_tiny_equivalence.pt")
        _TINY["ref"] = torch.load(path, weights_only=True)
    return _TINY["ref"]


def _tiny_from_reference(ref):
    cfg = ref["config"]
    return Supernet(num_classes=cfg["num_classes"], layers=cfg["layers"], Fch=cfg["Fch"],
                    width_mult_list=cfg["width_mult_list"], prun_modes=cfg["prun_modes"],
                    stem_head_width=cfg["stem_head_width"])


@pytest.mark.parametrize("setting", ["arch0_max", "arch1_max", "arch1_min"])
def test_tiny_supernet_equals_the_original(tiny_reference, setting):
    ref = tiny_reference
    net = _tiny_from_reference(ref)
    assert list(net.state_dict()) == list(ref["state_dict"])
    net.arch_idx = ref["config"]["settings"][setting]["arch_idx"]
    net.prun_mode = ref["config"]["settings"][setting]["prun_mode"]

    net.load_state_dict(ref["state_dict"])
    net.eval()
    with torch.no_grad():
        outputs = net(ref["input"])
    for out, low in zip(outputs, ref["outputs_eval_lowres"][setting]):
        expected = F.interpolate(low, scale_factor=8, mode="bilinear", align_corners=True)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    net.load_state_dict(ref["state_dict"])
    net.train()
    with torch.no_grad():
        outputs = net(ref["input"])
    for out, expected in zip(outputs, ref["outputs_train"][setting]):
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=5e-4)
    state = net.state_dict()
    changed = {k for k, v in state.items() if not torch.equal(v, ref["state_dict"][k])}
    assert changed == set(ref["bn_buffers_after_train"][setting])
    for key, expected in ref["bn_buffers_after_train"][setting].items():
        torch.testing.assert_close(state[key], expected, rtol=1e-4, atol=5e-4)


@pytest.mark.parametrize("prun_mode", ["arch_ratio", "random"])
def test_paired_cell_inputs_equal_two_calls(prun_mode):
    """pair_inputs stacks a cell's two inputs into one pass: same loss, gradients and BatchNorm statistics."""
    results = []
    for pair_inputs in (True, False):
        torch.manual_seed(0)
        net = Supernet(num_classes=19, layers=5, Fch=6, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
                       stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
        net.init_weights()
        net.train()
        net.pair_inputs = pair_inputs
        net.arch_idx, net.prun_mode = 1, prun_mode
        with torch.no_grad():
            for p in net.arch_parameters():
                p.normal_()
        torch.manual_seed(1)
        np.random.seed(1)
        images, labels = torch.randn(2, 3, 64, 128), torch.randint(0, 19, (2, 8, 16))
        loss = net._loss_of(images, labels)
        loss.backward()
        grads = {k: p.grad for k, p in net.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads, net.state_dict()))
    (loss, grads, state), (loss_ref, grads_ref, state_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads_ref.keys()
    assert any(k.startswith("cells.4.2.") for k in grads)  # a 1/32 cell with two inputs was reached
    for key in grads:
        torch.testing.assert_close(grads[key], grads_ref[key], rtol=1e-4, atol=1e-5, msg=key)
    for key in state:
        torch.testing.assert_close(state[key], state_ref[key], rtol=1e-5, atol=1e-6, msg=key)


# ---- gradients, sampling, sandwich rule ----------------------------------------------------------------------
def test_forward_backward_reaches_every_arch_parameter():
    # two widths keep it fast; with Fch 4 every channel count at width 0.5 stays a multiple of 8
    torch.manual_seed(0)
    net = Supernet(num_classes=19, layers=4, Fch=4, width_mult_list=[0.5, 1.],
                   prun_modes=['arch_ratio', 'arch_ratio'], stem_head_width=[(1, 1), (0.5, 0.5)],
                   criterion=ProbOhemCrossEntropy2d(255, thresh=0.7, min_kept=16))
    net.init_weights()
    net.train()
    x, target = torch.randn(2, 3, 64, 64), torch.randint(0, 19, (2, 8, 8))
    loss = 0
    for idx in range(2):
        net.arch_idx = idx
        loss = loss + sum(net._criterion(logit, target) for logit in net(x))
    loss.backward()
    for name, p in net.named_parameters():
        if name.split("_")[0] in ("alpha", "beta", "ratio"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in net.head02[1].parameters())


def test_hard_gumbel_softmax_is_one_hot_with_soft_gradient():
    logits = torch.randn(5, requires_grad=True)
    y = gumbel_softmax(F.log_softmax(logits, dim=-1), hard=True)
    assert sorted(y.detach().tolist()) == pytest.approx([0, 0, 0, 0, 1])
    (y * torch.arange(5.)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_sample_prun_ratio_modes():
    net = Supernet(num_classes=19, layers=4, Fch=3, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
                   stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
    assert net.sample_prun_ratio("max") == [[1.] * 3, [1.] * 3, [1.] * 2]
    assert net.sample_prun_ratio("min") == [[4 / 12] * 3, [4 / 12] * 3, [4 / 12] * 2]
    assert all(r in W for row in net.sample_prun_ratio("random") for r in row)
    net.arch_idx = 1
    sampled = net.sample_prun_ratio("arch_ratio")
    assert [len(row) for row in sampled] == [3, 3, 2]
    assert all(r.shape == (5,) and float(r.detach().sum()) == pytest.approx(1.) for row in sampled for r in row)
    with pytest.raises(ValueError, match="not one of"):
        net.sample_prun_ratio("widest")


def _recording_net(width_mult_list):
    net = Supernet(num_classes=19, layers=4, Fch=3, width_mult_list=width_mult_list,
                   prun_modes=['max', 'arch_ratio'] if len(width_mult_list) > 1 else ['max', 'max'],
                   stem_head_width=[(1, 1), (1, 1)], criterion=lambda logit, target: logit.sum())
    calls = []

    def fake_forward(x):
        calls.append((net.arch_idx, net.prun_mode))
        return tuple(torch.ones(()) for _ in OUTPUT_NAMES)
    net.forward = fake_forward
    return net, calls


def test_loss_sandwich_rule_search_and_pretrain():
    net, calls = _recording_net(W)
    loss = net._loss(torch.zeros(1), None, pretrain=False)
    # search: each architecture with its own widths, then max and min with the arch_idx the loop left (B8)
    assert calls == [(0, None), (1, None), (1, "max"), (1, "min")]
    assert float(loss) == 4 * len(OUTPUT_NAMES)
    calls.clear()
    net._loss(torch.zeros(1), None, pretrain=True)
    assert calls == [(1, "max"), (1, "min"), (1, "random"), (1, "random")]
    calls.clear()
    net._loss(torch.zeros(1), None, pretrain="path/to/pretrained")  # a str means search, as the original
    assert [mode for _, mode in calls] == [None, None, "max", "min"]

    single, calls = _recording_net([1.])
    single._loss(torch.zeros(1), None, pretrain=True)
    assert calls == [(0, "max")]


def test_init_weights_is_kaiming_fan_in_and_unit_bn():
    torch.manual_seed(0)
    net = Supernet(num_classes=19, layers=4, Fch=3, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
                   stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
    net.init_weights(bn_eps=1e-3, bn_momentum=0.05)
    bn = net.cells[2][1]._op._ops[1].bn1
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and bn.bn[3].eps == 1e-3
    assert bn.bn[3].momentum == 0.05 and torch.equal(bn.bn[3].bias, torch.zeros_like(bn.bn[3].bias))
    w = net.cells[2][2]._op._ops[3].conv2.weight  # 96x96x3x3: std sqrt(2 / (96*9))
    assert float(w.detach().std()) == pytest.approx((2 / (96 * 9)) ** 0.5, rel=0.05)
    net.alpha_1_0.data.normal_()
    net._reset_arch_parameters(1)
    assert torch.equal(net.alpha_1_0, torch.full((4, 5), 1e-3))


# ---- clear errors ---------------------------------------------------------------------------------------------
def test_fch_that_breaks_stem_cell_agreement_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        Supernet(num_classes=19, layers=4, Fch=4, width_mult_list=W, prun_modes=['max', 'arch_ratio'],
                 stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
    message = str(info.value)
    assert "Fch=4" in message and "0.6667" in message and "21" in message and "24" in message
    assert "choose Fch 3 or 6" in message


def test_width_not_in_width_mult_list_is_an_error():
    with pytest.raises(WidthError, match="not in width_mult_list"):
        Supernet(num_classes=19, layers=4, Fch=3, width_mult_list=[0.5, 1.], prun_modes=['max', 'arch_ratio'],
                 stem_head_width=[(1, 1), (8 / 12, 8 / 12)])
    op = MixedOp(24, 24, width_mult_list=W)
    with pytest.raises(WidthError, match="0.25"):
        op(torch.randn(1, 24, 8, 8), torch.ones(5) / 5, (1., 0.25))


def test_input_not_multiple_of_32_is_an_error():
    net = Supernet(num_classes=19, layers=3, Fch=3, width_mult_list=[1.], prun_modes=['max'],
                   stem_head_width=[(1, 1)])
    with pytest.raises(InputSizeError, match="100x128 is not a multiple of 32"):
        net(torch.randn(1, 3, 100, 128))
    with pytest.raises(ConfigError, match="one \\(stem, head\\) width per architecture"):
        Supernet(num_classes=19, layers=4, Fch=3, prun_modes=['max', 'max'], stem_head_width=[(1, 1)])
