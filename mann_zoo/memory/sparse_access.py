"""The sparse DNC's memory access of one step as one C call each way (``sparse_access_kernel.c``).

``models/sparse_dnc.py``'s step is some 1,100 small torch operations forward and as many backward, whatever N: at
the batch sizes trained here their fixed costs are most of its time. With one write head, no masks and no link
sharpness, on the CPU in float32/float64, this module runs the same access (usage, deallocation, the look-ups'
candidates, allocation, write, the link, precedence, reads: the kernel's docstring lists the equations) as one
autograd node per step: the controller and the interface's linear layer stay in torch (the clip and activations
are the kernel's). With an LSTM controller ``models/sparse_sequence.py`` runs the whole sequence in one C call each
way instead, on the same :class:`Store` (its controller in C too); this step's path serves the other controllers.

The large state (memory, usage, the link) lives in a :class:`Store` changed in place. Each step keeps a tape (the
slots it chose, its merges' plans and the old contents of what it overwrote); the backward, run in reverse time
(each node takes the previous step's token, as ``rows.py``'s versions do), puts the state back a step at a time and
keeps the gradients of the large state in dense buffers ``[B, N + 1, ...]``, added to and replaced at the slots each
step touched. The small state (the K-sparse write, read and precedence weightings and the read vectors) are ordinary
autograd tensors.

A second backward pass over the same steps (``retain_graph``) first runs them forward again from their records.
Limits: the kernel starts from the DNC's initial state (``DNC.initial_state``: zeros, every weighting padding;
``takes`` checks the weightings, and the store takes version 0 of memory, usage and link as zeros, which a state
made with ``RowMemory.from_tensor`` would not be); no gradient to the large state the sequence starts from (the DNC's initial state is zeros); the Store takes over the
buffers of the state it is made from (that state's handles are stale afterwards).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import native, pool
from .sparse import SparseWeights


class Store:
    """The large state of one sequence (see the module docstring): memory ``[B, N + 1, W]`` with its normalised rows
    ``[B, W, N + 1]`` and written flags ``[B, N + 1]``, usage ``[B, N + 1]``, the link's values, columns, rows and
    places ``[B, N + 1, K]``; the steps' records for the backward; the dense gradient buffers."""

    def __init__(self, state, read_heads: int, deallocation: bool, clip: float):
        memory, usage, link = state.memory, state.usage, state.link
        # never written (``RowMemory.zeros``, version 0): a second backward pass can start the steps again from zeros
        self.fresh = all(version.version == 0 for version in (memory, usage, link.values))
        for version in (memory, usage, link.values):
            version._check_current()
            if version.token.requires_grad:
                raise ValueError("sparse_access.Store: the state must not need a gradient (the DNC's initial state)")
            version.buffer.version += 1  # the state given is stale from here on: the store changes its buffers
        self.memory, self.units, self.written = memory.buffer.values, memory.buffer.units, memory.buffer.written
        self.usage_buffer = usage.buffer.values  # [B, N + 1, 1] (pool's), and as [B, N + 1]:
        self.usage = self.usage_buffer.view(usage.shape[0], -1)
        self.values, self.columns, self.rows, self.places = link.values.buffer.values, link.columns, link.rows, link.places
        self.batch, slots_1, self.width = self.memory.shape
        self.slots, self.k = slots_1 - 1, self.values.shape[-1]
        self.deallocation = deallocation
        self.consts = self.memory.new_tensor([clip])  # the interface's clip
        self.interface_size = native.dnc_interface_size(read_heads, self.width, False)
        self.records = []  # per step: the tensors its backward reads
        self.position = 0  # steps applied to the buffers (forward adds, backward takes away)
        self.task = None
        self.gradients = None
        self.tape_sizes = None  # (int64, float) elements per example, for every step (one read head count)
        # the buffers the steps change, each with its value everywhere in the initial state (the written flags: 0)
        self.initial = ((self.memory, 0), (self.units, 0), (self.usage_buffer, 0), (self.values, 0),
                        (self.columns, self.slots), (self.rows, self.slots), (self.places, 0))

    def sizes(self, read_heads: int) -> tuple[int, int]:
        """The tape's int64 and float elements per example (asked of the kernel once per store)."""
        if self.tape_sizes is None:
            sizes = torch.zeros(2, dtype=torch.int64)
            native.kernels().sparse_tape_sizes[self.memory.dtype](sizes.data_ptr(), self.k, read_heads, self.width)
            self.tape_sizes = int(sizes[0]), int(sizes[1])
        return self.tape_sizes

    def forward(self, raw, ww_value, rw_value, pr_value, ww_index, rw_index, pr_index):
        """One step from the interface vector ``raw [B, P]`` (before its clip and activations, ``models/dnc.py``'s
        layout): ``(read vectors [B, R, W], write, read, precedence values and indices)``; the record kept."""
        if self.position != len(self.records):
            raise RuntimeError("sparse_access.Store: a step after the backward began")
        inputs = [t.detach().contiguous() for t in (raw, ww_index, ww_value, rw_index, rw_value, pr_index, pr_value)]
        B, K, W, R = self.batch, self.k, self.width, rw_index.shape[1]
        like = self.memory
        tape_i_size, tape_r_size = self.sizes(R)
        out = dict(ww_index=torch.empty(B, K, dtype=torch.int64), ww_value=like.new_empty(B, K),
                   rw_index=torch.empty(B, R, K, dtype=torch.int64), rw_value=like.new_empty(B, R, K),
                   pr_index=torch.empty(B, K, dtype=torch.int64), pr_value=like.new_empty(B, K),
                   reads=like.new_empty(B, R, W), act=like.new_empty(B, self.interface_size),
                   tape_i=torch.empty(B, tape_i_size, dtype=torch.int64), tape_r=like.new_empty(B, tape_r_size))
        self._forward(inputs, out)
        # detached: the tensors returned become the node's outputs, and holding them here would make a cycle (node ->
        # store -> output -> node) that only the garbage collector frees, with the kept buffers (``memory.pool``)
        self.records.append((*inputs, *(out[name].detach() for name in ("ww_index", "ww_value", "rw_index", "rw_value")),
                             out["act"], out["tape_i"], out["tape_r"]))
        return out

    def _forward(self, inputs, out) -> None:
        B, K, W, R = self.batch, self.k, self.width, inputs[3].shape[1]
        status = native.kernels().sparse_access_forward[self.memory.dtype](
            *(t.data_ptr() for t in (self.memory, self.units, self.written, self.usage, self.values, self.columns,
                                     self.rows, self.places, inputs[0], self.consts, *inputs[1:])),
            *(out[name].data_ptr() for name in ("ww_index", "ww_value", "rw_index", "rw_value", "pr_index", "pr_value",
                                                "reads", "act", "tape_i", "tape_r")),
            B, self.slots, W, K, R, int(self.deallocation))
        raise_for(status, K, R, W)
        self.position += 1

    def backward(self, step: int, grad_reads, grad_ww, grad_rw, grad_pr):
        """The backward of ``step`` (after putting back any later step whose backward did not run): the gradients of
        its interface vector and of the previous weightings' values. A new backward pass over steps already gone back
        through (``retain_graph``) first runs the forward again from the records (the same values and tapes)."""
        task = torch._C._current_graph_task_id()
        if task != self.task:
            self.task = task
            self.new_gradients()
            if self.position != len(self.records):
                self._replay()
        if step >= self.position:
            raise RuntimeError("sparse_access.Store: a step's backward ran twice in one backward pass")
        while self.position > step + 1:  # later steps whose outputs reached no gradient: put back only
            self._backward(self.position - 1, None, None, None, None)
        return self._backward(step, grad_reads, grad_ww, grad_rw, grad_pr)

    def _replay(self) -> None:
        """Back to the state after the last step: from the initial state (zeros, no link entries) run every step
        forward again (the records' inputs; the same outputs and tapes), then clear the gradients. (Each step's
        backward puts back memory, usage and link values, not the normalised rows, written flags and link lists:
        ``clean`` does, after the first step's.)"""
        self.reset()
        for inputs in self.records:
            raw, ww_index, ww_value, rw_index, rw_value, pr_index, pr_value, *outs, act, tape_i, tape_r = inputs
            out = dict(zip(("ww_index", "ww_value", "rw_index", "rw_value"), outs), act=act, tape_i=tape_i, tape_r=tape_r,
                       pr_index=torch.empty_like(pr_index), pr_value=torch.empty_like(pr_value),
                       reads=self.memory.new_empty(self.batch, rw_index.shape[1], self.width))
            self._forward(inputs[:7], out)
        for gradient in self.gradients:  # (a pass that was cut short left some)
            gradient.zero_()

    def reset(self) -> None:
        """Every buffer back to the initial state (zeros, no link entries), to run the steps again; only from a fresh
        store (one made from ``DNC.initial_state``)."""
        if not self.fresh:
            raise RuntimeError("the sparse DNC's access kernel takes a second backward pass over the same steps only "
                               "from the initial state (DNC.initial_state)")
        for buffer, value in self.initial:
            pool.unmark(buffer)  # written to again
            buffer.fill_(value)
        self.written.zero_()
        self.position = 0

    def new_gradients(self) -> None:
        """Zeroed dense gradient buffers dM ``[B, N + 1, W]``, du ``[B, N + 1]``, dLv ``[B, N + 1, K]`` for a backward
        pass (kept buffers where free: ``memory.pool``; at N = 16,384 fresh ones would be mapped page by page)."""
        B, N1, W, K = self.batch, self.slots + 1, self.width, self.k
        self.gradients = tuple(pool.zeros(shape, self.memory) for shape in ((B, N1, W), (B, N1), (B, N1, K)))

    def _backward(self, step, grad_reads, grad_ww, grad_rw, grad_pr):
        raw, ww_index, ww_value, rw_index, rw_value, pr_index, pr_value, *outs, act, tape_i, tape_r = self.records[step]
        B, K, W, R = self.batch, self.k, self.width, rw_index.shape[1]
        grads = dict(raw=torch.empty_like(raw), ww=torch.empty_like(ww_value), rw=torch.empty_like(rw_value),
                     pr=torch.empty_like(pr_value))
        incoming = [None if g is None else g.contiguous() for g in (grad_reads, grad_ww, grad_rw, grad_pr)]
        status = native.kernels().sparse_access_backward[raw.dtype](
            *(t.data_ptr() for t in (self.memory, self.usage, self.values, *self.gradients, raw, self.consts, act,
                                     ww_index, ww_value, rw_index, rw_value, pr_index, pr_value, *outs, tape_i, tape_r)),
            *(None if g is None else g.data_ptr() for g in incoming),
            *(grads[name].data_ptr() for name in ("raw", "ww", "rw", "pr")),
            B, self.slots, W, K, R, int(self.deallocation))
        raise_for(status, K, R, W)
        self.position = step
        if step == 0 and self.fresh:
            self.clean()
        return grads["raw"], grads["ww"], grads["rw"], grads["pr"]

    def clean(self) -> None:
        """After the first step's backward, from a fresh store: memory, usage and link values are zeros again (the
        backward put them back); the normalised rows, the written flags and the link's lists are put back on the
        slots written (the only ones they changed on: every link entry's row and column is a slot written), and the
        buffers marked for the pool (``pool.filled``: the next sequence's initial state takes them unfilled)."""
        none = self.slots
        example, slot = torch.cat([self.written[:, :-1].nonzero(),
                                   torch.stack([torch.arange(self.batch), torch.full((self.batch,), none)], 1)]).unbind(1)
        self.units.transpose(1, 2)[example, slot] = 0
        self.columns[example, slot] = none
        self.rows[example, slot] = none
        self.places[example, slot] = 0
        self.written.zero_()
        for buffer, value in self.initial:
            pool.filled(buffer, value)


def raise_for(status: int, K: int, R: int, W: int) -> None:
    if status == 1:
        raise MemoryError("sparse_access_kernel.c: a buffer could not be allocated")
    if status:
        raise ValueError(f"sparse_access_kernel.c takes K <= 16, K < N, at most 15 read heads and W <= 256; got K={K}, "
                         f"R={R}, W={W}")


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, store: Store, token, raw, ww_value, rw_value, pr_value, ww_index, rw_index, pr_index):
        ctx.set_materialize_grads(False)
        ctx.store, ctx.step = store, store.position
        out = store.forward(raw, ww_value, rw_value, pr_value, ww_index, rw_index, pr_index)
        ctx.mark_non_differentiable(out["ww_index"], out["rw_index"], out["pr_index"])
        return (out["reads"], out["ww_value"], out["rw_value"], out["pr_value"], out["ww_index"], out["rw_index"],
                out["pr_index"], token.new_empty(0))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_reads, grad_ww, grad_rw, grad_pr, _gi1, _gi2, _gi3, _grad_token):
        grad_raw, grad_ww_prev, grad_rw_prev, grad_pr_prev = ctx.store.backward(ctx.step, grad_reads, grad_ww, grad_rw,
                                                                                grad_pr)
        return None, None, grad_raw, grad_ww_prev, grad_rw_prev, grad_pr_prev, None, None, None


class KernelState(NamedTuple):
    """The sparse DNC's state on the kernel path: the store, the order token, the small state."""
    store: Store
    token: torch.Tensor
    write_weights: SparseWeights  # [B, K]
    read_weights: SparseWeights  # [B, Hr, K]
    precedence: SparseWeights  # [B, K]
    read_vectors: torch.Tensor  # [B, Hr, W]
    controller: tuple


def takes(core, x: torch.Tensor, state) -> bool:
    """Whether the kernel path runs ``core`` (a sparse ``DNC``) from ``state``: one write head, no masks or link
    sharpness, K < N within the kernel's bounds, the C kernels for x's dtype on the CPU, a state whose large parts
    need no gradient and keep their written flags, with every weighting padding (the DNC's initial state), no
    autocast."""
    Hr, K, N, W = core.read_heads, core.sparse_k, core.slots, core.width
    return (core.sparse_k is not None and core.write_heads == 1 and not core.masking and not core.link_sharpness
            and K < N and K <= 16 and Hr <= 15 and W <= 256 and x.shape[0] > 0
            and native.usable(x, state.memory.values, core.interface.weight)
            and state.memory.written is not None and state.memory.buffer.units is not None
            and not any(v.token.requires_grad for v in (state.memory, state.usage, state.link.values))
            and all(bool((w.index == N).all()) for w in (state.write_weights, state.read_weights, state.precedence))
            and not torch.is_autocast_enabled(x.device.type))


def kernel_state(core, state) -> KernelState:
    """The kernel path's state from a ``SparseDNCState`` (whose buffers the store takes over)."""
    one = lambda weights: SparseWeights(weights.index[:, 0], weights.value[:, 0])  # noqa: E731 - the write head's
    store = Store(state, core.read_heads, core.deallocation, core.clip)
    return KernelState(store, state.read_vectors.new_empty(0), one(state.write_weights), state.read_weights,
                       one(state.precedence), state.read_vectors, state.controller)


def step(core, x: torch.Tensor, state: KernelState):
    """``sparse_dnc.sparse_step`` on the kernel path: ``(features [B, C + Hr W], new state, None)``."""
    out, controller = core.controller(torch.cat([x, state.read_vectors.flatten(1)], dim=-1), state.controller)
    reads, ww_value, rw_value, pr_value, ww_index, rw_index, pr_index, token = _Step.apply(
        state.store, state.token, core.interface(out), state.write_weights.value, state.read_weights.value, state.precedence.value,
        state.write_weights.index, state.read_weights.index, state.precedence.index)
    new_state = KernelState(state.store, token, SparseWeights(ww_index, ww_value), SparseWeights(rw_index, rw_value),
                            SparseWeights(pr_index, pr_value), reads, controller)
    return torch.cat([out, reads.flatten(1)], dim=-1), new_state, None
