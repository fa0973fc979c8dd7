"""Bilinear upsampling (``align_corners=True``) as two matrix products: the CPU fast path's way to bring a head's
logits to the label size.

``F.interpolate(x, size, mode='bilinear', align_corners=True)`` is ``A_h @ x @ A_w^T`` with ``A_h`` (out x in) the
interpolation matrix of the rows (two non-zero weights a row) and ``A_w`` that of the columns. As matrix products
the upsampling and its backward (``A_h^T @ g @ A_w``) run on the BLAS at a fraction of the cost of torch's
bilinear kernel and its scattered backward on a CPU, with the same numbers up to float rounding (torch computes
the source coordinates in float32, these in float64). Used by the fused OHEM loss (tools/losses.py) and by the
trainer for the train mIoU and the distillation (tools/train/trainer.py).
"""
import functools

import torch


@functools.lru_cache(maxsize=64)
def _matrix(n_out, n_in, device):
    if n_in == 1 or n_out == 1:
        matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
        matrix[:, 0] = 1.0
        return matrix.to(device=device, dtype=torch.float32)
    source = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1))
    left = source.floor().long().clamp(max=n_in - 2)
    right_weight = source - left
    rows = torch.arange(n_out)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix[rows, left] = 1.0 - right_weight
    matrix[rows, left + 1] += right_weight
    return matrix.to(device=device, dtype=torch.float32)


def bilinear_matrix(n_out, n_in, device="cpu"):
    """The (n_out x n_in) float32 matrix of 1-D linear interpolation with ``align_corners=True`` (cached)."""
    return _matrix(int(n_out), int(n_in), torch.device(device))


def upsample_bilinear(x, size):
    """``F.interpolate(x, size, mode='bilinear', align_corners=True)`` of an (N, C, h, w) tensor in float32, as
    two matrix products (differentiable by autograd); autocast is off inside, so bf16 input comes out float32."""
    rows = bilinear_matrix(size[0], x.size(2), x.device)
    cols = bilinear_matrix(size[1], x.size(3), x.device)
    with torch.autocast(x.device.type, enabled=False):
        return torch.matmul(rows, torch.matmul(x.float(), cols.t()))


def upsample_bilinear_transposed(grad, size):
    """The transpose of :func:`upsample_bilinear` to ``size`` (h, w): the gradient at the small input of the
    gradient ``grad`` (N, C, H, W) at the upsampled output, ``A_h^T @ grad @ A_w`` in float32."""
    rows = bilinear_matrix(grad.size(2), size[0], grad.device)
    cols = bilinear_matrix(grad.size(3), size[1], grad.device)
    with torch.autocast(grad.device.type, enabled=False):
        return torch.matmul(torch.matmul(rows.t(), grad.float()), cols)
