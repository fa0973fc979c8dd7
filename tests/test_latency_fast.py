"""tools/latency/fast.py: BN folding, channels_last, bf16 and ONNX Runtime fp32/int8 paths agree with fp32."""
import pytest
import torch
import torch.nn.functional as F

from tools.latency.backends import LatencyError
from tools.latency.fast import (PATHS, argmax_agreement, calibrate_bn, count_batchnorms, demo_batch, fold_bn,
                                make_runner)
from tools.models.archfile import load_arch, published_arch_path
from tools.models.derived import Network_Multi_Path_Infer, build_derived
from tools.models.supernet import init_weight

WIDTHS = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
H, W = 64, 128


def random_bn_stats(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


def test_fold_bn_removes_every_batchnorm_and_keeps_the_output():
    net = build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12),
                        aux_heads=False)
    random_bn_stats(net)
    net.eval()
    folded = fold_bn(net)
    assert count_batchnorms(net) > 0 and count_batchnorms(folded) == 0
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        reference = net(x)
        assert torch.allclose(folded(x), reference, rtol=1e-4, atol=1e-4)
        cl = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, reference, rtol=1e-4, atol=1e-4)
    assert count_batchnorms(net) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_fold_bn_handles_the_split_batchnorm_of_factorized_reduce():
    from tools.ops.primitives import FactorizedReduce
    op = FactorizedReduce(8, 16, stride=2, slimmable=False)
    random_bn_stats(op)
    op.eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(fold_bn(op)(x), op(x), atol=1e-5)


def test_fold_bn_builds_the_split_batchnorm_on_the_device_of_the_network():
    """A network on another device (CUDA on a GPU box; the meta device here) is folded where it is."""
    from tools.ops.primitives import FactorizedReduce
    op = FactorizedReduce(8, 16, stride=2, slimmable=False).eval().to("meta")
    folded = fold_bn(op)
    assert {p.device.type for p in folded.parameters()} == {"meta"}
    assert folded(torch.empty(2, 8, 8, 8, device="meta")).shape == (2, 16, 4, 4)


@pytest.fixture(scope="module")
def trained_tiny_net():
    """A small derived network briefly trained on demo scenes: a random network is chaotic (1% input noise
    flips half its argmaxes), so agreement is only meaningful on a network that learned something."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    layers = 6
    alphas = [torch.randn(layers - k, 5, generator=generator) for k in range(3)]
    betas = [None, torch.randn(layers - 2, 2, generator=generator), torch.randn(layers - 3, 2, generator=generator)]
    ratios = [torch.randn(n, 5, generator=generator) for n in (layers - 1, layers - 1, layers - 2)]
    net = Network_Multi_Path_Infer(alphas, betas, ratios, layers=layers, Fch=4, width_mult_list=WIDTHS,
                                   stem_head_width=(1., 1.)).build_structure([2, 1])
    init_weight(net, torch.nn.init.kaiming_normal_, torch.nn.BatchNorm2d, mode="fan_in", nonlinearity="relu")
    images, labels = demo_batch(12, H, W, seed=5)
    optimizer = torch.optim.Adam(net.parameters(), 5e-3)
    net.train()
    for step in range(24):
        batch = slice((2 * step) % 12, (2 * step) % 12 + 2)
        loss = F.cross_entropy(net(images[batch])[0], labels[batch], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval(), images


@pytest.mark.parametrize("path, minimum", [("folded_cl", 0.999), ("bf16", 0.97), ("ort_fp32", 0.999),
                                           ("ort_int8", 0.9)])
def test_inference_paths_agree_with_fp32_on_demo_images(trained_tiny_net, path, minimum, tmp_path):
    net, images = trained_tiny_net
    x = demo_batch(2, H, W, seed=7)[0]
    with torch.no_grad():
        reference = net(x)
    runner = make_runner(path, net, (1, 3, H, W), workdir=str(tmp_path), calibration=images[:6])
    output = torch.cat([runner(x[i:i + 1]) for i in range(len(x))])
    assert output.shape == reference.shape and output.dtype == torch.float32
    assert argmax_agreement(reference, output) >= minimum


def test_calibrate_bn_sets_statistics_from_images():
    net = build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12))
    images = demo_batch(4, H, W)[0]
    calibrate_bn(net, images, batches=2)
    stem_bn = net.stem[0].conv[1]
    assert not net.training and stem_bn.momentum == 0.1 and stem_bn.num_batches_tracked == 2
    assert stem_bn.running_var.mean() != pytest.approx(1.0)


def test_unknown_path_and_shape_mismatch_are_clear():
    with pytest.raises(LatencyError, match="unknown inference path 'tensorrt_int4'"):
        make_runner("tensorrt_int4", torch.nn.Identity(), (1, 3, 8, 8))
    with pytest.raises(LatencyError, match="cannot compare outputs of shapes"):
        argmax_agreement(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    assert PATHS == ("fp32", "folded_cl", "bf16", "ort_fp32", "ort_int8")
