"""The DNC's memory access of one time step, fused: usage, allocation, write weighting, erase and write, temporal
links and precedence, read weightings and reads (Graves et al. 2016, Methods; masking, deallocation and link
sharpness from Csordas & Schmidhuber 2019)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import native
from ._checks import check_memory, check_shape
from .access import read, write
from .allocation import allocation_weights, usage as updated_usage
from .content import content_weights
from .linkage import link_and_directional_read_weights, precedence as updated_precedence
from .sharpen import sharpen_links


class Access(NamedTuple):
    """What a DNC step's memory access returns: the new state and the read vectors. ``allocation`` is the
    allocation weighting ``[B, Hw, N]`` where the composed primitives ran (for traces), else None."""
    memory: torch.Tensor  # [B, N, W]
    usage: torch.Tensor  # [B, N]
    link: torch.Tensor  # [B, Hw, N, N]
    precedence: torch.Tensor  # [B, Hw, N]
    read_weights: torch.Tensor  # [B, Hr, N]
    write_weights: torch.Tensor  # [B, Hw, N]
    read_vectors: torch.Tensor  # [B, Hr, W]
    allocation: torch.Tensor | None = None


def access(
    memory: torch.Tensor,
    usage: torch.Tensor,
    link: torch.Tensor,
    precedence: torch.Tensor,
    read_weights: torch.Tensor,
    write_weights: torch.Tensor,
    read_keys: torch.Tensor,
    read_strengths: torch.Tensor,
    read_modes: torch.Tensor,
    write_keys: torch.Tensor,
    write_strengths: torch.Tensor,
    erase: torch.Tensor,
    write_vectors: torch.Tensor,
    free_gates: torch.Tensor,
    allocation_gates: torch.Tensor,
    write_gates: torch.Tensor,
    read_masks: torch.Tensor | None = None,
    write_masks: torch.Tensor | None = None,
    deallocation: bool = False,
    link_sharpness: torch.Tensor | None = None,
    renormalise_links: bool = False,
    composed: bool = False,
) -> Access:
    """One DNC step after the controller: from the previous state and the activated interface to the new state
    and the read vectors.

        u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t,  psi_t = prod_r (1 - f_r w^r_{t-1})   (usage)
        M' = M_{t-1} psi_t with ``deallocation``, else M_{t-1}
        w^w = g^w (g^a a(u_t) + (1 - g^a) C(M', k^w, beta^w));  M_t = M' (1 - w^w e^T) + w^w v^T
        L_t, p_t from L_{t-1}, p_{t-1}, w^w;  f = L_t w^r_{t-1},  b = L_t^T w^r_{t-1}  (sharpened if given)
        w^r = pi_b b + pi_c C(M_t, k^r, beta^r) + pi_f f;  r = sum_i w^r(i) M_t(i)

    The same values as those primitives composed (``composed=True``, or where the kernel does not apply): on
    the CPU with every tensor in one dtype (float32, float64), one write head and no link sharpness (and under
    ``torch.compile`` links above ``COMPILER_FUSES_BELOW`` elements), one C kernel each way
    (``dnc_kernel.c``, built at first use by ``native.py``), the operator ``torch.ops.mann_zoo.dnc_access``, where
    the primitives take some forty kernels and autograd nodes. Allocation's ties go to the lower slot in both.

    Args:
        memory: ``[B, N, W]`` M_{t-1}.  usage: ``[B, N]``.  link: ``[B, Hw, N, N]``.  precedence: ``[B, Hw, N]``.
        read_weights: ``[B, Hr, N]`` w^r_{t-1}.  write_weights: ``[B, Hw, N]`` w^w_{t-1}.
        read_keys: ``[B, Hr, W]``.  read_strengths: ``[B, Hr]``.  read_modes: ``[B, Hr, 1 + 2 Hw]`` (backward per
            write head, content, forward per write head).
        write_keys, erase, write_vectors: ``[B, Hw, W]``.  write_strengths, allocation_gates, write_gates: ``[B, Hw]``.
        free_gates: ``[B, Hr]``.  read_masks ``[B, Hr, W]``, write_masks ``[B, Hw, W]``: key-value masks or None.
        deallocation: erase the freed slots (M' above).
        link_sharpness: ``[B, 2 Hr]`` exponents for the forward then the backward weightings, or None
            (``memory.sharpen_links``, renormalised with ``renormalise_links``).
    """
    B, N, W = check_memory(memory)
    Hw = write_weights.shape[1]
    fused = (not composed and Hw == 1 and link_sharpness is None and link.shape[-1] == N
             and native.usable(memory, usage, link, precedence, read_weights, write_weights, read_keys, read_strengths,
                               read_modes, write_keys, write_strengths, erase, write_vectors, free_gates,
                               allocation_gates, write_gates, read_masks, write_masks)
             and not (torch.compiler.is_compiling() and B * N * N <= COMPILER_FUSES_BELOW))
    if not fused:
        return _composed(memory, usage, link, precedence, read_weights, write_weights, read_keys, read_strengths,
                         read_modes, write_keys, write_strengths, erase, write_vectors, free_gates, allocation_gates,
                         write_gates, read_masks, write_masks, deallocation, link_sharpness, renormalise_links)
    one = lambda t: None if t is None else t[:, 0]  # noqa: E731 - the one write head's
    out = _dnc_access(memory, usage, one(link), one(precedence), read_weights, one(write_weights), read_keys,
                      read_strengths, read_masks, read_modes, one(write_keys), one(write_strengths), one(write_masks),
                      one(erase), one(write_vectors), free_gates, one(allocation_gates), one(write_gates),
                      bool(deallocation))
    memory, usage, link, precedence, read_weights, write_weights, reads = out[:7]
    return Access(memory, usage, link.unsqueeze(1), precedence.unsqueeze(1), read_weights, write_weights.unsqueeze(1),
                  reads)


COMPILER_FUSES_BELOW = 2**14
"""Under ``torch.compile``, links of at most this many elements (B N^2) are left to the compiler with the rest of the
step, as ``linkage.COMPILER_FUSES_BELOW_NATIVE``; larger ones go through the operator."""


def _composed(memory, usage, link, precedence, read_weights, write_weights, read_keys, read_strengths, read_modes,
              write_keys, write_strengths, erase, write_vectors, free_gates, allocation_gates, write_gates,
              read_masks, write_masks, deallocation, link_sharpness, renormalise_links) -> Access:
    """The primitives, composed: the reference, and the path without the kernel."""
    B, N, _ = memory.shape
    Hr, Hw = read_weights.shape[1], write_weights.shape[1]
    usage = updated_usage(usage, write_weights, read_weights, free_gates)  # u_t
    if deallocation:  # erase freed slots: M <- M * psi_t
        memory = memory * (1 - free_gates.unsqueeze(-1) * read_weights).prod(dim=1).unsqueeze(-1)
    # Write weighting: w^w = g^w (g^a a + (1 - g^a) c^w).
    write_content = content_weights(memory, write_keys, write_strengths, write_masks)
    allocations, allocation_usage = [], usage
    for h in range(Hw):  # several write heads allocate one after another, each seeing the others' claims
        allocations.append(allocation_weights(allocation_usage))
        if h + 1 < Hw:
            allocation_usage = allocation_usage + (1 - allocation_usage) * write_gates[:, h: h + 1] * allocations[-1]
    allocation = torch.stack(allocations, dim=1)  # a_t  [B, Hw, N]
    ga, gw = allocation_gates.unsqueeze(-1), write_gates.unsqueeze(-1)
    new_write_weights = gw * (ga * allocation + (1 - ga) * write_content)
    memory = write(memory, new_write_weights, erase, write_vectors)
    # Temporal memory linkage (uses the previous precedence), then precedence; forward and backward [B, Hr, Hw, N].
    link, forward, backward = link_and_directional_read_weights(link, precedence, new_write_weights, read_weights)
    precedence = updated_precedence(precedence, new_write_weights)
    if link_sharpness is not None:
        sharpness = link_sharpness.view(B, 2 * Hr, 1).expand(-1, -1, Hw).reshape(B, 2 * Hr * Hw)
        directional = torch.cat([forward, backward], dim=1).reshape(B, 2 * Hr * Hw, N)
        directional = sharpen_links(directional, sharpness, renormalise_links).view(B, 2 * Hr, Hw, N)
        forward, backward = directional[:, :Hr], directional[:, Hr:]
    read_content = content_weights(memory, read_keys, read_strengths, read_masks)
    candidates = torch.cat([backward, read_content.unsqueeze(2), forward], dim=2)  # [B, Hr, 1 + 2 Hw, N]
    new_read_weights = (read_modes.unsqueeze(-1) * candidates).sum(2)  # sum of pi_mode * weighting
    return Access(memory, usage, link, precedence, new_read_weights, new_write_weights, read(memory, new_read_weights),
                  allocation)


def _check_arguments(memory, usage, link, precedence, read_weights, write_weights, read_keys, read_strengths,
                     read_masks, read_modes, write_key, write_strength, write_mask, erase, write_vector, free_gates,
                     allocation_gate, write_gate) -> None:
    """One-line ``ValueError`` naming the first argument whose shape does not fit (the kernel reads by these
    shapes: a wrong one would read or write past a tensor's end)."""
    B, N, W = check_memory(memory)
    check_shape("read_weights", read_weights, (B, None, N))
    R = read_weights.shape[1]
    if R < 1:
        raise ValueError(f"read_weights must have at least 1 read head, got {list(read_weights.shape)}")
    for name, tensor, shape in (
            ("usage", usage, (B, N)), ("link", link, (B, N, N)), ("precedence", precedence, (B, N)),
            ("write_weights", write_weights, (B, N)), ("read_keys", read_keys, (B, R, W)),
            ("read_strengths", read_strengths, (B, R)), ("read_masks", read_masks, (B, R, W)),
            ("read_modes", read_modes, (B, R, 3)), ("write_key", write_key, (B, W)),
            ("write_strength", write_strength, (B,)), ("write_mask", write_mask, (B, W)), ("erase", erase, (B, W)),
            ("write_vector", write_vector, (B, W)), ("free_gates", free_gates, (B, R)),
            ("allocation_gate", allocation_gate, (B,)), ("write_gate", write_gate, (B,))):
        if tensor is not None:
            check_shape(name, tensor, shape)
    native.check_usable("dnc_access", memory, usage, link, precedence, read_weights, write_weights, read_keys,
                        read_strengths, read_masks, read_modes, write_key, write_strength, write_mask, erase,
                        write_vector, free_gates, allocation_gate, write_gate)


# The operators' namespace is the package's name (as in ``linkage.py``), declared with ``torch.library.Library``
# (``custom_op``'s Python layers cost ~40 us a call).
NAMESPACE = __name__.split(".")[0]
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")
_INPUTS = ("Tensor memory, Tensor usage, Tensor link, Tensor precedence, Tensor read_weights, Tensor write_weights, "
           "Tensor read_keys, Tensor read_strengths, Tensor? read_masks, Tensor read_modes, Tensor write_key, "
           "Tensor write_strength, Tensor? write_mask, Tensor erase, Tensor write_vector, Tensor free_gates, "
           "Tensor allocation_gate, Tensor write_gate")
_LIBRARY.define(f"dnc_access({_INPUTS}, bool deallocation) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
                "Tensor, Tensor)")
# A mask's gradient is an empty tensor where the mask is None (an operator returns no None).
_LIBRARY.define(f"dnc_access_backward({_INPUTS}, Tensor new_memory, Tensor new_usage, Tensor new_read_weights, "
                "Tensor new_write_weights, Tensor saved, Tensor? grad_memory, Tensor? grad_usage, Tensor? grad_link, "
                "Tensor? grad_precedence, Tensor? grad_read_weights, Tensor? grad_write_weights, "
                "Tensor? grad_read_vectors, bool deallocation) -> (" + ", ".join(["Tensor"] * 18) + ")")


def _forward(*args):
    *inputs, deallocation = args
    _check_arguments(*inputs)  # (again here: the operator can be called directly, and its kernel trusts the shapes)
    return native.dnc_access_forward(*inputs, deallocation=deallocation)


def _backward_kernel(*args):
    *rest, deallocation = args
    inputs, outputs, grads = rest[:18], rest[18:23], rest[23:]
    _check_arguments(*inputs)
    B, N, W = inputs[0].shape
    R = inputs[4].shape[1]
    for name, tensor, shape in zip(("new_memory", "new_usage", "new_read_weights", "new_write_weights", "saved"),
                                   outputs, ((B, N, W), (B, N), (B, R, N), (B, N), (B, native.dnc_saved_size(N, R)))):
        check_shape(name, tensor, shape)
    for name, grad, shape in zip(("grad_memory", "grad_usage", "grad_link", "grad_precedence", "grad_read_weights",
                                  "grad_write_weights", "grad_read_vectors"), grads,
                                 ((B, N, W), (B, N), (B, N, N), (B, N), (B, R, N), (B, N), (B, R, W))):
        if grad is not None:
            check_shape(name, grad, shape)
    result = native.dnc_access_backward(inputs, outputs, grads, deallocation)
    return tuple(inputs[0].new_empty(0) if g is None else g for g in result)


_LIBRARY.impl("dnc_access", _forward, "CPU")
_LIBRARY.impl("dnc_access_backward", _backward_kernel, "CPU")
_dnc_access = getattr(torch.ops, NAMESPACE).dnc_access.default
_dnc_access_grad = getattr(torch.ops, NAMESPACE).dnc_access_backward.default


@torch.library.register_fake(f"{NAMESPACE}::dnc_access", lib=_LIBRARY)
def _(memory, usage, link, precedence, read_weights, *_rest):
    (B, N, W), R = memory.shape, read_weights.shape[1]
    return (memory.new_empty(B, N, W), memory.new_empty(B, N), memory.new_empty(B, N, N), memory.new_empty(B, N),
            memory.new_empty(B, R, N), memory.new_empty(B, N), memory.new_empty(B, R, W),
            memory.new_empty(B, native.dnc_saved_size(N, R)))


@torch.library.register_fake(f"{NAMESPACE}::dnc_access_backward", lib=_LIBRARY)
def _(*args):
    return tuple(args[0].new_empty(0) if t is None else t.new_empty(t.shape) for t in args[:18])


_SAVED_OUTPUTS = (0, 1, 4, 5, 7)  # new memory, usage, read and write weights, saved


def _save_for_backward(ctx, inputs, output):
    ctx.deallocation = inputs[-1]
    ctx.masks = inputs[8] is not None, inputs[12] is not None
    ctx.save_for_backward(*inputs[:-1], *(output[k] for k in _SAVED_OUTPUTS))
    ctx.set_materialize_grads(False)  # an output without gradient arrives as None, not as zeros


def _backward(ctx, *grads):
    # ``saved`` (the last output) is not part of ``access``'s result: no gradient reaches it.
    grads = _dnc_access_grad(*ctx.saved_tensors, *grads[:7], ctx.deallocation)
    grads = [None if k in (8, 12) and not ctx.masks[k == 12] else g for k, g in enumerate(grads)]
    return (*grads, None)


torch.library.register_autograd(f"{NAMESPACE}::dnc_access", _backward, setup_context=_save_for_backward,
                                lib=_LIBRARY)


def _no_double_backward(ctx, *grads):
    raise RuntimeError("dnc_access: no second derivative (its backward is a hand-written kernel); differentiate the "
                       "primitives instead (access(..., composed=True))")


torch.library.register_autograd(f"{NAMESPACE}::dnc_access_backward", _no_double_backward, lib=_LIBRARY)
