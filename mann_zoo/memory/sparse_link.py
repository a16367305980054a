"""The DNC's temporal link matrix with at most K entries per row and per column (after Rae et al. 2016's
sparse DNC): O(K^2) entries touched per step instead of N^2.

L_t[i, j] = (1 - w(i) - w(j)) L_{t-1}[i, j] + w(i) p_{t-1}(j),  L_t[i, i] = 0  (``memory.link``) changes
only the rows i written (w(i) > 0: at most K of them, rewritten with the new entries w(i) p(j)) and the
entries of the columns j written (scaled by 1 - w(j)). Both are found in O(K^2): each row keeps its K
entries (values and columns), and each column the list of the (at most K) rows that have an entry in it.
A row or column that would exceed K entries keeps its K largest; the dropped entries leave both lists.

Layout, for G = B Hw link heads and N + 1 rows (row N: the empty slot; "no entry" is column N):
    values: ``RowMemory [G, N + 1, K]`` the entries' values, written in place.
    columns: ``[G, N + 1, K]`` int64 the entries' columns (N: none).
    rows: ``[G, N + 1, K]`` int64, per column j, the rows with an entry in column j (N: none),
    places: ``[G, N + 1, K]`` int64 and where in its row that entry is (``values[g, rows, places]``).
The values at column N are meaningless and never read with weight.

With K = N nothing is dropped: the dense link's values and gradients (``memory.link``,
``memory.directional_read_weights``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import native, pool
from .rows import RowMemory, gather_entries, gather_rows, put_rows, replace_entries, replace_rows, take_rows
from .sparse import SparseWeights, lookup, merge


class SparseLink(NamedTuple):
    """The row- and column-sparse link matrix (see the module docstring); ``columns`` and ``rows`` are
    changed in place with ``values``: only the newest version is valid."""

    values: RowMemory  # [G, N + 1, K]
    columns: torch.Tensor  # [G, N + 1, K] int64
    rows: torch.Tensor  # [G, N + 1, K] int64
    places: torch.Tensor  # [G, N + 1, K] int64

    @staticmethod
    def empty(groups: int, slots: int, k: int, like: torch.Tensor) -> SparseLink:
        """No entries: ``groups`` link heads of ``slots`` slots, ``k`` entries per row and column."""
        shape = (groups, slots + 1, k)  # kept buffers where they are free (``memory.pool``)
        return SparseLink(RowMemory.zeros(groups, slots + 1, k, like, norms=False),
                          pool.full(shape, slots, torch.int64, like.device),
                          pool.full(shape, slots, torch.int64, like.device), pool.full(shape, 0, torch.int64, like.device))

    @property
    def slots(self) -> int:
        return self.columns.shape[1] - 1

    def dense(self) -> torch.Tensor:
        """L as ``[G, N, N]`` (O(N^2): for tests)."""
        groups, rows, _ = self.columns.shape
        values = self.values.values.detach()
        out = values.new_zeros(groups, rows, rows).scatter_add(-1, self.columns, values)
        return out[:, :-1, :-1]


_rows_of = take_rows  # table [G, N + 1, K] at rows index [G, R] -> [G, R, K]


def update(link: SparseLink, precedence: SparseWeights, write_weights: SparseWeights) -> SparseLink:
    """L_t from L_{t-1}, p_{t-1} and w^w_t (``memory.link``), each head's K-sparse weightings.

    Args:
        link: L_{t-1} (stale afterwards).
        precedence: ``SparseWeights [G, K]`` p_{t-1}.  write_weights: ``SparseWeights [G, K]`` w^w_t.
    Returns:
        L_t. O(K^4) per head (the column lists' bookkeeping: K^2 columns changed x 2 K candidates x K
        entries; at K = 8, 4,096 elements per head), no O(N) work.
    """
    none, capacity = link.slots, link.columns.shape[-1]
    written, w = write_weights.index, write_weights.value  # [G,K]
    heads = SparseWeights(written.unsqueeze(1), w.unsqueeze(1))  # as [G, 1, K] for lookups

    # The rows written: (1 - w(i) - w(j)) L[i, j] for their entries, plus w(i) p(j), the K largest kept.
    old_columns = _rows_of(link.columns, written)  # [G,K,C]
    old_values = gather_rows(link.values, written.unsqueeze(1)).squeeze(1)  # [G,K,C]
    w_j = lookup(heads, old_columns.flatten(1)).view_as(old_values)
    scaled = torch.where(old_columns == none, 0.0, (1 - w.unsqueeze(-1) - w_j) * old_values)
    added = w.unsqueeze(-1) * precedence.value.unsqueeze(1)  # w(i) p(j)  [G,K,K]
    columns = torch.cat([old_columns, precedence.index.unsqueeze(1).expand_as(added)], dim=-1)
    columns = torch.where((columns == written.unsqueeze(-1)) | (written == none).unsqueeze(-1), none, columns)
    new_rows = merge(columns, torch.cat([scaled, added], dim=-1), capacity, none)  # L_ii = 0: no entry

    # The other rows' entries in the columns written: L[i, j] (1 - w(j)), found through the column lists.
    listed = _rows_of(link.rows, written)  # [G,K(columns),C]
    entries = _entries(link, listed, _rows_of(link.places, written)).flatten(1)
    retention = torch.where(listed == none, 1.0, 1 - w.unsqueeze(-1)).flatten(1)
    values = replace_entries(link.values, entries, gather_entries(link.values, entries) * retention)
    values = replace_rows(values, written, new_rows.value)  # after: a written row's entries are replaced
    put_rows(link.columns, written, new_rows.index)

    # Column lists: the written rows leave the lists of their old columns and join those of their new ones
    # (on the CPU one C loop per head, sparse_kernel.c; else the tensor operations below).
    with torch.no_grad():
        if native.usable(values.values) and link.columns.device.type == "cpu":
            native.link_columns_update(link.columns, link.rows, link.places, values.values, written, old_columns,
                                       new_rows.index, new_rows.value)
        else:
            _leave_columns(link, written, old_columns)
            _join_columns(link, values.values, written, new_rows)
    return SparseLink(values, link.columns, link.rows, link.places)


def _entries(link: SparseLink, rows: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
    """Entry numbers (``gather_entries``) of the entries at ``rows``, ``places``; row none -> the empty
    row's first entry."""
    none, capacity = link.slots, link.columns.shape[-1]
    return torch.where(rows == none, none * capacity, rows * capacity + places)


def _leave_columns(link: SparseLink, written: torch.Tensor, old_columns: torch.Tensor) -> None:
    """Remove each row ``written [G, K]`` from the lists of its old columns ``old_columns [G, K, C]``."""
    none, capacity = link.slots, link.columns.shape[-1]
    listed = _rows_of(link.rows, old_columns.flatten(1))  # [G, K C, C]
    leaving = listed == written.repeat_interleave(capacity, dim=1).unsqueeze(-1)
    leaving &= (old_columns.flatten(1) != none).unsqueeze(-1)
    flat = torch.where(leaving, old_columns.flatten(1).unsqueeze(-1) * capacity
                       + torch.arange(capacity, device=written.device), none * capacity)
    link.rows.view(written.shape[0], -1).scatter_(1, flat.flatten(1), none)  # the empty column: harmless


def _join_columns(link: SparseLink, values: torch.Tensor, written: torch.Tensor, new_rows: SparseWeights) -> None:
    """Add the rows ``written [G, K]`` to the lists of the columns of their entries ``new_rows [G, K, C]``:
    each such column keeps the K largest of its listed rows and the written rows with an entry there; a
    row that loses its place loses its entry (its column set to none)."""
    none, capacity = link.slots, link.columns.shape[-1]
    groups = written.shape[0]
    changed = new_rows.index.flatten(1)  # [G, A]; repeats give the same list twice
    count = changed.shape[1]
    column = changed.unsqueeze(-1)  # [G,A,1]
    listed, listed_place = _rows_of(link.rows, changed), _rows_of(link.places, changed)  # [G,A,C]
    entries = _entries(link, listed, listed_place).flatten(1)
    listed_at = (link.columns.view(groups, -1).gather(1, entries).view_as(listed) == column) & (listed != none)
    listed_value = values.view(groups, -1).gather(1, entries).view_as(listed)
    new_at = new_rows.index.unsqueeze(1) == column.unsqueeze(-1)  # [G,A,K(rows),C]
    new_value = (new_rows.value.unsqueeze(1) * new_at).sum(-1)
    candidates = torch.cat([listed, written.unsqueeze(1).expand(-1, count, -1)], dim=-1)  # [G,A,C+K]
    places = torch.cat([listed_place, new_at.int().argmax(-1)], dim=-1)  # each candidate's place in its row
    valid = torch.cat([listed_at, new_at.any(-1) & (written != none).unsqueeze(1)], dim=-1) & (column != none)
    rank = torch.where(valid, torch.cat([listed_value, new_value], dim=-1), -1.0)
    order = rank.topk(capacity, dim=-1).indices  # best first
    kept = torch.zeros_like(valid).scatter(-1, order, True) & valid
    new_list = torch.where(kept, candidates, none).gather(-1, order)
    put_rows(link.rows, changed, new_list)
    put_rows(link.places, changed, places.gather(-1, order))
    dropped = valid & ~kept  # entries that lost their place: their column becomes none in their row
    flat = torch.where(dropped, candidates * capacity + places, none * capacity)  # the empty row: harmless
    link.columns.view(groups, -1).scatter_(1, flat.flatten(1), none)


def directional_read_weights(link: SparseLink, read_weights: SparseWeights, write_heads: int
                             ) -> tuple[SparseWeights, SparseWeights]:
    """f = L w^r (forward), b = L^T w^r (backward) for every read head and link head, all entries kept.

    Args:
        link: L_t with G = B Hw heads.  read_weights: ``SparseWeights [B, Hr, K]`` w^r_{t-1}.
        write_heads: Hw.
    Returns:
        ``(forward, backward)``, each ``SparseWeights [B, Hr, Hw, K C]``.
    """
    none, capacity = link.slots, link.columns.shape[-1]
    batch, read_heads, k = read_weights.index.shape
    groups = batch * write_heads
    read_index = read_weights.index.unsqueeze(1).expand(-1, write_heads, -1, -1).reshape(groups, read_heads * k)
    read_value = read_weights.value.unsqueeze(1).expand(-1, write_heads, -1, -1).reshape(groups, read_heads, k, 1)
    # backward(j) = sum_i w(i) L[i, j] over the rows read
    values = gather_rows(link.values, read_index.unsqueeze(1)).view(groups, read_heads, k, capacity)
    columns = _rows_of(link.columns, read_index).view(groups, read_heads, k, capacity)
    backward = merge(columns.flatten(-2), (read_value * values).flatten(-2), k * capacity, none)
    # forward(i) = sum_j L[i, j] w(j) over the rows i listed in the columns j read
    rows = _rows_of(link.rows, read_index)  # [G, Hr K, C]
    entries = _entries(link, rows, _rows_of(link.places, read_index)).flatten(1)
    entry = gather_entries(link.values, entries).view(groups, read_heads, k, capacity)  # L[i, j]
    forward = merge(rows.view(groups, read_heads, k * capacity), (read_value * entry).flatten(-2), k * capacity, none)

    def per_head(weights: SparseWeights) -> SparseWeights:
        return SparseWeights(*(t.view(batch, write_heads, read_heads, -1).transpose(1, 2) for t in weights))

    return per_head(forward), per_head(backward)
