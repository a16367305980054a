"""Reading and writing (NTM eq. 2-4, the same in the DNC)."""

from __future__ import annotations

import torch

from ._checks import check_memory, check_shape


def read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r = sum_i w(i) M(i)   (NTM eq. 2)

    Args:
        memory: ``[B, N, W]``.
        weights: ``[B, H, N]``, one weighting per read head.
    Returns:
        ``[B, H, W]`` read vectors.
    """
    batch, slots, _ = check_memory(memory)
    check_shape("weights", weights, (batch, None, slots))
    return weights @ memory


def write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase then add, for several write heads at once.

    M'(i) = M(i) prod_h (1 - w_h(i) e_h) + sum_h w_h(i) a_h   (NTM eq. 3-4)

    Args:
        memory: ``[B, N, W]``.
        weights: ``[B, H, N]`` write weightings.
        erase: ``[B, H, W]`` erase vectors in [0, 1].
        add: ``[B, H, W]`` add vectors.
    Returns:
        ``[B, N, W]`` the new memory.
    """
    batch, slots, width = check_memory(memory)
    check_shape("weights", weights, (batch, None, slots))
    heads = weights.shape[1]
    check_shape("erase", erase, (batch, heads, width))
    check_shape("add", add, (batch, heads, width))
    if heads == 1:
        # M + w (a - M e^T) for one head: the same as M (1 - w e^T) + w a^T with one fewer [B,N,W] pass.
        return torch.addcmul(memory, weights.transpose(1, 2), add - memory * erase)
    keep = (1 - weights.unsqueeze(-1) * erase.unsqueeze(-2)).prod(dim=1)  # prod_h (1 - w_h e_h^T)  [B,N,W]
    return memory * keep + weights.transpose(1, 2) @ add  # + sum_h w_h a_h^T
