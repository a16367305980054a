"""The DNC (LSTM controller, one write head) over a whole sequence as one autograd node: forward and a hand-written
backward.

As ``ntm_sequence.py`` for the NTM: at the batch sizes the benchmarks train, a DNC step in torch is some fifty small
operations (fewer with ``memory/dnc_access.py``'s fused access), and much of its time is their fixed cost. Here the
time loop is one C call each way (``memory/dnc_kernel.c``, through ``native.dnc_sequence_forward`` and
``native.dnc_sequence_backward``): per step the LSTM layers and the interface parameters (``ntm_sequence_kernel.c``'s
controller step), the interface's activations, and the access of ``dnc_kernel.c``; backward, the same in reverse.
Torch does what spans all steps: the input's product with the first layer's weights before the loop, and after it the
weights' gradients, one matrix product per weight over all steps. Only in training (a gradient to compute, not
``record``: ``DNC.unroll``), with an LSTM controller, on the CPU in float32/float64 with the C kernels, without
autocast, and the DNC without link sharpness, sparse access or a second write head (:func:`takes`); elsewhere the
DNC steps as before.

Per step t, with z_t = [x_t, r_{t-1}] (``models/dnc.py``):

    gates = W_ih z_t + b_ih + W_hh h_{t-1} + b_hh;  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)   (each layer in turn)
    xi_t = clip(W_xi h_t + b_xi)  ->  keys, vectors (linear), gates, erase, masks (sigma), strengths (oneplus), modes
    M_t, u_t, L_t, p_t, w^r_t, w^w_t, r_t = memory.access(state_{t-1}, xi_t)

The loop's outputs are h_t of the top layer ``[B, T, C]`` and r_t ``[B, T, R, W]``; the read-out stays outside.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..memory import native
from .ntm_sequence import _recurrent, loop_gradients, loop_inputs


class Layout(NamedTuple):
    """What the loop needs of the DNC besides its tensors' shapes."""
    layers: int  # LSTM layers L
    clip: float  # interface clipped to [-clip, clip]
    mask_floor: float
    masking: bool
    deallocation: bool


def takes(dnc, x: torch.Tensor) -> bool:
    """Whether the loop runs ``dnc`` on ``x``: a batch of at least one, an LSTM controller, one write head, no link
    sharpness or sparse access, the C kernels for x's dtype on the CPU, the interface's weights in that dtype (the
    products before the loop reject the other parameters in another), and no autocast."""
    from .controller import LSTMController

    return (x.shape[0] > 0 and isinstance(dnc.controller, LSTMController) and dnc.write_heads == 1
            and not dnc.link_sharpness and dnc.sparse_k is None and native.usable(x, dnc.interface.weight)
            and not torch.is_autocast_enabled(x.device.type))


def features(dnc, x: torch.Tensor, state) -> torch.Tensor:
    """``[h_t, r_t]`` for every step of ``x [B, T, I]`` from ``state`` (a ``DNCState``): ``[B, T, C + R W]``, the
    input of ``dnc.readout``; differentiable with respect to ``x``, the state and the DNC's parameters."""
    layout = Layout(len(dnc.controller.cells), dnc.clip, dnc.mask_floor, dnc.masking, dnc.deallocation)
    weights = [w for cell in dnc.controller.cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    one = lambda t: t[:, 0]  # noqa: E731 - the one write head's
    memory_state = (state.memory, state.usage, one(state.link), one(state.precedence), state.read_weights,
                    one(state.write_weights), state.read_vectors)
    hs, reads = DNCSequence.apply(layout, x, *memory_state, *state.controller, *weights, dnc.interface.weight,
                                  dnc.interface.bias)
    return torch.cat([hs, reads.flatten(2)], dim=-1)


class DNCSequence(torch.autograd.Function):
    """``(layout, x, memory, usage, link, precedence, read_weights, write_weights, reads, h_1, c_1, ..., h_L, c_L,
    W_ih_1, W_hh_1, b_ih_1, b_hh_1, ..., W_xi, b_xi) -> (h [B, T, C], r [B, T, R, W])``: the loop of the module
    docstring, in ``dnc_kernel.c``."""

    @staticmethod
    def forward(ctx, layout: Layout, x, *rest):
        L = layout.layers
        memory_state, controller, cells, (iface_w, iface_b) = rest[:7], rest[7: 7 + 2 * L], rest[7 + 2 * L: 7 + 6 * L], \
            rest[7 + 6 * L:]
        gates_x, rec_t, bias = loop_inputs(x, cells)
        consts = x.new_tensor([layout.clip, layout.mask_floor])
        loop = native.dnc_sequence_forward(gates_x, rec_t, bias, iface_w.t(), iface_b, consts,
                                           torch.stack(controller[0::2]), torch.stack(controller[1::2]), memory_state,
                                           layout.masking, layout.deallocation)
        ctx.layout, ctx.input_width = layout, x.shape[2]
        ctx.save_for_backward(x, consts, iface_w, *cells, *loop)
        return loop.h[L - 1, 1:].transpose(0, 1).contiguous(), loop.reads[1:].transpose(0, 1).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hs, grad_reads):
        layout, I = ctx.layout, ctx.input_width
        x, consts, iface_w, *rest = ctx.saved_tensors
        L = layout.layers
        cells, loop = rest[: 4 * L], native.DNCSequenceForward(*rest[4 * L:])
        rec = torch.cat([w.reshape(-1) for w in _recurrent(cells, I)])
        time_major = lambda g: None if g is None else g.transpose(0, 1)  # noqa: E731
        grad_gates, grad_params, grad_h0, grad_c0, *grad_state = native.dnc_sequence_backward(
            loop, rec, iface_w, consts, time_major(grad_hs), time_major(grad_reads), layout.masking,
            layout.deallocation)
        grad_x, controller, weights = loop_gradients(x, loop.h, loop.reads, cells, grad_gates, grad_params, grad_h0,
                                                     grad_c0, ctx.needs_input_grad[1])
        return (None, grad_x, *grad_state, *controller, *weights)
