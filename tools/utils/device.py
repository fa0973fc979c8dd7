"""Which torch device a setting names: the one place that turns ``device='auto'|'cpu'|'cuda'|'cuda:N'`` into a
``torch.device``.

The original hard-coded ``.cuda()``; here every stage takes a ``device`` key. Training under torchrun gives each
process its own GPU (a bare ``'cuda'`` becomes ``cuda:<local_rank>``); latency measurement keeps a bare
``'cuda'`` as torch's current device. Both go through :func:`resolve_device`.
"""
import functools

import torch

from tools.utils.errors import UserError

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class DeviceUnavailableError(UserError, ValueError):
    """A CUDA device asked for where this torch build sees none; the message says what to use instead."""


def resolve_device(device="auto", local_rank=None, error=DeviceUnavailableError):
    """'auto' (or None) -> CUDA when available, else cpu; anything else is parsed by ``torch.device``.

    With ``local_rank`` given, a CUDA device without an index becomes ``cuda:<local_rank>`` (this torchrun
    process's GPU). A CUDA request on a machine without CUDA raises ``error`` (callers pass their own error class
    so that their callers catch what they always caught).
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(str(device))
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise error(f"device '{device}' was asked for but this torch build sees no CUDA GPU; use device='cpu' or "
                    f"'auto', or install a CUDA build of torch.")
    return device


def cpu_flags(path="/proc/cpuinfo"):
    """The feature flags of this machine's CPU (Linux ``/proc/cpuinfo``); empty where the file is absent."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def cpu_native_bf16():
    """The CPU flags that make bf16 convolutions and matmuls native (AVX512-BF16, AMX-BF16), as a sorted tuple;
    empty where bf16 would be emulated in fp32 (AVX2, plain AVX512, other architectures): there, bf16 autocast
    is several times slower than fp32."""
    return tuple(sorted(set(NATIVE_BF16_FLAGS) & cpu_flags()))
