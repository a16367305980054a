"""DNC dynamic memory allocation: usage and allocation weighting (Graves et al. 2016, Methods)."""

from __future__ import annotations

import torch

from ._checks import EPS, check_shape


def usage(
    usage: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor,
    free_gates: torch.Tensor,
) -> torch.Tensor:
    """u_t = (u_{t-1} + w - u_{t-1} * w) * psi_t,   psi_t = prod_r (1 - f_r w_r)

    w = 1 - prod_h (1 - w_h) combines several write heads (one head: w = w^w_{t-1}).

    Args:
        usage: ``[B, N]`` previous usage u_{t-1} in [0, 1].
        write_weights: ``[B, Hw, N]`` previous write weightings w^w_{t-1}.
        read_weights: ``[B, Hr, N]`` previous read weightings w^r_{t-1}.
        free_gates: ``[B, Hr]`` free gates f_t in [0, 1].
    Returns:
        ``[B, N]`` in [0, 1].
    """
    if usage.dim() != 2:
        raise ValueError(f"usage must have shape [B, N], got {list(usage.shape)}")
    batch, slots = usage.shape
    check_shape("write_weights", write_weights, (batch, None, slots))
    check_shape("read_weights", read_weights, (batch, None, slots))
    check_shape("free_gates", free_gates, (batch, read_weights.shape[1]))
    written = 1 - _product_over_heads(1 - write_weights)  # [B,N]
    retention = _product_over_heads(1 - free_gates.unsqueeze(-1) * read_weights)  # psi_t  [B,N]
    return (usage + written - usage * written) * retention


def _product_over_heads(x: torch.Tensor) -> torch.Tensor:
    """prod over dim 1 of ``[B, H, N]``; a view for one head (prod's backward is costly per step)."""
    return x[:, 0] if x.shape[1] == 1 else x.prod(dim=1)


def allocation_weights(usage: torch.Tensor) -> torch.Tensor:
    """a_t[phi_j] = (1 - u_t[phi_j]) prod_{i<j} u_t[phi_i],  phi = slots sorted by ascending usage.

    As in the DNC, no gradient flows through the sort order (the permutation is a constant); it flows
    through the usage values. Ties go to the lower slot (a stable sort: torch's default sort orders ties
    arbitrarily past a few dozen slots, and the fused step, ``dnc_access.py``, must agree). Usage is first mapped to EPS + (1 - EPS) u so that the products stay
    away from exact zeros.

    Args:
        usage: ``[B, N]`` in [0, 1].
    Returns:
        ``[B, N]``, non-negative, summing to 1 - prod_i u(i) <= 1.
    """
    if usage.dim() != 2 or usage.shape[-1] < 1:
        raise ValueError(f"usage must have shape [B, N] with N >= 1, got {list(usage.shape)}")
    usage = EPS + (1 - EPS) * usage
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)  # phi  [B,N]; ties: the lower slot first
    sorted_allocation = allocation_in_order(sorted_usage)
    return torch.zeros_like(sorted_allocation).scatter(-1, order, sorted_allocation)


def allocation_in_order(sorted_usage: torch.Tensor) -> torch.Tensor:
    """a_j = (1 - u_j) prod_{i<j} u_i for usage already in allocation order (ascending, mapped to
    EPS + (1 - EPS) u): ``[B, M] -> [B, M]``. Shared by the dense and the sparse allocation."""
    ones = torch.ones_like(sorted_usage[:, :1])
    before = torch.cumprod(torch.cat([ones, sorted_usage[:, :-1]], dim=-1), dim=-1)  # exclusive product
    return (1 - sorted_usage) * before
