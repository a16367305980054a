"""The sparse DNC's access in C (sparse_access_kernel.c) on both of its paths, against the sparse DNC stepped through
the torch primitives (models/sparse_dnc.py, the reference): one C call per step's access each way
(memory/sparse_access.py; a controller other than the LSTM: here the Elman's) and the whole sequence in one call each
way with the LSTM controller (models/sparse_sequence.py). Values and gradients, gradcheck, batch independence,
degenerate inputs, the backward's bookkeeping, and where they stand aside."""

from __future__ import annotations

import pytest
import torch

from mann_zoo.memory import native, sparse, sparse_access
from mann_zoo.models import sparse_sequence
from mann_zoo.models.dnc import DNC

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the C kernels (a C compiler)")

# (read heads, slots, K, width, deallocation): one read head with K = 8 of 40 slots (the link's rows and columns fill
# and drop entries within a dozen steps); three read heads, K = 3 of 12 slots, deallocation.
SIZES = [(1, 40, 8, 7, False), (3, 12, 3, 5, True)]
PATHS = {"step": "rnn", "sequence": "lstm"}  # the kernel's path -> the controller that takes it


@pytest.fixture(params=list(PATHS))
def path(request) -> str:
    return request.param


@pytest.fixture
def kernel_calls(monkeypatch) -> list[str]:
    """A list that gains "step" at each step through the per-step kernel's autograd node and "sequence" at each
    sequence through the whole-sequence one."""
    calls = []
    for name, function in (("step", sparse_access._Step), ("sequence", sparse_sequence.SparseSequence)):
        monkeypatch.setattr(function, "apply", lambda *a, name=name, original=function.apply: calls.append(name)
                            or original(*a))
    return calls


def generic_dnc(read_heads, slots, k, width, deallocation, path="sequence", dtype=torch.float64, **options):
    """A sparse DNC away from its initial values (every parameter moved at random), in ``dtype``, with the controller
    that takes ``path`` (``PATHS``)."""
    torch.manual_seed(0)
    model = DNC(5, 4, controller=PATHS[path], controller_size=12, memory_slots=slots, word_size=width,
                read_heads=read_heads, sparse_k=k, deallocation=deallocation, **options).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def outputs_and_grads(model, x, kernel, upstream=None):
    model.sequence_kernel = kernel
    x = x.detach().requires_grad_()
    logits = model(x)
    if upstream is None:
        upstream = torch.linspace(-1, 1, logits.numel(), dtype=x.dtype).view_as(logits)
    return logits, torch.autograd.grad(logits, [x, *model.parameters()], upstream)


def assert_equal_grads(grads, expected, model, rtol=1e-10, atol=1e-12):
    for (name, _), grad, reference in zip([("x", None), *model.named_parameters()], grads, expected):
        torch.testing.assert_close(grad, reference, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("sizes", [*SIZES, (2, 400, 3, 6, True)])  # N = 400: few rows written, the short passes
@pytest.mark.parametrize("steps", [1, 14])
def test_values_and_gradients_equal_the_sparse_dnc_stepped_in_torch(sizes, steps, path, kernel_calls):
    model = generic_dnc(*sizes, path)
    x = torch.rand(3, steps, 5, dtype=torch.float64)
    reference, reference_grads = outputs_and_grads(model, x, False)
    assert kernel_calls == []
    logits, grads = outputs_and_grads(model, x, True)
    assert kernel_calls == (["step"] * steps if path == "step" else ["sequence"])
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    assert_equal_grads(grads, reference_grads, model)


def test_two_lstm_layers_on_the_sequence_path(kernel_calls):
    model = generic_dnc(*SIZES[1], controller_layers=2)
    x = torch.rand(3, 9, 5, dtype=torch.float64)
    reference, reference_grads = outputs_and_grads(model, x, False)
    logits, grads = outputs_and_grads(model, x, True)
    assert kernel_calls == ["sequence"]
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    assert_equal_grads(grads, reference_grads, model)


def test_weights_in_any_memory_layout(kernel_calls):
    """Transposed (non-contiguous) interface and LSTM weights: the sequence path reads its own contiguous copies,
    held until the C call returns."""
    model = generic_dnc(*SIZES[1])
    x = torch.rand(3, 7, 5, dtype=torch.float64)
    reference, reference_grads = outputs_and_grads(model, x, False)
    with torch.no_grad():
        for module, name in ((model.interface, "weight"), (model.controller.cells[0], "weight_hh")):
            weight = getattr(module, name)
            setattr(module, name, torch.nn.Parameter(weight.t().contiguous().t()))
            assert not getattr(module, name).is_contiguous()
    logits, grads = outputs_and_grads(model, x, True)
    assert kernel_calls == ["sequence"]
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    assert_equal_grads(grads, reference_grads, model)


def test_two_sequences_in_flight_on_the_kept_buffers(monkeypatch, path):
    """Two sequences' graphs alive at once, every buffer kept by the pool however small: neither takes the other's
    buffers (the second backward's gradients are those of its sequence alone)."""
    from mann_zoo.memory import pool

    monkeypatch.setattr(pool, "MIN_BYTES", 0)
    pool.clear()
    model = generic_dnc(*SIZES[0], path)
    model.sequence_kernel = True
    first, second = torch.rand(2, 2, 6, 5, dtype=torch.float64)
    expected = [outputs_and_grads(model, x, True) for x in (first, second)]
    a, b = model(first), model(second)
    grads_b = torch.autograd.grad(b.sum(), list(model.parameters()))
    grads_a = torch.autograd.grad(a.sum(), list(model.parameters()))
    for logits, grads, (reference, _) in ((a, grads_a, expected[0]), (b, grads_b, expected[1])):
        torch.testing.assert_close(logits, reference, rtol=0, atol=0)
    for x, grads in ((first, grads_a), (second, grads_b)):
        model.sequence_kernel = False
        reference = torch.autograd.grad(model(x).sum(), list(model.parameters()))
        model.sequence_kernel = True
        for grad, expected_grad in zip(grads, reference):
            torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    pool.clear()


def test_float32_values_and_gradients_agree_with_the_sparse_dnc_stepped_in_torch(path, kernel_calls):
    """In float32 (the benchmarks' dtype), six steps: the C activations' exp differs from torch's by ~1e-7, and a
    K-sparse merge near a tie can keep another small entry, so the differences grow with the steps (6e-8 after
    three here, 3e-5 after ten); float64 above checks the equations."""
    model = generic_dnc(*SIZES[1], path, dtype=torch.float32)
    x = torch.rand(4, 6, 5)
    reference, reference_grads = outputs_and_grads(model, x, False)
    logits, grads = outputs_and_grads(model, x, True)
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=5e-5)
    assert_equal_grads(grads, reference_grads, model, rtol=1e-3, atol=5e-4)
    assert kernel_calls and set(kernel_calls) == {path}


@pytest.mark.parametrize("sizes", SIZES)
def test_gradcheck(sizes, path, kernel_calls):
    """The hand-written backward against finite differences (float64; gradcheck's fast mode: random directions),
    through six steps: the later steps' from a
    memory, usage and link that the earlier ones filled; inputs, interface weights and the initial read vectors."""
    model = generic_dnc(*sizes, path)
    model.sequence_kernel = True
    torch.manual_seed(2)
    x = torch.rand(2, 6, 5, dtype=torch.float64, requires_grad=True)
    weight = model.interface.weight.detach().clone().requires_grad_()
    reads = (torch.randn(2, model.read_heads, model.width, dtype=torch.float64) * 0.5).requires_grad_()

    del model.interface.weight  # a plain tensor attribute in its place: the one gradcheck moves

    def run(x, weight, reads):
        model.interface.weight = weight
        return model.unroll(x, model.initial_state(2, x)._replace(read_vectors=reads))

    assert torch.autograd.gradcheck(run, (x, weight, reads), atol=1e-6, fast_mode=True)
    assert kernel_calls and set(kernel_calls) == {path}


def test_examples_in_a_batch_do_not_interact(path, kernel_calls, assert_examples_independent):
    model = generic_dnc(*SIZES[1], path)
    model.sequence_kernel = True
    assert_examples_independent(model, torch.rand(5, 8, 5, dtype=torch.float64))
    assert kernel_calls and set(kernel_calls) == {path}


def test_finite_at_zero_keys_and_saturated_interface(path):
    """Zero keys and write vectors (every cosine 0: all ties, the memory stays zero) and the rest of the interface far
    past the clip: finite values and gradients, equal to the torch path's."""
    model = generic_dnc(*SIZES[1], path)
    R, W = model.read_heads, model.width
    with torch.no_grad():
        model.interface.weight.mul_(100)
        model.interface.bias.zero_()
        model.interface.weight[: R * W + 2 * W] = 0  # read keys, write key, write vector
    x = torch.zeros(3, 6, 5, dtype=torch.float64)
    x[:, :, 0] = 1
    logits, grads = outputs_and_grads(model, x, True)
    assert torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads)
    reference, reference_grads = outputs_and_grads(model, x, False)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    assert_equal_grads(grads, reference_grads, model, rtol=1e-9, atol=1e-10)


def test_later_steps_without_gradient_are_put_back_before_the_earlier_ones_backward(path):
    """Only the first three steps' outputs reach the loss: the later steps' backward never runs, and the state they
    changed is put back before the third step's backward (else it would read the last step's memory)."""
    model = generic_dnc(*SIZES[0], path)
    x = torch.rand(3, 10, 5, dtype=torch.float64)

    def early(kernel):
        model.sequence_kernel = kernel
        xg = x.detach().requires_grad_()
        logits = model(xg)[:, :3]
        return logits, torch.autograd.grad(logits.square().sum(), [xg, *model.parameters()])

    reference, reference_grads = early(False)
    logits, grads = early(True)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    assert_equal_grads(grads, reference_grads, model)


def test_a_second_backward_pass_gives_the_same_gradients(path, kernel_calls):
    """retain_graph: the first pass put the state back, the second runs the steps forward again first."""
    model = generic_dnc(*SIZES[1], path)
    model.sequence_kernel = True
    logits = model(torch.rand(2, 6, 5, dtype=torch.float64))
    first = torch.autograd.grad(logits.sum(), list(model.parameters()), retain_graph=True)
    partial = torch.autograd.grad(logits[:, :2].sum(), list(model.parameters()), retain_graph=True)  # stops early
    second = torch.autograd.grad(logits.sum(), list(model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first, partial))
    assert kernel_calls and set(kernel_calls) == {path}
    for a, b in zip(first, second):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_the_store_takes_over_the_initial_state():
    model = generic_dnc(*SIZES[0], "step")
    state = model.initial_state(2, torch.zeros(1, dtype=torch.float64))
    sparse_access.kernel_state(model, state)
    with pytest.raises(RuntimeError, match="was replaced"):
        state.memory.values


@pytest.mark.parametrize("change", ["no_grad", "record", "masking", "link_sharpness", "write_heads", "dense_k",
                                    "off"])
def test_stands_aside_where_it_does_not_apply(change, path, kernel_calls):
    """Without a gradient, with record=True, masks, link sharpness, two write heads, K >= N, or sequence_kernel
    off: the torch step path."""
    options = {"masking": dict(masking=True), "link_sharpness": dict(link_sharpness=True),
               "write_heads": dict(write_heads=2)}.get(change, {})
    sizes = (1, 6, 6, 4, False) if change == "dense_k" else SIZES[1]
    model = generic_dnc(*sizes, path, **options)
    model.sequence_kernel = change != "off"
    x = torch.rand(2, 3, 5, dtype=torch.float64)
    if change == "no_grad":
        with torch.no_grad():
            model(x)
    elif change == "record":
        model.unroll(x, model.initial_state(2, x), record=True)
    else:
        model(x)
    assert kernel_calls == []


def test_requery_breaks_ties_by_the_lower_slot():
    """Equal cosines (unwritten rows of zeros): the lower slots first, as the kernel chooses."""
    memory = sparse.RowMemory.zeros(1, 9, 3, torch.zeros(1, dtype=torch.float64))
    candidates = torch.tensor([[[6, 2, 7, 4]]])
    written = torch.tensor([[5, 8, 8]])  # slot 8: padding
    keys = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    assert sparse.requery(memory, candidates, keys, written, 3).tolist() == [[[2, 4, 5]]]


def test_the_backward_leaves_the_initial_state_for_the_next_sequence(monkeypatch, path):
    """After a sequence's backward the store's buffers hold the initial state again (zeros; no link entries) and are
    marked for the pool, which hands them to the next sequence unfilled: its values and gradients are still the torch
    path's."""
    from mann_zoo.memory import pool

    monkeypatch.setattr(pool, "MIN_BYTES", 0)  # every buffer kept, however small
    stores = []
    original = sparse_access.Store
    monkeypatch.setattr(sparse_access, "Store", lambda *a: stores.append(original(*a)) or stores[-1])
    pool.clear()
    model = generic_dnc(*SIZES[1], path)
    x = torch.rand(3, 9, 5, dtype=torch.float64)
    fresh = model.initial_state(3, x)
    expected = {name: t.clone() for name, t in (("memory", fresh.memory.values), ("units", fresh.memory.units),
                                                ("usage", fresh.usage.values), ("values", fresh.link.values.values),
                                                ("columns", fresh.link.columns), ("rows", fresh.link.rows),
                                                ("places", fresh.link.places))}
    model.sequence_kernel = True
    model.unroll(x, fresh).sum().backward()
    (store,) = stores
    buffers = dict(memory=store.memory, units=store.units, usage=store.usage_buffer, values=store.values,
                   columns=store.columns, rows=store.rows, places=store.places)
    for name, buffer in buffers.items():
        torch.testing.assert_close(buffer, expected[name], rtol=0, atol=0, msg=name)
        assert buffer.__dict__.get(pool._FILLED) == expected[name].flatten()[0].item(), name
    assert not store.written.any()
    addresses = {name: buffer.data_ptr() for name, buffer in buffers.items()}
    stores.clear()
    del store, buffers, fresh
    reused = model.initial_state(3, x)
    assert reused.memory.values.data_ptr() == addresses["memory"]  # handed back (unfilled: marked)
    assert reused.link.columns.data_ptr() == addresses["columns"]
    del reused
    reference, reference_grads = outputs_and_grads(model, x, False)
    for _ in range(2):  # the second sequence on the first one's buffers
        logits, grads = outputs_and_grads(model, x, True)
        torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
        assert_equal_grads(grads, reference_grads, model)
    pool.clear()


def test_a_state_whose_weightings_are_not_padding_takes_the_torch_step(path, kernel_calls):
    """The store's clean-up after the backward relies on the initial state's empty weightings: any other state steps
    in torch."""
    model = generic_dnc(*SIZES[0], path)
    x = torch.rand(2, 3, 5, dtype=torch.float64)
    state = model.initial_state(2, x)
    state = state._replace(precedence=sparse.SparseWeights(torch.zeros_like(state.precedence.index),
                                                           state.precedence.value))
    model.unroll(x, state).sum().backward()
    assert kernel_calls == []
