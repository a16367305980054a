"""The NTM (LSTM controller) over a whole sequence as one autograd node: forward and a hand-written backward.

At the batch sizes the benchmarks train (8-32), an NTM step is a few dozen small operations, and most of its
time is their fixed cost: autograd's nodes, one per operation and step, and (compiled) the call's guards and
wrapper (paper section 6). Here the whole time loop is one C call each way (``memory/ntm_sequence_kernel.c``,
through ``native.ntm_sequence_forward`` and ``native.ntm_sequence_backward``): per step the LSTM layers, the
head parameters and their activations, and the memory access of ``ntm_kernel.c``; backward, the same in
reverse with the derivatives written out. Torch does what spans all steps: the input's product with the first
layer's weights before the loop, and after it the weights' gradients, one matrix product per weight over all
steps. Only CPU float32/float64 with the C kernels, without autocast (:func:`takes`); elsewhere the NTM steps
as before.

Per step t, with z_t = [x_t, r_{t-1}] (NTM eq. 2-9, ``models/ntm.py``):

    gates = W_ih z_t + b_ih + W_hh h_{t-1} + b_hh;   i, f, o = sigma(gates_i, f, o),  g = tanh(gates_g)
    c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)                                   (each LSTM layer in turn)
    p_t = clip(W_p h_t + b_p)  ->  k, softplus(beta), sigma(g), softmax(s), 1 + softplus(gamma), sigma(e), tanh(a)
    w_t, r_t, M_t = address_read_write(M_{t-1}, w_{t-1}, k, beta, g, s, gamma, e, a)

The loop's outputs are h_t of the top layer ``[B, T, C]`` and r_t ``[B, T, Hr, W]``; the read-out stays
outside (one matrix product over all steps).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..memory import native


class Layout(NamedTuple):
    """What the loop needs of the NTM besides its tensors' shapes (heads, width and units come from those)."""
    layers: int  # LSTM layers L
    shift: int  # S
    clip: float  # head parameters clipped to [-clip, clip]


def takes(ntm, x: torch.Tensor) -> bool:
    """Whether the loop runs ``ntm`` on ``x``: a batch of at least one, an LSTM controller, the C kernels for x's
    dtype on the CPU, the
    NTM's parameters in that dtype, and no autocast (which would change the dtype of the products inside)."""
    from .controller import LSTMController

    return (x.shape[0] > 0 and isinstance(ntm.controller, LSTMController) and native.usable(x, ntm.head_params.weight)
            and not torch.is_autocast_enabled(x.device.type))


def features(ntm, x: torch.Tensor, state) -> torch.Tensor:
    """``[h_t, r_t]`` for every step of ``x [B, T, I]`` from ``state`` (an ``NTMState``): ``[B, T, C + Hr W]``,
    the input of ``ntm.readout``; differentiable with respect to ``x``, the state and the NTM's parameters."""
    layout = Layout(len(ntm.controller.cells), ntm.shift_range, ntm.clip)
    weights = [w for cell in ntm.controller.cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    hs, reads = NTMSequence.apply(layout, x, state.memory, state.weights, state.read_vectors, *state.controller,
                                  *weights, ntm.head_params.weight, ntm.head_params.bias)
    return torch.cat([hs, reads.flatten(2)], dim=-1)


def _recurrent(cells: list[torch.Tensor], input_width: int) -> list[torch.Tensor]:
    """Each layer's recurrent weights side by side, ``[4C, K_l]``: ``[W_ih | W_hh]`` without the input x's columns
    (first layer: ``K_0 = Hr W + C``; then ``K_l = 2C``)."""
    w_ih, w_hh = cells[0::4], cells[1::4]
    return [torch.cat([w_ih[0][:, input_width:], w_hh[0]], dim=1)] + \
        [torch.cat([w_ih[l], w_hh[l]], dim=1) for l in range(1, len(w_ih))]


class NTMSequence(torch.autograd.Function):
    """``(layout, x, memory, weights, reads, h_1, c_1, ..., h_L, c_L, W_ih_1, W_hh_1, b_ih_1, b_hh_1, ..., W_p, b_p)
    -> (h [B, T, C], r [B, T, Hr, W])``: the loop of the module docstring, in ``ntm_sequence_kernel.c``."""

    @staticmethod
    def forward(ctx, layout: Layout, x, memory, weights, reads, *rest):
        L = layout.layers
        state, cells, (head_w, head_b) = rest[: 2 * L], rest[2 * L: 6 * L], rest[6 * L:]
        gates_x, rec_t, bias = loop_inputs(x, cells)
        clip = x.new_tensor([layout.clip])
        loop = native.ntm_sequence_forward(gates_x, rec_t, bias, head_w.t(), head_b, clip,
                                           torch.stack(state[0::2]), torch.stack(state[1::2]), memory, weights, reads,
                                           layout.shift)
        ctx.layout, ctx.input_width = layout, x.shape[2]
        # Through save_for_backward, so that what the backward keeps is seen (saved-tensor hooks, memory counts).
        ctx.save_for_backward(x, clip, head_w, *cells, *loop)
        return loop.h[L - 1, 1:].transpose(0, 1).contiguous(), loop.reads[1:].transpose(0, 1).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hs, grad_reads):
        layout, I = ctx.layout, ctx.input_width
        x, clip, head_w, *rest = ctx.saved_tensors
        cells, loop = rest[: 4 * layout.layers], native.SequenceForward(*rest[4 * layout.layers:])
        rec = torch.cat([w.reshape(-1) for w in _recurrent(cells, I)])
        time_major = lambda g: None if g is None else g.transpose(0, 1)  # noqa: E731
        grad_gates, grad_params, grad_h0, grad_c0, grad_memory, grad_weights, grad_reads0 = native.ntm_sequence_backward(
            loop, rec, head_w, clip, time_major(grad_hs), time_major(grad_reads), layout.shift)
        grad_x, state, weights = loop_gradients(x, loop.h, loop.reads, cells, grad_gates, grad_params, grad_h0, grad_c0,
                                                ctx.needs_input_grad[1])
        return (None, grad_x, grad_memory, grad_weights, grad_reads0, *state, *weights)


def loop_inputs(x: torch.Tensor, cells) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a sequence loop (this module's and ``dnc_sequence.py``'s) takes of its LSTM controller, from ``x [B, T,
    I]`` and the cells' ``(W_ih, W_hh, b_ih, b_hh)`` per layer: ``(gates_x [T, B, 4C], rec_t, bias [L, 4C])``. x
    enters only the first layer: its product for every step at once, time-major, with that layer's biases;
    ``rec_t`` is each layer's recurrent weights transposed, one after the other; ``bias`` the other layers'."""
    B, T, I = x.shape
    w_ih, b_ih, b_hh = cells[0::4], cells[2::4], cells[3::4]
    gates_x = torch.addmm(b_ih[0] + b_hh[0], x.transpose(0, 1).reshape(T * B, I), w_ih[0][:, :I].t())
    rec_t = torch.cat([w.t().reshape(-1) for w in _recurrent(cells, I)])
    bias = torch.stack([torch.zeros_like(b_ih[0])] + [b_ih[l] + b_hh[l] for l in range(1, len(b_ih))])
    return gates_x.view(T, B, -1), rec_t, bias


def loop_gradients(x, h, reads, cells, grad_gates, grad_params, grad_h0, grad_c0, needs_x: bool):
    """What spans all steps of a sequence loop's backward (this module's and ``dnc_sequence.py``'s), from the C
    backward's gradients of the gates ``[L, T, B, 4C]`` and of the head (or interface) parameters ``[T, B, P]``:
    ``(grad_x [B, T, I] or None, [grad h_1, grad c_1, ...], [grad W_ih_1, W_hh_1, b_ih_1, b_hh_1, ..., W_p, b_p])``,
    the weights' gradients one product over all steps each; ``h [L, T + 1, B, C]`` and ``reads [T + 1, B, Hr, W]``
    are the forward's."""
    L, (B, T, I) = len(cells) // 4, x.shape
    flat = lambda tensor: tensor.reshape(T * B, -1)  # noqa: E731 - [T, B, ...] -> [T B, n]
    weights = []
    for l in range(L):
        dg = flat(grad_gates[l])
        inputs = torch.cat([x.transpose(0, 1), reads[:-1].flatten(2)], dim=2) if l == 0 else h[l - 1, 1:]
        bias = dg.sum(0)
        weights += [dg.t() @ flat(inputs), dg.t() @ flat(h[l, :-1]), bias, bias]
    grad_x = (grad_gates[0] @ cells[0][:, :I]).transpose(0, 1) if needs_x else None
    dp = flat(grad_params)
    state = [g for l in range(L) for g in (grad_h0[l], grad_c0[l])]
    return grad_x, state, [*weights, dp.t() @ flat(h[L - 1, 1:]), dp.sum(0)]
