"""tools/ops/primitives.py: the five operators and ConvNorm, slimmable and plain, at every width and stride."""
import pytest
import torch
import torch.nn as nn

from tools.ops.primitives import (OPERATOR_KINDS, OPERATORS, OPS, PRIMITIVES, SKIP, BasicResidual1x,
                                  BasicResidual2x, BasicResidual_downup_1x, BasicResidual_downup_2x, ChannelError,
                                  ConvNorm, FactorizedReduce)
from tools.ops.slimmable import USBatchNorm2d, USConv2d, WidthError, make_divisible

W = [4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.]
C = 48  # Fch 6 at scale 1/8: every width gives multiples of 8, also for the stride-2 skip halves
H, WD = 16, 32


def test_primitives_order_and_classes_are_the_originals():
    assert PRIMITIVES == ['skip', 'conv', 'conv_downup', 'conv_2x', 'conv_2x_downup'] and SKIP == 0
    assert list(OPS) == PRIMITIVES
    assert [OPS[p].cls for p in PRIMITIVES] == [FactorizedReduce, BasicResidual1x, BasicResidual_downup_1x,
                                                BasicResidual2x, BasicResidual_downup_2x]
    for name in PRIMITIVES:
        assert type(OPS[name](C, C, 1, True, W)) is OPS[name].cls


def test_every_list_of_the_search_space_comes_from_the_one_table():
    """Adding an operator is one row of OPERATORS: the supernet, arch-file shapes and latency keys follow it."""
    from tools.latency.keys import CELL_OPS, CELL_TABLE_ORDER
    from tools.models.archfile import expected_shapes
    assert OPERATORS == tuple(OPS.values()) and list(OPERATOR_KINDS) == list(CELL_OPS)
    assert CELL_OPS == ("FactorizedReduce", "BasicResidual1x", "BasicResidual_downup_1x", "BasicResidual2x",
                        "BasicResidual_downup_2x")
    assert CELL_TABLE_ORDER == CELL_OPS[1:] + CELL_OPS[:1]      # the original table script times skip last
    assert expected_shapes(0, 16, 1)["alpha_0_0"] == (16, len(OPERATORS))
    assert [op.latency_key for op in OPERATORS] == ["reduce", "residual", "residual", "residual", "residual"]


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_slimmable_shapes_at_every_width(name, stride):
    op = OPS[name](C, C * stride, stride, True, W)
    pairs = [(r, r) for r in W] + [(W[0], W[-1]), (W[-1], W[0]), (W[1], W[3])]
    for r_in, r_out in pairs:
        op.set_ratio((r_in, r_out))
        with torch.no_grad():
            y = op(torch.randn(2, make_divisible(C * r_in), 8, 16))
        assert y.shape == (2, make_divisible(C * stride * r_out), 8 // stride, 16 // stride)


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_plain_shapes_and_output_size(name, stride):
    op = OPS[name](C, C * stride, stride, False, W)
    assert not any(isinstance(m, (USConv2d, USBatchNorm2d)) for m in op.modules())
    y = op(torch.randn(2, C, H, WD))
    assert y.shape == (2, C * stride, H // stride, WD // stride)
    assert op.output_size(C, H, WD) == tuple(y.shape[1:])


def test_slimmable_output_size_uses_int_widths_like_the_latency_keys():
    op = OPS['conv'](C, 2 * C, 2, True, W)
    op.set_ratio((10 / 12, 10 / 12))
    assert op.output_size(int(C * 10 / 12), 1024, 2048) == (int(2 * C * 10 / 12), 512, 1024)
    with pytest.raises(ChannelError, match="expects 40"):
        op.output_size(48, 64, 64)


def test_state_dict_names_are_the_originals():
    def keys(module):
        return [k for k in module.state_dict() if '.bn.' not in k or not k.split('.bn.')[1][0].isdigit()]
    assert keys(FactorizedReduce(C, C, 1, slimmable=False)) == []
    assert keys(FactorizedReduce(C, C, 1, slimmable=True, width_mult_list=W)) == [
        'conv1.weight', 'bn.weight', 'bn.bias']
    assert list(FactorizedReduce(C, 2 * C, 2, slimmable=False).state_dict())[:3] == [
        'conv1.weight', 'conv2.weight', 'bn.weight']
    assert [k for k in BasicResidual2x(C, C, slimmable=False).state_dict() if k.endswith('weight')] == [
        'conv1.weight', 'bn1.weight', 'conv2.weight', 'bn2.weight']
    assert [k for k in ConvNorm(3, C, slimmable=False).state_dict() if k.endswith('weight')] == [
        'conv.0.weight', 'conv.1.weight']


def test_original_attributes_are_kept():
    op = BasicResidual_downup_2x(C, 2 * C, stride=2, dilation=2, slimmable=True, width_mult_list=W)
    assert (op.C_in, op.C_out, op.stride, op.dilation, op.kernel_size, op.groups) == (C, 2 * C, 2, 1, 3, 1)
    assert op.slimmable and op.width_mult_list == W and op.ratio == (1., 1.)
    op.set_ratio((0.5, 1.))
    assert op.ratio == (0.5, 1.) and op.conv2.ratio == (1., 1.) and op.bn1.ratio == 1.
    conv = ConvNorm(C, C, kernel_size=1, stride=1, groups=4, slimmable=False)
    assert (conv.padding, conv.groups) == (0, 1)
    assert ConvNorm(C, C, kernel_size=3, stride=2, slimmable=False).padding == 1


def test_downup_ops_work_at_half_resolution():
    x = torch.randn(1, C, H, WD)
    op = BasicResidual_downup_1x(C, C, slimmable=False).eval()
    with torch.no_grad():
        half = nn.functional.interpolate(x, size=(H // 2, WD // 2), mode='bilinear', align_corners=True)
        up = nn.functional.interpolate(op.bn1(op.conv1(half)), size=(H, WD), mode='bilinear', align_corners=True)
        assert torch.equal(op(x), torch.relu(up))


def test_plain_skip_is_identity_and_stride2_skip_concatenates_offset_halves():
    x = torch.randn(1, C, H, WD)
    assert FactorizedReduce(C, C, 1, slimmable=False)(x) is x
    op = FactorizedReduce(C, 2 * C, 2, slimmable=False).eval()
    with torch.no_grad():
        expected = op.relu(op.bn(torch.cat([op.conv1(x), op.conv2(x[:, :, 1:, 1:])], dim=1)))
        assert torch.equal(op(x), expected)


def test_clear_errors():
    with pytest.raises(ValueError, match="stride 3"):
        BasicResidual1x(C, C, stride=3)
    with pytest.raises(ValueError, match="slimmable=False"):
        BasicResidual1x(C, C, slimmable=False).set_ratio((1., 1.))
    with pytest.raises(WidthError):
        BasicResidual1x(C, C, slimmable=True, width_mult_list=W).set_ratio((0.9, 1.))
    with pytest.raises(ChannelError, match="input has 8 channels"):
        ConvNorm(C, C, slimmable=False)(torch.randn(1, 8, 4, 4))
    # Fch 3: C_out 48 at width 10/12 -> two halves of make_divisible(20)=24 but BN width make_divisible(40)=40
    with pytest.raises(ValueError, match="two stride-2 halves give 48 channels but its BatchNorm has 40"):
        FactorizedReduce(24, 48, 2, slimmable=True, width_mult_list=W).set_ratio((10 / 12, 10 / 12))
