"""The DNC's fused memory access of one step (memory/dnc_access.py, memory/dnc_kernel.c) against the composed
primitives (the reference): values and gradients, gradcheck from a generic state, batch independence, degenerate
states, the allocation's ties, bad input, and where it stands aside."""

from __future__ import annotations

import pytest
import torch

from mann_zoo.memory import EPS, access, native
from mann_zoo.memory import dnc_access

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the C kernels (a C compiler)")

STATE = ("memory", "usage", "link", "precedence", "read_weights", "write_weights")


def generic(seed: int, batch: int = 3, slots: int = 7, width: int = 5, read_heads: int = 2, masks: bool = True,
            dtype=torch.float64) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """A state away from the initial zeros (links with zero diagonals, weightings summing to at most 1) and an
    interface of activated values, one write head."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=dtype)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    B, N, W, R = batch, slots, width, read_heads
    link = rand(B, 1, N, N) / N * (1 - torch.eye(N, dtype=dtype))
    state = [randn(B, N, W), rand(B, N), link, 0.9 * torch.softmax(randn(B, 1, N), -1),
             torch.softmax(randn(B, R, N), -1), 0.8 * torch.softmax(randn(B, 1, N), -1)]
    interface = dict(read_keys=randn(B, R, W), read_strengths=1 + 3 * rand(B, R),
                     read_modes=torch.softmax(randn(B, R, 3), -1), write_keys=randn(B, 1, W),
                     write_strengths=1 + 3 * rand(B, 1), erase=rand(B, 1, W), write_vectors=randn(B, 1, W),
                     free_gates=rand(B, R), allocation_gates=rand(B, 1), write_gates=rand(B, 1))
    if masks:
        interface.update(read_masks=rand(B, R, W), write_masks=rand(B, 1, W))
    return state, interface


def _outputs_and_grads(state, interface, deallocation, composed, seed=5):
    leaves = [t.clone().requires_grad_() for t in state]
    named = {k: v.clone().requires_grad_() for k, v in interface.items()}
    out = access(*leaves, **named, deallocation=deallocation, composed=composed)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in out[:7])
    grads = torch.autograd.grad(loss, leaves + list(named.values()))
    return [o.detach() for o in out[:7]], dict(zip(list(STATE) + list(named), grads))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("deallocation", [False, True])
@pytest.mark.parametrize("read_heads", [1, 3])
def test_dnc_access_equals_the_composed_primitives(dtype, masks, deallocation, read_heads, monkeypatch):
    """Values of the new state and reads, and the gradient of every input, fused against composed."""
    calls = []
    original = dnc_access._dnc_access
    monkeypatch.setattr(dnc_access, "_dnc_access", lambda *a: calls.append(1) or original(*a))
    state, interface = generic(1, read_heads=read_heads, masks=masks, dtype=dtype)
    ours, ours_grads = _outputs_and_grads(state, interface, deallocation, composed=False)
    assert calls, "the fused kernel did not run"
    theirs, theirs_grads = _outputs_and_grads(state, interface, deallocation, composed=True)
    tolerance = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for name, a, b in zip(("memory", "usage", "link", "precedence", "read_weights", "write_weights", "reads"),
                          ours, theirs):
        torch.testing.assert_close(a, b, **tolerance, msg=lambda m, name=name: f"{name}: {m}")
    assert ours_grads.keys() == theirs_grads.keys()
    for name in ours_grads:
        torch.testing.assert_close(ours_grads[name], theirs_grads[name], **tolerance,
                                   msg=lambda m, name=name: f"d {name}: {m}")


@pytest.mark.parametrize("masks,deallocation", [(False, False), (True, True)])
def test_dnc_access_gradcheck_from_a_generic_state(masks, deallocation):
    state, interface = generic(2, batch=2, slots=5, width=3, masks=masks)
    names = list(interface)
    inputs = tuple(t.requires_grad_() for t in [*state, *interface.values()])

    def fused(*tensors):
        out = access(*tensors[:6], **dict(zip(names, tensors[6:])), deallocation=deallocation)
        return out[:7]

    assert torch.autograd.gradcheck(fused, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_dnc_access_examples_do_not_interact():
    """Example 0's outputs and gradients do not change when example 1's inputs do."""
    state, interface = generic(3)
    other_state, other_interface = generic(4)
    moved_state = [torch.cat([a[:1], b[1:]]) for a, b in zip(state, other_state)]
    moved_interface = {k: torch.cat([v[:1], other_interface[k][1:]]) for k, v in interface.items()}
    out, grads = _outputs_and_grads(state, interface, True, composed=False)
    moved_out, moved_grads = _outputs_and_grads(moved_state, moved_interface, True, composed=False)
    for a, b in zip(out, moved_out):
        assert torch.equal(a[:1], b[:1])
    for name in grads:  # (the loss's random weights are the same for both: same shapes, same seed)
        assert torch.equal(grads[name][:1], moved_grads[name][:1]), name


@pytest.mark.parametrize("case", ["zero memory and keys", "one-hot weightings", "large strengths", "all used",
                                  "unused"])
def test_dnc_access_is_finite_and_equal_to_the_primitives_in_degenerate_states(case):
    state, interface = generic(6, masks=True, dtype=torch.float32)
    memory, usage, link, precedence, read_weights, write_weights = state
    if case == "zero memory and keys":
        memory.zero_()
        for name in ("read_keys", "write_keys", "write_vectors"):
            interface[name].zero_()
    elif case == "one-hot weightings":
        for weights in (read_weights, write_weights, precedence):
            weights.copy_(torch.nn.functional.one_hot(weights.argmax(-1), weights.shape[-1]))
    elif case == "large strengths":
        interface["read_strengths"].fill_(1e4)
        interface["write_strengths"].fill_(1e4)
    elif case == "all used":
        usage.fill_(1)
    else:  # the initial state: all zeros
        for tensor in state:
            tensor.zero_()
    ours, ours_grads = _outputs_and_grads(state, interface, True, composed=False)
    theirs, theirs_grads = _outputs_and_grads(state, interface, True, composed=True)
    for a, b in zip(ours, theirs):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for name in ours_grads:
        assert torch.isfinite(ours_grads[name]).all(), name
        torch.testing.assert_close(ours_grads[name], theirs_grads[name], rtol=1e-3, atol=1e-4,
                                   msg=lambda m, name=name: f"d {name}: {m}")


@pytest.mark.parametrize("composed", [False, True])
def test_dnc_access_allocates_the_lowest_free_slot_on_ties(composed):
    """With equal usage (the initial zeros, over more slots than torch's default sort keeps stable), allocation
    goes to slot 0, then to the lower of equally used slots."""
    state, interface = generic(7, slots=200, masks=False, dtype=torch.float32)
    memory, usage, link, precedence, read_weights, write_weights = state
    for tensor in (usage, link, precedence, read_weights, write_weights):
        tensor.zero_()
    usage[:, ::2] = 0.5  # even slots half used: the free ones are the odd slots, the lowest of them 1
    interface["allocation_gates"].fill_(1)
    interface["write_gates"].fill_(1)
    out = access(*state, **interface, composed=composed)
    expected = torch.zeros(3, 200)
    expected[:, 1] = 1 - EPS  # (1 - x) for the first slot in order, x = EPS + (1 - EPS) 0
    torch.testing.assert_close(out.write_weights[:, 0, :], expected, rtol=0, atol=1e-6)


def test_dnc_access_operator_rejects_bad_input_with_the_fields_name():
    state, interface = generic(8, masks=False, dtype=torch.float32)
    bad = dict(interface, read_keys=interface["read_keys"][..., :-1])
    with pytest.raises(ValueError, match="read_keys must have shape"):
        access(*state, **bad)
    with pytest.raises(ValueError, match="float32 or float64"):
        torch.ops.mann_zoo.dnc_access(*(t.half() for t in state[:2]), state[2][:, 0], state[3][:, 0], state[4],
                                      state[5][:, 0], interface["read_keys"], interface["read_strengths"], None,
                                      interface["read_modes"], interface["write_keys"][:, 0],
                                      interface["write_strengths"][:, 0], None, interface["erase"][:, 0],
                                      interface["write_vectors"][:, 0], interface["free_gates"],
                                      interface["allocation_gates"][:, 0], interface["write_gates"][:, 0], False)


def test_dnc_access_stands_aside_where_the_kernel_does_not_apply(monkeypatch):
    """Two write heads, link sharpness and float16 run the primitives (no call of the operator)."""
    calls = []
    monkeypatch.setattr(dnc_access, "_dnc_access", lambda *a: calls.append(1))
    state, interface = generic(9, masks=False)
    sharpness = torch.ones(3, 4, dtype=torch.float64) * 2
    out = access(*state, **interface, link_sharpness=sharpness)
    assert not calls and out.allocation is not None
    two = generic(10, masks=False)
    state2 = [two[0][0], two[0][1], two[0][2].expand(-1, 2, -1, -1), two[0][3].expand(-1, 2, -1),
              two[0][4], two[0][5].expand(-1, 2, -1) / 2]
    interface2 = {k: torch.cat([v, v], 1) if k in ("write_keys", "write_strengths", "erase", "write_vectors",
                                                       "allocation_gates", "write_gates") else v
                  for k, v in two[1].items()}
    interface2["read_modes"] = torch.softmax(torch.randn(3, 2, 5, dtype=torch.float64), -1)
    assert access(*state2, **interface2).write_weights.shape == (3, 2, 7) and not calls


@pytest.mark.parametrize("slots,width", [(1, 1), (1, 4), (6, 1)])
def test_dnc_access_one_slot_or_one_word_and_reads_alone(slots, width):
    """N = 1 or W = 1, and a loss on the reads alone (the other outputs' gradients None): fused equals composed."""
    state, interface = generic(11, slots=slots, width=width, masks=True)

    def reads_and_grads(composed):
        leaves = [t.clone().requires_grad_() for t in state]
        named = {k: v.clone().requires_grad_() for k, v in interface.items()}
        out = access(*leaves, **named, deallocation=True, composed=composed)
        weights = torch.linspace(-1, 1, out.read_vectors.numel(), dtype=torch.float64).view_as(out.read_vectors)
        return out.read_vectors, torch.autograd.grad((out.read_vectors * weights).sum(), leaves + list(named.values()))

    ours, ours_grads = reads_and_grads(False)
    theirs, theirs_grads = reads_and_grads(True)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_dnc_access_backward_rejects_a_saved_order_that_is_not_slots():
    """The backward operator reads the allocation order from ``saved`` (the caller's): a slot outside [0, N) is a
    one-line error, not a write past a buffer."""
    state, interface = generic(12, masks=False)
    one = lambda t: t[:, 0].contiguous()  # noqa: E731
    inputs = (state[0], state[1], one(state[2]), one(state[3]), state[4], one(state[5]), interface["read_keys"],
              interface["read_strengths"], None, interface["read_modes"], one(interface["write_keys"]),
              one(interface["write_strengths"]), None, one(interface["erase"]), one(interface["write_vectors"]),
              interface["free_gates"], one(interface["allocation_gates"]), one(interface["write_gates"]))
    out = torch.ops.mann_zoo.dnc_access(*inputs, False)
    saved = out[7].clone()
    N = state[0].shape[1]
    saved[:, N] = 1e6  # the first entry of the allocation order
    with pytest.raises(ValueError, match=r"allocation order \(slots in \[0, 7\)\)"):
        torch.ops.mann_zoo.dnc_access_backward(*inputs, out[0], out[1], out[4], out[5], saved, out[0], None, None,
                                               None, None, None, None, False)
