"""Sparse access (after Rae et al. 2016, "Scaling memory-augmented neural networks with sparse reads and
writes", and their sparse DNC): weightings with at most K non-zero slots, held as K (slot, value) pairs,
and a memory written in place (``rows.RowMemory``), so that a step costs O(K) per weighting and O(K W)
per memory access, not O(N) and O(N W). The only O(N) work left is the choice of the K slots (the
content look-up's scores over all slots, the K least used slots), made without gradient.

Every per-slot buffer has one row more than the N slots: row N is the empty slot. Padding entries of a
weighting point there with value 0, and it is never chosen, read with weight or written with weight.

With K = N nothing is dropped and the functions here give the dense DNC's values and gradients
(``content_weights``, ``usage``, ``allocation_weights``, ``precedence``, ``read``, ``write``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import native
from ._checks import EPS, check_shape
from .allocation import allocation_in_order
from .content import cosine_similarity
from .rows import RowMemory, gather_rows, replace_rows, take_rows


class SparseWeights(NamedTuple):
    """A weighting over N slots with at most K non-zero entries: ``value[..., k]`` at slot ``index[..., k]``.

    Slots are distinct, except for padding entries: value 0 at slot N, the empty slot. (``write`` and
    ``sparse_link.update`` rely on it: they put a slot's new contents back once per entry.)
    """

    index: torch.Tensor  # [..., K] int64
    value: torch.Tensor  # [..., K]

    @staticmethod
    def empty(shape: tuple[int, ...], k: int, slots: int, like: torch.Tensor) -> SparseWeights:
        """All-zero weightings ``shape + [k]``, every entry padding (slot ``slots``)."""
        return SparseWeights(torch.full((*shape, k), slots, dtype=torch.int64, device=like.device),
                             like.new_zeros(*shape, k))

    def dense(self, slots: int) -> torch.Tensor:
        """The weighting as ``[..., N]`` (O(N): for traces and tests)."""
        out = self.value.new_zeros(*self.value.shape[:-1], slots + 1)
        return out.scatter_add(-1, self.index, self.value)[..., :slots]


def merge(index: torch.Tensor, value: torch.Tensor, k: int, none: int) -> SparseWeights:
    """Sum the entries that share a slot and keep the ``k`` largest sums: the sparse form of adding
    weightings. Entries at slot ``none`` (the empty slot) are dropped.

    Args:
        index: ``[..., M]`` int64 slots (repeats allowed).
        value: ``[..., M]`` non-negative values.
        k: entries kept (``min(k, M)``); padding (value 0, slot ``none``) where fewer slots occur.
        none: the empty slot N.
    Returns:
        ``SparseWeights [..., min(k, M)]``; O(M log M). Which entries are kept does not depend on
        gradients (as the DNC's sort order); gradients flow through the values kept. Equal sums: the lower slot
        first. On the CPU the choice is a C kernel (``sparse_kernel.c``) and the sums one scatter-add.
    """
    k = min(k, index.shape[-1])
    if k >= 1 and native.usable(value) and index.device.type == "cpu":
        kept, position = native.merge_plan(index, value, k, none)
        sums = value.new_zeros(*value.shape[:-1], k + 1).scatter_add(-1, position, value)  # position k: dropped
        return SparseWeights(kept, sums[..., :k])
    order = index.sort(dim=-1, stable=True)
    slots = order.values
    values = value.gather(-1, order.indices)
    first = torch.ones_like(slots, dtype=torch.bool)
    first[..., 1:] = slots[..., 1:] != slots[..., :-1]
    group = first.cumsum(-1) - 1  # each entry's slot, numbered in ascending order
    sums = torch.zeros_like(values).scatter_add(-1, group, values)  # the g-th slot's total at position g
    group_slots = torch.full_like(slots, none).scatter(-1, group, slots)
    real = group_slots != none
    rank = torch.where(real, sums.detach(), torch.full_like(sums, -1.0))  # padding below every real entry
    keep = rank.sort(dim=-1, descending=True, stable=True).indices[..., :k]  # equal sums: the lower slot first
    kept_real = real.gather(-1, keep)
    return SparseWeights(torch.where(kept_real, group_slots.gather(-1, keep), none),
                         torch.where(kept_real, sums.gather(-1, keep), 0.0))


def lookup(weights: SparseWeights, slots: torch.Tensor) -> torch.Tensor:
    """The values of ``weights [..., H, K]`` at ``slots [..., Q]``: ``[..., H, Q]`` (0 where absent). O(H K Q)."""
    hits = weights.index.unsqueeze(-2) == slots.unsqueeze(-2).unsqueeze(-1)  # [..., H, Q, K]
    return (weights.value.unsqueeze(-2) * hits).sum(-1)


def content_scores(memory: RowMemory, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The cosine similarity of each key and slot (``cosine_similarity``), ``[B, H, N + 1]`` without
    gradient, under ``mask`` if given, -inf at the empty slot N. One pass over the memory for all keys.

    Args: memory ``RowMemory [B, N + 1, W]`` (row N: the empty slot), keys ``[B, H, W]``, mask ``[B, H, W]``.
    """
    batch, _, width = memory.shape
    check_shape("keys", keys, (batch, None, width))
    if mask is not None:
        check_shape("mask", mask, tuple(keys.shape))
    with torch.no_grad():
        if mask is None:  # (k / |k|) . (M(i) / |M(i)|) with the memory's normalised rows
            scores = (keys * torch.rsqrt(keys.pow(2).sum(-1, keepdim=True) + EPS)) @ memory.units
        else:
            scores = cosine_similarity(memory.values, keys, mask)
        scores[..., -1] = -torch.inf  # never chosen
        return scores


def content_candidates(memory: RowMemory, keys: torch.Tensor, m: int, mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """The ``m`` slots most similar to each key by cosine (``cosine_similarity``, under ``mask`` if given),
    best first, without gradient: ``[B, H, min(m, N)]`` int64. One pass over the memory: on the CPU without a
    mask, a C kernel that ranks as it scores (``sparse_kernel.c``: no ``[B, H, N]`` table of scores; ties
    broken by the lower slot) and, while few rows were written since the memory was zeros (``RowMemory.
    written``), scores only those and the ``m`` lowest others (all zero: the same result); elsewhere
    ``content_scores`` and a top-k.

    Args: memory ``RowMemory [B, N + 1, W]`` (row N: the empty slot, never chosen), keys ``[B, H, W]``,
    mask ``[B, H, W]``.
    """
    batch, rows, width = memory.shape
    check_shape("keys", keys, (batch, None, width))
    m = min(m, rows - 1)
    with torch.no_grad():
        keys = keys.detach()
        if mask is None and m >= 1 and keys.shape[1] <= native.MAX_KEYS and native.usable(memory.units, keys):
            return native.content_candidates(memory.units, keys, m, memory.written)[0]
        return content_scores(memory, keys, mask).topk(m, dim=-1).indices


def requery(memory: RowMemory, candidates: torch.Tensor, keys: torch.Tensor, written: torch.Tensor, k: int,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """The ``k`` slots most similar to each key after a write, best first, without gradient: ``[B, H, k]``.

    From ``candidates [B, H, M]``, ``content_candidates`` of the memory before the write with M >= k + R (or
    M = N), and the rows ``written [B, R]`` since (distinct, or slot N: padding): a slot in neither list is
    outranked by at least k unwritten candidates, whose cosines did not change, so the result is the
    look-up over all N slots (up to rounding between near-equal cosines); equal cosines: the lower slot first.
    O((M + R) W).
    """
    batch, heads, _ = candidates.shape
    none, width = memory.shape[1] - 1, memory.shape[2]
    with torch.no_grad():
        stale = (candidates.unsqueeze(-1) == written.view(batch, 1, 1, -1)).any(-1)  # rewritten since  [B,H,M]
        pool = torch.cat([candidates.masked_fill(stale, none), written.unsqueeze(1).expand(-1, heads, -1)], dim=-1)
        rows = take_rows(memory.values, pool.flatten(1)).view(batch * heads, -1, width)  # [B H, M + R, W]
        per_head = lambda t: t.detach().reshape(batch * heads, 1, width)  # noqa: E731
        cosine = cosine_similarity(rows, per_head(keys), None if mask is None else per_head(mask))
        cosine = cosine.view(batch, heads, -1).masked_fill(pool == none, -torch.inf)
        # the k largest, equal cosines (rows of zeros, say) by the lower slot, as sparse_access_kernel.c chooses
        by_slot = pool.sort(dim=-1, stable=True)
        best = cosine.gather(-1, by_slot.indices).sort(dim=-1, descending=True, stable=True).indices
        return by_slot.values.gather(-1, best[..., :min(k, pool.shape[-1])])


def content_weights(memory: RowMemory, keys: torch.Tensor, strengths: torch.Tensor, k: int,
                    mask: torch.Tensor | None = None, index: torch.Tensor | None = None) -> SparseWeights:
    """The DNC's content weighting over the ``k`` slots most similar to each key: softmax of strength x
    cosine over those slots (``memory.content_weights`` when k >= N).

    The slots are ``index`` if given (``content_candidates``, ``requery``), else chosen here
    (``content_candidates``); cosine and softmax are recomputed with gradient on the k rows gathered.

    Args:
        memory: ``RowMemory [B, N + 1, W]`` (row N: the empty slot).
        keys: ``[B, H, W]``.  strengths: ``[B, H]``.  mask: optional ``[B, H, W]`` in [0, 1].
        index: optional ``[B, H, k]`` int64, the slots (distinct, below N).
    Returns:
        ``SparseWeights [B, H, k]``, each summing to 1.
    """
    batch, rows, width = memory.shape
    slots = rows - 1
    check_shape("keys", keys, (batch, None, width))
    heads = keys.shape[1]
    check_shape("strengths", strengths, (batch, heads))
    if index is not None:
        check_shape("index", index, (batch, heads, None))
    elif k >= slots:  # all of them, in slot order (the dense look-up's order: the same rounding)
        index = torch.arange(slots, device=keys.device).expand(batch, heads, slots)
    else:
        index = content_candidates(memory, keys, k, mask)  # [B,H,K]
    rows = gather_rows(memory, index)  # [B,H,K,W]
    per_head = lambda t: t.reshape(batch * heads, 1, width)  # noqa: E731  each head its own memory of K rows
    cosine = cosine_similarity(rows.flatten(0, 1), per_head(keys), None if mask is None else per_head(mask))
    cosine = cosine.view(batch, heads, -1)  # [B,H,K]
    return SparseWeights(index, torch.softmax(strengths.unsqueeze(-1) * cosine, dim=-1))


def read(memory: RowMemory, weights: SparseWeights) -> torch.Tensor:
    """r = sum_i w(i) M(i) over the entries of each weighting. ``weights [B, H, K]`` -> ``[B, H, W]``."""
    rows = gather_rows(memory, weights.index)  # [B,H,K,W]
    return (weights.value.unsqueeze(-2) @ rows).squeeze(-2)


def write(memory: RowMemory, weights: SparseWeights, erase: torch.Tensor, add: torch.Tensor) -> RowMemory:
    """M'(i) = M(i) prod_h (1 - w_h(i) e_h) + sum_h w_h(i) a_h on the rows some head writes (``memory.write``).

    Args:
        memory: a current ``RowMemory [B, N + 1, W]``; stale afterwards.
        weights: ``SparseWeights [B, H, K]``.  erase, add: ``[B, H, W]``.
    Returns:
        The new ``RowMemory``; O(H^2 K W).
    """
    batch, _, width = memory.shape
    heads = weights.index.shape[1]
    check_shape("erase", erase, (batch, heads, width))
    check_shape("add", add, (batch, heads, width))
    index = weights.index.flatten(1)  # every row some head writes (repeats: the same new contents)  [B,R]
    w = lookup(weights, index).unsqueeze(-1) if heads > 1 else weights.value.unsqueeze(-1)  # [B,H,R,1]
    rows = gather_rows(memory, index.unsqueeze(1)).squeeze(1)  # [B,R,W]
    keep = (1 - w * erase.unsqueeze(2)).prod(dim=1)  # prod_h (1 - w_h e_h)
    return replace_rows(memory, index, rows * keep + (w * add.unsqueeze(2)).sum(1))


def retain(memory: RowMemory, read_weights: SparseWeights, free_gates: torch.Tensor) -> RowMemory:
    """M(i) <- M(i) psi(i), psi = prod_r (1 - f_r w^r(i)) (deallocation, Csordas & Schmidhuber 2019) on the
    rows read. ``read_weights [B, Hr, K]``, ``free_gates [B, Hr]``; returns the new ``RowMemory``."""
    index = read_weights.index.flatten(1)  # [B,R]
    retention = (1 - free_gates.unsqueeze(-1) * lookup(read_weights, index)).prod(dim=1)  # [B,R]
    rows = gather_rows(memory, index.unsqueeze(1)).squeeze(1)
    return replace_rows(memory, index, rows * retention.unsqueeze(-1))


def usage(usage: RowMemory, write_weights: SparseWeights, read_weights: SparseWeights,
          free_gates: torch.Tensor) -> RowMemory:
    """u_t = (u_{t-1} + w - u_{t-1} w) psi_t on the slots written or read at t - 1 (elsewhere u is
    unchanged: w = 0 and psi = 1). ``memory.usage`` with usage a ``RowMemory [B, N + 1, 1]``.

    Args:
        usage: u_{t-1}, a current ``RowMemory``; stale afterwards.
        write_weights: ``SparseWeights [B, Hw, K]`` w^w_{t-1}.  read_weights: ``[B, Hr, K]`` w^r_{t-1}.
        free_gates: ``[B, Hr]``.
    """
    index = torch.cat([write_weights.index.flatten(1), read_weights.index.flatten(1)], dim=1)  # [B,R]
    written = 1 - (1 - lookup(write_weights, index)).prod(dim=1)  # [B,R]
    retention = (1 - free_gates.unsqueeze(-1) * lookup(read_weights, index)).prod(dim=1)
    u = gather_rows(usage, index.unsqueeze(1)).squeeze(1).squeeze(-1)
    return replace_rows(usage, index, ((u + written - u * written) * retention).unsqueeze(-1))


def allocation_weights(usage: RowMemory, k: int, claimed: list[tuple[SparseWeights, torch.Tensor]] = ()
                       ) -> SparseWeights:
    """a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i] for the ``k`` least used slots phi (``memory.
    allocation_weights``'s first k sorted entries, its largest: the rest is dropped). On the CPU the slots
    come from one pass over the usage (``sparse_kernel.c``'s ``least_used``; equal usage: the lower slot
    first), elsewhere from a top-k.

    Args:
        usage: ``RowMemory [B, N + 1, 1]``.
        k: slots allocated.
        claimed: for a later write head, the earlier heads' ``(allocation [B, K], write gate [B, 1])``:
            each claims its slots first, u <- u + (1 - u) g^w a.
    Returns:
        ``SparseWeights [B, k]``.
    """
    values = usage.values[..., 0]  # [B, N + 1]
    with torch.no_grad():
        if claimed:
            values = values.clone()
            for allocation, gate in claimed:
                u = values.gather(-1, allocation.index)
                values.scatter_(-1, allocation.index, u + (1 - u) * gate * allocation.value)
        values = values[:, :-1]  # the N slots
        if k >= values.shape[-1]:  # every slot: the dense sort (the same order among ties)
            index = torch.sort(EPS + (1 - EPS) * values, dim=-1).indices
        elif k >= 1 and native.usable(values):  # one pass, no sort (C kernel)
            index = native.least_used(values, k)  # ascending usage, ties: the lower slot first
        else:
            index = values.topk(k, dim=-1, largest=False).indices  # ascending usage
    u = gather_rows(usage, index.unsqueeze(1)).squeeze(1).squeeze(-1)  # [B,K]
    for allocation, gate in claimed:
        u = u + (1 - u) * gate * lookup(SparseWeights(allocation.index.unsqueeze(1), allocation.value.unsqueeze(1)),
                                         index).squeeze(1)
    return SparseWeights(index, allocation_in_order(EPS + (1 - EPS) * u))


def precedence(precedence: SparseWeights, write_weights: SparseWeights, k: int, none: int) -> SparseWeights:
    """p_t = (1 - sum_i w^w_t(i)) p_{t-1} + w^w_t, the ``k`` largest entries kept. ``[B, Hw, K]`` each."""
    decay = 1 - write_weights.value.sum(-1, keepdim=True)
    return merge(torch.cat([precedence.index, write_weights.index], dim=-1),
                 torch.cat([decay * precedence.value, write_weights.value], dim=-1), k, none)
