"""tools/utils/device.py and tools/utils/seed.py: one device resolution and one seeding for every stage."""
import random

import numpy as np
import pytest
import torch

from tools.engine import distributed
from tools.latency import backends
from tools.utils.device import DeviceUnavailableError, resolve_device
from tools.utils.seed import seed_everything


def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("auto", None, "cpu", torch.device("cpu")):
        assert resolve_device(device) == torch.device("cpu")


def test_a_bare_cuda_gets_the_local_rank_only_when_one_is_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [str(resolve_device(d)) for d in ("auto", "cuda", "cuda:1")] == ["cuda", "cuda", "cuda:1"]
    assert [str(resolve_device(d, 2)) for d in ("auto", "cuda", "cuda:1")] == ["cuda:2", "cuda:2", "cuda:1"]
    # the two callers' forms: torchrun processes (index from the local rank, default 0) and latency timing
    assert str(distributed.resolve_device()) == "cuda:0" and str(distributed.resolve_device("auto", 3)) == "cuda:3"
    assert str(backends.resolve_device("cuda")) == "cuda"


@pytest.mark.parametrize("resolve, error", [(resolve_device, DeviceUnavailableError),
                                            (distributed.resolve_device, distributed.DistributedConfigError),
                                            (backends.resolve_device, backends.BackendUnavailableError)])
def test_cuda_without_a_gpu_is_each_callers_error(monkeypatch, resolve, error):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(error, match="device 'cuda:1' was asked for but this torch build sees no CUDA GPU"):
        resolve("cuda:1")


def test_seed_everything_repeats_every_generator():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(12345)
    first = draws()
    seed_everything(12345)
    assert draws() == first
    random.seed(12345), np.random.seed(12345), torch.manual_seed(12345)     # what the two stages did by hand
    assert draws() == first
