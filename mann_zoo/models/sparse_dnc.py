"""The sparse DNC's step (``DNC(sparse_k=K)``; after Rae et al. 2016's sparse DNC).

The DNC's equations, step by step as in ``dnc.py``, on K-sparse weightings (``memory.sparse``): every
weighting keeps its K largest slots (content look-ups, allocation, write, precedence, read), memory and
usage are written in place a few rows at a time (``memory.rows``), and the link matrix keeps K entries per
row and column (``memory.sparse_link``). Per step: O(N W) to choose the content look-ups' slots and O(N)
to choose the least used ones (no gradient), the rest O(K^4 + K W) per head (the link's column lists;
small tensors at K = 8). K >= N is the dense DNC.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..memory import sparse as sp
from ..memory import sparse_link
from ..memory.rows import RowMemory
from ..memory.sparse import SparseWeights


class SparseDNCState(NamedTuple):
    memory: RowMemory  # [B, N + 1, W]; row N: the empty slot
    usage: RowMemory  # [B, N + 1, 1]
    link: sparse_link.SparseLink  # B Hw heads
    precedence: SparseWeights  # [B, Hw, K]
    read_weights: SparseWeights  # [B, Hr, K]
    write_weights: SparseWeights  # [B, Hw, K]
    read_vectors: torch.Tensor  # [B, Hr, W]
    controller: tuple


def sparse_initial_state(core, batch: int, like: torch.Tensor) -> SparseDNCState:
    """Empty memory, usage and links; every weighting all padding. O(N (W + K)) elements."""
    N, W, K, Hr, Hw = core.slots, core.width, core.sparse_k, core.read_heads, core.write_heads
    return SparseDNCState(
        memory=RowMemory.zeros(batch, N + 1, W, like), usage=RowMemory.zeros(batch, N + 1, 1, like, norms=False),
        link=sparse_link.SparseLink.empty(batch * Hw, N, K, like),
        precedence=SparseWeights.empty((batch, Hw), K, N, like),
        read_weights=SparseWeights.empty((batch, Hr), K, N, like),
        write_weights=SparseWeights.empty((batch, Hw), K, N, like),
        read_vectors=like.new_zeros(batch, Hr, W),
        controller=tuple(s.contiguous() for s in core.controller.initial_state(batch)),
    )


def sparse_step(core, x: torch.Tensor, state: SparseDNCState, record: bool = False):
    """One step of ``core`` (a ``DNC`` with ``sparse_k``): as ``DNC.step``, on sparse weightings."""
    B, N, K, W = x.shape[0], core.slots, core.sparse_k, core.width
    Hr, Hw = core.read_heads, core.write_heads
    out, controller, parts = core.interface_parts(x, state.read_vectors, state.controller)
    free_gates, read_modes = parts["free_gates"], parts["read_modes"]
    write_mask = parts["write_masks"].view(B, Hw, W) if core.masking else None
    read_mask = parts["read_masks"].view(B, Hr, W) if core.masking else None

    # Dynamic memory allocation.
    usage = sp.usage(state.usage, state.write_weights, state.read_weights, free_gates)  # u_t
    memory = state.memory
    if core.deallocation:  # M <- M * psi_t on the slots read
        memory = sp.retain(memory, state.read_weights, free_gates)

    # Write weighting: w^w = g^w (g^a a + (1 - g^a) c^w), its K largest slots. The read heads' content
    # candidates come from the same pass over the memory: their K + R best slots, R = Hw K the rows the write
    # below may change (``sp.requery`` then finds their K best after it).
    write_keys, read_keys = parts["write_keys"].view(B, Hw, W), parts["read_keys"].view(B, Hr, W)
    candidates = None
    if K < N:
        masks = None if write_mask is None else torch.cat([write_mask, read_mask], dim=1)
        candidates = sp.content_candidates(memory, torch.cat([write_keys, read_keys], dim=1), K + Hw * K, masks)
    write_content = sp.content_weights(memory, write_keys, parts["write_strengths"], K, write_mask,
                                       None if candidates is None else candidates[:, :Hw, :K])
    allocations = []
    for h in range(Hw):  # each write head allocates after the earlier heads' claims
        claimed = [(a, parts["write_gates"][:, g : g + 1]) for g, a in enumerate(allocations)]
        allocations.append(sp.allocation_weights(usage, K, claimed))
    allocation = SparseWeights(*(torch.stack(t, dim=1) for t in zip(*allocations)))  # a_t  [B, Hw, K]
    ga, gw = parts["allocation_gates"].unsqueeze(-1), parts["write_gates"].unsqueeze(-1)
    write_weights = sp.merge(torch.cat([allocation.index, write_content.index], dim=-1),
                             torch.cat([gw * ga * allocation.value, gw * (1 - ga) * write_content.value], dim=-1),
                             K, N)
    memory = sp.write(memory, write_weights, parts["erase"].view(B, Hw, W), parts["write_vectors"].view(B, Hw, W))

    # Temporal links (with the previous precedence), directional weightings, precedence.
    per_head = lambda weights: SparseWeights(*(t.flatten(0, 1) for t in weights))  # noqa: E731  [B Hw, K]
    link = sparse_link.update(state.link, per_head(state.precedence), per_head(write_weights))
    forward, backward = sparse_link.directional_read_weights(link, state.read_weights, Hw)  # [B, Hr, Hw, M]
    precedence = sp.precedence(state.precedence, write_weights, K, N)
    if core.link_sharpness:
        sharpness = parts["link_sharpness"].view(B, 2, Hr, 1, 1)
        forward, backward = (_sharpen(weights, sharpness[:, i], N) for i, weights in enumerate((forward, backward)))

    # Read weighting: w^r = pi_b b + pi_c c + pi_f f, its K largest slots.
    read_index = None
    if candidates is not None:
        read_index = sp.requery(memory, candidates[:, Hw:], read_keys, write_weights.index.flatten(1), K, read_mask)
    read_content = sp.content_weights(memory, read_keys, parts["read_strengths"], K, read_mask, read_index)
    modes_backward, modes_content, modes_forward = read_modes.split([Hw, 1, Hw], dim=-1)
    read_weights = sp.merge(
        torch.cat([backward.index.flatten(2), read_content.index, forward.index.flatten(2)], dim=-1),
        torch.cat([(modes_backward.unsqueeze(-1) * backward.value).flatten(2), modes_content * read_content.value,
                   (modes_forward.unsqueeze(-1) * forward.value).flatten(2)], dim=-1),
        K, N)
    read_vectors = sp.read(memory, read_weights)

    features = torch.cat([out, read_vectors.flatten(1)], dim=-1)
    new_state = SparseDNCState(memory, usage, link, precedence, read_weights, write_weights, read_vectors, controller)
    trace = None
    if record:
        trace = {"read_weights": read_weights.dense(N), "write_weights": write_weights.dense(N),
                 "usage": usage.values[:, :N, 0].detach().clone(), "allocation": allocation.dense(N),
                 "allocation_gates": parts["allocation_gates"], "write_gates": parts["write_gates"],
                 "free_gates": free_gates, "read_modes": read_modes}
    return features, new_state, trace


def _sharpen(weights: SparseWeights, sharpness: torch.Tensor, slots: int) -> SparseWeights:
    """``memory.sharpen`` of each directional weighting over all N slots, times its mass before (as the
    dense DNC's link sharpness), on the slots with an entry: the N - n slots without one count as weight 0
    in the normaliser, and the share the dense formula gives them ((EPS)^gamma each, spread over all N
    slots) is dropped, so the mass is kept only up to that share. (With K = N every slot has an entry after
    the first steps: the dense values.) ``weights [B, Hr, Hw, M]``, ``sharpness [B, Hr, 1, 1]``."""
    real = weights.index != slots
    mass = weights.value.sum(-1, keepdim=True)
    logits = torch.where(real, sharpness * torch.log(weights.value + sp.EPS), -torch.inf)
    empty_logit = sharpness * torch.log(torch.tensor(sp.EPS, dtype=weights.value.dtype))  # [B,Hr,1,1]
    empty = slots - real.sum(-1, keepdim=True)  # slots with weight 0
    top = torch.maximum(logits.amax(-1, keepdim=True), empty_logit)
    exp = torch.exp(logits - top)
    normaliser = exp.sum(-1, keepdim=True) + empty * torch.exp(empty_logit - top)
    return SparseWeights(weights.index, exp / normaliser * mass)
