"""Tests for the kept per-sequence buffers (``memory.pool``): a buffer is handed out again only when nothing
else uses it, refilled (``full``) or as it was (``empty``); and a sparse DNC, and the NTM's sequence kernel,
trained over several sequences on kept buffers compute what they compute on fresh ones."""

from __future__ import annotations

import pytest
import torch

from mann_zoo.memory import pool


@pytest.fixture
def kept(monkeypatch):
    """Every buffer kept, whatever its size; the pool empty before and after."""
    monkeypatch.setattr(pool, "MIN_BYTES", 0)
    pool.clear()
    yield
    pool.clear()


def test_a_free_buffer_is_handed_out_again_refilled(kept):
    first = pool.full((3, 4), 7, torch.float32, torch.device("cpu"))
    address = first.data_ptr()
    first.add_(1)
    del first
    again = pool.full((3, 4), 2, torch.float32, "cpu")
    assert again.data_ptr() == address
    assert again.tolist() == [[2.0] * 4] * 3
    other = pool.zeros((3, 4), torch.ones((), dtype=torch.float64))  # another dtype: another buffer
    assert other.dtype == torch.float64 and other.abs().sum() == 0 and other.data_ptr() != address


def test_empty_hands_out_a_free_buffer_as_its_last_user_left_it(kept):
    first = pool.empty((3, 4), torch.float32, "cpu")
    address = first.fill_(5.0).data_ptr()
    del first
    again = pool.empty((3, 4), torch.float32, "cpu")
    assert again.data_ptr() == address and again.tolist() == [[5.0] * 4] * 3  # not refilled
    assert pool.empty((3, 4), torch.float32, "cpu").data_ptr() != address  # `again` holds it


@pytest.mark.parametrize("holder", ["name", "view", "detached", "storage", "saved by autograd"])
def test_a_buffer_in_use_is_not_handed_out(kept, holder):
    buffer = pool.full((5,), 1.0, torch.float64, "cpu")
    address = buffer.data_ptr()
    if holder == "view":
        keep = buffer[1:]
        del buffer
    elif holder == "detached":
        keep = buffer.detach()
        del buffer
    elif holder == "storage":
        keep = buffer.untyped_storage()
        del buffer
    elif holder == "saved by autograd":
        weight = torch.ones(5, dtype=torch.float64, requires_grad=True)
        keep = (buffer * weight).sum()  # the product saves the buffer for its backward
        del buffer
    else:
        keep, buffer = buffer, None
    second = pool.full((5,), 0.0, torch.float64, "cpu")
    assert second.data_ptr() != address
    if holder == "saved by autograd":
        keep.backward()
        assert weight.grad.tolist() == [1.0] * 5  # the saved buffer was not refilled with zeros
    del keep, second
    assert pool.full((5,), 0.0, torch.float64, "cpu").data_ptr() == address  # free again: the oldest first


def test_buffers_made_in_inference_mode_are_filled_again_in_training(kept):
    """A buffer first made under inference_mode (Lightning's evaluation) is a normal tensor, which a training
    step may fill again (an inference tensor cannot be changed outside inference mode)."""
    with torch.inference_mode():
        first = pool.full((4, 3), 1.0, torch.float32, "cpu")
        first.mul_(2)
    assert not first.is_inference()
    address = first.data_ptr()
    del first
    again = pool.full((4, 3), 0.0, torch.float32, "cpu")
    assert again.data_ptr() == address and again.abs().sum() == 0
    weight = torch.ones(3, requires_grad=True)
    (again + weight).sum().backward()
    with torch.inference_mode():
        del again
        assert pool.full((4, 3), 5.0, torch.float32, "cpu").data_ptr() == address


def test_only_cpu_buffers_are_kept(kept):
    on_meta = pool.full((1024, 1024), 0.0, torch.float32, "meta")
    assert on_meta.device.type == "meta" and not pool._kept


def test_sparse_link_buffers_are_distinct(kept):
    from mann_zoo.memory import sparse_link

    link = sparse_link.SparseLink.empty(2, 10, 3, torch.zeros(()))
    tensors = [link.values.values, link.columns, link.rows, link.places]
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 4
    assert link.columns.unique().tolist() == [10] and link.rows.unique().tolist() == [10]
    assert link.places.abs().sum() == 0


def test_small_buffers_and_the_bounds_on_kept_ones(monkeypatch):
    pool.clear()
    small = pool.full((4,), 0, torch.float32, "cpu")  # under MIN_BYTES: torch's allocator
    assert not pool._kept and small.tolist() == [0.0] * 4
    monkeypatch.setattr(pool, "MIN_BYTES", 0)
    monkeypatch.setattr(pool, "KEPT", 2)
    buffers = [pool.full((n,), 0, torch.float32, "cpu") for n in (1, 2, 3)]
    assert [b.shape[0] for b in pool._kept] == [2, 3]  # the most recent two
    monkeypatch.setattr(pool, "KEPT", 32)
    monkeypatch.setattr(pool, "MAX_BYTES", 3 * 4 * 5)  # three buffers of five floats
    buffers += [pool.full((5,), 0, torch.float32, "cpu") for _ in range(4)]
    assert [b.shape[0] for b in pool._kept] == [5, 5, 5]
    del buffers
    pool.clear()
    assert not pool._kept


def test_the_kept_bytes_are_half_the_memory_and_at_least_2_gib(monkeypatch, tmp_path):
    """Half of the machine's memory or of the container's limit, the lower; 2 GiB at least, and where neither
    is known; MANN_ZOO_POOL_BYTES where set."""
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    monkeypatch.setattr(pool, "CGROUP_LIMITS", (str(v2), str(v1)))  # neither file yet: no container limit
    sizes = {"SC_PHYS_PAGES": 6 << 20, "SC_PAGE_SIZE": 4096}  # 24 GiB
    monkeypatch.setattr(pool.os, "sysconf", sizes.__getitem__)
    assert pool.half_of_memory() == 12 << 30
    v2.write_text("max\n")  # cgroup v2 without a limit
    v1.write_text(f"{8 << 30}\n")  # a container limited to 8 GiB (v1)
    assert pool.half_of_memory() == 4 << 30
    v2.write_text(f"{6 << 30}\n")
    assert pool.half_of_memory() == 3 << 30
    sizes["SC_PHYS_PAGES"] = 1 << 20  # 4 GiB: still 2 GiB
    assert pool.half_of_memory() == 2 << 30

    def unknown(name):
        raise ValueError(name)
    monkeypatch.setattr(pool.os, "sysconf", unknown)
    v1.unlink()
    v2.unlink()
    assert pool.half_of_memory() == 2 << 30
    monkeypatch.delattr(pool.os, "sysconf")  # Windows
    assert pool.half_of_memory() == 2 << 30
    monkeypatch.setenv("MANN_ZOO_POOL_BYTES", str(1 << 30))
    assert pool._max_bytes() == 1 << 30
    monkeypatch.setenv("MANN_ZOO_POOL_BYTES", "1.5e9")
    with pytest.raises(ValueError, match=r"^MANN_ZOO_POOL_BYTES must be a whole number of bytes >= 0, got '1.5e9'$"):
        pool._max_bytes()


def test_sparse_dnc_on_kept_buffers_computes_what_it_does_on_fresh_ones(monkeypatch):
    """Three training sequences in a row (and one under no_grad between them), with every buffer kept and
    handed out again, against the same with none kept: the same outputs and gradients, bit for bit."""
    from mann_zoo.models import build

    full = pool.full
    handed_again = []

    def counting_full(*args, **kwargs):
        before = [id(b) for b in pool._kept]  # ids: a reference would keep every buffer in use
        buffer = full(*args, **kwargs)
        handed_again.append(id(buffer) in before)
        return buffer

    monkeypatch.setattr(pool, "full", counting_full)

    def train(keep: bool):
        monkeypatch.setattr(pool, "MIN_BYTES", 0 if keep else 1 << 62)
        pool.clear()
        handed_again.clear()
        torch.manual_seed(0)
        model = build("dnc", 5, 4, controller_size=12, memory_slots=40, word_size=6, sparse_k=3).double()
        results = []
        for batch in range(3):
            x = torch.rand(2, 9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(batch))
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            out.pow(2).sum().backward()
            results += [out.detach(), *(p.grad.clone() for p in model.parameters())]
            model.zero_grad()
            with torch.no_grad():
                out = model(x)
                results.append(out[0] if isinstance(out, tuple) else out)
        reused = sum(handed_again)
        pool.clear()
        return results, reused

    kept, reused = train(keep=True)
    fresh, none = train(keep=False)
    assert reused > 0 and none == 0
    for a, b in zip(kept, fresh):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_sparse_dnc_state_held_by_the_caller_is_not_reused(kept):
    """The state of one sequence, still held, keeps its buffers: a second sequence (forward and backward)
    gets others, and the first state reads as before."""
    from mann_zoo.models import build

    torch.manual_seed(0)
    model = build("dnc", 5, 4, controller_size=12, memory_slots=40, word_size=6, sparse_k=3).double()
    x = torch.rand(2, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    state = model.initial_state(2, x)
    for t in range(x.shape[1]):
        _, state, _ = model.step(x[:, t], state)
    held = [state.memory.values, state.memory.units, state.usage.values, state.link.values.values,
            state.link.columns, state.link.rows, state.link.places]
    before = [t.clone() for t in held]
    assert any(t.abs().sum() > 0 for t in before[:4])
    model(x).pow(2).sum().backward()
    for now, then in zip(held, before):
        torch.testing.assert_close(now, then, rtol=0, atol=0)


def test_sparse_dnc_content_candidates_among_written_rows_give_the_full_pass_results(monkeypatch):
    """At N = 400 with short sequences the content look-ups take the short path (the written rows and the m
    lowest others, sparse_kernel.c): outputs and gradients bit for bit those of the full pass."""
    from mann_zoo.memory import native
    from mann_zoo.models import build

    candidates = native.content_candidates
    short = []

    def recording(units, keys, m, written=None):
        if written is not None:
            short.append(bool((written[:, :-1].sum(-1) + m <= (units.shape[-1] - 1) // 8).all()))
        return candidates(units, keys, m, written)

    def train(full_pass: bool):
        monkeypatch.setattr(native, "content_candidates",
                            (lambda units, keys, m, written=None: candidates(units, keys, m)) if full_pass else recording)
        torch.manual_seed(0)
        model = build("dnc", 5, 4, controller_size=12, memory_slots=400, word_size=6, sparse_k=3,
                      sequence_kernel=False).double()  # the torch step (the access kernel calls the C look-up itself)
        x = torch.rand(3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        out = model(x)
        out.pow(2).sum().backward()
        return [out.detach(), *(p.grad for p in model.parameters())]

    ours, theirs = train(full_pass=False), train(full_pass=True)
    assert short and all(short)  # every look-up of the sequence took the short path
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_ntm_sequence_kernel_on_kept_buffers_computes_what_it_does_on_fresh_ones(kept, monkeypatch):
    """Its memories, weightings and saved values come from the pool: a second sequence while the first one's
    graph still holds them gets other buffers, and after the first backward the same ones back, NaN-filled
    first (the kernel must write whatever it reads): the same gradients as on fresh buffers, bit for bit (a
    buffer shared by the two graphs would change the first sequence's)."""
    from mann_zoo.memory import native
    from mann_zoo.models import NTM

    if not native.available():
        pytest.skip("needs the C kernels (a C compiler)")
    torch.manual_seed(0)
    model = NTM(5, 4, controller_size=8, memory_slots=6, word_size=3, memory_init="learned").double()
    first_x, second_x = torch.rand(3, 7, 5, dtype=torch.float64), torch.rand(3, 7, 5, dtype=torch.float64)

    def gradients(x):
        loss = model(x).square().sum()
        return torch.autograd.grad(loss, list(model.parameters()))

    monkeypatch.setattr(pool, "MIN_BYTES", 1 << 40)  # fresh buffers: the reference
    expected_first, expected_second = gradients(first_x), gradients(second_x)
    monkeypatch.setattr(pool, "MIN_BYTES", 0)
    pool.clear()
    held = model(first_x).square().sum()  # its graph holds its buffers
    in_use = len(pool._kept)
    assert in_use >= 4  # memories, weightings, reads, saved values...
    second = gradients(second_x)  # other buffers, and the backward's
    kept_now = len(pool._kept)
    assert kept_now >= 2 * in_use
    first = torch.autograd.grad(held, list(model.parameters()))
    del held
    for buffer in pool._kept:
        buffer.fill_(float("nan"))
    again = gradients(first_x)  # on kept buffers only, now all free
    assert len(pool._kept) == kept_now
    for got, want in ((first, expected_first), (second, expected_second), (again, expected_first)):
        for grad, expected in zip(got, want):
            assert torch.equal(grad, expected)
