"""Sparse access (after Rae et al. 2016, "Scaling memory-augmented neural networks with sparse reads and
writes", and their sparse DNC): weightings with at most K non-zero slots, and a temporal link matrix that
keeps the K largest entries of each row, so that the link costs O(N K) per step instead of O(N^2).

With K = N nothing is dropped and every function here equals its dense counterpart (content_weights,
link, directional_read_weights). The slots kept are chosen without gradient (as the DNC's sort order);
gradients flow through the values kept.
"""

from __future__ import annotations

import torch

from ._checks import check_shape
from .content import cosine_similarity


def keep_top_k(weights: torch.Tensor, k: int) -> torch.Tensor:
    """``weights`` with all but the ``k`` largest entries of each row (last dimension) set to 0.

    Args:
        weights: ``[..., N]``.
        k: entries kept per row (>= 1; ``k >= N`` keeps all).
    Returns:
        ``[..., N]``, at most ``k`` non-zero entries per row.
    """
    if k >= weights.shape[-1]:
        return weights
    kept = torch.zeros_like(weights, dtype=torch.bool).scatter_(-1, weights.detach().topk(k, dim=-1).indices, True)
    return weights * kept


def sparse_content_weights(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor, k: int,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Content weighting over the ``k`` slots most similar to each key: the softmax of strength x cosine
    over those slots, 0 elsewhere (``content_weights`` when k >= N).

    Args: as ``content_weights``, plus ``k`` (>= 1). Returns ``[B, H, N]``, each row summing to 1.
    """
    cosine = cosine_similarity(memory, keys, mask)  # checks memory, keys and mask  [B,H,N]
    check_shape("strengths", strengths, tuple(cosine.shape[:2]))
    logits = strengths.unsqueeze(-1) * cosine
    if k >= logits.shape[-1]:
        return torch.softmax(logits, dim=-1)
    index = logits.detach().topk(k, dim=-1).indices
    return torch.zeros_like(logits).scatter(-1, index, torch.softmax(logits.gather(-1, index), dim=-1))


def sparse_link(values: torch.Tensor, index: torch.Tensor, precedence: torch.Tensor,
                write_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L_t[i, j] = (1 - w(i) - w(j)) L_{t-1}[i, j] + w(i) p_{t-1}(j), L_t[i, i] = 0, then the K largest
    entries of each row kept: the DNC's link update (``link``) on a row-sparse link matrix.

    Row i of L_{t-1} is given by its K entries: ``values[..., i, :]`` at columns ``index[..., i, :]``
    (distinct within a row; every other entry is 0). Every row's entries are scaled; the K rows where w is
    largest (w is K-sparse in the sparse DNC: its only non-zero rows) also receive the new entries
    w(i) p(j) at the K largest entries of p, merged with their own (a column present in both is summed),
    and keep the K largest of those 2K.

    Args:
        values: ``[B, Hw, N, K]`` the kept entries of L_{t-1} (non-negative).
        index: ``[B, Hw, N, K]`` their columns (int64).
        precedence: ``[B, Hw, N]`` p_{t-1} (its K largest entries are used).
        write_weights: ``[B, Hw, N]`` w^w_t (its K largest entries receive new links).
    Returns:
        ``(values, index)`` of L_t, same shapes: O(N K) for the scaling, O(K^2 log K) for the K rows
        written; O(N K) memory.
    """
    batch, heads, slots, k = values.shape
    check_shape("index", index, (batch, heads, slots, k))
    check_shape("precedence", precedence, (batch, heads, slots))
    check_shape("write_weights", write_weights, (batch, heads, slots))
    w_j = write_weights.gather(-1, index.flatten(-2)).view_as(index)  # w at each kept column
    scaled = (1 - write_weights.unsqueeze(-1) - w_j) * values  # (1 - w_i - w_j) L_ij, every row
    # The rows written: the K largest entries of w.
    rows = write_weights.detach().topk(k, dim=-1).indices  # [B,Hw,K]
    row_slots = rows.unsqueeze(-1).expand(-1, -1, -1, k)  # [B,Hw,K(rows),K]
    # Candidates of each written row: its K scaled entries and K new ones w_i p_j at the K largest
    # entries of p (the same columns for every row); a column appears at most twice (once per half).
    p_index = precedence.detach().topk(k, dim=-1).indices.unsqueeze(-2).expand(-1, -1, k, -1)  # [B,Hw,K,K]
    added = write_weights.gather(-1, rows).unsqueeze(-1) * precedence.gather(-1, p_index.flatten(-2)).view_as(p_index)
    columns, order = torch.cat([index.gather(-2, row_slots), p_index], dim=-1).sort(dim=-1)
    candidates = torch.cat([scaled.gather(-2, row_slots), added], dim=-1).gather(-1, order)  # [B,Hw,K,2K]
    repeated = columns[..., 1:] == columns[..., :-1]  # this entry's column is the previous one's
    zero = torch.zeros((), dtype=candidates.dtype, device=candidates.device)
    summed = candidates[..., :-1] + torch.where(repeated, candidates[..., 1:], zero)  # the pair into its first
    merged = torch.cat([summed, candidates[..., -1:]], dim=-1)
    merged = torch.cat([merged[..., :1], torch.where(repeated, zero, merged[..., 1:])], dim=-1)
    merged = torch.where(columns == rows.unsqueeze(-1), zero, merged)  # L_ii = 0
    # Keep the K largest; a repeated column's emptied second entry ranks below every real one (even a 0),
    # so that the columns kept stay distinct.
    rank = torch.cat([torch.zeros_like(repeated[..., :1]), repeated], dim=-1)
    keep = torch.where(rank, torch.full_like(merged, -1.0), merged).detach().topk(k, dim=-1).indices
    new_values = scaled.scatter(-2, row_slots, merged.gather(-1, keep))
    return new_values, index.scatter(-2, row_slots, columns.gather(-1, keep))


def sparse_directional_read_weights(values: torch.Tensor, index: torch.Tensor,
                                    read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f^r = L w^r (forward), b^r = L^T w^r (backward) with L row-sparse (``sparse_link``): O(N K) per pair
    of heads, the values of ``directional_read_weights``.

    Args:
        values, index: ``[B, Hw, N, K]`` the row-sparse L_t.
        read_weights: ``[B, Hr, N]`` w^r_{t-1}.
    Returns:
        ``(forward, backward)``, each ``[B, Hr, Hw, N]``.
    """
    batch, heads, slots, k = values.shape
    check_shape("read_weights", read_weights, (batch, None, slots))
    read_heads = read_weights.shape[1]
    flat = index.flatten(-2).unsqueeze(1).expand(-1, read_heads, -1, -1)  # [B,Hr,Hw,N K]
    w = read_weights.unsqueeze(2).expand(-1, -1, heads, -1)  # [B,Hr,Hw,N]
    # forward(i) = sum_k L[i, index[i, k]] w(index[i, k])
    at_columns = w.gather(-1, flat).view(batch, read_heads, heads, slots, k)
    forward = (values.unsqueeze(1) * at_columns).sum(-1)
    # backward(j) = sum over entries (i, k) with index[i, k] = j of L[i, j] w(i)
    contributions = (values.unsqueeze(1) * w.unsqueeze(-1)).flatten(-2)  # [B,Hr,Hw,N K]
    backward = torch.zeros_like(w).scatter_add(-1, flat, contributions)
    return forward, backward
