"""tools/latency/expected.py: derived-network table latency (contract, B1, B2) and the supernet's expected
latency (legacy numbers of the original, B3 fixed, one-hot equivalence with derived networks, gradients)."""
import itertools
import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.latency.expected import (ARCHITECT_MIX, architect_latency, derived_latency, mixed_op_latency,
                                    supernet_latency)
from tools.latency.table import LatencyTable, import_npy
from tools.models.archfile import load_arch, published_arch_path
from tools.models.derived import Network_Multi_Path_Infer, build_derived
from tools.models.supernet import Network_Multi_Path

WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
STEM_HEAD = {0: (1, 1), 1: (8. / 12, 8. / 12)}
SIZE = (3, 1024, 2048)


def synthetic_measurer(module, input_size):
    """A deterministic 'latency' that differs between operators, widths and resolutions."""
    params = sum(p.numel() for p in module.parameters())
    return 0.001 + params * input_size[2] * input_size[3] * 1e-7 + 0.01 * len(type(module).__name__)


def synthetic_table():
    return LatencyTable(measure=True, measurer=synthetic_measurer)


@pytest.fixture(scope="module")
def table_1080ti():
    here = os.path.dirname(os.path.abspath(__file__))
    return import_npy(os.path.join(here, "data", "latency_lookup_table_1080ti.npy"))


@pytest.fixture(scope="module")
def lut_reference():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "data", "lut_estimates.json")) as handle:
        return json.load(handle)


@pytest.mark.parametrize("arch_idx, name", [(0, "teacher"), (1, "student")])
@pytest.mark.parametrize("variant, legacy_b2", [("downup_2x_key_fixed", False), ("as_shipped", True)])
def test_published_networks_match_the_original_lookups(table_1080ti, lut_reference, arch_idx, name, variant,
                                                       legacy_b2):
    net = build_derived(load_arch(published_arch_path(arch_idx)), arch_idx, stem_head_width=STEM_HEAD[arch_idx])
    estimate = derived_latency(net, SIZE, table_1080ti, legacy_b2=legacy_b2)
    reference = lut_reference[name][variant]
    assert [list(read) for read in estimate.reads] == reference["keys_in_order"]
    assert estimate.latency_ms == pytest.approx(reference["latency_ms"], abs=1e-9)
    assert list(estimate.out_size) == reference["out_size"]


def test_contract_totals(table_1080ti):
    """B2 fixed is the default: student 5.7018 ms, teacher 17.9430 ms (as shipped 6.4140 / 25.2259)."""
    totals = {}
    for arch_idx in (0, 1):
        net = build_derived(load_arch(published_arch_path(arch_idx)), arch_idx, stem_head_width=STEM_HEAD[arch_idx])
        totals[arch_idx] = (derived_latency(net, SIZE, table_1080ti).latency_ms,
                            derived_latency(net, SIZE, table_1080ti, legacy_b2=True).latency_ms)
    assert totals[1] == pytest.approx((5.701835681642834, 6.4139770511337275), abs=1e-9)
    assert totals[0] == pytest.approx((17.943000794864652, 25.225902916112148), abs=1e-9)


def random_arch(layers, seed):
    generator = torch.Generator().manual_seed(seed)
    alphas = [torch.randn(layers - k, 5, generator=generator) for k in range(3)]
    betas = [None, torch.randn(layers - 2, 2, generator=generator), torch.randn(layers - 3, 2, generator=generator)]
    ratios = [torch.randn(n, 5, generator=generator) for n in (layers - 1, layers - 1, layers - 2)]
    return alphas, betas, ratios


def test_b1_branch_ending_at_eighth_uses_its_own_output():
    """B1: with stem width 1 and head width 8/12, a last-0 branch fuses its own 64 channels; the original takes
    the stem's 96 (outputs8 is never updated) and then fails the head's input-width assert."""
    from tools.latency.keys import LatencyKeyError
    alphas, betas, ratios = random_arch(6, seed=3)
    net = Network_Multi_Path_Infer(alphas, betas, ratios, layers=6, Fch=12, width_mult_list=WIDTHS,
                                   stem_head_width=(1., 8. / 12), aux_heads=False).build_structure([0])
    table = synthetic_table()
    fixed = derived_latency(net, (3, 256, 512), table)
    assert fixed.reads[-2][0] == "ff_H32_W64_C64" and fixed.reads[-1][0] == "head_H32_W64_Cin64_Cout19"
    with pytest.raises(LatencyKeyError, match="Head was built for 64 input channels, got 96"):
        derived_latency(net, (3, 256, 512), table, legacy_b1=True)


def meta_search_supernet():
    """The search-config supernet built on the meta device, with real arch parameters at their reset value."""
    with torch.device("meta"):
        net = Network_Multi_Path(19, 16, Fch=12, width_mult_list=WIDTHS, prun_modes=["max", "arch_ratio"],
                                 stem_head_width=[(1, 1), (8. / 12, 8. / 12)])
    for idx in range(2):
        for name, shape in net._arch_shapes(idx).items():
            setattr(net, name, nn.Parameter(torch.full(shape, 1e-3)))
    return net


def test_legacy_mode_reproduces_the_original_supernet_figures(table_1080ti, test_data_dir):
    with open(os.path.join(test_data_dir, "figures.json")) as handle:
        figures = json.load(handle)["supernet"]["forward_latency_ms_3x1024x2048_arch_params_at_reset_value_1e-3"]
    net = meta_search_supernet()
    got = {
        "arch_idx0 (prun_mode 'max')": supernet_latency(net, SIZE, table_1080ti, arch_idx=0, legacy=True),
        "arch_idx1 alpha=True,beta=False,ratio=False":
            supernet_latency(net, SIZE, table_1080ti, True, False, False, arch_idx=1, legacy=True),
        "arch_idx1 alpha=False,beta=True,ratio=False":
            supernet_latency(net, SIZE, table_1080ti, False, True, False, arch_idx=1, legacy=True),
    }
    for mode in ("max", "min"):
        net.prun_mode = mode
        got[f"arch_idx1 prun_mode '{mode}'"] = supernet_latency(net, SIZE, table_1080ti, arch_idx=1, legacy=True)
    for key, value in got.items():
        assert float(value.detach()) == figures[key], key
    assert net.arch_idx == 0


def tiny_supernet(layers=6):
    net = Network_Multi_Path(19, layers, Fch=3, width_mult_list=WIDTHS, prun_modes=["max", "arch_ratio"],
                             stem_head_width=[(1, 1), (8. / 12, 8. / 12)])
    with torch.no_grad():
        for param in net.arch_parameters():
            param.normal_()
    net.arch_idx = 1
    return net


def one_hot_weights(net, path, ops, ratios):
    """Alphas one-hot at the path's ops, betas one-hot along the path, ratios one-hot at their argmax."""
    alphas = [torch.zeros(net._layers - k, 5) for k in range(3)]
    for a in alphas:
        a[:, 1] = 1
    for layer, (scale, op) in enumerate(zip(path, ops)):
        alphas[scale][layer - scale] = F.one_hot(torch.tensor(op), 5).float()
    betas = [None, torch.full((net._layers - 2, 2), 0.5), torch.full((net._layers - 3, 2), 0.5)]
    for layer in range(1, len(path)):
        scale = path[layer]
        if 0 < scale < layer:
            betas[scale][layer - scale - 1] = torch.tensor([0., 1.] if path[layer - 1] == scale else [1., 0.])
    one_hot = [[F.one_hot(row.argmax(), len(WIDTHS)).float() for row in rows] for rows in ratios]
    return alphas, betas, one_hot


@pytest.mark.parametrize("last", [0, 1, 2])
def test_one_hot_supernet_equals_the_derived_path(last):
    """With one-hot alphas/betas and fixed widths, the expected stem+cell latency of reaching scale ``last``
    is the derived network's table latency of its stem and cells on that path."""
    net = tiny_supernet()
    names = net._arch_names[1]
    alphas = [getattr(net, n).detach() for n in names["alphas"]]
    betas = [None] + [getattr(net, n).detach() for n in names["betas"]]
    ratios = [getattr(net, n).detach() for n in names["ratios"]]
    derived = Network_Multi_Path_Infer(alphas, betas, ratios, layers=6, Fch=3, width_mult_list=WIDTHS,
                                       stem_head_width=(8. / 12, 8. / 12), ignore_skip=True, aux_heads=False)
    derived.build_structure([last])
    path, ops = getattr(derived, f"path{last}"), getattr(derived, f"ops{last}")
    assert len(path) == 6
    table = synthetic_table()
    size = (3, 64, 128)
    expected = derived_latency(derived, size, table).part_ms("stem", "cell")
    per_scale = supernet_latency(net, size, table, weights=one_hot_weights(net, path, ops, ratios), per_scale=True)
    assert float(per_scale[last]) == pytest.approx(expected, rel=1e-6)


def brute_force(net, size, table, alphas, betas, ratios):
    """Expected stem+cells latency per end scale by enumerating every path with its beta probability."""
    from tools.latency.expected import _stem
    stem, stem_size = _stem(net, size, table, False)
    layers = net._layers
    totals = [0., 0., 0.]
    for steps in itertools.product((0, 1), repeat=layers - 1):
        path = [0]
        for step in steps:
            path.append(path[-1] + step)
        if max(path) > 2 or any(s > i for i, s in enumerate(path)):
            continue
        prob, cost, current = 1., stem, stem_size
        for i, scale in enumerate(path):
            if 0 < scale < i:
                beta = betas[scale][i - scale - 1]
                prob = prob * float(beta[1] if path[i - 1] == scale else beta[0])
            cell = net.cells[i][scale]
            r_in, r_out, r_down = net.cell_ratio(i, scale, ratios)
            going_down = i + 1 < layers and path[i + 1] == scale + 1
            mixed, r = (cell.downsample, r_down) if going_down else (cell._op, r_out)
            latency, current = mixed_op_latency(mixed, current, alphas[scale][i - scale], (r_in, r), table)
            cost = cost + float(latency)
        totals[path[-1]] += prob * cost
    return totals


def test_b3_fixed_accumulation_is_the_path_expectation():
    """B3: the fixed accumulation equals the expectation over all paths; the original's does not."""
    net = tiny_supernet(layers=6)
    table = synthetic_table()
    size = (3, 64, 128)
    alphas, betas = net.arch_weights()
    alphas, betas = [a.detach() for a in alphas], [None] + [b.detach() for b in betas[1:]]
    ratios = net.sample_prun_ratio("max")
    expected = brute_force(net, size, table, alphas, betas, ratios)
    fixed = supernet_latency(net, size, table, weights=(alphas, betas, ratios), per_scale=True)
    legacy = supernet_latency(net, size, table, weights=(alphas, betas, ratios), per_scale=True, legacy=True,
                              legacy_b2=False)
    assert [float(v) for v in fixed] == pytest.approx(expected, rel=1e-5)
    assert float(legacy[1]) != pytest.approx(expected[1], rel=1e-3)


def test_expected_latency_is_differentiable_in_every_architecture_parameter():
    net = tiny_supernet()
    table = synthetic_table()
    loss = architect_latency(net, (3, 64, 128), table, arch_idx=1)
    loss.backward()
    names = net._arch_names[1]
    for name in names["alphas"] + names["betas"]:
        assert getattr(net, name).grad is not None and getattr(net, name).grad.abs().sum() > 0, name
    assert sum(getattr(net, n).grad.abs().sum() for n in names["ratios"]) > 0
    assert net.prun_mode is None and net.arch_idx == 1


def test_architect_mix_is_the_original_weighting():
    net = tiny_supernet()
    table = synthetic_table()
    net.prun_mode = "max"
    torch.manual_seed(5)
    mixed = architect_latency(net, (3, 64, 128), table, arch_idx=0).detach()
    parts = [supernet_latency(net, (3, 64, 128), table, *flags, arch_idx=0).detach()
             for flags in ((True, False, False), (False, True, False), (False, False, True))]
    assert ARCHITECT_MIX == (1. / 500, 497. / 500, 2. / 500)
    assert float(mixed) == pytest.approx(sum(r * float(p) for r, p in zip(ARCHITECT_MIX, parts)), rel=1e-6)
    assert net.prun_mode == "max"


def published_supernet():
    """The paper's search supernet (on the meta device) holding the published arch files' parameters."""
    net = meta_search_supernet()
    for idx in range(2):
        record = load_arch(published_arch_path(idx), idx)
        for name in net._arch_shapes(idx):
            setattr(net, name, nn.Parameter(record[name].clone()))
    return net


def test_search_fps_legacy_switch_reproduces_the_original_figures(table_1080ti):
    """legacy_latency: the search's per-epoch FPS of the published student is the original's (B1, B2 kept);
    by default it is the B2-fixed estimate (5.7018 ms, 175.4 FPS >= FPS_max 175: the weight would halve)."""
    from tools.search.arch_log import arch_latencies
    net = published_supernet()
    lat02, lat12, _ = arch_latencies(net, 1, SIZE, table_1080ti, legacy=True)
    assert lat12 == pytest.approx(6.4139770511337275, rel=1e-12) and 1000. / lat12 == pytest.approx(155.9094, abs=1e-3)
    assert lat02 == pytest.approx(6.260467391822158, rel=1e-12)
    fixed02, fixed12, _ = arch_latencies(net, 1, SIZE, table_1080ti)
    assert fixed12 == pytest.approx(5.701835681642834, rel=1e-12) and 1000. / fixed12 > 175.
    assert fixed02 < lat02


def test_search_fps_legacy_switch_derives_the_teacher_at_full_width(table_1080ti):
    """legacy_latency: the published teacher is derived as the original's search/model_seg.py derives it (no
    ignore_skip, one-column ratios at width 1.0, :180-181) and read with B1 and B2: 20.87 / 25.23 ms for lasts
    [2,0] / [2,1]. The training rule's width 4/12 gave 10.28 / 11.36 ms. The default keeps train.py's teacher
    (ignore_skip, width 1.0, B2 fixed: figures.json's 17.943 ms for [2,1])."""
    from tools.search.arch_log import arch_genotype, arch_latencies
    net = published_supernet()
    lat02, lat12, _ = arch_latencies(net, 0, SIZE, table_1080ti, legacy=True)
    assert lat02 == pytest.approx(20.86756822168001, rel=1e-9)
    assert lat12 == pytest.approx(25.225902916112148, rel=1e-9)
    assert arch_genotype(net, 0, legacy=True).width_mult_list == (1.0,)
    fixed02, fixed12, _ = arch_latencies(net, 0, SIZE, table_1080ti)
    assert fixed02 == pytest.approx(18.863592477688467, rel=1e-9)
    assert fixed12 == pytest.approx(17.943000794864652, rel=1e-9)


def test_search_legacy_switch_sets_the_latency_loss_to_the_original_figures(table_1080ti, test_data_dir):
    """The same switch makes the architect's latency term the original's (B3 and B2 kept): the 1/500, 497/500,
    2/500 mix of the legacy supernet estimates, whose values test_legacy_mode_reproduces_the_original_supernet_figures
    ties to figures.json (27.712 ms alpha-only and beta-only at the reset value 1e-3)."""
    from tools.search.architect import Architect
    net = meta_search_supernet()
    architect = Architect(net, [0, 1e-2], table_1080ti, latency_size=SIZE, legacy_latency=True)
    torch.manual_seed(0)                          # the ratio-only estimate samples widths (gumbel), as the original
    loss = float(architect.latency_loss().detach())
    net.prun_mode = None
    torch.manual_seed(0)
    parts = [float(supernet_latency(net, SIZE, table_1080ti, *flags, arch_idx=1, legacy=True).detach())
             for flags in ((True, False, False), (False, True, False), (False, False, True))]
    assert parts[1] == pytest.approx(27.712011337280273, rel=1e-6)
    assert loss == pytest.approx((1 / 500 * parts[0] + 497 / 500 * parts[1] + 2 / 500 * parts[2]) * 1e-2, rel=1e-6)
    torch.manual_seed(0)
    fixed = float(Architect(net, [0, 1e-2], table_1080ti, latency_size=SIZE).latency_loss().detach())
    assert fixed != pytest.approx(loss, rel=1e-3)


def test_glue_reads_follow_the_forward_pass_only_for_tables_that_hold_glue(table_1080ti):
    """A table with ``glue`` adds, for the published student (lasts [2, 1]), the x2 upsampling and the
    concatenation before each of its 3 refinements, the branch concatenation and the final x8 upsampling, with
    the shapes the forward pass really has; the published table reads none of them (its figures stay)."""
    net = build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=STEM_HEAD[1], aux_heads=False).eval()
    size = (3, 128, 256)
    glued = LatencyTable(meta={"glue": True}, measure=True, measurer=synthetic_measurer)
    estimate = derived_latency(net, size, glued)
    glue = [key for (key, _), part in zip(estimate.reads, estimate.parts) if part == "glue"]
    assert [key.split("_")[0] for key in glue] == ["interp", "cat"] * 3 + ["cat", "interp"]
    assert glue[-1] == "interp_H16_W32_C19_factor8" and glue[-2] == "cat_H16_W32_Cin64_Cout128"
    plain = derived_latency(net, size, LatencyTable(measure=True, measurer=synthetic_measurer))
    assert "glue" not in plain.parts
    assert estimate.latency_ms == pytest.approx(plain.latency_ms + estimate.part_ms("glue"))
    assert estimate.out_size == plain.out_size == (19, 16, 32)
    # the glue shapes are the shapes of the forward pass: every upsampling's input and every concatenation's
    # output exist in it (recorded by patching F.interpolate and torch.cat)
    seen = []
    real_interpolate, real_cat = F.interpolate, torch.cat

    def interpolate(x, *args, **kwargs):
        out = real_interpolate(x, *args, **kwargs)
        seen.append("interp_H%d_W%d_C%d_factor%d" % (x.size(2), x.size(3), x.size(1), out.size(2) // x.size(2)))
        return out

    def cat(tensors, dim=0):
        out = real_cat(tensors, dim=dim)
        seen.append("cat_H%d_W%d_Cin%d_Cout%d" % (out.size(2), out.size(3), tensors[0].size(1), out.size(1)))
        return out
    import tools.models.derived as derived_module
    patched_torch = type("T", (), {"cat": staticmethod(cat), "__getattr__": lambda self, name: getattr(torch, name)})()
    old_F, old_torch = derived_module.F, derived_module.torch
    derived_module.F = type("F", (), {"interpolate": staticmethod(interpolate),
                                      "__getattr__": lambda self, name: getattr(F, name)})()
    derived_module.torch = patched_torch
    try:
        with torch.no_grad():
            net(torch.randn(1, *size))
    finally:
        derived_module.F, derived_module.torch = old_F, old_torch
    assert sorted(seen) == sorted(glue)
    assert table_1080ti.meta.get("glue") is None
