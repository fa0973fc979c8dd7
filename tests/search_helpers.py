"""Shared by the search tests: the tiny supernet (6 layers, Fch 3, widths 4/12, 8/12, 1), a random batch and a
deterministic synthetic latency table."""
import torch

from tools.latency.table import LatencyTable
from tools.models.supernet import Network_Multi_Path

WIDTHS = [4. / 12, 8. / 12, 1.]
STEM_HEAD = [(1, 1), (8. / 12, 8. / 12)]
LATENCY_SIZE = (3, 64, 128)


def synthetic_measurer(module, input_size):
    """A deterministic 'latency' proportional to parameters x pixels (differs per operator, width and size)."""
    params = sum(p.numel() for p in module.parameters())
    return 0.001 + params * input_size[2] * input_size[3] * 1e-7


def synthetic_table():
    return LatencyTable(measure=True, measurer=synthetic_measurer)


def tiny_supernet(seed=0):
    torch.manual_seed(seed)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    model = Network_Multi_Path(19, 6, criterion, Fch=3, width_mult_list=WIDTHS, prun_modes=["max", "arch_ratio"],
                               stem_head_width=STEM_HEAD)
    model.init_weights()
    return model.train()


def batch(seed=1, n=2, h=64, w=128):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, h, w, generator=generator), torch.randint(0, 19, (n, h // 8, w // 8),
                                                                       generator=generator)
