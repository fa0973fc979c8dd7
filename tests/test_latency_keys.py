"""tools/latency/keys.py: the original's table keys read from the modules, the table grid, and B2."""
import os

import pytest
import torch

from tools.latency.keys import (LatencyKeyError, OpSpec, concat_spec, glue_table_specs, op_spec,
                                original_table_specs, parse_key)
from tools.latency.table import import_npy
from tools.ops.heads import FeatureFusion, Head
from tools.ops.primitives import OPS, PRIMITIVES, BasicResidual_downup_2x, ConvNorm

WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]


@pytest.fixture(scope="module")
def published_keys():
    here = os.path.dirname(os.path.abspath(__file__))
    return set(import_npy(os.path.join(here, "data", "latency_lookup_table_1080ti.npy")).entries)


def test_original_grid_is_exactly_the_published_table(published_keys):
    specs = original_table_specs(1024, 2048)
    keys = [spec.key for _, spec in specs]
    assert len(keys) == len(set(keys)) == 667
    assert set(keys) == published_keys
    assert [section for section, _ in specs][::200] == ["cells", "cells", "cells", "cells"]
    assert {section for section, _ in specs} == {"cells", "stem", "ffm", "head"}


def test_parse_key_inverts_every_published_key(published_keys):
    for key in published_keys:
        assert parse_key(key).key == key


def test_parse_key_rejects_foreign_keys():
    with pytest.raises(LatencyKeyError, match="not in the original FasterSeg key format"):
        parse_key("stem_H1024_W2048_F12")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_keys_of_slimmable_ops_follow_the_ratio(name, stride):
    c_out = 96 if stride == 1 else 192
    op = OPS[name](96, c_out, stride, True, WIDTHS)
    spec, out = op_spec(op, (64, 128, 256), ratio=(8. / 12, 0.5))
    kind = type(op).__name__
    expected_out = c_out // 2
    assert out == (expected_out, 128 // stride, 256 // stride)
    if kind == "FactorizedReduce":
        assert spec.key == f"FactorizedReduce_H128_W256_Cin64_Cout{expected_out}_stride{stride}"
    else:
        assert spec.key == f"{kind}_H128_W256_Cin64_Cout{expected_out}_stride{stride}_dilation1"


def test_module_ratio_is_used_when_none_is_given():
    op = OPS["conv"](96, 96, 1, True, WIDTHS)
    op.set_ratio((0.5, 1.))
    assert op_spec(op, (48, 8, 8))[0].key == "BasicResidual1x_H8_W8_Cin48_Cout96_stride1_dilation1"


def test_wrong_input_channels_is_a_clear_error():
    op = OPS["conv_2x"](96, 96, 1, False, [1.])
    with pytest.raises(LatencyKeyError, match=r"BasicResidual2x\(C_in=96, C_out=96\).*expects 96 input channels, "
                                              r"got 64"):
        op_spec(op, (64, 8, 8))


def test_b2_downup_2x_reads_its_own_key_unless_legacy():
    op = BasicResidual_downup_2x(96, 96, stride=1, slimmable=False)
    assert op_spec(op, (96, 128, 256))[0].key == "BasicResidual_downup_2x_H128_W256_Cin96_Cout96_stride1_dilation1"
    legacy = op_spec(op, (96, 128, 256), legacy_b2=True)[0]
    assert legacy.key == "BasicResidual2x_H128_W256_Cin96_Cout96_stride1_dilation1"
    assert type(legacy.build()).__name__ == "BasicResidual2x"


def test_convnorm_ffm_and_head_keys():
    stem = ConvNorm(3, 48, kernel_size=3, stride=2, padding=1, slimmable=False)
    assert op_spec(stem, (3, 1024, 2048)) == (
        OpSpec("ConvNorm", 1024, 2048, 3, 48, 2, 1, 3, 1, 1), (48, 512, 1024))
    assert op_spec(stem, (3, 1024, 2048))[0].key == "ConvNorm_H1024_W2048_Cin3_Cout48_kernel3_stride2"
    spec, out = op_spec(FeatureFusion(192, 192), (192, 128, 256))
    assert spec.key == "ff_H128_W256_C192" and out == (192, 128, 256)
    spec, out = op_spec(Head(192, 19), (192, 128, 256))
    assert spec.key == "head_H128_W256_Cin192_Cout19" and out == (19, 128, 256)
    with pytest.raises(LatencyKeyError, match="Head was built for 192 input channels, got 96"):
        op_spec(Head(192, 19), (96, 128, 256))


def test_unknown_module_is_refused():
    with pytest.raises(LatencyKeyError, match="no latency-table key for a Linear module"):
        op_spec(torch.nn.Linear(2, 2), (2, 1, 1))


@pytest.mark.parametrize("key", [
    "BasicResidual_downup_1x_H16_W32_Cin8_Cout16_stride2_dilation1",
    "BasicResidual2x_H16_W32_Cin8_Cout8_stride1_dilation1",
    "FactorizedReduce_H16_W32_Cin8_Cout16_stride2",
    "FactorizedReduce_H16_W32_Cin8_Cout8_stride1",
    "ConvNorm_H16_W32_Cin24_Cout8_kernel3_stride1",
    "ConvNorm_H16_W32_Cin24_Cout8_kernel1_stride1",
    "ff_H16_W32_C16",
    "head_H16_W32_Cin16_Cout19",
    "interp_H16_W32_C19_factor8",
    "interp_H4_W8_C128_factor2",
    "cat_H16_W32_Cin64_Cout144",
    "cat_H16_W32_Cin64_Cout64",
])
def test_built_modules_produce_the_keyed_output_size(key):
    spec = parse_key(key)
    module = spec.build().eval()
    with torch.no_grad():
        out = module(torch.randn(*spec.input_size))
    assert tuple(out.shape[1:]) == spec.out_size
    assert op_spec(module, spec.input_size[1:])[0].key == key


def test_glue_grid_covers_every_upsampling_and_concatenation_of_the_heads():
    """Per head width: two x2 upsamplings, a concatenation per refinement and cell width, 1-3 branches; then the
    final x8 upsampling of the class scores. None of them is a key of the original's table."""
    specs = glue_table_specs(256, 512, fch_heads=(8, 12), widths=WIDTHS, fch_max=12, num_classes=19)
    keys = [spec.key for _, spec in specs]
    # 2 x (2 + 5 + 5 + 3) + 1 = 31 shapes, two of them twice: a refinement's concatenation at 1/8 with a cell
    # width of 8/12 (Fch 8) or 1 (Fch 12) has the shape of the two-branch concatenation
    assert len(keys) == len(set(keys)) == 29
    assert "cat_H32_W64_Cin64_Cout128" in keys and "cat_H32_W64_Cin96_Cout192" in keys
    assert keys[:3] == ["interp_H8_W16_C128_factor2", "cat_H16_W32_Cin128_Cout192", "cat_H16_W32_Cin128_Cout224"]
    assert keys[-1] == "interp_H32_W64_C19_factor8"
    assert all(parse_key(key).key == key for key in keys)
    original = {spec.key for _, spec in original_table_specs(256, 512)}
    assert not original & set(keys)
    # each refinement's concatenation produces exactly the input its ConvNorm entry is keyed for
    refine_inputs = {(spec.h, spec.w, spec.c_in) for section, spec in original_table_specs(256, 512)
                     if section == "ffm" and spec.kind == "ConvNorm" and spec.kernel_size == 3}
    concats = {(spec.h, spec.w, spec.c_out) for _, spec in specs if spec.kind == "Concat" and spec.c_out != spec.c_in
               and spec.c_out % spec.c_in}
    assert concats <= refine_inputs


def test_a_concatenation_cannot_shrink():
    with pytest.raises(LatencyKeyError, match="cannot shrink 64 channels to 32"):
        concat_spec(8, 16, 64, 32)
