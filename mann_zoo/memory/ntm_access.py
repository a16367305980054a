"""The NTM's memory access of one time step, fused: addressing (content, interpolation, shift, sharpening),
read and write (Graves et al. 2014, eq. 2-9)."""

from __future__ import annotations

import torch

from . import native
from ._checks import check_memory, check_shape
from .access import read, write
from .content import content_weights
from .interpolation import interpolate
from .sharpen import sharpen
from .shift import shift


def address_read_write(
    memory: torch.Tensor,
    previous_weights: torch.Tensor,
    keys: torch.Tensor,
    strengths: torch.Tensor,
    gates: torch.Tensor,
    shift_weights: torch.Tensor,
    gammas: torch.Tensor,
    erase: torch.Tensor,
    add: torch.Tensor,
    read_heads: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every head addressed on the previous memory, then the read heads read and the write heads write:

        w = sharpen(shift(interpolate(content_weights(M, k, beta), w_prev, g), s), gamma)   (NTM eq. 5-9)
        r = read(M, w[:, :Hr]),   M' = write(M, w[:, Hr:], e, a)                           (NTM eq. 2-4)

    The same values as those primitives composed, at a fraction of the cost: on the CPU (float32, float64)
    one C kernel each way (``ntm_kernel.c``, built at first use by ``native.py``) passes over the memory
    twice, where the primitives and their backward take a dozen kernels each way. Under ``torch.compile``
    the compiler calls it as the operator ``torch.ops.mann_zoo.ntm_access`` for memories above
    ``COMPILER_FUSES_BELOW`` elements, and fuses the traced primitives below. Elsewhere, or without a C
    compiler, the primitives themselves.

    Args:
        memory: ``[B, N, W]`` M_{t-1}.
        previous_weights: ``[B, H, N]`` w_{t-1} of every head, the ``read_heads`` read heads first.
        keys: ``[B, H, W]``.  strengths: ``[B, H]`` beta >= 0.  gates: ``[B, H]`` g in [0, 1].
        shift_weights: ``[B, H, S]``, S odd and at most N.  gammas: ``[B, H]`` gamma >= 1.
        erase, add: ``[B, H - read_heads, W]``, one per write head.
        read_heads: Hr, at least 1 and less than H.
    Returns:
        ``(weights [B, H, N], read_vectors [B, Hr, W], new_memory [B, N, W])``.
    """
    inputs = (memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add)
    fused_by_compiler = torch.compiler.is_compiling() and memory.numel() <= COMPILER_FUSES_BELOW
    if native.usable(*inputs) and not fused_by_compiler:
        return _ntm_access(*inputs, read_heads)[:3]  # the operator checks its arguments
    _check_arguments(*inputs, read_heads)
    return _composed(*inputs, read_heads)


COMPILER_FUSES_BELOW = 2**16
"""Under ``torch.compile``, memories of at most this many elements (B N W) are left to the compiler, which
fuses the traced primitives into the step's own code; larger ones go through the operator (the C kernels).
From ``mann-zoo speed`` (``paper/results/speed/tasks_ntm.csv``, ``reference_ntm_kernels.csv``), the
compiled NTM with the kernels against the compiler's code: 0.87 times as fast at 20,480 elements (repeat
copy, batch 8), 0.97-1.13 at 81,920 (copy, n-grams and the reference step, batch 32). Against the compiler's
fused code for the same formulas (``paper/results/speed/ntm_fusion_threshold.csv``, the reference NTM): 0.88
times as fast at 20,480 elements, even at 81,920 and 163,840, 1.15 times faster at 327,680. Eager steps
always take the kernels (1.7-1.9 times faster there)."""


def _check_arguments(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add,
                     read_heads) -> None:
    """One-line ``ValueError`` naming the first argument whose shape does not fit (the kernels read by these
    shapes: a wrong one would read or write past a tensor's end)."""
    batch, slots, width = check_memory(memory)
    check_shape("previous_weights", previous_weights, (batch, None, slots))
    heads = previous_weights.shape[1]
    if not 0 < read_heads < heads:
        raise ValueError(f"read_heads must be in [1, {heads - 1}] (H = {heads} heads in previous_weights), "
                         f"got {read_heads}")
    check_shape("keys", keys, (batch, heads, width))
    for name, tensor in (("strengths", strengths), ("gates", gates), ("gammas", gammas)):
        check_shape(name, tensor, (batch, heads))
    check_shape("shift_weights", shift_weights, (batch, heads, None))
    size = shift_weights.shape[-1]
    if size % 2 == 0 or size > slots:
        raise ValueError(f"shift_weights must have an odd size S <= N={slots} along the last dim, got S={size}")
    check_shape("erase", erase, (batch, heads - read_heads, width))
    check_shape("add", add, (batch, heads - read_heads, width))


def _composed(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, read_heads):
    """The primitives, composed: the reference, and the path without the C kernels."""
    content = content_weights(memory, keys, strengths)
    weights = sharpen(shift(interpolate(content, previous_weights, gates), shift_weights), gammas)
    return weights, read(memory, weights[:, :read_heads]), write(memory, weights[:, read_heads:], erase, add)


# The operators' namespace is the package's name (as in ``linkage.py``). They are declared with
# ``torch.library.Library`` rather than ``torch.library.custom_op``, whose Python layers cost ~40 us a call
# (measured), more than the forward kernel itself at batch 32.
NAMESPACE = __name__.split(".")[0]
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")
_INPUTS = ("Tensor memory, Tensor previous_weights, Tensor keys, Tensor strengths, Tensor gates, "
           "Tensor shift_weights, Tensor gammas, Tensor erase, Tensor add")
_LIBRARY.define(f"ntm_access({_INPUTS}, int read_heads) -> (Tensor, Tensor, Tensor, Tensor)")
_LIBRARY.define(f"ntm_access_backward({_INPUTS}, Tensor weights, Tensor saved, Tensor? grad_weights, "
                "Tensor? grad_reads, Tensor? grad_new_memory, int read_heads) "
                "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")


def _forward(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, read_heads):
    """``(weights, reads, new_memory, saved)``: ``saved`` is what the backward reuses (``native.py``)."""
    # (checked again here: the operator can be called directly, and its kernels trust the shapes and dtypes)
    _check_arguments(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, read_heads)
    native.check_usable("ntm_access", memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase,
                        add)
    return native.ntm_access_forward(memory, previous_weights, keys, strengths, gates, shift_weights, gammas,
                                     erase, add, read_heads)


def _backward_kernel(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, weights,
                     saved, grad_weights, grad_reads, grad_new_memory, read_heads):
    """Gradients with respect to the nine tensor inputs of ``ntm_access``."""
    _check_arguments(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, read_heads)
    batch, slots, width = memory.shape
    heads = previous_weights.shape[1]
    check_shape("weights", weights, (batch, heads, slots))
    check_shape("saved", saved, (native.saved_size(batch, slots, heads),))
    for name, grad, shape in (("grad_weights", grad_weights, (batch, heads, slots)),
                              ("grad_reads", grad_reads, (batch, read_heads, width)),
                              ("grad_new_memory", grad_new_memory, (batch, slots, width))):
        if grad is not None:
            check_shape(name, grad, shape)
    inputs = (memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add)
    native.check_usable("ntm_access", *inputs, weights, saved, grad_weights, grad_reads, grad_new_memory)
    return native.ntm_access_backward(inputs, weights, saved, grad_weights, grad_reads, grad_new_memory, read_heads)


_LIBRARY.impl("ntm_access", _forward, "CPU")
_LIBRARY.impl("ntm_access_backward", _backward_kernel, "CPU")
_ntm_access = getattr(torch.ops, NAMESPACE).ntm_access.default
_ntm_access_grad = getattr(torch.ops, NAMESPACE).ntm_access_backward.default


@torch.library.register_fake(f"{NAMESPACE}::ntm_access", lib=_LIBRARY)
def _(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, read_heads):
    (batch, slots, width), heads = memory.shape, previous_weights.shape[1]
    return (memory.new_empty(batch, heads, slots), memory.new_empty(batch, read_heads, width),
            memory.new_empty(memory.shape), memory.new_empty(native.saved_size(batch, slots, heads)))


@torch.library.register_fake(f"{NAMESPACE}::ntm_access_backward", lib=_LIBRARY)
def _(memory, previous_weights, keys, strengths, gates, shift_weights, gammas, erase, add, *_rest):
    return tuple(t.new_empty(t.shape) for t in (memory, previous_weights, keys, strengths, gates, shift_weights,
                                                 gammas, erase, add))


def _save_for_backward(ctx, inputs, output):
    ctx.read_heads = inputs[-1]
    ctx.save_for_backward(*inputs[:-1], output[0], output[3])
    ctx.set_materialize_grads(False)  # an output without gradient arrives as None, not as zeros


def _backward(ctx, grad_weights, grad_reads, grad_new_memory, _grad_saved):
    # ``saved`` is not part of address_read_write's result: no gradient reaches it.
    return (*_ntm_access_grad(*ctx.saved_tensors, grad_weights, grad_reads, grad_new_memory, ctx.read_heads), None)


torch.library.register_autograd(f"{NAMESPACE}::ntm_access", _backward, setup_context=_save_for_backward,
                                lib=_LIBRARY)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("ntm_access: no second derivative (its backward is a hand-written kernel); differentiate "
                       "the primitives instead (address_read_write with native.usable False, or record=True)")


torch.library.register_autograd(f"{NAMESPACE}::ntm_access_backward", _no_double_backward, lib=_LIBRARY)
