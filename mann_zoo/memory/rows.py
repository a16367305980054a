"""Memory written in place, a few rows at a time (the sparse DNC's memory, after Rae et al. 2016).

A dense memory update ``M_t = f(M_{t-1})`` makes a new ``[B, N, W]`` tensor every step and autograd keeps
every one of them: O(N W) time and memory per step, whatever the number of rows written. Sparse access
touches at most a few rows per step, so here the memory is one buffer changed in place and autograd only
sees the rows taken out (``gather_rows``) and put back (``replace_rows``): O(R W) per step for R rows.

How the gradient flows: the buffer's gradient dL/dM is one ``[B, N, W]`` tensor, kept beside the buffer
and filled during the backward pass in reverse time. ``gather_rows`` adds the gradient of the rows it
took into it; ``replace_rows`` takes the gradient of the rows it put back out of it (and zeroes those
rows: their earlier contents reach the loss only through whoever gathered them). Every call passes an
empty "token" tensor along, so that autograd runs these backward steps in the reverse of their forward
order: each ``replace_rows`` consumes the tokens of the previous version and of every gather made from it.

Handles are versions: ``replace_rows`` returns a new ``RowMemory`` and the one it was given is stale from
then on (using it raises). ``memory.values`` is the buffer itself, read-only by convention.

Limits: a sequence is run either with gradients recorded throughout or under ``no_grad`` throughout (a
replace without them between two with them breaks the backward order); the gradient buffer is reset per
backward pass by its graph-task id, which reentrant activation checkpointing would change mid-pass;
double backward (``create_graph``) is not supported; indices are not range-checked (an index past N reads
the next batch example's rows), as the sparse DNC only makes valid ones.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from . import pool
from ._checks import EPS, check_memory, check_shape


class _Gradient:
    """dL/dM during a backward pass, ``[B, N, W]``: what the autograd nodes keep of a memory. (Not the
    values: the nodes hang on the buffer's list of pending tokens, and a reference back to the buffer
    would make a cycle that only the garbage collector frees, with every activation of the sequence.)"""

    def __init__(self, like: torch.Tensor):
        self.shape, self.dtype, self.device = like.shape, like.dtype, like.device
        self.grad = None
        self.task = None  # the backward pass that grad belongs to

    def __call__(self) -> torch.Tensor:
        """dL/dM for the running backward pass: zeros at the first call of each pass."""
        task = torch._C._current_graph_task_id()
        if self.grad is None or self.task != task:
            self.grad = pool.full(self.shape, 0, self.dtype, self.device)  # a kept buffer where one is free
            self.task = task
        return self.grad


class _Buffer:
    """What every version of one memory shares: the values, their normalised rows and the gradient."""

    def __init__(self, values: torch.Tensor, norms: bool = True, zeros: bool = False):
        self.values = values  # [B, N, W], changed in place, never part of the autograd graph
        self.units = None
        if norms:  # (M(i) / |M(i)|)^T [B, W, N], kept in step with the values: keys @ units over all N
            # (the content look-ups' cosine order) is one pass over the memory in this layout
            self.units = (pool.zeros(values.transpose(1, 2).shape, values) if zeros
                          else _units(values).transpose(1, 2).contiguous())
        # the rows written since the memory was all zeros ([B, N] bool; None: unknown, all of them may be
        # non-zero): the rest are zero, which lets a content look-up pass them over (``sparse.content_candidates``)
        self.written = values.new_zeros(values.shape[:2], dtype=torch.bool) if norms and zeros else None
        self.version = 0
        self.pending = []  # the tokens of the gathers made from the current version
        self.gradient = _Gradient(values)


class RowMemory(NamedTuple):
    """One version of a memory ``[B, N, W]`` written in place (see the module docstring)."""

    buffer: _Buffer
    token: torch.Tensor  # empty; carries the autograd order from version to version
    version: int

    @staticmethod
    def zeros(batch: int, slots: int, width: int, like: torch.Tensor, norms: bool = True) -> RowMemory:
        """A memory of zeros with ``like``'s device and dtype; ``norms``: keep the normalised rows
        (``units``, for content look-ups); without them, single entries can be replaced."""
        if slots < 1 or width < 1:
            raise ValueError(f"memory must have at least 1 slot and width 1, got N={slots}, W={width}")
        values = pool.zeros((batch, slots, width), like)  # a kept buffer where one is free (``memory.pool``)
        return RowMemory(_Buffer(values, norms, zeros=True), like.new_empty(0), 0)

    @staticmethod
    def from_tensor(values: torch.Tensor) -> RowMemory:
        """A memory holding a copy of ``values [B, N, W]``; gradients reach ``values`` if it requires them."""
        check_memory(values)
        buffer = _Buffer(values.detach().clone())
        return RowMemory(buffer, _Load.apply(buffer, values), 0)

    def to_tensor(self) -> torch.Tensor:
        """A differentiable copy of the whole memory ``[B, N, W]`` (O(N W): for tests and plots)."""
        batch, slots, _ = self.shape
        index = torch.arange(slots, device=self.buffer.values.device).expand(batch, 1, slots)
        return gather_rows(self, index).squeeze(1)

    @property
    def values(self) -> torch.Tensor:
        """The buffer ``[B, N, W]`` as of this version (read-only; no gradient flows through it)."""
        self._check_current()
        return self.buffer.values

    @property
    def units(self) -> torch.Tensor:
        """(M(i) / sqrt(|M(i)|^2 + EPS))^T ``[B, W, N]`` as of this version (read-only; ``norms=True``)."""
        self._check_current()
        return self.buffer.units

    @property
    def written(self) -> torch.Tensor | None:
        """``[B, N]`` bool, the rows written since the memory was all zeros (the others are zero), as of this
        version; None where not kept (a memory made from a tensor, or without ``norms``). Read-only."""
        self._check_current()
        return self.buffer.written

    @property
    def shape(self) -> torch.Size:
        return self.buffer.values.shape

    def _check_current(self) -> None:
        if self.version != self.buffer.version:
            raise RuntimeError(f"this memory (version {self.version}) was replaced by version "
                               f"{self.buffer.version}: use the RowMemory that replace_rows returned")


def take_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[b, index[b, r]]``: ``[B, N, ...]`` at ``index [B, R]`` -> ``[B, R, ...]`` (one index_select:
    whole rows copied, several times faster than ``gather`` with an expanded index on the CPU)."""
    return table.flatten(0, 1).index_select(0, _flat(table, index)).view(*index.shape, *table.shape[2:])


def put_rows(table: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> None:
    """``table[b, index[b, r]] = rows[b, r]`` in place (``take_rows``' inverse; a row given twice must get
    the same contents twice: either copy is kept)."""
    table.view(-1, *table.shape[2:]).index_copy_(0, _flat(table, index), rows.flatten(0, 1))


def _flat(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row numbers of ``index [B, R]`` in ``table.flatten(0, 1)``."""
    return (index + _row_offsets(index.shape[0], table.shape[1], index.device)).flatten()


@functools.lru_cache(maxsize=64)
def _row_offsets(batch: int, rows: int, device: torch.device) -> torch.Tensor:
    """``[B, 1]``: 0, N, 2 N, ... (made once per shape: a sparse DNC step needs them some forty times)."""
    return torch.arange(0, batch * rows, rows, device=device).unsqueeze(1)


def _check_index(memory: RowMemory, index: torch.Tensor, heads: bool) -> None:
    batch = memory.shape[0]
    check_shape("index", index, (batch, None, None) if heads else (batch, None))
    if index.dtype != torch.int64:
        raise ValueError(f"index must be int64, got {index.dtype}")


class _Load(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buffer: _Buffer, values):
        ctx.set_materialize_grads(False)
        ctx.gradient = buffer.gradient
        return values.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token):  # runs after every later step's backward: dL/dM_0
        return None, ctx.gradient().clone()


def _units(rows: torch.Tensor) -> torch.Tensor:
    """M(i) / sqrt(|M(i)|^2 + EPS) for each row ``[..., W]`` (the cosine's normalisation)."""
    return rows * torch.rsqrt(rows.pow(2).sum(-1, keepdim=True) + EPS)


def _rows(table: torch.Tensor, entries: bool) -> torch.Tensor:
    """``table [B, N, W]``, or as ``[B, N W, 1]`` (one row per entry) when ``entries``."""
    return table.view(table.shape[0], -1, 1) if entries else table


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, token, buffer: _Buffer, index, entries: bool):  # index [B, R]
        ctx.set_materialize_grads(False)
        ctx.gradient, ctx.entries = buffer.gradient, entries
        ctx.save_for_backward(index)
        return take_rows(_rows(buffer.values, entries), index), token.new_empty(0)  # a copy  [B, R, W]

    @staticmethod
    def backward(ctx, grad_rows, _grad_token):
        (index,) = ctx.saved_tensors
        if grad_rows is not None:
            grad = _rows(ctx.gradient(), ctx.entries)
            grad.view(-1, grad.shape[-1]).index_add_(0, _flat(grad, index), grad_rows.flatten(0, 1))
        return None, None, None, None


class _Replace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, buffer: _Buffer, index, rows, entries: bool, *tokens):  # index [B, R]
        ctx.set_materialize_grads(False)
        ctx.gradient, ctx.entries = buffer.gradient, entries
        ctx.num_tokens = len(tokens)
        ctx.save_for_backward(index)
        with torch.no_grad():
            put_rows(_rows(buffer.values, entries), index, rows)
            if buffer.units is not None:
                buffer.units.scatter_(2, index.unsqueeze(1).expand(-1, rows.shape[-1], -1), _units(rows).transpose(1, 2))
            if buffer.written is not None:
                buffer.written.scatter_(1, index, True)
        return rows.new_empty(0)

    @staticmethod
    def backward(ctx, _grad_token):
        (index,) = ctx.saved_tensors
        grad = _rows(ctx.gradient(), ctx.entries)
        grad_rows = take_rows(grad, index) * _first_occurrences(index).unsqueeze(-1)  # dL/dM_t there, once
        grad.view(-1, grad.shape[-1]).index_fill_(0, _flat(grad, index), 0.0)  # the rows they replaced reach
        # L only through their gathers
        return (None, None, grad_rows, None) + (None,) * ctx.num_tokens


def _first_occurrences(index: torch.Tensor) -> torch.Tensor:
    """``[B, R]`` -> ``[B, R]`` bool: True where the slot does not occur earlier in its row, so that a row
    put back twice (with the same contents) receives its gradient once."""
    order = index.sort(dim=-1, stable=True)
    repeated = torch.zeros_like(index, dtype=torch.bool)
    repeated[:, 1:] = order.values[:, 1:] == order.values[:, :-1]
    return ~repeated.scatter(-1, order.indices, repeated)


def gather_rows(memory: RowMemory, index: torch.Tensor) -> torch.Tensor:
    """``memory[b, index[b, h, k]]`` for every batch row, head and entry, differentiable.

    Args:
        memory: a current ``RowMemory`` ``[B, N, W]``.
        index: ``[B, H, K]`` int64 slots (repeats allowed).
    Returns:
        ``[B, H, K, W]``, a copy: later writes to the memory do not change it.
    """
    memory._check_current()
    _check_index(memory, index, heads=True)
    batch, heads, k = index.shape
    return _gather(memory, index.reshape(batch, heads * k), entries=False).view(batch, heads, k, -1)


def gather_entries(memory: RowMemory, index: torch.Tensor) -> torch.Tensor:
    """Single entries: ``memory.flatten(1)[b, index[b, e]]``, differentiable. ``index [B, E]`` (entry
    ``i W + w`` is row i, column w; repeats allowed) -> ``[B, E]``."""
    memory._check_current()
    check_shape("index", index, (memory.shape[0], None))
    return _gather(memory, index, entries=True).squeeze(-1)


def _gather(memory: RowMemory, index: torch.Tensor, entries: bool) -> torch.Tensor:
    rows, token = _Gather.apply(memory.token, memory.buffer, index, entries)
    if token.requires_grad:
        memory.buffer.pending.append(token)
    return rows


def replace_rows(memory: RowMemory, index: torch.Tensor, rows: torch.Tensor) -> RowMemory:
    """M(index[b, r]) <- rows[b, r] in place; returns the new version (``memory`` is stale afterwards).

    Args:
        memory: a current ``RowMemory`` ``[B, N, W]``.
        index: ``[B, R]`` int64 slots; a slot given twice in a row must get the same contents twice.
        rows: ``[B, R, W]`` their new contents.
    Returns:
        The new ``RowMemory``. O(R W) time; autograd keeps only ``index``.
    """
    memory._check_current()
    _check_index(memory, index, heads=False)
    check_shape("rows", rows, (*index.shape, memory.shape[-1]))
    return _replace(memory, index, rows, entries=False)


def replace_entries(memory: RowMemory, index: torch.Tensor, values: torch.Tensor) -> RowMemory:
    """``memory.flatten(1)[b, index[b, e]] <- values[b, e]`` in place (``gather_entries``' numbering; an
    entry given twice must get the same value twice); returns the new version. Not for a memory that
    keeps row norms."""
    memory._check_current()
    check_shape("index", index, (memory.shape[0], None))
    check_shape("values", values, tuple(index.shape))
    if memory.buffer.units is not None:
        raise ValueError("replace_entries needs a RowMemory made with norms=False")
    return _replace(memory, index, values.unsqueeze(-1), entries=True)


def _replace(memory: RowMemory, index: torch.Tensor, rows: torch.Tensor, entries: bool) -> RowMemory:
    buffer = memory.buffer
    tokens = [memory.token, *buffer.pending]
    token = _Replace.apply(buffer, index, rows, entries, *tokens)
    buffer.pending = []
    buffer.version += 1
    return RowMemory(buffer, token, buffer.version)
