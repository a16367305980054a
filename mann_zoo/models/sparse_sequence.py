"""The sparse DNC (LSTM controller, one write head) over a whole sequence as one autograd node: forward and a
hand-written backward.

``memory/sparse_access.py`` makes each step's memory access one C call each way; what is left of a step then (the
LSTM cell, the interface's linear layer, the step's node and the autograd engine around them) costs about a
millisecond at batch 8, more than the access itself at N = 16,384 (paper section 6). Here, as ``dnc_sequence.py``
does for the dense DNC, the time loop is one C call each way (``sparse_access_kernel.c``'s
``sparse_sequence_forward`` and ``sparse_sequence_backward``): per step the LSTM layers and the interface parameters
(``ntm_sequence_kernel.c``'s controller step), then ``sparse_access_forward`` on the large state, which a
:class:`~mann_zoo.memory.sparse_access.Store` holds and the steps change in place; backward, the same in reverse
time, the store put back a step at a time, then cleaned for the next sequence (``Store.clean``). Torch does what
spans all steps: the input's product with the first layer's weights before the loop and the weights' gradients after
it (``ntm_sequence.py``'s ``loop_inputs`` and ``loop_gradients``).

Where it applies (:func:`takes`: ``sparse_access.takes`` and an LSTM controller, in training: ``DNC.unroll``); the
sparse DNC with another controller takes ``sparse_access.py``'s step, and elsewhere the torch step. A second backward
pass over the same sequence (``retain_graph``) runs the loop forward again first, from the initial state.

Per step t, with z_t = [x_t, r_{t-1}] (``models/dnc.py``, ``models/sparse_dnc.py``):

    gates = W_ih z_t + b_ih + W_hh h_{t-1} + b_hh;  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)   (each layer in turn)
    xi_t = W_xi h_t + b_xi   (clipped and activated by the access)
    store, w^w_t, w^r_t, p_t, r_t = sparse_access(store, w^w_{t-1}, w^r_{t-1}, p_{t-1}, xi_t)

The loop's outputs are h_t of the top layer ``[B, T, C]`` and r_t ``[B, T, R, W]``; the read-out stays outside.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..memory import native, pool, sparse_access
from .ntm_sequence import _recurrent, loop_gradients, loop_inputs


class Loop(NamedTuple):
    """What the forward computes, time-major, slot 0 of the small state's tensors the initial state; the fields from
    ``ww_index`` on in ``sparse_sequence_forward``'s order. All the backward needs, with the store."""
    h: torch.Tensor  # [L, T + 1, B, C]
    c: torch.Tensor  # [L, T + 1, B, C]
    act: torch.Tensor  # [L, T, B, 4C]: the gates' activations
    tanh_c: torch.Tensor  # [L, T, B, C]
    params: torch.Tensor  # [T, B, P]: the interface before its clip
    ww_index: torch.Tensor  # [T + 1, B, K] int64: the write weighting's slots
    ww_value: torch.Tensor  # [T + 1, B, K]
    rw_index: torch.Tensor  # [T + 1, B, R, K] int64: the read weightings'
    rw_value: torch.Tensor  # [T + 1, B, R, K]
    pr_index: torch.Tensor  # [T + 1, B, K] int64: the precedence's
    pr_value: torch.Tensor  # [T + 1, B, K]
    reads: torch.Tensor  # [T + 1, B, R, W]
    iact: torch.Tensor  # [T, B, P]: the interface clipped and activated
    tape_i: torch.Tensor  # [T, B, tape] int64: each step's tape (sparse_access_kernel.c)
    tape_r: torch.Tensor  # [T, B, tape]


def takes(dnc, x: torch.Tensor, state) -> bool:
    """Whether the loop runs ``dnc`` (a sparse ``DNC``) on ``x`` from ``state`` (a ``SparseDNCState``): where
    ``sparse_access.takes`` says the access kernel applies, with an LSTM controller whose weights are in x's dtype."""
    from .controller import LSTMController

    return (isinstance(dnc.controller, LSTMController) and sparse_access.takes(dnc, x, state)
            and native.usable(x, *(w for cell in dnc.controller.cells for w in (cell.weight_ih, cell.weight_hh))))


def features(dnc, x: torch.Tensor, state) -> torch.Tensor:
    """``[h_t, r_t]`` for every step of ``x [B, T, I]`` from ``state`` (a ``SparseDNCState``, whose large parts the
    loop's store takes over): ``[B, T, C + R W]``, the input of ``dnc.readout``; differentiable with respect to
    ``x``, the initial read vectors, weightings' values and controller state, and the DNC's parameters."""
    store = sparse_access.Store(state, dnc.read_heads, dnc.deallocation, dnc.clip)
    weights = [w for cell in dnc.controller.cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    ww, rw, pr = state.write_weights, state.read_weights, state.precedence  # the one write head's: [:, 0]
    hs, reads = SparseSequence.apply(len(dnc.controller.cells), store, x, ww.index[:, 0], rw.index, pr.index[:, 0],
                                     ww.value[:, 0], rw.value, pr.value[:, 0], state.read_vectors, *state.controller,
                                     *weights, dnc.interface.weight, dnc.interface.bias)
    return torch.cat([hs, reads.flatten(2)], dim=-1)


def _forward(store: sparse_access.Store, inputs: tuple[torch.Tensor, ...], loop: Loop) -> None:
    """The C forward over the loop from its slot 0: ``inputs`` are ``(gates_x, rec_t, bias, iface_t, iface_b)``."""
    (L, T, B, G), (_, _, R, K) = loop.act.shape, loop.rw_index.shape
    s = store
    status = native.kernels().sparse_sequence_forward[s.memory.dtype](
        *(t.data_ptr() for t in (*inputs, s.consts, *loop[:5], s.memory, s.units, s.written, s.usage, s.values,
                                 s.columns, s.rows, s.places, *loop[5:])),
        T, B, L, G // 4, s.slots, s.width, K, R, int(s.deallocation))
    sparse_access.raise_for(status, K, R, s.width)
    store.position = T


class SparseSequence(torch.autograd.Function):
    """``(layers, store, x, write, read and precedence indices and values, reads, h_1, c_1, ..., h_L, c_L, W_ih_1,
    W_hh_1, b_ih_1, b_hh_1, ..., W_xi, b_xi) -> (h [B, T, C], r [B, T, R, W])``: the loop of the module docstring."""

    @staticmethod
    def forward(ctx, layers: int, store: sparse_access.Store, x, ww_index, rw_index, pr_index, ww_value, rw_value,
                pr_value, reads, *rest):
        L = layers
        controller, cells, (iface_w, iface_b) = rest[: 2 * L], rest[2 * L: 6 * L], rest[6 * L:]
        gates_x, rec_t, bias = loop_inputs(x, cells)
        inputs = (gates_x, rec_t, bias, iface_w.t().contiguous(), iface_b.contiguous())
        (T, B, G), (R, K, W) = gates_x.shape, (rw_index.shape[1], store.k, store.width)
        tape_i, tape_r = store.sizes(R)
        new = lambda *shape, dtype=x.dtype: pool.empty(shape, dtype, x.device)  # noqa: E731 - kept for the next call
        index = torch.int64
        loop = Loop(new(L, T + 1, B, G // 4), new(L, T + 1, B, G // 4), new(L, T, B, G), new(L, T, B, G // 4),
                    new(T, B, store.interface_size), new(T + 1, B, K, dtype=index), new(T + 1, B, K),
                    new(T + 1, B, R, K, dtype=index), new(T + 1, B, R, K), new(T + 1, B, K, dtype=index),
                    new(T + 1, B, K), new(T + 1, B, R, W), new(T, B, store.interface_size),
                    new(T, B, tape_i, dtype=index), new(T, B, tape_r))
        loop.h[:, 0].copy_(torch.stack(controller[0::2]))
        loop.c[:, 0].copy_(torch.stack(controller[1::2]))
        for buffer, first in zip(loop[5:12], (ww_index, ww_value, rw_index, rw_value, pr_index, pr_value, reads)):
            buffer[0].copy_(first)
        _forward(store, inputs, loop)
        ctx.layers, ctx.store, ctx.input_width = L, store, x.shape[2]
        ctx.save_for_backward(x, iface_w, *inputs, *cells, *loop)
        # copies (not views of the saved buffers, which a transpose leaves contiguous at B = 1 or T = 1)
        own = lambda t: t.transpose(0, 1).clone(memory_format=torch.contiguous_format)  # noqa: E731
        return own(loop.h[L - 1, 1:]), own(loop.reads[1:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hs, grad_reads):
        L, store, I = ctx.layers, ctx.store, ctx.input_width
        x, iface_w, *rest = ctx.saved_tensors
        inputs, cells, loop = rest[:5], rest[5: 5 + 4 * L], Loop(*rest[5 + 4 * L:])
        if store.position == 0:  # a second backward pass (retain_graph): the loop forward again from the start
            store.reset()
            _forward(store, inputs, loop)
        store.new_gradients()
        (_, T, B, G), (R, K) = loop.act.shape, loop.rw_index.shape[2:]
        C, P, new = G // 4, store.interface_size, x.new_empty
        rec = torch.cat([w.reshape(-1) for w in _recurrent(cells, I)])
        incoming = [None if g is None else g.transpose(0, 1).resolve_neg().contiguous() for g in (grad_hs, grad_reads)]
        iface = iface_w.contiguous()  # held by a name until the call returns: C reads it
        grads = (pool.empty((L, T, B, G), x.dtype, x.device), pool.empty((T, B, P), x.dtype, x.device),
                 new(L, B, C), new(L, B, C), new(B, K), new(B, R, K), new(B, K), new(B, R, store.width))
        s = store
        status = native.kernels().sparse_sequence_backward[x.dtype](
            *(t.data_ptr() for t in (rec, iface, s.consts, loop.act, loop.tanh_c, loop.c, loop.params,
                                     s.memory, s.usage, s.values, *s.gradients, loop.iact, *loop[5:11], loop.tape_i,
                                     loop.tape_r)),
            *(None if g is None else g.data_ptr() for g in incoming), *(g.data_ptr() for g in grads),
            T, B, L, C, s.slots, s.width, K, R, int(s.deallocation))
        sparse_access.raise_for(status, K, R, s.width)
        store.position = 0
        if store.fresh:
            store.clean()
        grad_gates, grad_params, grad_h0, grad_c0, grad_ww, grad_rw, grad_pr, grad_reads0 = grads
        grad_x, controller, weights = loop_gradients(x, loop.h, loop.reads, cells, grad_gates, grad_params, grad_h0,
                                                     grad_c0, ctx.needs_input_grad[2])
        return (None, None, grad_x, None, None, None, grad_ww, grad_rw, grad_pr, grad_reads0, *controller, *weights)
