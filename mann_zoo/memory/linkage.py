"""DNC temporal memory linkage: precedence, link matrix and directional read weightings
(Graves et al. 2016, Methods)."""

from __future__ import annotations

import torch

from ._checks import check_shape


def precedence(precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """p_t = (1 - sum_i w^w_t(i)) p_{t-1} + w^w_t

    Args:
        precedence: ``[B, Hw, N]`` p_{t-1}.
        write_weights: ``[B, Hw, N]`` w^w_t.
    Returns:
        ``[B, Hw, N]``, each row sums to at most 1.
    """
    check_shape("precedence", precedence, tuple(write_weights.shape))
    return (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights


def link(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    """L_t[i, j] = (1 - w(i) - w(j)) L_{t-1}[i, j] + w(i) p_{t-1}(j),   L_t[i, i] = 0

    L[i, j] is the degree to which slot i was written just after slot j.

    Args:
        link: ``[B, Hw, N, N]`` L_{t-1}.
        precedence: ``[B, Hw, N]`` the previous precedence p_{t-1}.
        write_weights: ``[B, Hw, N]`` w^w_t.
    Returns:
        ``[B, Hw, N, N]`` with a zero diagonal; rows and columns sum to at most 1.
    """
    batch, heads, slots = write_weights.shape
    check_shape("link", link, (batch, heads, slots, slots))
    check_shape("precedence", precedence, (batch, heads, slots))
    if torch.compiler.is_compiling():  # the compiler fuses the plain formula into one kernel
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        new_link = (1 - w_i - w_j) * link + w_i * precedence.unsqueeze(-2)
        return new_link * (1 - torch.eye(slots, dtype=link.dtype, device=link.device))
    return _LinkUpdate.apply(link, precedence, write_weights)


class _LinkUpdate(torch.autograd.Function):
    """The link update with a hand-written backward. Eager autograd would keep about ten N x N
    temporaries per step alive for the backward pass; this keeps none (L_{t-1} is the previous step's
    output) and allocates one N x N tensor forward and two backward: the DNC's cost is dominated by
    these O(N^2) passes."""

    @staticmethod
    def forward(ctx, link, precedence, write_weights):
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        new_link = link * (1 - w_i)  # (1 - w_i) L_ij
        new_link.addcmul_(link, w_j, value=-1)  # - w_j L_ij
        new_link.addcmul_(w_i, precedence.unsqueeze(-2))  # + w_i p_j
        new_link.diagonal(dim1=-2, dim2=-1).zero_()  # L_ii = 0
        ctx.save_for_backward(link, precedence, write_weights)
        return new_link

    @staticmethod
    def backward(ctx, grad):
        link, precedence, write_weights = ctx.saved_tensors
        grad_diag = grad.diagonal(dim1=-2, dim2=-1)  # the output's diagonal is constant: its gradient drops out
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        grad_link = grad * (1 - w_i)  # dL_ij = G_ij (1 - w_i - w_j), i != j
        grad_link.addcmul_(grad, w_j, value=-1)
        grad_link.diagonal(dim1=-2, dim2=-1).zero_()
        grad_times_link = grad * link  # G_ij L_ij
        grad_times_link.diagonal(dim1=-2, dim2=-1).zero_()
        # dw_i = sum_j G_ij (p_j - L_ij), dw_j = -sum_i G_ij L_ij, i != j
        grad_p_rows = (grad @ precedence.unsqueeze(-1)).squeeze(-1) - grad_diag * precedence
        grad_w = grad_p_rows - grad_times_link.sum(-1) - grad_times_link.sum(-2)
        # dp_j = sum_i G_ij w_i, i != j
        grad_precedence = (write_weights.unsqueeze(-2) @ grad).squeeze(-2) - grad_diag * write_weights
        return grad_link, grad_precedence, grad_w


def directional_read_weights(link: torch.Tensor, read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f^r = L w^r (forward),  b^r = L^T w^r (backward), for every pair of read and write head.

    Args:
        link: ``[B, Hw, N, N]`` L_t.
        read_weights: ``[B, Hr, N]`` w^r_{t-1}.
    Returns:
        ``(forward, backward)``, each ``[B, Hr, Hw, N]``.
    """
    if link.dim() != 4 or link.shape[-1] != link.shape[-2]:
        raise ValueError(f"link must have shape [B, Hw, N, N], got {list(link.shape)}")
    batch, _, slots, _ = link.shape
    check_shape("read_weights", read_weights, (batch, None, slots))
    # forward[b,r,h,i] = sum_j L[b,h,i,j] w[b,r,j]: one batched matmul over (b, h).
    w = read_weights.transpose(1, 2).unsqueeze(1)  # [B,1,N,Hr]
    forward = (link @ w).permute(0, 3, 1, 2)  # [B,Hw,N,Hr] -> [B,Hr,Hw,N]
    backward = (link.transpose(-1, -2) @ w).permute(0, 3, 1, 2)
    return forward, backward
