"""The NTM over a whole sequence in C (models/ntm_sequence.py, memory/ntm_sequence_kernel.c) against the NTM
stepped one time step at a time through the primitives (the reference): values and gradients, gradcheck of
the autograd node, batch independence, degenerate inputs, and where it stands aside."""

from __future__ import annotations

import pytest
import torch

from mann_zoo.memory import native
from mann_zoo.models import ntm_sequence
from mann_zoo.models.ntm import NTM

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the C kernels (a C compiler)")

# (controller layers, units, read heads, write heads, slots, width, clip): one layer with the paper's heads and
# W = 20 (ntm_kernel.c's specialised copy), 4C = 48 and P = 92 head parameters (matmul_acc's tiles are 16
# float32 or 8 float64 columns: 12 or 4 left for its padded last tile); two layers, more heads, 4C = 52 (4 left
# over), P = 96, and a clip that cuts (priority sort's NTM has 2 layers and 5 + 5 heads).
SIZES = [(1, 12, 1, 1, 10, 20, 20.0), (2, 13, 2, 3, 9, 6, 0.5)]


@pytest.fixture
def kernel_calls(monkeypatch) -> list[int]:
    """A list that gains an entry at each call of the sequence kernel's autograd node."""
    calls = []
    original = ntm_sequence.NTMSequence.apply
    monkeypatch.setattr(ntm_sequence.NTMSequence, "apply", lambda *a: calls.append(1) or original(*a))
    return calls


def generic_ntm(layers, units, read_heads, write_heads, slots, width, clip, dtype=torch.float64, **extra):
    """An NTM away from its initial values (every parameter moved at random), in ``dtype``."""
    torch.manual_seed(0)
    model = NTM(5, 4, controller_size=units, controller_layers=layers, memory_slots=slots, word_size=width,
                read_heads=read_heads, write_heads=write_heads, clip=clip, memory_init="learned", **extra).to(dtype)
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
@pytest.mark.parametrize("steps", [1, 7, 8])  # the backward's two carry buffers: an odd count ends in the spare
def test_values_and_gradients_equal_the_step_by_step_ntm(sizes, batch, steps):
    model = generic_ntm(*sizes)
    x = torch.rand(batch, steps, 5, dtype=torch.float64)
    reference, reference_grads = outputs_and_grads(model, x, False)
    logits, grads = outputs_and_grads(model, x, True)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    for (name, _), grad, expected in zip([("x", None), *model.named_parameters()], grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12, msg=name)


def test_float32_values_and_gradients_agree_with_the_step_by_step_ntm():
    """In float32 (the benchmarks' dtype; expf and logf as ntm_kernel.c's polynomials) to rounding."""
    model = generic_ntm(*SIZES[0], dtype=torch.float32)
    x = torch.rand(5, 9, 5)
    reference, reference_grads = outputs_and_grads(model, x, False)
    logits, grads = outputs_and_grads(model, x, True)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sizes", SIZES)
def test_gradcheck_from_a_generic_state(sizes):
    """The autograd node's hand-written backward against finite differences, float64, every input moved from
    zero: the memory, weightings, reads and controller state as well as the weights."""
    layers, units, read_heads, write_heads, slots, width, clip = sizes
    torch.manual_seed(1)
    B, T, I, H = 2, 3, 3, read_heads + write_heads
    S = 3
    P = H * (width + 3 + S) + 2 * write_heads * width
    layout = ntm_sequence.Layout(layers, S, clip)
    rand = lambda *shape, scale=1.0: (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()  # noqa: E731
    weights = torch.softmax(torch.randn(B, H, slots, dtype=torch.float64), -1).requires_grad_()
    state = [rand(B, units, scale=0.5) for _ in range(2 * layers)]
    cells = []
    for layer in range(layers):
        inputs = I + read_heads * width if layer == 0 else units
        cells += [rand(4 * units, inputs, scale=0.3), rand(4 * units, units, scale=0.3), rand(4 * units, scale=0.3),
                  rand(4 * units, scale=0.3)]
    args = (rand(B, T, I), rand(B, slots, width, scale=0.5), weights, rand(B, read_heads, width, scale=0.5), *state,
            *cells, rand(P, units, scale=0.5), rand(P, scale=0.5))
    assert torch.autograd.gradcheck(lambda *a: ntm_sequence.NTMSequence.apply(layout, *a), args, atol=1e-6)


def test_examples_in_a_batch_do_not_interact(assert_examples_independent):
    """Changing one example's input changes neither the other examples' outputs nor their share of the gradient."""
    model = generic_ntm(*SIZES[1])
    model.sequence_kernel = True
    assert_examples_independent(model, torch.rand(5, 6, 5, dtype=torch.float64), rtol=0)


def test_finite_at_zero_memory_zero_keys_and_saturated_heads():
    """Zero memory and keys (every cosine 0), and the other head parameters far past the clip (strengths,
    gates and sharpening at their largest): finite values and gradients, as the step-by-step NTM's."""
    model = generic_ntm(*SIZES[0])
    width, per_head = model.width, model.address_size  # each head's key, beta, gate, shift, gamma
    with torch.no_grad():
        model.memory_init.zero_()
        model.read_init.zero_()
        model.head_params.weight.mul_(100)
        model.head_params.bias.zero_()
        for head in range(model.read_heads + model.write_heads):
            model.head_params.weight[head * per_head: head * per_head + width] = 0  # keys = clip(0 h + 0) = 0
    x = torch.zeros(3, 5, 5, dtype=torch.float64)
    x[:, :, 0] = 1
    logits, grads = outputs_and_grads(model, x, True)
    assert torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads)
    reference, reference_grads = outputs_and_grads(model, x, False)
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-10)
    for grad, expected in zip(grads, reference_grads):  # some of them large (~1e5) at saturation: relative
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)


def test_without_gradient_the_step_path_runs_with_the_same_values(kernel_calls):
    """No gradient (validation, evaluation): the step path, which keeps one step's state, not every step's."""
    model = generic_ntm(*SIZES[1])
    x = torch.rand(3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        model.sequence_kernel = True
        fast = model(x)
    assert kernel_calls == []
    with torch.enable_grad():
        torch.testing.assert_close(model(x).detach(), fast, rtol=0, atol=1e-12)
    assert kernel_calls == [1]


def test_stands_aside_where_it_does_not_apply(kernel_calls, monkeypatch):
    """record=True, another controller, autocast, or no kernels for the input: the step-by-step path."""
    model = generic_ntm(*SIZES[0], dtype=torch.float32)
    x = torch.rand(2, 4, 5)
    model(x)
    assert kernel_calls == [1]
    model(x, record=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    model.double()(x.double())  # parameters in float64 now, and the input too: it applies
    assert len(kernel_calls) == 2
    feedforward = NTM(5, 4, controller="feedforward", controller_size=8, memory_slots=6, word_size=4)
    feedforward(x)
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    generic_ntm(*SIZES[0], dtype=torch.float32)(x)
    assert len(kernel_calls) == 2


def test_strengths_past_softplus_threshold_have_torchs_gradient():
    """With a clip above 20, beta's and gamma's raw parameters past 20 are softplus' linear part (torch's
    threshold): gradient 1 there, not sigma(p) (at p = 21, 1 - 8e-10)."""
    layers, units, read_heads, write_heads, slots, width, _ = SIZES[0]
    model = generic_ntm(layers, units, read_heads, write_heads, slots, width, 60.0)
    with torch.no_grad():
        for head in range(read_heads + write_heads):
            for row in (width, width + 2 + model.shift_range):  # beta's and gamma's: 21 at every step
                model.head_params.weight[head * model.address_size + row] = 0
                model.head_params.bias[head * model.address_size + row] = 21.0
    x = torch.rand(3, 4, 5, dtype=torch.float64)
    _, grads = outputs_and_grads(model, x, True)
    _, reference_grads = outputs_and_grads(model, x, False)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_an_empty_batch_takes_the_step_path(kernel_calls):
    model = generic_ntm(*SIZES[0], dtype=torch.float32)
    assert model(torch.rand(0, 4, 5)).shape == (0, 4, 4)
    assert kernel_calls == []


def test_the_loop_rejects_tensors_whose_shapes_disagree():
    """native.ntm_sequence_forward checks every shape before the C loop, which trusts them: one line naming the
    tensor and the shape the others imply."""
    T, B, L, C, N, W, Hr, Hw, S = 2, 3, 1, 4, 5, 3, 1, 1, 3
    P = (Hr + Hw) * (W + 3 + S) + 2 * Hw * W
    args = dict(gates_x=torch.zeros(T, B, 4 * C), rec_t=torch.zeros((Hr * W + C) * 4 * C), bias=torch.zeros(L, 4 * C),
                head_t=torch.zeros(C, P), head_b=torch.zeros(P), clip=torch.tensor([20.0]), h0=torch.zeros(L, B, C),
                c0=torch.zeros(L, B, C), memory=torch.zeros(B, N, W),
                weights=torch.full((B, Hr + Hw, N), 1 / N), reads=torch.zeros(B, Hr, W))
    assert native.ntm_sequence_forward(**args, shift=S).h.shape == (L, T + 1, B, C)
    with pytest.raises(ValueError, match=r"head_b must have shape \[%d\], got \[%d\]" % (P, P - 1)):
        native.ntm_sequence_forward(**(args | {"head_b": torch.zeros(P - 1)}), shift=S)
    with pytest.raises(ValueError, match=r"c0 must have shape \[1, 3, 4\]"):
        native.ntm_sequence_forward(**(args | {"c0": torch.zeros(L, B + 1, C)}), shift=S)
    with pytest.raises(ValueError, match=r"H - Hr must be >= 1, got 0"):
        native.ntm_sequence_forward(**(args | {"weights": torch.full((B, Hr, N), 1 / N)}), shift=S)


def test_a_frozen_model_evaluated_with_grad_mode_on_takes_the_step_path(kernel_calls):
    """Nothing to differentiate (frozen parameters, an input without gradient): the step path, which keeps one step's
    state, even with grad mode on."""
    model = generic_ntm(*SIZES[0]).requires_grad_(False)
    model(torch.rand(2, 4, 5, dtype=torch.float64))
    assert kernel_calls == []
