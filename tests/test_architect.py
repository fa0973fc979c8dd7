"""tools/search/architect.py: the architecture step (only arch parameters move, same gradients as a full backward),
the latency regularizer, the adaptive latency weight and the removed `unrolled` option."""
import copy

import pytest
import torch

from tests.search_helpers import LATENCY_SIZE, batch, synthetic_table, tiny_supernet
from tools.config import ConfigError, load_config
from tools.latency.expected import derived_latency
from tools.search.arch_log import derive_network
from tools.search.architect import (Architect, adapt_latency_weight, adapt_latency_weights,
                                    graph_leaves)


def params_of(model, arch):
    names = {id(p) for p in model.arch_parameters()}
    return {n: p.detach().clone() for n, p in model.named_parameters() if (id(p) in names) == arch}


def test_arch_step_moves_only_architecture_parameters():
    model = tiny_supernet()
    architect = Architect(model, [0, 1e-2], synthetic_table(), LATENCY_SIZE)
    weights, arch = params_of(model, False), params_of(model, True)
    result = architect.step(*batch())
    assert result.loss > 0 and result.loss_latency > 0 and result.latency_supernet > 0
    assert all(torch.equal(p, weights[n]) for n, p in params_of(model, False).items())
    moved = {n for n, p in params_of(model, True).items() if not torch.equal(p, arch[n])}
    # every alpha/beta of both architectures and the student's ratios; the teacher's 'max' ratios are unused
    assert moved == set(arch) - {"ratio_0_0", "ratio_0_1", "ratio_0_2"}


def reference_step(model, latency_weight, table, inputs, target):
    """The original's step: full backward (weights' gradients too), then the loop zeroes the weights' grads."""
    optimizers = [torch.optim.Adam(p, lr=3e-4, betas=(0.5, 0.999)) for p in model._arch_parameters]
    for opt in optimizers:
        opt.zero_grad(set_to_none=False)
    loss = model._loss(inputs, target)
    helper = Architect(model, latency_weight, table, LATENCY_SIZE)
    loss_latency = helper.latency_loss()
    (loss + loss_latency).backward()
    for opt in optimizers:
        opt.step()
    for p in model.weight_parameters():
        if p.grad is not None:
            p.grad.zero_()


def test_arch_step_equals_the_full_backward_of_the_original():
    """Same gradients and updates bit for bit (autograd only skips the weights' kernels), and the weights the
    original's zero_grad left as zero tensors are zero tensors here too."""
    fast, slow = tiny_supernet(), tiny_supernet()
    inputs, target = batch()
    torch.manual_seed(5)
    Architect(fast, [0, 1e-2], synthetic_table(), LATENCY_SIZE).step(inputs, target)
    torch.manual_seed(5)
    reference_step(slow, [0, 1e-2], synthetic_table(), inputs, target)
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters()):
        assert torch.equal(a, b), name
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name


def test_table_misses_do_not_shift_the_random_stream():
    table = synthetic_table()
    model = tiny_supernet()
    torch.manual_seed(3)
    Architect(model, [0, 1e-2], table, LATENCY_SIZE).latency_loss()
    assert len(table) > 0
    cold = torch.rand(3)
    torch.manual_seed(3)
    Architect(model, [0, 1e-2], table, LATENCY_SIZE).latency_loss()
    assert torch.equal(torch.rand(3), cold)


def test_graph_leaves_finds_each_leaf_once():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    out = (a * b + a).sum()
    assert sorted(id(x) for x in graph_leaves(out)) == sorted([id(a), id(b)])
    assert graph_leaves(torch.ones(1)) == []


def derived_student_latency(model, table):
    total = 0.0
    for lasts in ((2, 0), (2, 1)):
        total += derived_latency(derive_network(model, 1, lasts), LATENCY_SIZE, table).latency_ms
    return total


def test_latency_regularizer_makes_the_derived_student_faster():
    """From the same start, N arch steps with a large latency weight derive a student with a lower table
    latency than N steps with weight 0 (the regularizer works)."""
    table = synthetic_table()
    start = tiny_supernet()
    latencies = {}
    for weight in (0.0, 100.0):
        model = copy.deepcopy(start)
        architect = Architect(model, [0, weight], table, LATENCY_SIZE)
        torch.manual_seed(7)
        for step in range(3):
            architect.step(*batch(seed=10 + step))
        latencies[weight] = derived_student_latency(model, table)
    assert latencies[100.0] < latencies[0.0]


def test_latency_loss_only_for_positive_weights():
    table = synthetic_table()
    model = tiny_supernet()
    assert Architect(model, [0, 0], table, LATENCY_SIZE).latency_loss() == 0
    assert len(table) == 0  # nothing was looked up
    architect = Architect(model, [0, 1e-2], table, LATENCY_SIZE)
    loss = architect.latency_loss()
    assert torch.is_tensor(loss) and loss.requires_grad
    assert model.arch_idx == 1 and model.prun_mode is None
    assert loss.item() == pytest.approx(1e-2 * architect.latency_supernet, rel=1e-6)


def test_latency_weight_is_copied_and_errors_are_clear():
    model = tiny_supernet()
    weights = [0, 1e-2]
    architect = Architect(model, weights, synthetic_table(), LATENCY_SIZE)
    architect.latency_weight[1] /= 2
    assert weights == [0, 1e-2]
    with pytest.raises(ValueError, match="no latency lookup table"):
        Architect(model, [0, 1e-2], None)
    with pytest.raises(ValueError, match="one weight per architecture"):
        Architect(model, [1e-2], synthetic_table())


def test_adaptive_latency_weight_halves_and_doubles_at_the_bounds():
    assert adapt_latency_weight(0.01, [175., 100.], 155., 175.) == 0.005    # one FPS >= max: halve
    assert adapt_latency_weight(0.01, [176., 150.], 155., 175.) == 0.005    # halving wins over doubling
    assert adapt_latency_weight(0.01, [160., 155.], 155., 175.) == 0.02     # one FPS <= min: double
    assert adapt_latency_weight(0.01, [160., 170.], 155., 175.) == 0.01     # inside the band: kept
    assert adapt_latency_weight(0, [1000., 1.], 0., 0.) == 0                 # weight 0 (teacher): untouched
    assert adapt_latency_weights([0, 0.01], [[50., 60.], [200., 210.]], [0, 155.], [0, 175.]) == [0, 0.005]


def test_state_dict_round_trip():
    model = tiny_supernet()
    architect = Architect(model, [0, 1e-2], synthetic_table(), LATENCY_SIZE)
    architect.step(*batch())
    architect.latency_weight = [0, 0.04]
    other = Architect(model, [0, 1e-2], synthetic_table(), LATENCY_SIZE)
    other.load_state_dict(copy.deepcopy(architect.state_dict()))
    assert other.latency_weight == [0, 0.04] and other.latency_supernet == architect.latency_supernet
    assert other.optimizers[1].state_dict()["state"][0]["step"] == 1


def test_unrolled_option_was_removed():
    with pytest.raises(ConfigError, match="unknown config key 'unrolled'"):
        load_config("search", ["unrolled=True"])
