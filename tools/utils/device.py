"""Which torch device a setting names: the one place that turns ``device='auto'|'cpu'|'cuda'|'cuda:N'`` into a
``torch.device``.

The original hard-coded ``.cuda()``; here every stage takes a ``device`` key. Training under torchrun gives each
process its own GPU (a bare ``'cuda'`` becomes ``cuda:<local_rank>``); latency measurement keeps a bare
``'cuda'`` as torch's current device. Both go through :func:`resolve_device`.
"""
import ctypes
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


# glibc mallopt parameters and their defaults (malloc.h): below the mmap threshold a block comes from the heap
GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_THRESHOLD = -1, -3
GLIBC_DEFAULT_THRESHOLD = 128 * 1024
KEPT_MMAP_THRESHOLD, KEPT_TRIM_THRESHOLD = 1 << 30, 2 ** 31 - 1


def _glibc():
    """The running C library when it is glibc (it has ``mallopt``), else None (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim   # noqa: B018  (present in glibc only)
    except (OSError, TypeError, AttributeError):
        return None
    return libc


def keep_freed_memory(keep=True):
    """Make glibc's malloc keep freed memory for the next allocation instead of handing it back to the system.

    glibc serves a block above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh ``mmap`` and
    unmaps it when it is freed, so each full-size activation, logit and gradient tensor of a CPU training step
    (tens of MB) is faulted in page by page, every step: about a third of a student step at 352x480
    (docs/benchmarks.md "Fast path"). With ``keep`` such blocks come from the heap and freed ones are reused;
    the process keeps its peak memory instead of returning it. ``keep=False`` puts glibc's default thresholds
    back (fixed, no longer adapting) and trims the heap. Numbers are unchanged either way. Returns whether it
    applied (False where the C library is not glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    mmap_threshold, trim_threshold = ((KEPT_MMAP_THRESHOLD, KEPT_TRIM_THRESHOLD) if keep
                                      else (GLIBC_DEFAULT_THRESHOLD, GLIBC_DEFAULT_THRESHOLD))
    applied = bool(libc.mallopt(GLIBC_M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(libc.mallopt(GLIBC_M_TRIM_THRESHOLD, trim_threshold))
    if not keep:
        libc.malloc_trim(0)
    return applied
