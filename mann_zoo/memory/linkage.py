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
    return link_and_directional_read_weights(link, precedence, write_weights)[0]


def link_and_directional_read_weights(
    link: torch.Tensor,
    precedence: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``link(link, precedence, write_weights)`` then ``directional_read_weights`` on the new link, fused.

    The same values as the two primitives, at a fraction of the cost: the DNC's step is dominated by
    O(N^2) passes over the link matrix, and eager autograd would keep about ten N x N temporaries per
    step alive for the backward pass. Here the forward allocates one N x N tensor (the new link, which
    the next step needs anyway) and the hand-written backward two. Under ``torch.compile`` the plain
    formulas are used instead, since the compiler fuses them.

    Args:
        link: ``[B, Hw, N, N]`` L_{t-1}.  precedence: ``[B, Hw, N]`` p_{t-1}.
        write_weights: ``[B, Hw, N]`` w^w_t.  read_weights: optional ``[B, Hr, N]`` w^r_{t-1}.
    Returns:
        ``(L_t, forward, backward)``; forward and backward ``[B, Hr, Hw, N]``, or None without read_weights.
    """
    batch, heads, slots = write_weights.shape
    check_shape("link", link, (batch, heads, slots, slots))
    check_shape("precedence", precedence, (batch, heads, slots))
    if read_weights is not None:
        check_shape("read_weights", read_weights, (batch, None, slots))
    if torch.compiler.is_compiling():
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        new_link = (1 - w_i - w_j) * link + w_i * precedence.unsqueeze(-2)
        new_link = new_link * (1 - torch.eye(slots, dtype=link.dtype, device=link.device))
        if read_weights is None:
            return new_link, None, None
        return (new_link, *directional_read_weights(new_link, read_weights))
    if read_weights is None:
        return _TemporalLinkage.apply(link, precedence, write_weights, None)[0], None, None
    return _TemporalLinkage.apply(link, precedence, write_weights, read_weights)


class _TemporalLinkage(torch.autograd.Function):
    """Link update (and optionally the directional reads of the new link) with a hand-written backward."""

    @staticmethod
    def forward(ctx, link, precedence, write_weights, read_weights):
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        new_link = link * (1 - w_i)  # (1 - w_i) L_ij
        new_link.addcmul_(link, w_j, value=-1)  # - w_j L_ij
        new_link.addcmul_(w_i, precedence.unsqueeze(-2))  # + w_i p_j
        new_link.diagonal(dim1=-2, dim2=-1).zero_()  # L_ii = 0
        ctx.save_for_backward(link, precedence, write_weights, read_weights, new_link)
        if read_weights is None:
            return new_link, None, None
        forward, backward = directional_read_weights(new_link, read_weights)
        return new_link, forward, backward

    @staticmethod
    def backward(ctx, grad_new_link, grad_forward, grad_backward):
        link, precedence, write_weights, read_weights, new_link = ctx.saved_tensors
        B, Hw, N, _ = link.shape
        # G: the total gradient reaching L_t, from the next step and from this step's reads.
        grad, owned = grad_new_link, False  # owned: G is a tensor of our own, safe to modify in place
        grad_read = None
        if read_weights is not None:
            w_r = read_weights.unsqueeze(1).expand(-1, Hw, -1, -1)  # [B, Hw, Hr, N]
            grad_read = torch.zeros_like(read_weights)
            if grad_forward is not None:  # forward = L w:  dL_ij += g_f(i) w(j),  dw += L^T g_f
                g_f = grad_forward.transpose(1, 2)  # [B, Hw, Hr, N]
                grad, owned = _add_outer(grad, owned, g_f, w_r), True
                grad_read = grad_read + _matvec(new_link, g_f, transpose=True).sum(1)
            if grad_backward is not None:  # backward = L^T w:  dL_ij += w(i) g_b(j),  dw += L g_b
                g_b = grad_backward.transpose(1, 2)
                grad, owned = _add_outer(grad, owned, w_r, g_b), True
                grad_read = grad_read + _matvec(new_link, g_b).sum(1)
        if not owned:
            grad = torch.zeros_like(link) if grad is None else grad.clone(memory_format=torch.contiguous_format)
        grad.diagonal(dim1=-2, dim2=-1).zero_()  # the output's diagonal is constant: its gradient drops out
        w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
        scratch = grad * link  # G_ij L_ij
        # dw_i = sum_j G_ij (p_j - L_ij),  dw_j = -sum_i G_ij L_ij
        grad_w = _matvec(grad, precedence.unsqueeze(2))[:, :, 0] - scratch.sum(-1) - scratch.sum(-2)
        grad_precedence = _matvec(grad, write_weights.unsqueeze(2), transpose=True)[:, :, 0]  # dp_j = sum_i G_ij w_i
        # dL_ij = G_ij (1 - w_i - w_j), computed in place in G.
        torch.mul(grad, w_j, out=scratch)
        grad.mul_(1 - w_i).sub_(scratch)
        return grad, grad_precedence, grad_w, grad_read


def _add_outer(grad: torch.Tensor | None, in_place: bool, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """grad[b, h] + sum_r left[b, h, r]^T right[b, h, r] for left and right ``[B, Hw, Hr, N]``: a new
    tensor, or ``grad`` updated in place when ``in_place``; no other N x N temporary."""
    B, Hw, Hr, N = left.shape
    if Hr == 1:
        left_t = left.transpose(-1, -2)
        if grad is None:
            return left_t * right
        return grad.addcmul_(left_t, right) if in_place else torch.addcmul(grad, left_t, right)
    product = left.transpose(-1, -2).reshape(B * Hw, N, Hr), right.reshape(B * Hw, Hr, N)
    if grad is None:
        return torch.bmm(*product).view(B, Hw, N, N)
    if in_place:
        grad.view(B * Hw, N, N).baddbmm_(*product)
        return grad
    return torch.baddbmm(grad.reshape(B * Hw, N, N), *product).view(B, Hw, N, N)


def _matvec(matrix: torch.Tensor, vectors: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``matrix @ v`` (or ``matrix^T @ v``) for each of ``vectors``: matrix ``[B, Hw, N, N]``, vectors
    ``[B, Hw or 1, Hr, N]`` -> ``[B, Hw, Hr, N]``."""
    matrix = matrix.transpose(-1, -2) if transpose else matrix
    return (matrix @ vectors.transpose(-1, -2)).transpose(-1, -2)


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
    # forward[b,r,h,i] = sum_j L[b,h,i,j] w[b,r,j]
    w = read_weights.unsqueeze(1)  # [B,1,Hr,N]
    forward = _matvec(link, w).transpose(1, 2)  # [B,Hw,Hr,N] -> [B,Hr,Hw,N]
    backward = _matvec(link, w, transpose=True).transpose(1, 2)
    return forward, backward
