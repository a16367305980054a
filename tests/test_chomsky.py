"""Tests of the Chomsky-hierarchy tasks of Deletang et al. 2023 (tasks/chomsky/): for every task, examples
worked by hand (the paper's code's own examples where it gives some), its answers against a reference
written here in plain Python on random samples, and the one-hot format of its batches. The protocol
shared with every task (reproducibility, resume, validation sets) is tested in test_tasks.py."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml

from tasks import (
    CHOMSKY_TASKS,
    BinaryAdditionTask,
    BucketSortTask,
    CycleNavigationTask,
    DuplicateStringTask,
    EvenPairsTask,
    MissingDuplicateTask,
    ModularArithmeticBracketsTask,
    ModularArithmeticTask,
    OddsFirstTask,
    ReverseStringTask,
    StackManipulationTask,
)

ROOT = Path(__file__).parents[1]
NEW = [name for name in CHOMSKY_TASKS if name != "parity_check"]  # parity check: test_categorical.py

# ---------------------------------------------------------------------------------------------------
# Examples worked by hand: (task, input tokens, output tokens).

MA = 5  # modulus 5: modular arithmetic tokens 5 '+', 6 '-', 7 '*'; with brackets also 8 '(' and 9 ')'
HAND = [
    # 1 + 2 * 3 = 7 = 2; 1 - 1 - 1 = -1 = 4; 0 * 1 + 4 * 3 - 2 = 10 = 0; 3 * 4 * 4 - 2 * 3 = 42 = 2 (mod 5)
    (ModularArithmeticTask, [1, 5, 2, 7, 3], [2]),
    (ModularArithmeticTask, [1, 6, 1, 6, 1], [4]),
    (ModularArithmeticTask, [0, 7, 1, 5, 4, 7, 3, 6, 2], [0]),
    (ModularArithmeticTask, [3, 7, 4, 7, 4, 6, 2, 7, 3], [2]),
    (ModularArithmeticTask, [4], [4]),
    # moves -1, 0, +1, -1, -1 -> -2 = state 3; +1 +1 +1 -1 -> 2; six steps right -> 1; one left -> 4
    (CycleNavigationTask, [0, 1, 2, 0, 0], [3]),
    (CycleNavigationTask, [2, 2, 2, 0], [2]),
    (CycleNavigationTask, [2] * 6, [1]),
    (CycleNavigationTask, [0], [4]),
    # 001110: one 01, one 10 -> even; 0101001: three 01, two 10 -> odd; one bit: no pair
    (EvenPairsTask, [0, 0, 1, 1, 1, 0], [0]),
    (EvenPairsTask, [0, 1, 0, 1, 0, 0, 1], [1]),
    (EvenPairsTask, [1], [0]),
    (EvenPairsTask, [1, 0], [1]),
    (ReverseStringTask, [0, 1, 1, 0, 1, 0], [0, 1, 0, 1, 1, 0]),
    (ReverseStringTask, [1], [1]),
    # stack 0 1 1 0, PUSH 1, POP, POP -> 0 1 1, read from the top; then 2 and zeros to L + 1 = 8 steps
    (StackManipulationTask, [0, 1, 1, 0, 4, 2, 2], [1, 1, 0, 2, 0, 0, 0, 0]),
    (StackManipulationTask, [1, 1, 0, 2, 2, 2], [2, 0, 0, 0, 0, 0, 0]),  # emptied
    (StackManipulationTask, [0, 2, 2, 3], [0, 2, 0, 0, 0]),  # a POP on the empty stack does nothing
    (StackManipulationTask, [1, 0, 4, 3, 2], [1, 0, 1, 2, 0, 0]),  # 1 0 1 0, POP -> 1 0 1
    (StackManipulationTask, [1], [1, 2]),
    # ((1-2)*(-3)) = (-1)(-3) = 3; (4+(2*3)) = 10 = 0; -2 = 3; ((-1)) is not in the grammar but parses
    (ModularArithmeticBracketsTask, [8, 8, 1, 6, 2, 9, 7, 8, 6, 3, 9, 9], [3]),
    (ModularArithmeticBracketsTask, [8, 4, 5, 8, 2, 7, 3, 9, 9], [0]),
    (ModularArithmeticBracketsTask, [6, 2], [3]),
    (ModularArithmeticBracketsTask, [8, 8, 6, 1, 9, 9], [4]),
    (DuplicateStringTask, [1, 0, 1], [1, 0, 1, 1, 0, 1]),
    (DuplicateStringTask, [0], [0, 0]),
    # positions from 0: s1 s3 s5 s7, then s0 s2 s4 s6
    (OddsFirstTask, [0, 0, 1, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 1, 0, 0]),
    (OddsFirstTask, [1, 0, 0, 0], [0, 0, 1, 0]),
    (OddsFirstTask, [1, 1, 0], [1, 1, 0]),
    (OddsFirstTask, [1], [1]),
    # 0110 0?10 -> 1; 101 1?1 then the empty token 3 -> 0; ?0 -> 0; 1 ? then 3 -> 1; L = 1 -> 1
    (MissingDuplicateTask, [0, 1, 1, 0, 0, 2, 1, 0], [1]),
    (MissingDuplicateTask, [1, 0, 1, 1, 2, 1, 3], [0]),
    (MissingDuplicateTask, [2, 0], [0]),
    (MissingDuplicateTask, [1, 2, 3], [1]),
    (MissingDuplicateTask, [1], [1]),
    # little-endian: 001 + 01101 = 4 + 22 = 26 = 01011; 1001 + 000001 = 9 + 32 = 41 = 100101; 1 + 1 = 01;
    # 111 + 1 = 8 = 0001; then 2 and zeros to L + 1 steps
    (BinaryAdditionTask, [0, 0, 1, 2, 0, 1, 1, 0, 1], [0, 1, 0, 1, 1, 2, 0, 0, 0, 0]),
    (BinaryAdditionTask, [1, 0, 0, 1, 2, 0, 0, 0, 0, 0, 1], [1, 0, 0, 1, 0, 1, 2, 0, 0, 0, 0, 0]),
    (BinaryAdditionTask, [1, 2, 1], [0, 1, 2, 0]),
    (BinaryAdditionTask, [1, 1, 1, 2, 1], [0, 0, 0, 1, 2, 0]),
    # L <= 2: one number, no '+': 0 -> "0"; 2 (bits 0 1) -> 01; 1 (bits 1 0) -> 1
    (BinaryAdditionTask, [0], [0, 2]),
    (BinaryAdditionTask, [0, 1], [0, 1, 2]),
    (BinaryAdditionTask, [1, 0], [1, 2, 0]),
    (BinaryAdditionTask, [0, 0], [0, 2, 0]),
    (BucketSortTask, [1, 0, 2, 0, 4, 1, 1, 2], [0, 0, 1, 1, 1, 2, 2, 4]),
]


@pytest.mark.parametrize("cls, tokens, expected", HAND, ids=lambda v: getattr(v, "name", None))
def test_answers_by_hand(cls, tokens, expected):
    task = cls()
    assert task.answer(torch.tensor([tokens])).tolist() == [expected]
    assert len(expected) == task.output_length(len(tokens))


def test_vocabulary_options_by_hand():
    assert BucketSortTask(vocab_size=2).answer(torch.tensor([[1, 1, 1, 0, 0, 0, 1]])).tolist() == [[0, 0, 0, 1, 1, 1, 1]]
    assert ModularArithmeticTask(modulus=7).answer(torch.tensor([[3, 9, 4, 8, 6]])).tolist() == [[6]]  # 3 * 4 - 6 = 6 (mod 7)
    assert ReverseStringTask(vocab_size=3).answer(torch.tensor([[2, 0, 1]])).tolist() == [[1, 0, 2]]


def test_bracket_expressions_by_hand():
    """The generator of modular arithmetic with brackets, fed chosen random numbers: a length of 1-4 is a
    number d (drawn as int(5u)), -d, (d), (-d); a longer one (A o B) draws |A| in 1 .. L - 4, then o."""
    task = ModularArithmeticBracketsTask()

    def generate(length, uniforms, task=task):
        tokens = []
        value = task.expression(length, iter(uniforms), tokens)
        return tokens, value

    assert generate(1, [0.7]) == ([3], 3)
    assert generate(2, [0.5]) == ([6, 2], 3)  # -2
    assert generate(3, [0.9]) == ([8, 4, 9], 4)  # (4)
    assert generate(4, [0.25]) == ([8, 6, 1, 9], 4)  # (-1)
    assert generate(5, [0.3, 0.5, 0.2, 0.9]) == ([8, 1, 6, 4, 9], 2)  # |A| = 1 (the only choice), '-': (1-4)
    # |A| = 1 + int(8 * 0.5) = 5, '*' = int(3 * 0.8); A = (1-2); B = (-3): ((1-2)*(-3)) = 3
    uniforms = [0.5, 0.8, 0.3, 0.4, 0.2, 0.5, 0.7]
    assert generate(12, uniforms) == ([8, 8, 1, 6, 2, 9, 7, 8, 6, 3, 9, 9], 3)
    # Without multiplication the operators are int(2u): '-' outside, '+' inside: ((1+2)-(-3)) = 6 = 1
    plus_minus = ModularArithmeticBracketsTask(multiplication=False)
    assert generate(12, uniforms, plus_minus) == ([8, 8, 1, 5, 2, 9, 6, 8, 6, 3, 9, 9], 1)


def test_termination_masks_by_hand():
    """Stack manipulation and binary addition score their output up to the termination token only (their
    accuracy mask); the padding after it is neither scored nor a target."""
    task = StackManipulationTask()
    batch = task.encode(torch.tensor([[0, 1, 1, 0, 4, 2, 2]]), torch.tensor([[1, 1, 0, 2, 0, 0, 0, 0]]))
    assert batch.mask[0].tolist() == [0] * 7 + [1, 1, 1, 1, 0, 0, 0, 0]
    assert batch.targets[0, 7:11].argmax(dim=-1).tolist() == [1, 1, 0, 2] and not batch.targets[0, 11:].any()
    assert batch.inputs[0].argmax(dim=-1).tolist() == [0, 1, 1, 0, 4, 2, 2] + [5] * 8
    batch = BinaryAdditionTask().encode(torch.tensor([[1, 2, 1], [0, 2, 1]]), torch.tensor([[0, 1, 2, 0], [1, 2, 0, 0]]))
    assert batch.mask.tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0]]


def test_lengths_by_hand():
    """A task's length: modular arithmetic asks for odd expressions (L - 1 tokens for an even L); missing
    duplicate pads an odd length with the empty token 3; the others read L tokens."""
    generator = torch.Generator().manual_seed(0)
    arithmetic = ModularArithmeticTask()
    assert [arithmetic.sample(generator, 2, length)[0].shape[1] for length in (1, 2, 3, 6, 7)] == [1, 1, 3, 5, 7]
    tokens, _ = MissingDuplicateTask().sample(generator, 4, 7)
    assert tokens[:, 6].tolist() == [3] * 4
    assert MissingDuplicateTask().sample(generator, 3, 1)[0].tolist() == [[1]] * 3
    assert BinaryAdditionTask().sample(generator, 3, 1)[0].tolist() == [[0]] * 3  # 0 .. 2^1 - 2
    assert BinaryAdditionTask().sample(generator, 3, 3)[0].tolist() == [[1, 2, 1]] * 3  # 1 + 1 only
    assert StackManipulationTask().sample(generator, 3, 1)[1].shape == (3, 2)
    assert DuplicateStringTask().sample(generator, 3, 5)[1].shape == (3, 10)


# ---------------------------------------------------------------------------------------------------
# Answers against plain-Python references, on random samples.


def _modular_reference(x, task):
    symbols = {task.modulus: "+", task.modulus + 1: "-", task.modulus + 2: "*"}
    assert all(t < task.modulus for t in x[0::2]) and all(t in symbols for t in x[1::2])
    return [eval("".join(symbols.get(t, str(t)) if i % 2 else str(t) for i, t in enumerate(x))) % task.modulus]


def _brackets_reference(x, task):
    symbols = {task.modulus + k: c for k, c in enumerate("+-*()")}
    return [eval("".join(symbols.get(t, str(t)) for t in x)) % task.modulus]


def _stack_reference(x, task):
    size = next((i for i, t in enumerate(x) if t >= 2), len(x))
    assert 1 <= size <= max(len(x) - 1, 1)  # a stack of 1 .. L - 1 bits, then actions
    stack = list(x[:size])
    for action in x[size:]:
        assert action in (2, 3, 4)
        if action == 2:
            if stack:
                stack.pop()
        else:
            stack.append(action - 3)
    answer = stack[::-1] + [2]
    return answer + [0] * (len(x) + 1 - len(answer))


def _missing_reference(x, task):
    if len(x) == 1:
        return [1]
    assert x.count(2) == 1 and (x[-1] == 3) == (len(x) % 2 == 1) and x.count(3) == len(x) % 2
    half = len(x) // 2
    fits = [b for b in (0, 1) if (w := [b if t == 2 else t for t in x[: 2 * half]])[:half] == w[half:]]
    assert len(fits) == 1
    return fits


def _addition_reference(x, task):
    if len(x) <= 2:
        assert 2 not in x
        value = int("".join(map(str, reversed(x))), 2)
    else:
        assert x.count(2) == 1 and 0 < x.index(2) < len(x) - 1
        n, m = x[: x.index(2)], x[x.index(2) + 1 :]
        assert any(n) and any(m)  # positive numbers
        value = int("".join(map(str, reversed(n))), 2) + int("".join(map(str, reversed(m))), 2)
    answer = [int(c) for c in reversed(f"{value:b}")] + [2]
    return answer + [0] * (len(x) + 1 - len(answer))


REFERENCE = {
    "modular_arithmetic": _modular_reference,
    "cycle_navigation": lambda x, task: [sum(t - 1 for t in x) % 5],
    "even_pairs": lambda x, task: [sum(1 for a, b in zip(x, x[1:]) if a != b) % 2],
    "reverse_string": lambda x, task: [x[i] for i in range(len(x) - 1, -1, -1)],
    "stack_manipulation": _stack_reference,
    "modular_arithmetic_brackets": _brackets_reference,
    "duplicate_string": lambda x, task: x + x,
    "odds_first": lambda x, task: [x[i] for i in range(1, len(x), 2)] + [x[i] for i in range(0, len(x), 2)],
    "missing_duplicate": _missing_reference,
    "binary_addition": _addition_reference,
    "bucket_sort": lambda x, task: sorted(x),
}


@pytest.mark.parametrize("name", NEW)
def test_answers_match_a_reference(name):
    task = CHOMSKY_TASKS[name]()
    generator = torch.Generator().manual_seed(1)
    seen = set()
    for length in (*range(1, 13), 31):
        tokens, outputs = task.sample(generator, 24, length)
        assert tokens.dtype == outputs.dtype == torch.long
        assert outputs.shape == (24, task.output_length(length))
        assert 0 <= int(tokens.min()) and int(tokens.max()) < task.vocabulary
        assert 0 <= int(outputs.min()) and int(outputs.max()) < task.classes
        assert torch.equal(task.answer(tokens), outputs)  # the oracle agrees with the generator
        for x, y in zip(tokens.tolist(), outputs.tolist()):
            assert y == REFERENCE[name](x, task), (x, y)
        seen.update(outputs.flatten().tolist())
    assert seen == set(range(task.classes))  # every class occurs


def test_distributions_cover_their_ranges():
    """The split points drawn per example reach both ends: stack sizes 1 .. L - 1, first numbers of
    1 .. L - 2 bits; bracket expressions reach depth > 1 and all three operators."""
    generator = torch.Generator().manual_seed(2)
    tokens, _ = StackManipulationTask().sample(generator, 400, 6)
    sizes = {next((i for i, t in enumerate(x) if t >= 2), 6) for x in tokens.tolist()}
    assert sizes == {1, 2, 3, 4, 5}
    tokens, _ = BinaryAdditionTask().sample(generator, 400, 6)
    assert {x.index(2) for x in tokens.tolist()} == {1, 2, 3, 4}
    tokens, _ = ModularArithmeticBracketsTask().sample(generator, 200, 20)
    assert {5, 6, 7} <= set(tokens.flatten().tolist())
    assert (tokens[:, :2] == 8).all(dim=1).any()  # "((" : a nested left operand


# ---------------------------------------------------------------------------------------------------
# The one-hot format of batches.


@pytest.mark.parametrize("name", NEW)
def test_batches_are_one_hot_in_the_protocol_format(name):
    task = CHOMSKY_TASKS[name](batch_size=5, max_length=8, val_lengths=(11,), num_val_sequences=16,
                               val_batch_size=8)
    batches = [task.train_batch(i) for i in range(3)] + [b for s in task.val_sets for b in s.batches]
    tape_lengths = set()
    for batch in batches:
        inputs, targets, mask = batch
        assert inputs.shape[-1] == task.vocabulary + 1 and targets.shape[-1] == task.classes
        assert inputs.sum(dim=-1).eq(1).all() and set(inputs.unique().tolist()) == {0.0, 1.0}
        symbols = inputs.argmax(dim=-1)
        length = int((symbols[0] == task.vocabulary).nonzero()[0])  # the first blank step ends the tape
        tape_lengths.add(length)
        outputs = inputs.shape[1] - length
        assert outputs == task.output_length(length)
        assert (symbols[:, :length] < task.vocabulary).all() and (symbols[:, length:] == task.vocabulary).all()
        assert not mask[:, :length].any() and mask[:, length].eq(1).all()  # the first output step is scored
        assert (mask[:, length + 1 :] <= mask[:, length:-1]).all()  # then a prefix of the output steps
        assert targets.sum(dim=-1).eq(mask).all()  # one class per scored step, nothing elsewhere
        answer = task.answer(symbols[:, :length])
        assert torch.equal(targets[:, length:].argmax(dim=-1)[mask[:, length:] == 1], answer[mask[:, length:] == 1])
        if task.termination_class is None:
            assert mask[:, length:].eq(1).all()
        else:  # scored up to and including the termination token
            assert torch.equal(mask[:, length:].sum(dim=1).long() - 1, (answer == task.termination_class).long().argmax(1))
    if name == "modular_arithmetic":
        assert tape_lengths <= {1, 3, 5, 7, 11}  # odd expressions; len_11 reads 11 tokens
    else:
        assert 11 in tape_lengths and tape_lengths <= set(range(1, 9)) | {11}


@pytest.mark.parametrize("name", NEW)
def test_configs_build_the_task_at_the_papers_sizes(name):
    config = yaml.safe_load((ROOT / "configs" / "task" / f"{name}.yaml").read_text())["data"]
    module, _, cls = config["class_path"].rpartition(".")
    task = getattr(importlib.import_module(module), cls)(**config["init_args"])
    assert type(task) is CHOMSKY_TASKS[name] and task.name == name
    assert (task.min_length, task.max_length, task.batch_size) == (1, 40, 128)
    assert task.val_names == ["len_1-40", "len_50", "len_100", "len_200", "len_500"]
    assert task.scoring == "classes"


def test_vocabulary_and_classes_follow_their_code():
    """Input widths (their input_size, plus the blank of the output steps) and output widths."""
    widths = {name: (CHOMSKY_TASKS[name]().input_size, CHOMSKY_TASKS[name]().output_size) for name in NEW}
    assert widths == {
        "modular_arithmetic": (10, 5), "cycle_navigation": (4, 5), "even_pairs": (3, 2), "reverse_string": (3, 2),
        "stack_manipulation": (6, 3), "modular_arithmetic_brackets": (12, 5), "duplicate_string": (3, 2),
        "odds_first": (3, 2), "missing_duplicate": (5, 2), "binary_addition": (4, 3), "bucket_sort": (6, 5),
    }


@pytest.mark.parametrize("cls, kwargs, message", [
    (ModularArithmeticTask, {"modulus": 1}, "modulus must be >= 2, got 1"),
    (ModularArithmeticBracketsTask, {"multiplication": "yes"}, "multiplication must be true or false"),
    (BucketSortTask, {"vocab_size": 1}, "vocab_size must be >= 2, got 1"),
    (DuplicateStringTask, {"min_length": 0}, "min_length"),
])
def test_bad_arguments_name_the_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
