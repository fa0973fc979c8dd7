"""The supernet's explicit sampling (tools/models/supernet.py): ``with net.sampling(arch_idx=..., mode=...):``
selects what the forwards inside sample and restores the previous selection, exceptions included."""
import pytest
import torch

from tools.models.supernet import KEEP, Network_Multi_Path


def tiny():
    return Network_Multi_Path(num_classes=19, layers=4, Fch=3, width_mult_list=[4. / 12, 8. / 12, 1.],
                              prun_modes=['max', 'arch_ratio'], stem_head_width=[(1, 1), (8. / 12, 8. / 12)])


def test_sampling_selects_and_restores():
    net = tiny()
    assert (net.arch_idx, net.prun_mode) == (0, None)
    with net.sampling(arch_idx=1, mode="min") as inside:
        assert inside is net and (net.arch_idx, net.prun_mode) == (1, "min")
        with net.sampling(mode=None):
            assert (net.arch_idx, net.prun_mode) == (1, None)
        with net.sampling(arch_idx=0):            # mode KEEP: unchanged
            assert (net.arch_idx, net.prun_mode) == (0, "min")
        assert (net.arch_idx, net.prun_mode) == (1, "min")
    assert (net.arch_idx, net.prun_mode) == (0, None)


def test_sampling_restores_after_an_exception():
    net = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with net.sampling(arch_idx=1, mode="random"):
            raise RuntimeError("boom")
    assert (net.arch_idx, net.prun_mode) == (0, None)


def test_select_checks_and_returns_the_previous_selection():
    net = tiny()
    assert net.select(arch_idx=1, mode="max") == (0, None)
    assert net.select(mode=KEEP) == (1, "max")
    with pytest.raises(ValueError, match="not one of this supernet's architectures"):
        net.select(arch_idx=2)
    with pytest.raises(ValueError, match="not one of"):
        net.select(mode="widest")
    assert (net.arch_idx, net.prun_mode) == (1, "max")


def test_forward_inside_sampling_equals_setting_the_attributes():
    """The context manager is the same selection the original made by assigning the attributes."""
    net = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        with net.sampling(arch_idx=1, mode="min"):
            inside = net(x)
        net.arch_idx, net.prun_mode = 1, "min"
        by_hand = net(x)
    for a, b in zip(inside, by_hand):
        assert torch.equal(a, b)
