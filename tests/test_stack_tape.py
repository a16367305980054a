"""The Stack-RNN and the Tape-RNN (Deletang et al. 2023) and their memory operations.

Memory operations (``update_stack``, ``write_at_head``, ``move_tape``, ``tape_offsets``): against naive
loops on Python floats written from the equations, hand-worked one-hot cases, gradcheck in float64 from a
generic state, invariants and argument errors. Cores: shapes, finiteness, batch independence, a fresh
state per sequence, the records, NaN safety (zero and huge inputs, saturated action softmaxes), dtypes,
gradchecks, the jump length, hand-forced actions, argument errors, the registry and shipped configs, and
one tiny overfit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from mann_zoo.memory import STACK_ACTIONS, TAPE_ACTIONS, move_tape, tape_offsets, update_stack, write_at_head
from mann_zoo.models import NTM, StackRNN, TapeRNN, build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small gain nothing from intra-op threads, and on a busy machine the threads only wait
    for each other: one thread for this module, the previous setting restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _softmax(g, *shape):
    return torch.softmax(_randn(g, *shape), dim=-1)


# --------------------------------------------------------------------------- #
# Naive references (loops on Python floats, straight from the equations)
# --------------------------------------------------------------------------- #
def ref_update_stack(stack, actions, push_value):
    S, A, V = stack.tolist(), actions.tolist(), push_value.tolist()
    b_, n_, w_ = stack.shape
    out = []
    for b in range(b_):
        push, pop, no_op = A[b]

        def cell(i):  # s_{t-1}(i), with an empty cell below the bottom
            return S[b][i] if i < n_ else [0.0] * w_

        rows = [[push * V[b][x] + pop * cell(1)[x] + no_op * cell(0)[x] for x in range(w_)]]
        for i in range(1, n_):
            rows.append([push * cell(i - 1)[x] + pop * cell(i + 1)[x] + no_op * cell(i)[x] for x in range(w_)])
        out.append(rows)
    return torch.tensor(out, dtype=torch.float64)


def ref_move_tape(tape, actions, offsets):
    M, A, O = tape.tolist(), actions.tolist(), offsets.tolist()
    b_, n_, w_ = tape.shape
    return torch.tensor([[[sum(A[b][a] * M[b][(i + O[b][a]) % n_][x] for a in range(len(A[b]))) for x in range(w_)]
                          for i in range(n_)] for b in range(b_)], dtype=torch.float64)


# --------------------------------------------------------------------------- #
# Stack
# --------------------------------------------------------------------------- #
def test_update_stack_matches_the_loop_reference():
    g = _gen(0)
    stack, actions, push_value = _randn(g, 3, 5, 4), _softmax(g, 3, 3), _randn(g, 3, 4)
    torch.testing.assert_close(update_stack(stack, actions, push_value), ref_update_stack(stack, actions, push_value))


def test_update_stack_one_hot_actions_by_hand():
    """Rows 1, 2, 3 of the stack [[1], [2], [3]] (top first): push 9 -> [9, 1, 2] (the bottom 3 dropped),
    pop -> [2, 3, 0] (an empty cell comes up), no-op -> unchanged; a half push, half pop mixes the two."""
    stack = torch.tensor([[1.0], [2.0], [3.0]]).expand(4, 3, 1)
    actions = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]])
    new = update_stack(stack, actions, torch.full((4, 1), 9.0))[..., 0]
    torch.testing.assert_close(new, torch.tensor([[9.0, 1, 2], [2, 3, 0], [1, 2, 3], [5.5, 2, 1]]))
    assert STACK_ACTIONS == ("push", "pop", "no_op")


def test_update_stack_with_one_cell():
    stack = torch.tensor([[[4.0]]]).expand(2, 1, 1)
    new = update_stack(stack, torch.tensor([[0.25, 0.5, 0.25], [0, 1.0, 0]]), torch.tensor([[8.0], [8.0]]))
    torch.testing.assert_close(new[:, 0, 0], torch.tensor([0.25 * 8 + 0.25 * 4, 0.0]))


def test_update_stack_keeps_its_dtype_and_stays_finite_for_huge_values():
    g = _gen(1)
    for dtype in (torch.float32, torch.float64):
        stack = (_randn(g, 2, 4, 3) * 1e30).to(dtype)
        new = update_stack(stack, F.one_hot(torch.tensor([0, 1]), 3).to(dtype), torch.zeros(2, 3, dtype=dtype))
        assert new.dtype == dtype and torch.isfinite(new).all()


# --------------------------------------------------------------------------- #
# Tape
# --------------------------------------------------------------------------- #
def test_tape_offsets_are_stay_left_right_and_the_jumps():
    assert TAPE_ACTIONS == ("write_stay", "write_left", "write_right", "jump_left", "jump_right")
    torch.testing.assert_close(tape_offsets(torch.tensor([3, 7])), torch.tensor([[0, 1, -1, 3, -3], [0, 1, -1, 7, -7]]))


def test_move_tape_matches_the_loop_reference_with_per_example_offsets():
    """Offsets of any sign and larger than N (taken modulo N), a different row per example."""
    g = _gen(2)
    tape, actions = _randn(g, 3, 6, 2), _softmax(g, 3, 5)
    offsets = torch.tensor([[0, 1, -1, 2, -2], [0, 1, -1, 9, -9], [0, 1, -1, 6, -13]])
    torch.testing.assert_close(move_tape(tape, actions, offsets), ref_move_tape(tape, actions, offsets))


def test_move_tape_one_hot_moves_by_hand():
    """On the tape [1, 2, 3, 4] (slot 0 under the head), with a jump length of 2: stay -> [1, 2, 3, 4];
    left -> [2, 3, 4, 1] (slot 1's cell comes under the head); right -> [4, 1, 2, 3]; jumps -> [3, 4, 1, 2]."""
    tape = torch.tensor([1.0, 2, 3, 4]).view(1, 4, 1).expand(5, 4, 1)
    offsets = tape_offsets(torch.full((5,), 2))
    moved = move_tape(tape, torch.eye(5), offsets)[..., 0]
    torch.testing.assert_close(moved, torch.tensor([[1.0, 2, 3, 4], [2, 3, 4, 1], [4, 1, 2, 3], [3, 4, 1, 2], [3, 4, 1, 2]]))


def test_move_tape_keeps_the_total_when_the_weights_sum_to_one():
    g = _gen(3)
    tape, actions = _randn(g, 2, 7, 3), _softmax(g, 2, 5)
    moved = move_tape(tape, actions, tape_offsets(torch.tensor([3, 5])))
    torch.testing.assert_close(moved.sum(1), tape.sum(1))


def test_write_at_head_replaces_the_cell_under_the_head():
    g = _gen(4)
    tape, value = _randn(g, 2, 4, 3), _randn(g, 2, 3)
    written = write_at_head(tape, value)
    torch.testing.assert_close(written[:, 0], value)
    torch.testing.assert_close(written[:, 1:], tape[:, 1:])


# --------------------------------------------------------------------------- #
# Memory operations: gradcheck in float64 from a generic state, and argument errors
# --------------------------------------------------------------------------- #
def _generic(seed):
    g = _gen(seed)
    return dict(
        update_stack=(update_stack, (_randn(g, 2, 4, 3), _softmax(g, 2, 3), _randn(g, 2, 3))),
        move_tape=(lambda tape, actions: move_tape(tape, actions, torch.tensor([[0, 1, -1, 2, -2], [0, 1, -1, 5, -5]])),
                   (_randn(g, 2, 4, 3), _softmax(g, 2, 5))),
        write_at_head=(write_at_head, (_randn(g, 2, 4, 3), _randn(g, 2, 3))),
    )


@pytest.mark.parametrize("name", ["update_stack", "move_tape", "write_at_head"])
def test_memory_op_gradcheck(name):
    fn, inputs = _generic(5)[name]
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)  # small: the full Jacobian


@pytest.mark.parametrize("call, field", [
    (lambda: update_stack(torch.zeros(2, 4, 3), torch.zeros(2, 2), torch.zeros(2, 3)), "actions"),
    (lambda: update_stack(torch.zeros(2, 4, 3), torch.zeros(2, 3), torch.zeros(2, 4)), "push_value"),
    (lambda: update_stack(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 4)), "memory"),
    (lambda: write_at_head(torch.zeros(2, 4, 3), torch.zeros(3, 3)), "value"),
    (lambda: move_tape(torch.zeros(2, 4, 3), torch.zeros(2, 5), torch.zeros(2, 4, dtype=torch.long)), "offsets"),
    (lambda: move_tape(torch.zeros(2, 4, 3), torch.zeros(2, 5), torch.zeros(2, 5)), "offsets must be an integer"),
    (lambda: tape_offsets(torch.ones(2)), "jump"),
])
def test_memory_op_bad_arguments_name_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


# --------------------------------------------------------------------------- #
# Cores
# --------------------------------------------------------------------------- #
SMALL = {
    "stack_rnn": ("stack_rnn", dict(controller_size=12, memory_slots=6, word_size=3)),
    "stack_lstm": ("stack_rnn", dict(controller="lstm", controller_size=12, memory_slots=6, word_size=3)),
    "tape_rnn": ("tape_rnn", dict(controller_size=12, memory_slots=8, word_size=3, write_mlp_size=8)),
    "tape_rnn_paper": ("tape_rnn", dict(controller_size=12, memory_slots=8, word_size=3, tapes=2, write_mlp_size=8,
                                        write_mlp_layers=0, jump_writes=False)),
}
CORES = list(SMALL)


def make(key: str, input_size: int = 4, output_size: int = 3, **extra):
    torch.manual_seed(0)
    name, hparams = SMALL[key]
    return build(name, input_size, output_size, **{**hparams, **extra})


@pytest.mark.parametrize("key", CORES)
def test_output_shape_and_finite(key):
    logits = make(key)(torch.rand(3, 7, 4))
    assert logits.shape == (3, 7, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("key", CORES)
def test_examples_in_a_batch_do_not_interact(key):
    model = make(key)
    x = torch.rand(3, 6, 4)
    y = model(x)
    x2 = x.clone()
    x2[0] = torch.rand(6, 4) * 5
    y2 = model(x2)
    assert not torch.allclose(y[0], y2[0])
    torch.testing.assert_close(y[1:], y2[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("key", CORES)
def test_fresh_state_per_sequence(key):
    model = make(key)
    x = torch.rand(2, 5, 4)
    first = model(x)
    model(torch.rand(2, 9, 4))
    torch.testing.assert_close(model(x), first)


@pytest.mark.parametrize("key", CORES)
def test_records(key):
    """The records have their documented shapes, the actions are distributions, the recorded memory is
    the one the next step reads, and recording changes no output."""
    model = make(key)
    x = torch.rand(2, 5, 4)
    logits, trace = model(x, record=True)
    torch.testing.assert_close(logits, model(x))
    if isinstance(model, StackRNN):
        assert trace["actions"].shape == (2, 5, 3) and trace["push_values"].shape == (2, 5, 3)
        assert trace["stack"].shape == (2, 5, 6, 3)
        memory = trace["stack"]
    else:
        K = model.tapes
        assert trace["actions"].shape == (2, 5, K, 5) and trace["write_values"].shape == (2, 5, K, 3)
        assert trace["tape"].shape == (2, 5, K, 8, 3)
        memory = trace["tape"]
    assert (trace["actions"] >= 0).all()
    torch.testing.assert_close(trace["actions"].sum(-1), torch.ones(trace["actions"].shape[:-1]))
    # replaying step by step from the recorded memory gives the same next memory
    state = model.initial_state(2, x)
    for t in range(3):
        _, state, _ = model.step(x[:, t], state)
    torch.testing.assert_close(state[0], memory[:, 2])


@pytest.mark.parametrize("key", CORES)
def test_float64_follows_the_input(key):
    assert make(key).double()(torch.rand(2, 4, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("key", CORES)
@pytest.mark.parametrize("case", ["zero", "huge", "saturated_actions"])
def test_no_nan_in_values_or_gradients(key, case):
    """Zero inputs; inputs of +-1e6 (the controller saturates); action logits scaled by 1e6 (one-hot
    action weights): finite logits and finite parameter gradients over 20 steps."""
    model = make(key)
    x = torch.zeros(2, 20, 4) if case == "zero" else torch.randn(2, 20, 4) * (1e6 if case == "huge" else 1)
    if case == "saturated_actions":
        with torch.no_grad():
            model.action_logits.weight.mul_(1e6)
            model.action_logits.bias.mul_(1e6)
    logits = model(x)
    (logits * torch.randn_like(logits)).sum().backward()
    assert torch.isfinite(logits).all()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("key", CORES)
def test_gradcheck_one_step_from_a_generic_state(key):
    """gradcheck in float64 of one step, outputs and new memory, against the input and a non-zero memory."""
    model = make(key).double()
    x = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    state = model.initial_state(2, x.unsqueeze(1))
    memory = (torch.rand(state[0].shape, dtype=torch.float64) - 0.5).requires_grad_()

    def one_step(x, memory):
        features, new_state, _ = model.step(x, state._replace(**{state._fields[0]: memory}))
        return features, new_state[0]

    assert torch.autograd.gradcheck(one_step, (x, memory), eps=1e-6, atol=1e-5, fast_mode=True)


def test_gradcheck_whole_sequence():
    """Through the memory over time: the Tape-RNN (the jumps, l = 2) over 3 steps, against the input."""
    model = make("tape_rnn", controller_size=6).double()
    x = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x, input_length=2), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_mixed_precision_forward_and_backward():
    for key in ("stack_rnn", "tape_rnn"):
        model = make(key)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.rand(2, 6, 4))
        logits.float().square().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --------------------------------------------------------------------------- #
# Forced actions: the memory does what the equations say
# --------------------------------------------------------------------------- #
def _force(model, action: int):
    """Make the action softmax put (numerically) all its weight on ``action``."""
    with torch.no_grad():
        model.action_logits.weight.zero_()
        model.action_logits.bias.fill_(-50.0)
        per_memory = len(TAPE_ACTIONS) if isinstance(model, TapeRNN) else len(STACK_ACTIONS)
        model.action_logits.bias.view(-1, per_memory)[:, action] = 50.0  # each tape's softmax


def test_stack_rnn_forced_push_then_pop():
    model = make("stack_rnn")
    x = torch.rand(2, 3, 4)
    _force(model, 0)  # push
    _, trace = model(x, record=True)
    torch.testing.assert_close(trace["stack"][:, 0, 0], trace["push_values"][:, 0])
    torch.testing.assert_close(trace["stack"][:, 2, :3], trace["push_values"].flip(1))  # last pushed on top
    _force(model, 1)  # pop: the stack stays empty (up to the push weight left by the softmax, e^-100)
    _, trace = model(x, record=True)
    assert trace["stack"].abs().max() < 1e-30


@pytest.mark.parametrize("jump_writes", [True, False])
def test_tape_rnn_forced_jump_left_writes_only_in_the_code_variant(jump_writes):
    """jump-left with l = 3 on a blank tape of 8 cells: the code's variant writes v under the head and
    then moves, so v lands in slot -3 mod 8 = 5; the paper's variant moves without writing (blank)."""
    model = make("tape_rnn", jump_writes=jump_writes)
    _force(model, 3)
    _, trace = model(torch.rand(2, 1, 4), record=True, input_length=3)
    tape, value = trace["tape"][:, 0, 0], trace["write_values"][:, 0, 0]
    if jump_writes:
        torch.testing.assert_close(tape[:, 5], value)
        tape = torch.cat([tape[:, :5], tape[:, 6:]], dim=1)
    assert tape.abs().max() < 1e-30


def test_tape_rnn_forced_write_right_lays_the_values_out_in_order():
    """write-right at every step of 4: the value written at step t ends T - t = 4 - t cells to the head's
    left (slot 4 - t), as a machine that writes and moves right leaves it; the other cells stay blank."""
    model = make("tape_rnn")
    _force(model, 2)
    _, trace = model(torch.rand(2, 4, 4), record=True)
    tape, values = trace["tape"][:, -1, 0], trace["write_values"][:, :, 0]
    for t in range(4):
        torch.testing.assert_close(tape[:, 4 - t], values[:, t])
    assert tape[:, [0, 5, 6, 7]].abs().max() < 1e-30


def test_tape_rnn_jump_length():
    """input_length: per example as a [B] tensor (each example as if run alone with its own int);
    without it, T."""
    model = make("tape_rnn")
    x = torch.rand(3, 6, 4)
    lengths = torch.tensor([1, 2, 5])
    together = model(x, input_length=lengths)
    for b in range(3):
        torch.testing.assert_close(together[b], model(x[b : b + 1], input_length=int(lengths[b]))[0])
    torch.testing.assert_close(model(x), model(x, input_length=6))
    assert not torch.allclose(model(x, input_length=1), model(x, input_length=2))
    with pytest.raises(ValueError, match="input_length"):
        model(x, input_length=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="input_length"):
        model(x, input_length=2.5)


# --------------------------------------------------------------------------- #
# Arguments, registry, configs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name, kwargs, field", [
    ("stack_rnn", dict(memory_slots=0), "memory_slots"),
    ("stack_rnn", dict(word_size=0), "word_size"),
    ("stack_rnn", dict(controller="gru"), "controller"),
    ("stack_rnn", dict(stack_size=3), "stack_size"),
    ("tape_rnn", dict(tapes=0), "tapes"),
    ("tape_rnn", dict(controller_size=-1), "controller_size"),
    ("tape_rnn", dict(write_mlp_layers=-1), "write_mlp_layers"),
    ("tape_rnn", dict(write_mlp_size=0), "write_mlp_size"),
])
def test_bad_arguments_name_the_field(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        build(name, 4, 3, **kwargs)


@pytest.mark.parametrize("key", ["stack_rnn", "tape_rnn"])
def test_mismatched_input_names_x(key):
    for bad in (torch.rand(2, 5, 7), torch.rand(2, 0, 4)):
        with pytest.raises(ValueError, match="x must have shape"):
            make(key)(bad)


@pytest.mark.parametrize("name, cls", [("stack_rnn", StackRNN), ("tape_rnn", TapeRNN)])
def test_short_name_and_shipped_config(name, cls):
    """The short name builds the class; the shipped config names it and its arguments build it (with the
    paper's sizes); the controller's zero initial state is not a checkpointed tensor."""
    assert isinstance(build(name, 4, 3, controller_size=8, memory_slots=4, word_size=2), cls)
    config = yaml.safe_load((ROOT / "configs" / "model" / f"{name}.yaml").read_text())
    core = config["model"]["core"]
    assert core["class_path"] == f"mann_zoo.models.{cls.__name__}"
    model = build(core["class_path"], 4, 3, **core["init_args"])
    assert (model.memory_slots, model.width, model.controller.size) == ((128 if cls is StackRNN else 256), 8, 256)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert not any("initial" in key for key in model.state_dict())


def test_ntm_accepts_the_rnn_controller():
    model = build("ntm", 4, 3, controller="rnn", controller_size=8, memory_slots=4, word_size=3)
    assert isinstance(model, NTM) and torch.isfinite(model(torch.rand(2, 3, 4))).all()


def test_stack_rnn_overfits_a_tiny_reversal_batch():
    """Reverse a string of 4 bits (inputs: the bits, then 4 blank steps; outputs: the bits reversed at the
    blank steps): a fixed batch of 8 is memorised within 40 Adam steps (no error from step 17 on, seed 0)."""
    g = _gen(0)
    bits = torch.randint(0, 2, (8, 4), generator=g).float()
    x = torch.zeros(8, 8, 3)
    x[:, :4, 0], x[:, :4, 1], x[:, 4:, 2] = bits, 1 - bits, 1  # one-hot bits, then blanks
    y = torch.zeros(8, 8, 1)
    y[:, 4:, 0] = bits.flip(1)
    mask = torch.zeros(8, 8, 1)
    mask[:, 4:] = 1
    torch.manual_seed(0)
    model = build("stack_rnn", 3, 1, controller_size=16, memory_slots=8, word_size=4)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-2)
    for _ in range(40):
        optimiser.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(model(x), y, reduction="none") * mask).sum() / 8
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        errors = (((model(x) > 0).float() != y).float() * mask).sum()
    assert errors == 0, f"{errors:.0f} bit errors after 40 steps"


@pytest.mark.parametrize("key", ["stack_rnn", "tape_rnn"])
def test_compiled_step_matches_eager_and_compiles_once_for_every_length(key):
    """compile=True (as the chomsky grid runs them): values and gradients equal the eager ones, and
    batches of other lengths (and the Tape-RNN's per-example jump lengths) reuse the compiled step. The
    backend is AOTAutograd's eager one (the graph dynamo traces, and its forward and backward): a cold
    inductor compile cost 15-20 s each; test_models compiles the NTM end to end with inductor."""
    from torch._dynamo.utils import counters

    eager, compiled = make(key), make(key, compile=True)
    compiled._step = torch.compile(compiled.step, backend="aot_eager", dynamic=False)
    compiled.load_state_dict(eager.state_dict())
    x, lengths = torch.rand(2, 3, 4), torch.tensor([1, 2])
    extra = {"input_length": lengths} if key == "tape_rnn" else {}
    torch.testing.assert_close(compiled(x, **extra), eager(x, **extra), rtol=1e-4, atol=1e-5)
    grads = [torch.autograd.grad(m(x, **extra).sum(), list(m.parameters())) for m in (eager, compiled)]
    for g_eager, g_compiled in zip(*grads):
        torch.testing.assert_close(g_compiled, g_eager, rtol=1e-3, atol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    compiled(torch.rand(2, 5, 4), **({"input_length": torch.tensor([3, 4])} if extra else {})).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs
