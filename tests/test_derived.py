"""The derived network (tools/models/derived.py) against the original's figures, state_dict and outputs."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from tools.models.archfile import load_arch, published_arch_path
from tools.models.derived import (DerivedNetwork, InputSizeError, Network_Multi_Path_Infer, build_derived,
                                  count_conv_macs)

NETS = {"teacher": (0, (1.0, 1.0)), "student": (1, (8.0 / 12, 8.0 / 12))}
STRUCTURE = ["lasts", "ops0", "ops1", "ops2", "path0", "path1", "path2", "downs0", "downs1", "downs2",
             "widths0", "widths1", "widths2", "branch_groups", "ch_16", "ch_8_2", "ch_8_1"]


def _load_json(test_data_dir, name):
    with open(os.path.join(test_data_dir, name)) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def figures():
    return _load_json(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"), "figures.json")


def _build(name, aux_heads=True, device="meta", **kwargs):
    """Published network; on the meta device structure and counts come without allocating weights."""
    idx, stem_head_width = NETS[name]
    with torch.device(device):
        return build_derived(load_arch(published_arch_path(idx)), idx, stem_head_width=stem_head_width,
                             aux_heads=aux_heads, **kwargs)


@pytest.fixture(scope="module")
def meta_nets():
    return {name: _build(name) for name in NETS}


def _cell_text(cell):
    return f"{type(cell._op._op).__name__}(C_in={cell._C_in},C_out={cell._C_out},down={cell._down})"


@pytest.mark.parametrize("name", list(NETS))
def test_published_structure(meta_nets, figures, name):
    net, ref = meta_nets[name], figures[name]
    for key in STRUCTURE:
        assert getattr(net, key) == ref[key], key
    assert {key: _cell_text(cell) for key, cell in net.cells.items()} == ref["cells"]
    assert len({id(cell) for cell in net.cells.values()}) == ref["num_unique_cells"]
    assert net._width_mult_list == ref["build"]["width_mult_list_effective"]


@pytest.mark.parametrize("name", list(NETS))
def test_fresh_derivation_gives_the_same_published_networks(meta_nets, name):
    fresh = _build(name, derivation="fresh")
    for key in STRUCTURE:
        assert getattr(fresh, key) == getattr(meta_nets[name], key), key


@pytest.mark.parametrize("name", list(NETS))
def test_state_dict_keys_order_and_shapes(meta_nets, test_data_dir, name):
    reference = _load_json(test_data_dir, "state_dict_shapes.json")[name]
    state = meta_nets[name].state_dict()
    assert list(state) == list(reference)
    assert {key: list(value.shape) for key, value in state.items()} == reference


@pytest.mark.parametrize("name", list(NETS))
def test_parameter_counts_train_and_eval_built(meta_nets, figures, name):
    params = figures[name]["params"]
    net = meta_nets[name]
    assert sum(p.numel() for p in net.parameters()) == params["numel_built_in_train_mode_as_train_py"]
    assert sum(v.numel() for v in net.state_dict().values()) == params["state_dict_numel_train_built_incl_bn_buffers"]
    for head in ("heads32", "heads16"):
        assert sum(p.numel() for p in getattr(net, head).parameters()) == params["aux_heads_numel"][head]
    unused = sum(p.numel() for p in net.ffm.channel_attention.parameters())
    assert unused == params["ffm_channel_attention_numel_built_but_unused_in_forward"]
    eval_built = _build(name, aux_heads=False)
    assert not hasattr(eval_built, "heads32") and not hasattr(eval_built, "heads16")
    assert sum(p.numel() for p in eval_built.parameters()) == params["numel_built_in_eval_mode"]


@pytest.mark.parametrize("name", list(NETS))
def test_conv_macs(meta_nets, figures, name):
    macs = figures[name]["conv_MACs"]
    for size in ("1x3x1024x2048", "1x3x512x1024"):
        shape = tuple(int(v) for v in size.split("x"))
        total, calls = count_conv_macs(meta_nets[name], shape, device="meta")
        assert total == macs[size]
        assert calls == macs["conv_calls_in_eval_forward"]
    assert meta_nets[name].training


@pytest.mark.parametrize("name", list(NETS))
def test_thop_flops_and_params(meta_nets, figures, name):
    thop = pytest.importorskip("thop")
    if not thop.__version__.startswith("0.1.1"):
        pytest.skip(f"figures are for thop 0.1.1, installed {thop.__version__}")
    flops, params = thop.profile(meta_nets[name], inputs=(torch.randn(1, 3, 1024, 2048, device="meta"),),
                                 verbose=False)
    assert (flops, params) == (figures[name]["thop_1x3x1024x2048"]["thop_0.1.1"]["flops"],
                               figures[name]["thop_1x3x1024x2048"]["thop_0.1.1"]["params"])


@pytest.fixture(scope="module")
def student_reference():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(os.path.dirname(repo), "shared", "reference", "student_equivalence.pt")
    if not os.path.isfile(path):
        pytest.skip(f"{path} is absent (it sits beside the project in CI, not in a user's clone)")
    return torch.load(path, weights_only=True)


def test_student_equivalence_eval(student_reference):
    net = _build("student", device="cpu")
    net.load_state_dict(student_reference["state_dict"], strict=True)
    net.eval()
    with torch.no_grad():
        out = net(student_reference["input"])
    torch.testing.assert_close(out, student_reference["output_eval"], rtol=1e-5, atol=1e-5)


def test_student_equivalence_train_and_bn_buffers(student_reference):
    net = _build("student", device="cpu")
    net.load_state_dict(student_reference["state_dict"], strict=True)
    net.train()
    with torch.no_grad():
        outputs = net(student_reference["input_train"])
    for out, lowres, factor in zip(outputs, student_reference["outputs_train_lowres"],
                                   student_reference["outputs_train_upsample_scale_factors"]):
        expected = F.interpolate(lowres, scale_factor=factor, mode="bilinear", align_corners=True)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=5e-4)
    state = net.state_dict()
    for key, value in student_reference["bn_buffers_after_train"].items():
        torch.testing.assert_close(state[key], value, rtol=1e-4, atol=5e-4)


def test_input_not_multiple_of_32_is_a_clear_error(meta_nets):
    with pytest.raises(InputSizeError, match="height 100 and width 256 must both be multiples of 32"):
        meta_nets["student"].eval()(torch.zeros(1, 3, 100, 256, device="meta"))
    meta_nets["student"].train()


def _random_arch(layers, columns, seed):
    generator = torch.Generator().manual_seed(seed)
    alphas = [torch.randn(layers - s, 5, generator=generator) for s in range(3)]
    betas = [None] + [torch.randn(layers - s, 2, generator=generator) for s in (2, 3)]
    ratios = [torch.randn(layers - s, columns, generator=generator) for s in (1, 1, 2)]
    return alphas, betas, ratios


@pytest.mark.parametrize("lasts", [[2, 1], [2, 0], [2, 1, 0], [0]])
def test_tiny_network_trains_and_infers(lasts):
    alphas, betas, ratios = _random_arch(layers=8, columns=2, seed=len(lasts))
    net = DerivedNetwork(alphas, betas, ratios, num_classes=5, layers=8, Fch=4, width_mult_list=[0.5, 1.0],
                         stem_head_width=(1.0, 1.0)).build_structure(lasts)
    image = torch.randn(2, 3, 64, 128)
    pred8, pred16, pred32 = net.train()(image)
    assert pred8.shape == (2, 5, 64, 128)
    assert (pred32 is None) == (2 not in lasts)
    assert (pred16 is None) == (lasts == [0])
    loss = sum(p.square().mean() for p in (pred8, pred16, pred32) if p is not None)
    loss.backward()
    unused = {name for name, p in net.named_parameters() if p.grad is None}
    # B6: the FFM channel attention never runs; with lasts [0] the original still builds an unused heads16
    assert all("channel_attention" in name or (lasts == [0] and name.startswith("heads16")) for name in unused)
    with torch.no_grad():
        assert net.eval()(image).shape == (2, 5, 64, 128)


def test_aux_heads_flag_b7():
    alphas, betas, ratios = _random_arch(layers=8, columns=2, seed=0)
    net = Network_Multi_Path_Infer(alphas, betas, ratios, num_classes=5, layers=8, Fch=4,
                                   width_mult_list=[0.5, 1.0], aux_heads=False).build_structure([2, 1])
    assert not hasattr(net, "heads16") and not hasattr(net, "heads32")
    image = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        assert net.eval()(image).shape == (2, 5, 64, 128)
    with pytest.raises(RuntimeError, match="aux_heads=False"):
        net.train()(image)


def test_build_structure_errors():
    alphas, betas, ratios = _random_arch(layers=8, columns=2, seed=0)
    net = Network_Multi_Path_Infer(alphas, betas, ratios, layers=8, Fch=4, width_mult_list=[0.5, 1.0])
    with pytest.raises(RuntimeError, match="build_structure"):
        net(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="distinct branch scales"):
        net.build_structure([2, 2])


def test_thop_without_distutils_is_one_sentence(monkeypatch):
    """thop 0.1.1 imports distutils, which Python 3.12 has only through setuptools."""
    import sys
    from tools.models.flops import FlopsError, thop_flops
    for name in [n for n in sys.modules if n.split(".")[0] in ("thop", "distutils")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distutils", None)   # as on Python 3.12 without setuptools
    with pytest.raises(FlopsError, match="pip install setuptools"):
        thop_flops(torch.nn.Conv2d(3, 4, 1), (1, 3, 8, 8))
