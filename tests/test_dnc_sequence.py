"""The DNC over a whole sequence in C (models/dnc_sequence.py, memory/dnc_kernel.c) against the DNC stepped one
time step at a time (the reference): values and gradients, gradcheck of the autograd node from a generic state,
batch independence, degenerate inputs, and where it stands aside."""

from __future__ import annotations

import pytest
import torch

from mann_zoo.memory import native
from mann_zoo.models import dnc_sequence
from mann_zoo.models.dnc import DNC

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the C kernels (a C compiler)")

# (controller layers, units, read heads, slots, width, clip, options): the plain DNC with 4C = 48 and P = 57 interface
# parameters (matmul_acc's tiles are 16 float32 or 8 float64 columns: some left for its padded last tile); two
# layers, three read heads and Csordas & Schmidhuber's masking (with a floor) and deallocation, and a clip that cuts.
SIZES = [(1, 12, 1, 9, 6, 20.0, {}),
         (2, 13, 3, 7, 5, 0.5, {"masking": True, "mask_floor": 0.1, "deallocation": True})]


@pytest.fixture
def kernel_calls(monkeypatch) -> list[int]:
    """A list that gains an entry at each call of the sequence kernel's autograd node."""
    calls = []
    original = dnc_sequence.DNCSequence.apply
    monkeypatch.setattr(dnc_sequence.DNCSequence, "apply", lambda *a: calls.append(1) or original(*a))
    return calls


def generic_dnc(layers, units, read_heads, slots, width, clip, options, dtype=torch.float64):
    """A DNC away from its initial values (every parameter moved at random), in ``dtype``."""
    torch.manual_seed(0)
    model = DNC(5, 4, controller_size=units, controller_layers=layers, memory_slots=slots, word_size=width,
                read_heads=read_heads, clip=clip, **options).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def outputs_and_grads(model, x, sequence_kernel):
    model.sequence_kernel = sequence_kernel
    x = x.detach().requires_grad_()
    logits = model(x)
    upstream = torch.linspace(-1, 1, logits.numel(), dtype=x.dtype).view_as(logits)
    return logits, torch.autograd.grad(logits, [x, *model.parameters()], upstream)


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("batch", [3, 6])  # matmul_acc: fewer than 4 rows; one block of 4 and 2 rows after it
@pytest.mark.parametrize("steps", [1, 8, 9])  # the backward's carry buffers: an odd count ends in the spare
def test_values_and_gradients_equal_the_step_by_step_dnc(sizes, batch, steps, kernel_calls):
    model = generic_dnc(*sizes)
    x = torch.rand(batch, steps, 5, dtype=torch.float64)
    reference, reference_grads = outputs_and_grads(model, x, False)
    assert kernel_calls == []
    logits, grads = outputs_and_grads(model, x, True)
    assert kernel_calls == [1]
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    for (name, _), grad, expected in zip([("x", None), *model.named_parameters()], grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12, msg=name)


def test_float32_values_and_gradients_agree_with_the_step_by_step_dnc():
    """In float32 (the benchmarks' dtype; expf as the kernels' polynomial) to rounding."""
    model = generic_dnc(*SIZES[1], dtype=torch.float32)
    x = torch.rand(5, 9, 5)
    reference, reference_grads = outputs_and_grads(model, x, False)
    logits, grads = outputs_and_grads(model, x, True)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sizes", SIZES)
def test_gradcheck_from_a_generic_state(sizes):
    """The autograd node's hand-written backward against finite differences, float64, every input moved from zero:
    memory, usage, link, precedence, weightings, reads and controller state as well as the weights."""
    layers, units, R, N, W, clip, options = sizes
    masking = options.get("masking", False)
    layout = dnc_sequence.Layout(layers, clip, options.get("mask_floor", 0.0), masking,
                                 options.get("deallocation", False))
    torch.manual_seed(1)
    B, T, I = 2, 3, 3
    P = native.dnc_interface_size(R, W, masking)
    rand = lambda *shape, scale=1.0: (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()  # noqa: E731
    leaf = lambda t: t.detach().requires_grad_()  # noqa: E731
    link = torch.rand(B, N, N, dtype=torch.float64) / N * (1 - torch.eye(N, dtype=torch.float64))
    memory_state = [rand(B, N, W, scale=0.5), leaf(torch.rand(B, N, dtype=torch.float64)), leaf(link),
                    leaf(0.9 * torch.softmax(torch.randn(B, N, dtype=torch.float64), -1)),
                    leaf(torch.softmax(torch.randn(B, R, N, dtype=torch.float64), -1)),
                    leaf(0.8 * torch.softmax(torch.randn(B, N, dtype=torch.float64), -1)), rand(B, R, W, scale=0.5)]
    state = [rand(B, units, scale=0.5) for _ in range(2 * layers)]
    cells = []
    for layer in range(layers):
        inputs = I + R * W if layer == 0 else units
        cells += [rand(4 * units, inputs, scale=0.3), rand(4 * units, units, scale=0.3), rand(4 * units, scale=0.3),
                  rand(4 * units, scale=0.3)]
    args = (rand(B, T, I), *memory_state, *state, *cells, rand(P, units, scale=0.5), rand(P, scale=0.5))
    assert torch.autograd.gradcheck(lambda *a: dnc_sequence.DNCSequence.apply(layout, *a), args, atol=1e-6)


def test_examples_in_a_batch_do_not_interact(assert_examples_independent):
    """Changing one example's input changes neither the other examples' outputs nor their share of the gradient."""
    model = generic_dnc(*SIZES[1])
    model.sequence_kernel = True
    assert_examples_independent(model, torch.rand(5, 6, 5, dtype=torch.float64))


def test_finite_at_zero_keys_and_saturated_interface():
    """Zero keys and write vectors (every cosine 0, memory stays zero) and the rest of the interface far past the
    clip (strengths, gates and modes at their extremes): finite values and gradients, as the step-by-step DNC's."""
    model = generic_dnc(*SIZES[1])
    R, W = model.read_heads, model.width
    with torch.no_grad():
        model.interface.weight.mul_(100)
        model.interface.bias.zero_()
        model.interface.weight[: R * W + 2 * W] = 0  # read keys, write key, write vector: clip(0 h + 0) = 0
    x = torch.zeros(3, 5, 5, dtype=torch.float64)
    x[:, :, 0] = 1
    logits, grads = outputs_and_grads(model, x, True)
    assert torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads)
    reference, reference_grads = outputs_and_grads(model, x, False)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-10)


def test_without_gradient_the_step_path_runs_with_the_same_values(kernel_calls):
    """No gradient (validation, evaluation): the step path, which keeps one step's state, not every step's."""
    model = generic_dnc(*SIZES[0])
    x = torch.rand(3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        model.sequence_kernel = True
        fast = model(x)
    assert kernel_calls == []
    with torch.enable_grad():
        torch.testing.assert_close(model(x).detach(), fast, rtol=0, atol=1e-12)
    assert kernel_calls == [1]


def test_stands_aside_where_it_does_not_apply(kernel_calls, monkeypatch):
    """record=True, autocast, link sharpness, two write heads, sparse access, another controller, or no kernels:
    the step-by-step path."""
    model = generic_dnc(*SIZES[0], dtype=torch.float32)
    x = torch.rand(2, 4, 5)
    model(x)
    assert kernel_calls == [1]
    model(x, record=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    for options in ({"link_sharpness": True}, {"write_heads": 2}, {"sparse_k": 4}, {"controller": "feedforward"}):
        DNC(5, 4, controller_size=8, memory_slots=6, word_size=4, **options)(x)
    assert len(kernel_calls) == 1
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    generic_dnc(*SIZES[0], dtype=torch.float32)(x)
    assert len(kernel_calls) == 1


def test_the_loop_rejects_tensors_whose_shapes_disagree():
    """native.dnc_sequence_forward checks every shape before the C loop, which trusts them: one line naming the
    tensor and the shape the others imply."""
    T, B, L, C, N, W, R = 2, 3, 1, 4, 5, 3, 1
    P = native.dnc_interface_size(R, W, False)
    state = (torch.zeros(B, N, W), torch.zeros(B, N), torch.zeros(B, N, N), torch.zeros(B, N), torch.zeros(B, R, N),
             torch.zeros(B, N), torch.zeros(B, R, W))
    args = dict(gates_x=torch.zeros(T, B, 4 * C), rec_t=torch.zeros((R * W + C) * 4 * C), bias=torch.zeros(L, 4 * C),
                iface_t=torch.zeros(C, P), iface_b=torch.zeros(P), consts=torch.tensor([20.0, 0.0]),
                h0=torch.zeros(L, B, C), c0=torch.zeros(L, B, C), state=state, masking=False, deallocation=False)
    assert native.dnc_sequence_forward(**args).h.shape == (L, T + 1, B, C)
    with pytest.raises(ValueError, match=r"iface_b must have shape \[%d\], got \[%d\]" % (P, P - 1)):
        native.dnc_sequence_forward(**(args | {"iface_b": torch.zeros(P - 1)}))
    with pytest.raises(ValueError, match=r"link must have shape \[3, 5, 5\]"):
        native.dnc_sequence_forward(**(args | {"state": (*state[:2], torch.zeros(B, N, N + 1), *state[3:])}))
    with pytest.raises(ValueError, match=r"iface_t must have shape"):  # masking: more interface parameters
        native.dnc_sequence_forward(**(args | {"masking": True}))


def test_values_and_gradients_equal_the_dnc_stepped_through_the_composed_primitives(monkeypatch):
    """Against the step path with the composed primitives (not ``dnc_kernel.c``'s access, which the step path on the
    CPU shares with the sequence kernel)."""
    from mann_zoo.models import dnc as dnc_module

    model = generic_dnc(*SIZES[1])
    x = torch.rand(4, 6, 5, dtype=torch.float64)
    logits, grads = outputs_and_grads(model, x, True)
    access = dnc_module.mem.access
    monkeypatch.setattr(dnc_module.mem, "access", lambda *a, **k: access(*a, **(k | {"composed": True})))
    reference, reference_grads = outputs_and_grads(model, x, False)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_a_frozen_model_evaluated_with_grad_mode_on_takes_the_step_path(kernel_calls):
    """Nothing to differentiate (frozen parameters, an input without gradient): the step path, which keeps one step's
    state, even with grad mode on."""
    model = generic_dnc(*SIZES[0]).requires_grad_(False)
    model(torch.rand(2, 4, 5, dtype=torch.float64))
    assert kernel_calls == []
