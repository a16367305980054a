"""DNC temporal memory linkage: precedence, link matrix and directional read weightings
(Graves et al. 2016, Methods)."""

from __future__ import annotations

import torch

from . import native
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
    return _link_formula(link, precedence, write_weights)


def _link_formula(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor) -> torch.Tensor:
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
    new_link = (1 - w_i - w_j) * link + w_i * precedence.unsqueeze(-2)
    return new_link * (1 - torch.eye(link.shape[-1], dtype=link.dtype, device=link.device))


def link_and_directional_read_weights(
    link: torch.Tensor,
    precedence: torch.Tensor,
    write_weights: torch.Tensor,
    read_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``link(link, precedence, write_weights)`` then ``directional_read_weights`` on the new link, fused.

    The same values as the two primitives, at a fraction of the cost: the DNC's step is dominated by
    O(N^2) passes over the link matrix, and autograd would keep about ten N x N temporaries per step alive
    for the backward pass. Here the forward allocates one N x N tensor (the new link, which the next step
    needs anyway) and the hand-written backward one (two with the torch kernels). On the CPU (float32,
    float64) both are C kernels (``link_kernel.c``, built at first use: ``native.py``) that pass over the
    link once per step each way; elsewhere, or without a C compiler, torch kernels (about eleven passes).
    It is a custom operator
    (``torch.ops.mann_zoo.link_and_directional_reads``), so ``torch.compile`` calls these kernels
    instead of tracing the formulas (measured: faster than what the compiler makes of them on the CPU),
    except for link tensors small enough to stay in the cache (``COMPILER_FUSES_BELOW``,
    ``COMPILER_FUSES_BELOW_NATIVE``).

    Args:
        link: ``[B, Hw, N, N]`` L_{t-1}.  precedence: ``[B, Hw, N]`` p_{t-1}.
        write_weights: ``[B, Hw, N]`` w^w_t.  read_weights: ``[B, Hr, N]`` w^r_{t-1}.
    Returns:
        ``(L_t, forward, backward)``; forward and backward ``[B, Hr, Hw, N]``.
    """
    batch, heads, slots = write_weights.shape
    check_shape("link", link, (batch, heads, slots, slots))
    check_shape("precedence", precedence, (batch, heads, slots))
    check_shape("read_weights", read_weights, (batch, None, slots))
    # (the device alone decides: under autocast the operator casts its inputs to float32 for the kernels)
    native_kernels = link.device.type == "cpu" and native.available()
    fuses_below = COMPILER_FUSES_BELOW_NATIVE if native_kernels else COMPILER_FUSES_BELOW
    if torch.compiler.is_compiling() and link.numel() <= fuses_below:
        new_link = _link_formula(link, precedence, write_weights)  # the plain formulas, for inductor to fuse
        return (new_link, *directional_read_weights(new_link, read_weights))
    return _link_and_reads(link, precedence, write_weights, read_weights)


COMPILER_FUSES_BELOW = 2**18
"""Where the C kernels are not available (``native.py``): link tensors of at most this many elements
(1 MiB in float32: batch 16 at N = 128) are left to the compiler, which fuses the plain formulas into
fewer passes that stay in the cache; larger ones go through the custom operator's torch kernels, whose
passes the compiler's code could not beat. Measured with ``mann-zoo speed`` (README): compiled DNC at
batch 8 (repeat copy) and batch 32 (copy)."""

COMPILER_FUSES_BELOW_NATIVE = 2**14
"""The same with the C kernels (``link_kernel.c``, one pass over the link forward and one backward): only
links of at most 16,384 elements are left to the compiler (batch 16 at N = 32). Chosen from probes (the
compiled DNC's training step timed both ways in one process, on a machine busy with two training runs;
not committed): the compiler's code 7 % faster at 4,096 elements (batch 16, N = 16), the kernels 1.2
times faster at 32,768 (batch 8, N = 64) and 2.2 times at 131,072 (batch 8, N = 128)."""


# The operators' namespace is the package's name: another revision of this package imported beside it
# (``mann-zoo speed --baseline``) registers its own operators instead of replacing these. They are declared
# with ``torch.library.Library`` rather than ``torch.library.custom_op``, whose Python layers cost ~40 us a
# call (measured; ``ntm_access.py``).
NAMESPACE = __name__.split(".")[0]
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")
_LIBRARY.define("link_and_directional_reads(Tensor link, Tensor precedence, Tensor write_weights, "
                "Tensor read_weights) -> (Tensor, Tensor, Tensor)")
_LIBRARY.define("link_and_directional_reads_backward(Tensor link, Tensor precedence, Tensor write_weights, "
                "Tensor read_weights, Tensor new_link, Tensor grad_new_link, Tensor? grad_forward, "
                "Tensor? grad_backward) -> (Tensor, Tensor, Tensor, Tensor)")


def _link_and_reads_kernel(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                           read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if native.usable(link, precedence, write_weights, read_weights):  # one pass over the link (link_kernel.c)
        return native.link_reads_forward(link, precedence, write_weights, read_weights)
    return _torch_link_and_reads(link, precedence, write_weights, read_weights)


def _torch_link_and_reads(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                          read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The operator's forward in torch kernels (any device; on the CPU where the C kernels are missing)."""
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
    # One N x N allocation: the new link, then updated in place. Contiguous whatever the input's strides
    # (``link * (1 - w_i)`` would take a transposed link's), as the fake kernel promises.
    new_link = torch.mul(link, 1 - w_i, out=link.new_empty(link.shape))  # (1 - w_i) L_ij
    new_link.addcmul_(link, w_j, value=-1)  # - w_j L_ij
    new_link.addcmul_(w_i, precedence.unsqueeze(-2))  # + w_i p_j
    new_link.diagonal(dim1=-2, dim2=-1).zero_()  # L_ii = 0
    forward, backward = directional_read_weights(new_link, read_weights)
    return new_link, forward.contiguous(), backward.contiguous()  # the strides the fake kernel promises


def _link_and_reads_grad_kernel(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                                read_weights: torch.Tensor, new_link: torch.Tensor, grad_new_link: torch.Tensor,
                                grad_forward: torch.Tensor | None, grad_backward: torch.Tensor | None,
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients with respect to (link, precedence, write_weights, read_weights)."""
    if native.usable(link, precedence, write_weights, read_weights, grad_new_link, grad_forward, grad_backward):
        return native.link_reads_backward(link, precedence, write_weights, read_weights, grad_new_link,
                                          grad_forward, grad_backward)
    return _torch_link_and_reads_grad(link, precedence, write_weights, read_weights, new_link, grad_new_link,
                                      grad_forward, grad_backward)


def _torch_link_and_reads_grad(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                               read_weights: torch.Tensor, new_link: torch.Tensor, grad_new_link: torch.Tensor,
                               grad_forward: torch.Tensor | None, grad_backward: torch.Tensor | None,
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The operator's backward in torch kernels (any device; on the CPU where the C kernels are missing)."""
    B, Hw, N, _ = link.shape
    w_r = read_weights.unsqueeze(1).expand(-1, Hw, -1, -1)  # [B, Hw, Hr, N]
    grad_read = torch.zeros_like(read_weights)
    left, right = [], []  # this step's reads add sum_k left_k^T right_k to the gradient reaching L_t
    if grad_forward is not None:  # forward = L w:  dL_ij += g_f(i) w(j),  dw += L^T g_f
        g_f = grad_forward.transpose(1, 2)  # [B, Hw, Hr, N]
        left.append(g_f), right.append(w_r)
        grad_read = grad_read + _vecmat(g_f, new_link).sum(1)
    if grad_backward is not None:  # backward = L^T w:  dL_ij += w(i) g_b(j),  dw += L g_b
        g_b = grad_backward.transpose(1, 2)
        left.append(w_r), right.append(g_b)
        grad_read = grad_read + _matvec(new_link, g_b).sum(1)
    # G: the total gradient reaching L_t (from the next step and from this step's reads), a tensor of our
    # own: one pass over N x N for all the outer products.
    if left:
        left, right = torch.cat(left, dim=2), torch.cat(right, dim=2)  # [B, Hw, k, N]
        grad = torch.baddbmm(grad_new_link.reshape(B * Hw, N, N), left.transpose(-1, -2).reshape(B * Hw, N, -1),
                             right.reshape(B * Hw, -1, N)).view(B, Hw, N, N)
    else:
        grad = grad_new_link.clone(memory_format=torch.contiguous_format)
    grad.diagonal(dim1=-2, dim2=-1).zero_()  # the output's diagonal is constant: its gradient drops out
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
    scratch = grad * link  # G_ij L_ij
    # dw_i = sum_j G_ij (p_j - L_ij),  dw_j = -sum_i G_ij L_ij
    grad_w = _matvec(grad, precedence.unsqueeze(2))[:, :, 0] - scratch.sum(-1) - scratch.sum(-2)
    grad_precedence = _vecmat(write_weights.unsqueeze(2), grad)[:, :, 0]  # dp_j = sum_i G_ij w_i
    # dL_ij = G_ij (1 - w_i - w_j), in place in G, the scratch tensor reused for w_i + w_j.
    grad.addcmul_(grad, torch.add(w_i, w_j, out=scratch), value=-1)
    return grad, grad_precedence.contiguous(), grad_w.contiguous(), grad_read.contiguous()  # as the fake promises


# Any device: the C kernels where they apply, the torch kernels elsewhere.
_LIBRARY.impl("link_and_directional_reads", _link_and_reads_kernel, "CompositeExplicitAutograd")
_LIBRARY.impl("link_and_directional_reads_backward", _link_and_reads_grad_kernel, "CompositeExplicitAutograd")
_link_and_reads = getattr(torch.ops, NAMESPACE).link_and_directional_reads.default
_link_and_reads_grad = getattr(torch.ops, NAMESPACE).link_and_directional_reads_backward.default


@torch.library.register_fake(f"{NAMESPACE}::link_and_directional_reads", lib=_LIBRARY)
def _(link, precedence, write_weights, read_weights):
    batch, heads, slots = write_weights.shape
    directional = link.new_empty(batch, read_weights.shape[1], heads, slots)
    return link.new_empty(link.shape), directional, torch.empty_like(directional)


@torch.library.register_fake(f"{NAMESPACE}::link_and_directional_reads_backward", lib=_LIBRARY)
def _(link, precedence, write_weights, read_weights, new_link, grad_new_link, grad_forward, grad_backward):
    return tuple(t.new_empty(t.shape) for t in (link, precedence, write_weights, read_weights))


def _save_for_backward(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output[0])
    ctx.set_materialize_grads(False)  # an output without gradient arrives as None, not as zeros


def _link_and_reads_backward(ctx, grad_new_link, grad_forward, grad_backward):
    link, precedence, write_weights, read_weights, new_link = ctx.saved_tensors
    if grad_new_link is None:  # the last step's link feeds nothing
        grad_new_link = torch.zeros_like(new_link)
    return _link_and_reads_grad(link, precedence, write_weights, read_weights, new_link, grad_new_link,
                                grad_forward, grad_backward)


torch.library.register_autograd(f"{NAMESPACE}::link_and_directional_reads", _link_and_reads_backward,
                                setup_context=_save_for_backward, lib=_LIBRARY)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("link_and_directional_reads: no second derivative (its backward is a hand-written "
                       "kernel); differentiate link and directional_read_weights instead")


torch.library.register_autograd(f"{NAMESPACE}::link_and_directional_reads_backward", _no_double_backward,
                                lib=_LIBRARY)
# Under autocast (bf16/fp16 matmuls), the link and its reads stay in float32: their inputs are cast up, as
# autocast does for the reductions it keeps in float32, so forward and backward see one dtype.
for _device in ("cpu", "cuda"):
    torch.library.register_autocast(f"{NAMESPACE}::link_and_directional_reads", _device, torch.float32,
                                    lib=_LIBRARY)


def _matvec(matrix: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``matrix @ v`` for each of ``vectors``: matrix ``[B, Hw, N, N]``, vectors ``[B, Hw or 1, Hr, N]`` ->
    ``[B, Hw, Hr, N]``."""
    return (matrix @ vectors.transpose(-1, -2)).transpose(-1, -2)


def _vecmat(vectors: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``matrix^T @ v`` for each of ``vectors``, computed as the row vectors times the matrix (``v^T M``):
    several times faster on the CPU than a matrix-vector product with the transposed matrix, which BLAS
    gets as a strided operand. Shapes as ``_matvec``."""
    return vectors @ matrix


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
    backward = _vecmat(w, link).transpose(1, 2)
    return forward, backward
