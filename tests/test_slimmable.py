"""tools/ops/slimmable.py: make_divisible, weight slicing of USConv2d, one BatchNorm per width in USBatchNorm2d."""
import copy

import pytest
import torch
import torch.nn.functional as F

from tools.ops.slimmable import USBatchNorm2d, USConv2d, WidthError, make_divisible

W = [4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.]


def test_make_divisible_matches_the_original_rule():
    # includes the original's quirks: 20 rounds up to 24, and 3 -> 1 is "too far down" so 8 is added (9)
    values = [3, 5.33, 8, 16, 20, 21.33, 40, 42.67, 64, 80]
    assert [make_divisible(v) for v in values] == [9, 8, 8, 16, 24, 24, 40, 40, 64, 80]
    assert make_divisible(10, divisor=4) == 12
    assert make_divisible(1, min_value=None) == 8


@pytest.mark.parametrize("ratio", [(1., 1.), (0.5, 1.), (1., 4 / 12), (10 / 12, 8 / 12)])
def test_usconv2d_slices_the_leading_channels(ratio):
    conv = USConv2d(48, 96, 3, padding=1, bias=True, width_mult_list=W)
    conv.set_ratio(ratio)
    c_in, c_out = make_divisible(48 * ratio[0]), make_divisible(96 * ratio[1])
    assert (conv.in_channels, conv.out_channels) == (c_in, c_out)
    x = torch.randn(2, c_in, 8, 8)
    expected = F.conv2d(x, conv.weight[:c_out, :c_in], conv.bias[:c_out], padding=1)
    assert torch.equal(conv(x), expected)


def test_usconv2d_depthwise_groups_follow_the_input_width():
    conv = USConv2d(48, 48, 3, padding=1, groups=48, depthwise=True, bias=False, width_mult_list=W)
    conv.set_ratio((0.5, 0.5))
    assert conv.groups == 24
    x = torch.randn(1, 24, 6, 6)
    assert torch.equal(conv(x), F.conv2d(x, conv.weight[:24], None, padding=1, groups=24))


def test_usconv2d_rejects_a_width_outside_the_list():
    conv = USConv2d(48, 48, 1, width_mult_list=W)
    with pytest.raises(WidthError, match="0.75 is not in width_mult_list"):
        conv.set_ratio((0.75, 1.))


def test_usbatchnorm_state_dict_is_outer_affine_plus_one_bn_per_width():
    bn = USBatchNorm2d(96, W)
    keys = list(bn.state_dict())
    assert keys[:2] == ["weight", "bias"]
    per_width = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert keys[2:] == [f"bn.{i}.{k}" for i in range(len(W)) for k in per_width]
    assert [b.num_features for b in bn.bn] == [32, 48, 64, 80, 96]


def test_usbatchnorm_runs_only_the_selected_width():
    bn = USBatchNorm2d(96, W).train()
    reference = copy.deepcopy(bn.bn[2])
    bn.set_ratio(8 / 12)
    x = torch.randn(4, 64, 5, 5)
    assert torch.equal(bn(x), reference(x))
    assert torch.equal(bn.bn[2].running_mean, reference.running_mean)
    assert [int(b.num_batches_tracked) for b in bn.bn] == [0, 0, 1, 0, 0]


def test_usbatchnorm_rejects_a_width_outside_the_list():
    with pytest.raises(WidthError, match="USBatchNorm2d"):
        USBatchNorm2d(96, W).set_ratio(0.9)


def test_usbatchnorm_batch_groups_equal_separate_calls():
    """Two inputs stacked along the batch: same outputs, gradients and running statistics as two calls."""
    torch.manual_seed(0)
    grouped, separate = USBatchNorm2d(24, W).train(), USBatchNorm2d(24, W).train()
    for bn in (grouped, separate):
        bn.set_ratio(8 / 12)
    grouped.batch_groups = 2
    first, second = torch.randn(2, 16, 5, 7) * 3 + 1, torch.randn(2, 16, 5, 7)
    stacked = torch.cat([first, second]).requires_grad_()
    parts = [first.clone().requires_grad_(), second.clone().requires_grad_()]
    out = grouped(stacked)
    expected = torch.cat([separate(p) for p in parts])
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(stacked.grad, torch.cat([p.grad for p in parts]))
    for mine, theirs in zip(grouped.state_dict().values(), separate.state_dict().values()):
        torch.testing.assert_close(mine, theirs)
    assert int(grouped.bn[2].num_batches_tracked) == 2
    grouped.eval()
    separate.eval()
    torch.testing.assert_close(grouped(stacked), torch.cat([separate(first), separate(second)]))


def test_usbatchnorm_batch_groups_must_divide_the_batch():
    bn = USBatchNorm2d(12, W).train()
    bn.batch_groups = 2
    with pytest.raises(ValueError, match="batch of 3 cannot hold 2 equal groups"):
        bn(torch.randn(3, 12, 4, 4))
