"""tools/ops/heads.py: ConvBnRelu, Head and FeatureFusion with the original structure (and quirk B6)."""
import json
import os

import pytest
import torch

from tools.ops.heads import ConvBnRelu, FeatureFusion, Head, head_mid_planes


@pytest.fixture(scope="module")
def teacher_shapes():
    path = os.path.join(os.path.dirname(__file__), "data", "state_dict_shapes.json")
    with open(path) as f:
        return json.load(f)["teacher"]


def _shapes(module, prefix):
    return {prefix + k: list(v.shape) for k, v in module.state_dict().items()}


def _published(shapes, prefix):
    return {k: v for k, v in shapes.items() if k.startswith(prefix)}


def test_conv_bn_relu_options():
    full = ConvBnRelu(8, 16, 3, 1, 1)
    assert list(full.state_dict())[:2] == ["conv.weight", "bn.weight"] and full.has_bn and full.has_relu
    bare = ConvBnRelu(8, 16, 1, 1, 0, has_bn=False, has_relu=False, has_bias=True)
    assert list(bare.state_dict()) == ["conv.weight", "conv.bias"]
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(bare(x), bare.conv(x))
    assert (full.eval()(x) >= 0).all()


def test_head_mid_planes_rule():
    assert [head_mid_planes(c) for c in (32, 64, 128, 256, 384, 512)] == [32, 64, 128, 256, 192, 256]
    assert Head(512, 19).conv_1x1.in_channels == 256


def test_head_matches_published_keys_and_shapes(teacher_shapes):
    head = Head(192, 19)
    assert _shapes(head, "heads8.") == _published(teacher_shapes, "heads8.")
    assert head(torch.randn(1, 192, 4, 8)).shape == (1, 19, 4, 8)
    assert head.output_size(192, 128, 256) == (19, 128, 256)
    with pytest.raises(ValueError, match="built for 192"):
        head.output_size(128, 8, 8)


def test_feature_fusion_keeps_unused_channel_attention_b6(teacher_shapes):
    ffm = FeatureFusion(192, 192, reduction=1, Fch=12, scale=4, branch=2)
    assert _shapes(ffm, "ffm.") == _published(teacher_shapes, "ffm.")
    assert sum(p.numel() for p in ffm.channel_attention.parameters()) == 2 * 192 * 192
    ffm.eval()
    x = torch.randn(1, 192, 4, 8)
    assert torch.equal(ffm(x), ffm.conv_1x1(x))  # forward returns right after conv_1x1 (B6)
    assert ffm.output_size(192, 4, 8) == (192, 4, 8)
