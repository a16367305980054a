"""Tests for sparse access: the in-place row memory (``memory.rows``), K-sparse weightings
(``memory.sparse``) and the row- and column-sparse link (``memory.sparse_link``).

References are the dense primitives (``memory.content_weights``, ``usage``, ``allocation_weights``,
``precedence``, ``link``, ``directional_read_weights``, ``read``, ``write``): with K = N the sparse pieces
give their values; with K < N, hand-worked cases and the invariants. Gradients: float64 gradcheck from a
generic (non-zero) state, and the in-place memory's gradients against the same operations done
functionally.
"""

from __future__ import annotations

import pytest
import torch

from mann_zoo import memory as dense
from mann_zoo.memory import sparse as sp
from mann_zoo.memory import sparse_link
from mann_zoo.memory.rows import RowMemory, gather_entries, gather_rows, replace_entries, replace_rows
from mann_zoo.memory.sparse import SparseWeights

B, N, W, K = 3, 6, 4, 3
F64 = dict(dtype=torch.float64)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _sparse(weights: torch.Tensor, k: int) -> SparseWeights:
    """The k largest entries of a dense weighting ``[..., N]`` (all of it when k = N)."""
    index = weights.topk(k, dim=-1).indices
    return SparseWeights(index, weights.gather(-1, index))


def _with_empty_row(memory: torch.Tensor) -> torch.Tensor:
    return torch.cat([memory, memory.new_zeros(memory.shape[0], 1, memory.shape[-1])], dim=1)


# --------------------------------------------------------------------------- #
# The in-place row memory
# --------------------------------------------------------------------------- #
def _row_program(memory, index_a, rows_a, index_b, scale):
    """Gather, replace, gather again, replace: on a RowMemory, returns what was read."""
    first = gather_rows(memory, index_a.unsqueeze(1)).squeeze(1)  # [B,R,W]
    memory = replace_rows(memory, index_a, first * scale + rows_a)
    second = gather_rows(memory, index_b.unsqueeze(1)).squeeze(1)
    memory = replace_rows(memory, index_b, second.flip(-1))
    return first, second, memory


def _row_program_functional(memory, index_a, rows_a, index_b, scale):
    """The same on a plain tensor, functionally (index_put with fresh tensors): the reference."""
    batch = torch.arange(memory.shape[0]).unsqueeze(1)
    first = memory[batch, index_a]
    memory = memory.index_put((batch, index_a), first * scale + rows_a)
    second = memory[batch, index_b]
    memory = memory.index_put((batch, index_b), second.flip(-1))
    return first, second, memory


def test_row_memory_values_and_gradients_equal_the_functional_reference():
    g = _gen(0)
    memory = torch.randn(B, N, W, generator=g, **F64, requires_grad=True)
    rows_a = torch.randn(B, 2, W, generator=g, **F64, requires_grad=True)
    scale = torch.rand(B, 2, W, generator=g, **F64, requires_grad=True)
    index_a, index_b = torch.tensor([[0, 3], [5, 1], [2, 4]]), torch.tensor([[3, 4], [1, 0], [2, 5]])
    ours = _row_program(RowMemory.from_tensor(memory), index_a, rows_a, index_b, scale)
    outputs = (*ours[:2], ours[2].to_tensor())
    reference = _row_program_functional(memory, index_a, rows_a, index_b, scale)
    for ours_t, ref_t in zip(outputs, reference):
        torch.testing.assert_close(ours_t, ref_t)
    weights = [torch.randn(t.shape, generator=g, **F64) for t in outputs]
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outputs, weights)), (memory, rows_a, scale))
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(reference, weights)), (memory, rows_a, scale))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_row_memory_counts_a_row_put_back_twice_once():
    """A slot given twice with the same contents receives its gradient once."""
    memory = RowMemory.from_tensor(torch.zeros(1, 3, 2, **F64))
    row = torch.tensor([[1.0, 2.0]], **F64, requires_grad=True)
    memory = replace_rows(memory, torch.tensor([[1, 1]]), row.expand(1, 2, 2).reshape(1, 2, 2) * 1.0)
    read = gather_rows(memory, torch.tensor([[[1]]]))
    (grad,) = torch.autograd.grad(read.sum(), row)
    assert grad.tolist() == [[1.0, 1.0]]


def test_row_memory_passes_gradcheck_and_backward_twice():
    g = _gen(1)
    index_a, index_b = torch.tensor([[0, 3], [5, 1], [2, 4]]), torch.tensor([[3, 4], [1, 0], [2, 5]])
    args = [torch.randn(B, N, W, generator=g, **F64), torch.randn(B, 2, W, generator=g, **F64),
            torch.rand(B, 2, W, generator=g, **F64)]
    args = [a.requires_grad_() for a in args]

    def program(memory, rows_a, scale):
        first, second, memory = _row_program(RowMemory.from_tensor(memory), index_a, rows_a, index_b, scale)
        return first, second, memory.to_tensor()

    assert torch.autograd.gradcheck(program, args, eps=1e-6, atol=1e-6)
    total = sum(o.sum() for o in program(*args))
    first = torch.autograd.grad(total, args, retain_graph=True)
    second = torch.autograd.grad(total, args)  # a second backward pass starts from a clean gradient buffer
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_row_memory_entries_and_stale_versions():
    memory = RowMemory.zeros(2, 3, 4, torch.zeros(()), norms=False)
    value = torch.tensor([[1.0], [2.0]], requires_grad=True)
    new = replace_entries(memory, torch.tensor([[5], [0]]), value)  # entry 5 = row 1, column 1
    assert new.values[0, 1, 1] == 1 and new.values[1, 0, 0] == 2
    (grad,) = torch.autograd.grad(gather_entries(new, torch.tensor([[5], [0]])).sum() * 3, value)
    assert grad.tolist() == [[3.0], [3.0]]
    with pytest.raises(RuntimeError, match="replaced by version 1"):
        gather_rows(memory, torch.zeros(2, 1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="norms=False"):
        replace_entries(RowMemory.zeros(2, 3, 4, torch.zeros(())), torch.zeros(2, 1, dtype=torch.int64),
                        torch.zeros(2, 1))
    with pytest.raises(ValueError, match="index must be int64"):
        gather_rows(new, torch.zeros(2, 1, 1, dtype=torch.int32))


def test_row_memory_is_freed_without_the_garbage_collector():
    """The autograd nodes must not refer back to the memory buffer (a cycle would keep every sequence's
    buffers and activations until a full garbage collection: 12 GB per training process, seen)."""
    import gc
    import weakref

    from mann_zoo.models import build

    model = build("dnc", 4, 3, controller_size=8, memory_slots=16, word_size=4, sparse_k=4)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for backward in (True, False):
            x = torch.rand(2, 5, 4)
            state = model.initial_state(2, x)
            buffer = weakref.ref(state.memory.buffer)
            features = []
            for t in range(x.shape[1]):
                feature, state, _ = model.step(x[:, t], state)
                features.append(feature)
            if backward:
                torch.stack(features).sum().backward()
            del state, features, feature
            assert buffer() is None
    finally:
        if enabled:
            gc.enable()


def test_row_memory_units_follow_the_rows():
    memory = RowMemory.zeros(1, 3, 2, torch.zeros((), **F64))
    memory = replace_rows(memory, torch.tensor([[2]]), torch.tensor([[[3.0, 4.0]]], **F64))
    torch.testing.assert_close(memory.units[0, :, 2], torch.tensor([0.6, 0.8], **F64), rtol=1e-5, atol=0)
    assert memory.units[0, :, :2].abs().max() == 0


# --------------------------------------------------------------------------- #
# K-sparse weightings
# --------------------------------------------------------------------------- #
@pytest.fixture(params=["kernel", "torch"])
def merge_path(request, monkeypatch):
    """merge's two paths: the C kernel's plan and one scatter-add (sparse_kernel.c), the tensor operations."""
    from mann_zoo.memory import native

    if request.param == "kernel":
        assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    else:
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    return request.param


def test_merge_sums_repeated_slots_and_keeps_the_largest(merge_path):
    index = torch.tensor([[4, 1, 4, 6, 2, 6]])  # 6: the empty slot (N = 6)
    value = torch.tensor([[0.1, 0.3, 0.25, 0.9, 0.05, 0.2]])
    merged = sp.merge(index, value, 2, none=6)
    assert merged.index.tolist() == [[4, 1]]
    torch.testing.assert_close(merged.value, torch.tensor([[0.35, 0.3]]))
    padded = sp.merge(torch.tensor([[1, 1, 6]]), torch.tensor([[0.2, 0.3, 0.4]]), 3, none=6)
    assert padded.index.tolist() == [[1, 6, 6]]
    torch.testing.assert_close(padded.value, torch.tensor([[0.5, 0.0, 0.0]]))
    torch.testing.assert_close(merged.dense(6), torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.35, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_kernel_equals_the_tensor_operations_and_passes_gradcheck(dtype, monkeypatch):
    """The C kernel's merge against the tensor operations: the same slots in the same order and the same sums
    (repeated slots, the empty slot, fewer slots than k, rows of several leading dimensions); its gradient
    (one scatter-add) passes gradcheck."""
    from mann_zoo.memory import native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    g = _gen(9)
    index = torch.randint(0, 9, (4, 3, 24), generator=g)  # slots 0-7, 8: the empty slot; many repeats
    index[0, 0] = torch.tensor([1, 8] * 12)  # one slot only: the rest padding
    index[1, 0] = torch.tensor([7, 5, 3] * 8)  # equal sums (below): the lower slot first
    value = torch.rand(4, 3, 24, generator=g, dtype=dtype)
    value[1, 0] = 0.25
    ours = [sp.merge(index, value, k, none=8) for k in (5, 30)]
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    theirs = [sp.merge(index, value, k, none=8) for k in (5, 30)]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.index, b.index, rtol=0, atol=0)
        torch.testing.assert_close(a.value, b.value, rtol=0, atol=0)
    assert ours[0].index[0, 0].tolist() == [1, 8, 8, 8, 8]
    assert ours[0].index[1, 0].tolist() == [3, 5, 7, 8, 8]
    # many distinct slots among many more (the kernel's hash table of slots: collisions, a full row)
    wide = torch.randint(0, 50_000, (6, 40), generator=g)
    wide[:, 20:] = wide[:, :20].flip(1)  # each slot twice
    wide[0] = 50_000
    wide_value = torch.rand(6, 40, generator=g, dtype=dtype)
    ours = [sp.merge(wide, wide_value, k, none=50_000) for k in (1, 7, 40)]
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    theirs = [sp.merge(wide, wide_value, k, none=50_000) for k in (1, 7, 40)]
    monkeypatch.undo()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.index, b.index, rtol=0, atol=0)
        torch.testing.assert_close(a.value, b.value, rtol=0, atol=0)
    monkeypatch.undo()
    if dtype == torch.float64:
        rows = [0, 2, 3]  # not row 1's ties: a finite difference there changes which entries are kept
        assert torch.autograd.gradcheck(lambda v: sp.merge(index[rows], v, 5, none=8).value,
                                        (value[rows].requires_grad_(),))


def test_lookup_by_hand():
    weights = SparseWeights(torch.tensor([[[2, 0, 5]]]), torch.tensor([[[0.5, 0.25, 0.0]]]))
    assert sp.lookup(weights, torch.tensor([[0, 1, 2, 5]])).tolist() == [[[0.25, 0.0, 0.5, 0.0]]]


def test_content_weights_by_hand_and_at_k_equal_to_n():
    """The softmax of strength x cosine over the K most similar slots: slots 0 and 2 match the key best."""
    values = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.2], [-1.0, 0.0]]], **F64)
    memory = RowMemory.from_tensor(_with_empty_row(values))
    weights = sp.content_weights(memory, torch.tensor([[[1.0, 0.0]]], **F64), torch.tensor([[2.0]], **F64), 2)
    expected = torch.softmax(2 * torch.tensor([1.0, 1.0 / 1.04**0.5], **F64), dim=0)
    torch.testing.assert_close(weights.dense(4)[0, 0, [0, 2]], expected, rtol=1e-5, atol=1e-6)
    assert weights.dense(4)[0, 0, [1, 3]].abs().max() == 0
    g = _gen(2)
    m, k, s = torch.randn(B, N, W, generator=g, **F64), torch.randn(B, 2, W, generator=g, **F64), torch.rand(B, 2, **F64) * 5
    mask = torch.rand(B, 2, W, generator=g, **F64)
    for msk in (None, mask):
        ours = sp.content_weights(RowMemory.from_tensor(_with_empty_row(m)), k, s, N, msk).dense(N)
        torch.testing.assert_close(ours, dense.content_weights(m, k, s, msk), rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_content_candidates_kernel_ranks_as_scores_and_top_k(dtype, monkeypatch):
    """The C kernel (sparse_kernel.c) against the torch path (content_scores, then top-k): the same slots in
    the same order where the cosines are distinct; the lower slot first among equal cosines (zero memory);
    m distinct slots below N with NaN keys; m is capped at N."""
    from mann_zoo.memory import native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    g = _gen(3)
    slots, width, heads = 5000, 7, 3  # more slots than the kernel's block of 2,048: blocks passed over, and not
    memory = RowMemory.from_tensor(_with_empty_row(torch.randn(B, slots, width, generator=g, dtype=dtype)))
    keys = torch.randn(B, heads, width, generator=g, dtype=dtype)
    ours = sp.content_candidates(memory, keys, 20)
    torch.testing.assert_close(ours, sp.content_scores(memory, keys).topk(20, dim=-1).indices, rtol=0, atol=0)
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    torch.testing.assert_close(sp.content_candidates(memory, keys, 20), ours, rtol=0, atol=0)
    monkeypatch.undo()

    zero = RowMemory.zeros(B, slots + 1, width, keys)
    assert sp.content_candidates(zero, keys, 5).tolist() == [[[0, 1, 2, 3, 4]] * heads] * B
    nan = sp.content_candidates(memory, torch.full_like(keys, torch.nan), 5)
    assert nan.tolist() == [[[0, 1, 2, 3, 4]] * heads] * B
    assert sp.content_candidates(memory, keys, slots + 10).shape == (B, heads, slots)  # all N, never slot N


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_content_candidates_among_the_written_rows_equal_the_full_pass(dtype):
    """While few rows were written since the memory was zeros, the kernel scores only those and the m lowest
    others (sparse_kernel.c): the same slots and scores as the full pass over a copy that does not know which
    rows were written (``RowMemory.from_tensor``), with rows written back to zero, keys that prefer the zero
    rows (all-negative cosines), a NaN key, more candidates asked than rows written, none written."""
    from mann_zoo.memory import native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    g = _gen(31)
    slots, width, heads = 2999, 7, 3  # N not a multiple of 8: the byte-at-a-time tail of the written mask
    for written in (40, 0):
        memory = RowMemory.zeros(B, slots + 1, width, torch.zeros((), dtype=dtype))
        index = torch.stack([torch.randperm(slots, generator=g)[:written] for _ in range(B)])
        rows = torch.randn(B, written, width, generator=g, dtype=dtype)
        rows[:, :3] = 0  # written, but zero again
        memory = replace_rows(memory, index, rows)
        assert memory.written[:, :slots].sum(-1).tolist() == [written] * B
        full = RowMemory.from_tensor(memory.values.clone())
        assert full.written is None
        keys = torch.randn(B, heads, width, generator=g, dtype=dtype)
        keys[0, 0] = -rows[0].abs().sum(0) - 1  # below zero on every non-zero written row: the zero rows win
        keys[1, 1, 2] = torch.nan
        for m in (5, 24, 60):
            ours = native.content_candidates(memory.units, keys, m, memory.written)
            theirs = native.content_candidates(full.units, keys, m)
            for a, b in zip(ours, theirs):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            torch.testing.assert_close(sp.content_candidates(memory, keys, m), ours[0], rtol=0, atol=0)
        if written:
            assert sp.content_candidates(memory, keys, 4)[1, 1].tolist() == [0, 1, 2, 3]  # NaN: the lowest slots
    with pytest.raises(ValueError, match="written must be bool"):
        native.content_candidates(memory.units, keys, 5, memory.written.float())
    with pytest.raises(ValueError, match=r"m must be in \[1, 2999\], got 0"):
        native.content_candidates(memory.units, keys, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_least_used_kernel_equals_top_k_and_breaks_ties_by_slot(dtype, monkeypatch):
    """The allocation's k least used slots in one pass (sparse_kernel.c's least_used) against ``topk(largest=
    False)``: the same slots in the same order for distinct usage, on the usage buffer's strided rows; the lower
    slot first among equal usage; NaN usage last; and the same allocation either way."""
    from mann_zoo.memory import native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    g = _gen(32)
    usage = torch.rand(B, 5001, 1, generator=g, dtype=dtype)[..., 0][:, :5000]  # row stride 5,001
    for k in (1, 8, 70):
        torch.testing.assert_close(native.least_used(usage, k), usage.topk(k, dim=-1, largest=False).indices,
                                   rtol=0, atol=0)
    ties = torch.tensor([[0.5, 0.2, 0.5, 0.2, 0.0, 0.2, torch.nan, 0.0]], dtype=dtype)
    assert native.least_used(ties, 8).tolist() == [[4, 7, 1, 3, 5, 0, 2, 6]]
    assert native.least_used(torch.zeros(2, 300, dtype=dtype), 3).tolist() == [[0, 1, 2]] * 2
    for bad in (0, 5001):
        with pytest.raises(ValueError, match=r"k must be in \[1, 5000\], got " + str(bad)):
            native.least_used(usage, bad)
    with pytest.raises(ValueError, match="usage must be float32 or float64 \\[B, N\\]"):
        native.least_used(usage.unsqueeze(-1), 3)
    memory = RowMemory.from_tensor(usage.contiguous().unsqueeze(-1))
    ours = sp.allocation_weights(memory, 8)
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    theirs = sp.allocation_weights(memory, 8)
    torch.testing.assert_close(ours.index, theirs.index, rtol=0, atol=0)
    torch.testing.assert_close(ours.value, theirs.value, rtol=0, atol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_requery_after_a_write_is_the_look_up_over_all_slots(masked):
    """Candidates before a write (K + R of them) and the rows written give the K best slots after it, as a
    fresh look-up over all N: written rows that move up into the K best, and out of them, and padding."""
    g = _gen(3)
    slots, k = 40, 4
    memory = RowMemory.from_tensor(_with_empty_row(torch.randn(B, slots, W, generator=g, **F64)))
    keys = torch.randn(B, 2, W, generator=g, **F64)
    mask = torch.rand(B, 2, W, generator=g, **F64) if masked else None
    best = sp.content_candidates(memory, keys, 1, mask)[:, :, 0]  # [B, 2]: each key's best slot
    written = torch.tensor([[1, slots], [best[1, 0], 4], [best[2, 1], 7]])  # R = 2; slot N: padding
    candidates = sp.content_candidates(memory, keys, k + written.shape[1], mask)
    zero = torch.zeros(W, **F64)
    rows = torch.stack([torch.stack([-keys[0, 0], zero]),  # slot 1 turned away from key 0
                        torch.stack([-keys[1, 0], 3 * keys[1, 1]]),  # key 0's best leaves; slot 4 comes first for key 1
                        torch.stack([keys[2, 1], keys[2, 0]])])  # key 1's best stays; slot 7 comes first for key 0
    memory = replace_rows(memory, written, rows * (written != slots).unsqueeze(-1))
    ours = sp.requery(memory, candidates, keys, written, k, mask)
    torch.testing.assert_close(ours, sp.content_candidates(memory, keys, k, mask), rtol=0, atol=0)
    assert (ours < slots).all()


def test_usage_allocation_precedence_read_write_at_k_equal_to_n_are_the_dense_ones():
    g = _gen(4)
    u = torch.rand(B, N, generator=g, **F64)
    ww, wr = torch.softmax(torch.randn(B, 2, N, generator=g, **F64), -1), torch.softmax(torch.randn(B, 2, N, generator=g, **F64), -1)
    free = torch.rand(B, 2, generator=g, **F64)
    usage = RowMemory.from_tensor(_with_empty_row(u.unsqueeze(-1)))
    new_usage = sp.usage(usage, _sparse(ww, N), _sparse(wr, N), free)
    expected_usage = dense.usage(u, ww, wr, free)
    torch.testing.assert_close(new_usage.values[:, :N, 0], expected_usage, rtol=0, atol=1e-15)
    allocation = sp.allocation_weights(new_usage, N)
    torch.testing.assert_close(allocation.dense(N), dense.allocation_weights(expected_usage), rtol=0, atol=1e-15)
    p = torch.rand(B, 2, N, generator=g, **F64) / N
    torch.testing.assert_close(sp.precedence(_sparse(p, N), _sparse(ww, N), N, N).dense(N),
                               dense.precedence(p, ww), rtol=0, atol=1e-15)
    m = torch.randn(B, N, W, generator=g, **F64)
    erase, add = torch.rand(B, 2, W, generator=g, **F64), torch.randn(B, 2, W, generator=g, **F64)
    memory = sp.write(RowMemory.from_tensor(_with_empty_row(m)), _sparse(ww, N), erase, add)
    torch.testing.assert_close(memory.values[:, :N], dense.write(m, ww, erase, add), rtol=0, atol=1e-14)
    torch.testing.assert_close(sp.read(memory, _sparse(wr, N)), dense.read(memory.values[:, :N], wr))


def test_allocation_with_k_below_n_is_the_dense_allocations_first_k_sorted_entries():
    g = _gen(5)
    u = torch.rand(B, N, generator=g, **F64)
    usage = RowMemory.from_tensor(_with_empty_row(u.unsqueeze(-1)))
    full = dense.allocation_weights(u)
    ours = sp.allocation_weights(usage, K)
    torch.testing.assert_close(ours.value, full.gather(-1, ours.index))
    torch.testing.assert_close(ours.value, full.topk(K, dim=-1).values)  # the largest entries
    gate = torch.rand(B, 1, generator=g, **F64)
    second = sp.allocation_weights(usage, N, [(SparseWeights(*(t for t in sp.allocation_weights(usage, N))), gate)])
    claimed = u + (1 - u) * gate * full
    torch.testing.assert_close(second.dense(N), dense.allocation_weights(claimed), rtol=0, atol=1e-15)


def test_sparse_weighting_pieces_pass_gradcheck_from_a_generic_state():
    g = _gen(6)
    m = _with_empty_row(torch.randn(B, N, W, generator=g, **F64)).requires_grad_()
    keys, strengths = torch.randn(B, 2, W, generator=g, **F64, requires_grad=True), (torch.rand(B, 2, **F64) * 4 + 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda m_, k_, s_: sp.content_weights(RowMemory.from_tensor(m_), k_, s_, K).value, (m, keys, strengths),
        eps=1e-6, atol=1e-6)
    u = _with_empty_row(torch.rand(B, N, 1, generator=g, **F64)).requires_grad_()
    index = torch.stack([torch.randperm(N, generator=g)[:K] for _ in range(B * 2)]).view(B, 2, K)
    ww = torch.rand(B, 2, K, generator=g, **F64, requires_grad=True)
    free = torch.rand(B, 2, generator=g, **F64, requires_grad=True)

    def usage_then_allocation(u_, w_, f_):
        new = sp.usage(RowMemory.from_tensor(u_), SparseWeights(index, w_ / 3), SparseWeights(index.flip(1), w_ / 2), f_)
        return sp.allocation_weights(new, K).value

    assert torch.autograd.gradcheck(usage_then_allocation, (u, ww, free), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- #
# The row- and column-sparse link
# --------------------------------------------------------------------------- #
def _random_step(g, k):
    """K-sparse write weights and precedence with distinct slots per head, as the sparse DNC gives them."""
    def one():
        index = torch.stack([torch.randperm(N, generator=g)[:k] for _ in range(B)])
        return SparseWeights(index, torch.softmax(torch.randn(B, k, generator=g, **F64), -1) * 0.9)
    return one(), one()


def test_sparse_link_with_k_equal_to_n_is_the_dense_link():
    """Over a sequence of writes, K = N gives link and directional_read_weights (values and gradients)."""
    g = _gen(7)
    steps = [_random_step(g, N) for _ in range(5)]
    read = SparseWeights(torch.stack([torch.randperm(N, generator=g) for _ in range(B)]).unsqueeze(1),
                         torch.softmax(torch.randn(B, 1, N, generator=g, **F64), -1).requires_grad_())
    values = [w.value.requires_grad_() for w, _ in steps]
    link = sparse_link.SparseLink.empty(B, N, N, read.value)
    reference = torch.zeros(B, 1, N, N, **F64)
    for w, p in steps:
        link = sparse_link.update(link, p, w)
        reference = dense.link(reference, p.dense(N).unsqueeze(1), w.dense(N).unsqueeze(1))
        torch.testing.assert_close(link.dense(), reference[:, 0].detach(), rtol=0, atol=1e-15)
    forward, backward = sparse_link.directional_read_weights(link, read, 1)
    expected = dense.directional_read_weights(reference, read.dense(N))
    for ours, theirs in zip((forward, backward), expected):
        torch.testing.assert_close(ours.dense(N), theirs, rtol=0, atol=1e-15)
    total = lambda pair: sum((t * torch.arange(N, **F64)).sum() for t in pair)  # noqa: E731
    ours = torch.autograd.grad(total([f.dense(N) for f in (forward, backward)]), [*values, read.value])
    theirs = torch.autograd.grad(total(expected), [*values, read.value])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_link_column_lists_by_the_kernel_equal_the_tensor_operations(dtype, monkeypatch):
    """The column-list bookkeeping in C (sparse_kernel.c) against the tensor operations it replaces, over a
    sequence of writes with K < N (rows and columns over capacity: entries dropped): the same columns, lists
    and places (where a list names a row) and the same link."""
    from mann_zoo.memory import native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    g = _gen(8)
    slots, k = 12, 3

    def step():
        index = torch.stack([torch.randperm(slots + 1, generator=g)[:k] for _ in range(B)])  # slot N: padding
        value = torch.where(index == slots, 0.0, torch.rand(B, k, generator=g, dtype=dtype) / k)
        return SparseWeights(index, value)

    steps = [(step(), step()) for _ in range(12)]
    links = []
    for kernels in (True, False):
        if not kernels:
            monkeypatch.setattr(native, "usable", lambda *tensors: False)
        link = sparse_link.SparseLink.empty(B, slots, k, torch.zeros((), dtype=dtype))
        for w, p in steps:
            link = sparse_link.update(link, p, w)
        links.append(link)
    ours, theirs = links
    assert (theirs.rows != slots).sum() > B * k and (theirs.columns == slots).any()  # lists filled, entries dropped
    torch.testing.assert_close(ours.columns, theirs.columns, rtol=0, atol=0)
    torch.testing.assert_close(ours.rows, theirs.rows, rtol=0, atol=0)
    listed = theirs.rows != slots
    torch.testing.assert_close(ours.places[listed], theirs.places[listed], rtol=0, atol=0)
    torch.testing.assert_close(ours.dense(), theirs.dense(), rtol=0, atol=0)


def test_sparse_link_by_hand():
    """N = 4, K = 2: write slot 0, then slot 1 (precedence on 0), then slot 2 with weight 0.5 (precedence
    0.9 on 1, 0.1 on 0): the dense formula's entries, and the column lists name the rows of each column."""
    none = 4
    link = sparse_link.SparseLink.empty(1, 4, 2, torch.zeros((), **F64))
    one = lambda slot, w: SparseWeights(torch.tensor([[slot, none]]), torch.tensor([[w, 0.0]], **F64))  # noqa: E731
    link = sparse_link.update(link, one(none, 0.0), one(0, 1.0))
    link = sparse_link.update(link, one(0, 1.0), one(1, 1.0))
    assert link.dense()[0].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    link = sparse_link.update(link, SparseWeights(torch.tensor([[1, 0]]), torch.tensor([[0.9, 0.1]], **F64)), one(2, 0.5))
    expected = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [0.05, 0.45, 0, 0], [0, 0, 0, 0]], **F64)
    torch.testing.assert_close(link.dense()[0], expected)
    assert sorted(link.rows[0, 0].tolist()) == [1, 2] and sorted(link.rows[0, 1].tolist()) == [2, none]
    forward, backward = sparse_link.directional_read_weights(link, SparseWeights(torch.tensor([[[0, 1]]]),
                                                                                 torch.tensor([[[0.5, 0.5]]], **F64)), 1)
    torch.testing.assert_close(forward.dense(4)[0, 0, 0], torch.tensor([0, 0.5, 0.25, 0], **F64))
    torch.testing.assert_close(backward.dense(4)[0, 0, 0], torch.tensor([0.5, 0, 0, 0], **F64))


def test_sparse_link_keeps_k_per_row_and_column_and_passes_gradcheck():
    g = _gen(8)
    steps = [_random_step(g, K) for _ in range(6)]
    read = SparseWeights(torch.stack([torch.randperm(N, generator=g)[:K] for _ in range(B)]).unsqueeze(1),
                         torch.softmax(torch.randn(B, 1, K, generator=g, **F64), -1))
    values = [w.value.clone().requires_grad_() for w, _ in steps[-2:]]

    def run(last_w, previous_w, read_value):
        link = sparse_link.SparseLink.empty(B, N, K, read_value)
        for i, (w, p) in enumerate(steps):
            value = {len(steps) - 2: previous_w, len(steps) - 1: last_w}.get(i, w.value)
            link = sparse_link.update(link, p, SparseWeights(w.index, value))
        forward, backward = sparse_link.directional_read_weights(link, SparseWeights(read.index, read_value), 1)
        return link, forward.value, backward.value

    link = run(*values[::-1], read.value)[0]
    matrix = link.dense()
    assert ((matrix != 0).sum(-1) <= K).all() and ((matrix != 0).sum(-2) <= K).all()
    assert matrix.diagonal(dim1=-2, dim2=-1).abs().max() == 0
    args = (*[v for v in values[::-1]], read.value.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: run(*a)[1:], args, eps=1e-6, atol=1e-6)


def test_sparse_pieces_are_safe_at_zero_memory_zero_keys_one_hot_and_large_strengths():
    memory = RowMemory.from_tensor(torch.zeros(B, N + 1, W, requires_grad=True))
    keys = torch.zeros(B, 2, W, requires_grad=True)
    weights = sp.content_weights(memory, keys, torch.full((B, 2), 1e4), K)
    one_hot = SparseWeights(torch.zeros(B, 1, K, dtype=torch.int64) + torch.arange(K), torch.tensor([1.0, 0, 0]).expand(B, 1, K))
    link = sparse_link.SparseLink.empty(B, N, K, keys)
    link = sparse_link.update(link, SparseWeights(one_hot.index[:, 0] + 1, one_hot.value[:, 0]),
                              SparseWeights(one_hot.index[:, 0], one_hot.value[:, 0] * keys.sum() + one_hot.value[:, 0]))
    forward, backward = sparse_link.directional_read_weights(link, one_hot, 1)
    out = weights.value.sum() + sp.read(memory, weights).sum() + forward.value.sum() + backward.value.sum()
    grads = torch.autograd.grad(out, keys)
    assert torch.isfinite(out) and all(torch.isfinite(g).all() for g in grads)
