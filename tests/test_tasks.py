"""Tests of the task datamodules (tasks/): protocol, reproducibility, resume, formats, Bayes cost."""

from __future__ import annotations

import itertools
import math
import random

import lightning as L
import pytest
import torch

from tasks import (
    TASKS,
    AssociativeRecallTask,
    BinaryAdditionTask,
    BucketSortTask,
    CopyTask,
    CycleNavigationTask,
    DuplicateStringTask,
    EvenPairsTask,
    MissingDuplicateTask,
    ModularArithmeticBracketsTask,
    ModularArithmeticTask,
    MQARTask,
    NgramsTask,
    OddsFirstTask,
    ParityCheckTask,
    PrioritySortTask,
    RepeatCopyTask,
    RepeatedCopyTask,
    ReverseStringTask,
    SequenceBatch,
    StackManipulationTask,
    bayes_optimal_cost,
    bayes_optimal_predictive,
    build_task,
)

COMMON = {"batch_size": 6, "num_val_sequences": 12, "val_batch_size": 5}

# Small versions of every task, so the whole file runs in seconds.
SMALL = {
    "copy": lambda **kw: CopyTask(bits=4, max_length=6, val_lengths=(3, 9), **{**COMMON, **kw}),
    "repeat_copy": lambda **kw: RepeatCopyTask(
        bits=4, max_length=4, max_repeats=3, val_lengths_repeats=((5, 4),), **{**COMMON, **kw}
    ),
    "associative_recall": lambda **kw: AssociativeRecallTask(
        bits=4, item_length=2, max_items=5, val_items=(7,), **{**COMMON, **kw}
    ),
    "ngrams": lambda **kw: NgramsTask(context_length=3, sequence_length=30, val_lengths=(50,), **{**COMMON, **kw}),
    "priority_sort": lambda **kw: PrioritySortTask(
        bits=4, num_inputs=7, num_outputs=5, val_sizes=((9, 6),), **{**COMMON, **kw}
    ),
    "repeated_copy": lambda **kw: RepeatedCopyTask(
        bits=4, min_length=2, max_length=3, max_repeats=3, val_repeats=(5,), **{**COMMON, **kw}
    ),
    "mqar": lambda **kw: MQARTask(vocabulary=16, sequence_length=8, pairs=2, val_settings=((12, 3),),
                                  **{**COMMON, **kw}),
    "parity_check": lambda **kw: ParityCheckTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    # The other Chomsky-hierarchy tasks: lengths 1-6 (12 validation sequences, 2 per length) and 9; 4-6 where
    # the shortest lengths have one example only (missing duplicate at 1, binary addition at 1 and 3).
    "modular_arithmetic": lambda **kw: ModularArithmeticTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "cycle_navigation": lambda **kw: CycleNavigationTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "even_pairs": lambda **kw: EvenPairsTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "reverse_string": lambda **kw: ReverseStringTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "stack_manipulation": lambda **kw: StackManipulationTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "modular_arithmetic_brackets": lambda **kw: ModularArithmeticBracketsTask(
        max_length=6, val_lengths=(9,), **{**COMMON, **kw}
    ),
    "duplicate_string": lambda **kw: DuplicateStringTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "odds_first": lambda **kw: OddsFirstTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
    "missing_duplicate": lambda **kw: MissingDuplicateTask(
        min_length=4, max_length=6, val_lengths=(9,), **{**COMMON, **kw}
    ),
    "binary_addition": lambda **kw: BinaryAdditionTask(
        min_length=4, max_length=6, val_lengths=(9,), **{**COMMON, **kw}
    ),
    "bucket_sort": lambda **kw: BucketSortTask(max_length=6, val_lengths=(9,), **{**COMMON, **kw}),
}
VARIABLE_LENGTH = ["copy", "repeat_copy", "associative_recall"]
SCALAR_CHANNEL = {  # the one input channel that is not a bit, where a task has one
    "repeat_copy": lambda task: task.bits + 1,  # the encoded repeat count
    "priority_sort": lambda task: task.bits,  # the priority
}


def same(a: SequenceBatch, b: SequenceBatch) -> bool:
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def examples(batch: SequenceBatch, count: int = 1000):
    """Per-example (inputs, targets, mask) trimmed to the example's length (its last scored step)."""
    for x, y, m in itertools.islice(zip(*batch), count):
        length = int(m.nonzero().max()) + 1
        assert not x[length:].any() and not y[length:].any() and not m[length:].any()  # zero padding
        yield x[:length], y[:length], m[:length]


def some_batches(task, count: int = 4) -> list[SequenceBatch]:
    return [task.train_batch(i) for i in range(count)] + [b for s in task.val_sets for b in s.batches]


# ---------------------------------------------------------------------------------------------------
# The shared protocol, for every task.


@pytest.mark.parametrize("name", SMALL)
def test_shapes_masks_and_values(name):
    task = SMALL[name]()
    assert task.name == name
    for batch in some_batches(task):
        assert isinstance(batch, SequenceBatch)
        inputs, targets, mask = batch
        batch_size, steps = mask.shape
        assert batch_size > 1
        assert inputs.shape == (batch_size, steps, task.input_size)
        assert targets.shape == (batch_size, steps, task.output_size)
        assert inputs.dtype == targets.dtype == mask.dtype == torch.float32
        assert set(targets.unique().tolist()) <= {0.0, 1.0}
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert (mask.sum(dim=1) > 0).all()
        assert not targets[mask == 0].any()  # nothing to emit at unscored steps
        binary = [c for c in range(task.input_size) if c != SCALAR_CHANNEL.get(name, lambda t: -1)(task)]
        assert set(inputs[..., binary].unique().tolist()) <= {0.0, 1.0}
        assert torch.isfinite(inputs).all()
    train = task.train_batch(0)
    assert train.inputs.shape[0] == 6


@pytest.mark.parametrize("name", VARIABLE_LENGTH)
def test_lengths_vary_within_a_batch_and_padding_is_masked(name):
    task = SMALL[name](batch_size=16)
    batch = task.train_batch(0)
    lengths = [int(m.nonzero().max()) + 1 for m in batch.mask]
    assert len(set(lengths)) > 1
    assert max(lengths) == batch.mask.shape[1]
    list(examples(batch))  # asserts that padding is zero with mask 0


@pytest.mark.parametrize("name", SMALL)
def test_train_batches_are_reproducible_from_the_seed(name):
    a, b, c = SMALL[name](seed=3), SMALL[name](seed=3), SMALL[name](seed=4)
    assert same(a.train_batch(0), b.train_batch(0))
    assert same(a.train_batch(7), b.train_batch(7))
    assert same(a.train_batch(7), a.train_batch(7))  # a pure function of (seed, index)
    assert not same(a.train_batch(0), c.train_batch(0))
    assert not same(a.train_batch(0), a.train_batch(1))
    stream = list(itertools.islice(iter(a.train_dataloader()), 3))
    for i, batch in enumerate(stream):
        assert isinstance(batch, SequenceBatch)
        assert same(batch, b.train_batch(i))


@pytest.mark.parametrize("name", SMALL)
def test_resume_from_state_dict_continues_the_stream(name):
    uninterrupted = list(itertools.islice(iter(SMALL[name](seed=5).train_dataloader()), 4))

    first = SMALL[name](seed=5)
    loader = iter(first.train_dataloader())
    served = [next(loader) for _ in range(3)]
    state = first.state_dict()
    assert state == {"next_batch": 3}

    resumed = SMALL[name](seed=5)
    resumed.load_state_dict(state)
    fourth = next(iter(resumed.train_dataloader()))
    assert all(same(a, b) for a, b in zip(served, uninterrupted[:3]))
    assert same(fourth, uninterrupted[3])


@pytest.mark.parametrize("name", SMALL)
def test_validation_sets_are_fixed(name):
    task = SMALL[name]()
    loaders = task.val_dataloader()
    assert len(loaders) == len(task.val_names) == len(set(task.val_names))
    first = [list(loader) for loader in loaders]
    second = [list(loader) for loader in task.val_dataloader()]
    fresh = [list(loader) for loader in SMALL[name]().val_dataloader()]
    for a, b, c in zip(first, second, fresh):
        assert sum(batch.inputs.shape[0] for batch in a) == 12
        assert all(batch.inputs.shape[0] <= 5 for batch in a)
        assert all(same(x, y) and same(x, z) for x, y, z in zip(a, b, c))
    assert [s.name for s in task.val_sets] == task.val_names
    assert not same(first[0][0], task.train_batch(0))  # validation is not drawn from the training stream
    assert not same(first[0][0], SMALL[name](seed=1).val_sets[0].batches[0])
    assert same(next(iter(task.test_dataloader()[0])), first[0][0])


def test_a_named_validation_set_does_not_depend_on_the_rest_of_the_grid():
    a = CopyTask(bits=4, max_length=6, val_lengths=(3, 9), **COMMON)
    b = CopyTask(bits=4, max_length=6, val_lengths=(9,), **COMMON)
    assert a.val_names == ["len_1-6", "len_3", "len_9"]
    assert b.val_names == ["len_1-6", "len_9"]
    assert all(same(x, y) for x, y in zip(a.val_sets[2].batches, b.val_sets[1].batches))


def test_default_sizes_follow_the_paper():
    copy = CopyTask()
    assert (copy.bits, copy.min_length, copy.max_length, copy.input_size, copy.output_size) == (8, 1, 20, 9, 8)
    assert copy.val_names == ["len_1-20", "len_10", "len_20", "len_30", "len_50", "len_80", "len_120"]
    assert copy.num_val_sequences == 640
    repeat = RepeatCopyTask()
    assert (repeat.max_length, repeat.max_repeats, repeat.input_size, repeat.output_size) == (10, 10, 10, 9)
    recall = AssociativeRecallTask()
    assert (recall.bits, recall.item_length, recall.min_items, recall.max_items) == (6, 3, 2, 6)
    assert (recall.input_size, recall.output_size) == (8, 6)
    ngrams = NgramsTask()
    assert (ngrams.context_length, ngrams.sequence_length, ngrams.input_size, ngrams.output_size) == (5, 200, 1, 1)
    sort = PrioritySortTask()
    assert (sort.bits, sort.num_inputs, sort.num_outputs, sort.input_size, sort.output_size) == (8, 20, 16, 10, 8)


def test_registry_and_build_task():
    assert set(TASKS) == {"copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort", "repeated_copy",
                          "mqar", "parity_check", "modular_arithmetic", "cycle_navigation", "even_pairs",
                          "reverse_string", "stack_manipulation", "modular_arithmetic_brackets", "duplicate_string",
                          "odds_first", "missing_duplicate", "binary_addition", "bucket_sort"}
    for name, cls in TASKS.items():
        assert cls.name == name
    task = build_task("copy", bits=3, batch_size=2)
    assert isinstance(task, CopyTask) and task.input_size == 4
    with pytest.raises(ValueError, match="'kopy'.*associative_recall.*copy.*priority_sort"):
        build_task("kopy")


# ---------------------------------------------------------------------------------------------------
# Task formats.


def test_copy_format():
    task = SMALL["copy"]()
    bits = task.bits
    for batch in some_batches(task):
        for x, y, m in examples(batch):
            length = (x.shape[0] - 1) // 2
            assert x.shape[0] == 2 * length + 1
            delimiter = x[:, bits]
            assert delimiter.nonzero().flatten().tolist() == [length]  # delimiter only at step L
            assert not x[length:, :bits].any()  # delimiter and blank steps carry no data
            assert torch.equal(y[length + 1 :], x[:length, :bits])  # targets are the input vectors
            assert not y[: length + 1].any()
            assert m.tolist() == [0.0] * (length + 1) + [1.0] * length


def test_repeat_copy_format():
    task = SMALL["repeat_copy"]()
    bits = task.bits
    seen_repeats = set()
    for batch in some_batches(task):
        for x, y, m in examples(batch):
            delimiter = x[:, bits].nonzero().flatten().tolist()
            assert len(delimiter) == 1
            length = delimiter[0]
            repeats = (int(m.sum()) - 1) // length  # R * L copy steps and the end marker are scored
            count_channel = x[:, bits + 1]
            assert not torch.cat([count_channel[:length], count_channel[length + 1 :]]).any()  # only on the delimiter step
            assert math.isclose(float(count_channel[length]), task.encode_repeats(repeats), abs_tol=1e-6)
            seen_repeats.add(repeats)
            end = length + 1 + repeats * length
            assert x.shape[0] == end + 1
            assert not x[length:, :bits].any()
            data = x[:length, :bits]
            for r in range(repeats):  # the data, repeats times
                start = length + 1 + r * length
                assert torch.equal(y[start : start + length, :bits], data)
            assert not y[: end, bits].any()  # end-marker channel off until the end
            assert y[end].tolist() == [0.0] * bits + [1.0]  # the end marker
            assert not y[: length + 1].any()
            assert m.tolist() == [0.0] * (length + 1) + [1.0] * (repeats * length + 1)
    assert {1, 2, 3} <= seen_repeats and max(seen_repeats) == 4  # 4 from the len_5_rep_4 set


def test_repeat_count_encodings():
    """Standardised (the paper): mean 0 and variance 1 over the training repeats 1..3 (mean 2, variance
    (3^2 - 1) / 12 = 2/3); counts past the range continue the same line.  Fraction: R / max_repeats."""
    task = SMALL["repeat_copy"]()
    assert task.repeat_encoding == "standardised"
    std = math.sqrt(2 / 3)
    for repeats, expected in [(1, -1 / std), (2, 0.0), (3, 1 / std), (4, 2 / std)]:
        assert math.isclose(task.encode_repeats(repeats), expected, abs_tol=1e-12)
    values = [task.encode_repeats(r) for r in range(1, 4)]
    assert math.isclose(sum(values) / 3, 0.0, abs_tol=1e-12)
    assert math.isclose(sum(v * v for v in values) / 3, 1.0, rel_tol=1e-12)
    fraction = SMALL["repeat_copy"](repeat_encoding="fraction")
    assert [fraction.encode_repeats(r) for r in (1, 3, 4)] == [1 / 3, 1.0, 4 / 3]
    fixed = RepeatCopyTask(min_repeats=2, max_repeats=2)  # a single count: no spread to divide by
    assert fixed.encode_repeats(2) == 0.0 and fixed.encode_repeats(3) == 1.0


def test_associative_recall_format():
    task = SMALL["associative_recall"]()
    bits, k = task.bits, task.item_length
    for batch in some_batches(task):
        for x, y, m in examples(batch):
            item_starts = x[:, bits].nonzero().flatten().tolist()
            query_marks = x[:, bits + 1].nonzero().flatten().tolist()
            n = len(item_starts)
            assert item_starts == [i * (k + 1) for i in range(n)]
            assert query_marks == [n * (k + 1), n * (k + 1) + k + 1]
            items = [x[s + 1 : s + 1 + k, :bits] for s in item_starts]
            assert len({tuple(item.flatten().tolist()) for item in items}) == n  # distinct items
            query = x[query_marks[0] + 1 : query_marks[1], :bits]
            q = [i for i, item in enumerate(items) if torch.equal(item, query)]
            assert len(q) == 1 and q[0] < n - 1  # the query is one item, never the last
            answer_start = query_marks[1] + 1
            assert x.shape[0] == answer_start + k
            assert not x[answer_start:].any()
            assert torch.equal(y[answer_start:], items[q[0] + 1])  # the item after the query
            assert not y[:answer_start].any()
            assert m.tolist() == [0.0] * answer_start + [1.0] * k


def test_priority_sort_format():
    task = SMALL["priority_sort"]()
    bits = task.bits
    for batch in some_batches(task):
        for x, y, m in examples(batch):
            n = int(x[:, bits + 1].nonzero().flatten()[0])  # the delimiter step
            outputs = x.shape[0] - n - 1
            priorities = x[:n, bits].tolist()
            assert all(-1.0 <= p <= 1.0 for p in priorities)
            assert x[:, bits + 1].nonzero().flatten().tolist() == [n]
            ranked = sorted(range(n), key=lambda i: -priorities[i])[:outputs]
            assert torch.equal(y[n + 1 :], x[ranked, :bits])  # highest priority first
            assert not y[: n + 1].any()
            assert m.tolist() == [0.0] * (n + 1) + [1.0] * outputs
    assert SMALL["priority_sort"]().val_names == ["in_7_out_5", "in_9_out_6"]


def test_ngrams_format():
    task = SMALL["ngrams"]()
    for batch in some_batches(task):
        assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])  # the target is the next bit
        assert batch.mask.eq(1).all()
        bits = NgramsTask.bits_from_batch(batch)
        assert torch.equal(task.batch_from_bits(bits).inputs, batch.inputs)
    assert task.train_batch(0).inputs.shape[1] == 29
    assert [s.batches[0].inputs.shape[1] for s in task.val_sets] == [29, 49]


# ---------------------------------------------------------------------------------------------------
# Dynamic n-grams: the Bayes-optimal predictor.


def test_bayes_optimal_cost_by_hand():
    # Context of one bit.  b1: no counts -> 1/2 (1 bit).  b2 after "1": no counts -> 1 bit.
    # b3 = 0 after "1", which was followed by 1 once: P(0) = (0 + 1/2) / (1 + 1) = 1/4 -> 2 bits.
    # b4 = 1 after "0", which was followed by 1 once: P(1) = 3/4 -> log2(4/3) bits.
    expected = 1 + 1 + 2 + math.log2(4 / 3)
    assert float(bayes_optimal_cost([0, 1, 1, 0, 1], context_length=1)) == pytest.approx(expected)
    p = bayes_optimal_predictive(torch.tensor([0, 1, 1, 0, 1]), context_length=1)
    assert p.tolist() == pytest.approx([0.5, 0.5, 0.75, 0.75])


def _beta_integral(n1: int, n0: int, points: int = 4001) -> float:
    """Integral of p^n1 (1 - p)^n0 under the Beta(1/2, 1/2) prior, numerically (Simpson's rule).

    With p = sin^2(theta) the prior density times dp is (2 / pi) dtheta, a smooth integrand.
    """
    h = (math.pi / 2) / (points - 1)
    total = 0.0
    for i in range(points):
        theta = i * h
        weight = 1 if i in (0, points - 1) else (4 if i % 2 else 2)
        total += weight * math.sin(theta) ** (2 * n1) * math.cos(theta) ** (2 * n0)
    return total * h / 3 * (2 / math.pi)


def _brute_force_cost(bits: list[int], c: int) -> tuple[list[float], float]:
    """Posterior predictives by numerical integration, and the cost from Beta-function marginals."""
    predictives = []
    for t in range(1, len(bits)):  # predict bits[t] from bits[:t]
        if t < c:
            predictives.append(0.5)
            continue
        context = bits[t - c : t]
        followers = [bits[s] for s in range(c, t) if bits[s - c : s] == context]
        n1, n0 = followers.count(1), followers.count(0)
        predictives.append(_beta_integral(n1 + 1, n0) / _beta_integral(n1, n0))
    # Chain rule: the summed log-loss equals the log marginal likelihood, a product over contexts of
    # B(N1 + 1/2, N0 + 1/2) / B(1/2, 1/2) with the final counts, times 1/2 per bit without a context.
    def log_beta(a, b):
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    final = {}
    for s in range(c, len(bits)):
        counts = final.setdefault(tuple(bits[s - c : s]), [0, 0])
        counts[bits[s]] += 1
    log_marginal = sum(log_beta(n1 + 0.5, n0 + 0.5) - log_beta(0.5, 0.5) for n0, n1 in final.values())
    cost = (c - 1) - log_marginal / math.log(2)
    return predictives, cost


def test_bayes_optimal_cost_against_brute_force():
    rng = random.Random(0)
    sequences = [[rng.randint(0, 1) for _ in range(24)] for _ in range(3)]
    sequences.append([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0])  # repeated contexts
    for c in (1, 2, 3):
        for bits in sequences:
            predictives, cost = _brute_force_cost(bits, c)
            assert bayes_optimal_predictive(bits, c).tolist() == pytest.approx(predictives, abs=1e-9)
            assert float(bayes_optimal_cost(bits, c)) == pytest.approx(cost, abs=1e-9)
            actual = [p if b == 1 else 1 - p for p, b in zip(predictives, bits[1:])]
            assert cost == pytest.approx(-sum(math.log2(p) for p in actual), abs=1e-9)
    batch = torch.tensor(sequences[:3])  # batched input gives one cost per sequence
    costs = bayes_optimal_cost(batch, 2)
    assert costs.shape == (3,)
    assert costs.tolist() == pytest.approx([_brute_force_cost(s, 2)[1] for s in sequences[:3]], abs=1e-9)


def test_ngram_validation_sets_carry_the_bayes_optimal_cost():
    task = SMALL["ngrams"]()
    for val_set in task.val_sets:
        costs = torch.cat(
            [bayes_optimal_cost(NgramsTask.bits_from_batch(b), task.context_length) for b in val_set.batches]
        )
        assert val_set.bayes_optimal_bits_per_sequence == pytest.approx(float(costs.mean()))
    assert list(task.bayes_optimal_bits_per_sequence) == task.val_names
    # At the paper's sizes the estimator costs ~131 bits per 200-bit sequence (the paper: ~131-132).
    paper = NgramsTask(num_val_sequences=640)
    assert 127 < paper.val_sets[0].bayes_optimal_bits_per_sequence < 135


# ---------------------------------------------------------------------------------------------------
# Curriculum.


@pytest.mark.parametrize("name", VARIABLE_LENGTH)
def test_curriculum_limits_training_lengths(name):
    full = SMALL[name](batch_size=32)
    short = SMALL[name](batch_size=32, curriculum_max_length=2)
    assert short.current_max_length == 2 and full.current_max_length == full.length_range()[1]
    assert short.train_batch(0).mask.shape[1] < full.train_batch(0).mask.shape[1]
    assert short.state_dict() == {"next_batch": 0, "curriculum_max_length": 2}
    short.set_curriculum_max_length(3)
    restored = SMALL[name](batch_size=32)
    restored.load_state_dict(short.state_dict())
    assert restored.current_max_length == 3 and same(restored.train_batch(4), short.train_batch(4))
    assert short.val_names[0] == full.val_names[0]  # validation keeps the full training range
    assert same(short.val_sets[0].batches[0], full.val_sets[0].batches[0])
    short.set_curriculum_max_length(None)
    assert short.state_dict() == {"next_batch": 0} and same(short.train_batch(0), full.train_batch(0))
    with pytest.raises(ValueError, match="curriculum_max_length"):
        short.set_curriculum_max_length(full.length_range()[1] + 1)


def test_curriculum_lengths_are_respected():
    task = CopyTask(max_length=20, batch_size=64, curriculum_max_length=3)
    lengths = [(x.shape[0] - 1) // 2 for x, _, _ in examples(task.train_batch(0))]
    assert set(lengths) == {1, 2, 3}


def test_repeat_copy_curriculum_on_repeats():
    """``curriculum_on="repeats"`` moves the maximum number of repeats and leaves the lengths alone."""
    task = RepeatCopyTask(batch_size=256, curriculum_on="repeats", curriculum_max_length=1)
    assert task.length_range() == (1, 10) and task.current_max_length == 1
    for batch_repeats, max_repeats in [(1, 1), (3, 3)]:
        task.set_curriculum_max_length(max_repeats)
        seen_lengths, seen_repeats = set(), set()
        for x, _, m in examples(task.train_batch(0)):
            length = int(x[:, task.bits].nonzero()[0])
            seen_lengths.add(length)
            seen_repeats.add((int(m.sum()) - 1) // length)
        assert seen_repeats == set(range(1, batch_repeats + 1))
        assert seen_lengths == set(range(1, 11))  # every training length from the start
    assert task.val_sets[0].name == "len_1-10_rep_1-10"  # validation keeps the full training range
    with pytest.raises(ValueError, match="curriculum_max_length"):
        task.set_curriculum_max_length(11)
    with pytest.raises(ValueError, match="curriculum_on must be one of length, repeats"):
        RepeatCopyTask(curriculum_on="bits")


@pytest.mark.parametrize("name", ["ngrams", "priority_sort"])
def test_fixed_size_tasks_have_no_curriculum(name):
    with pytest.raises(NotImplementedError):
        SMALL[name]().set_curriculum_max_length(2)


# ---------------------------------------------------------------------------------------------------
# Bad arguments.


BAD_ARGUMENTS = [
    (CopyTask, {"bits": 0}, "bits must be >= 1, got 0"),
    (CopyTask, {"bits": 2.5}, "bits"),
    (CopyTask, {"min_length": 30, "max_length": 20}, "min_length=30 must be <= max_length=20"),
    (CopyTask, {"min_length": 0}, "min_length"),
    (CopyTask, {"batch_size": 0}, "batch_size"),
    (CopyTask, {"seed": -1}, "seed"),
    (CopyTask, {"num_val_sequences": 0}, "num_val_sequences"),
    (CopyTask, {"val_batch_size": 0}, "val_batch_size"),
    (CopyTask, {"val_lengths": [10, 0]}, "val_lengths"),
    (CopyTask, {"val_lengths": "10"}, "val_lengths"),
    (CopyTask, {"curriculum_max_length": 21}, "curriculum_max_length"),
    (RepeatCopyTask, {"min_repeats": 5, "max_repeats": 2}, "min_repeats=5 must be <= max_repeats=2"),
    (RepeatCopyTask, {"max_length": 0}, "max_length"),
    (RepeatCopyTask, {"val_lengths_repeats": [(10,)]}, "val_lengths_repeats"),
    (RepeatCopyTask, {"repeat_encoding": "log"}, "repeat_encoding must be one of standardised, fraction"),
    (AssociativeRecallTask, {"min_items": 1}, "min_items"),
    (AssociativeRecallTask, {"item_length": 0}, "item_length"),
    (AssociativeRecallTask, {"min_items": 7}, "min_items=7 must be <= max_items=6"),
    (AssociativeRecallTask, {"bits": 1, "item_length": 2}, "bits \\* item_length"),
    (NgramsTask, {"context_length": 0}, "context_length"),
    (NgramsTask, {"sequence_length": 5}, "sequence_length"),
    (PrioritySortTask, {"num_outputs": 21}, "num_outputs=21 must be <= num_inputs=20"),
    (PrioritySortTask, {"val_sizes": [(3, 5)]}, "val_sizes"),
    (PrioritySortTask, {"bits": -1}, "bits"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_the_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_bad_state_dict_is_rejected():
    with pytest.raises(ValueError, match="next_batch"):
        SMALL["copy"]().load_state_dict({"next_batch": -1})


# ---------------------------------------------------------------------------------------------------
# Inside Lightning: the checkpointed stream position counts consumed batches, not prefetched ones.


class _Recorder(L.LightningModule):
    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(input_size, output_size)
        self.seen: list[SequenceBatch] = []

    def _loss(self, batch: SequenceBatch) -> torch.Tensor:
        logits = self.layer(batch.inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none")
        return (loss.sum(-1) * batch.mask).sum() / batch.mask.sum()

    def training_step(self, batch: SequenceBatch, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch)
        return self._loss(batch)

    def validation_step(self, batch: SequenceBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._loss(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(max_steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.filterwarnings("ignore")
def test_lightning_checkpoint_resumes_the_data_stream(tmp_path):
    reference = SMALL["copy"](seed=9)
    task = SMALL["copy"](seed=9)
    model = _Recorder(task.input_size, task.output_size)
    trainer = _trainer(max_steps=4)
    trainer.fit(model, datamodule=task)
    assert [same(b, reference.train_batch(i)) for i, b in enumerate(model.seen)] == [True] * 4
    assert task.state_dict() == {"next_batch": 4}
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["CopyTask"] == {"next_batch": 4}

    resumed_task = SMALL["copy"](seed=9)
    resumed_model = _Recorder(task.input_size, task.output_size)
    _trainer(max_steps=7).fit(resumed_model, datamodule=resumed_task, ckpt_path=path)
    assert [same(b, reference.train_batch(4 + i)) for i, b in enumerate(resumed_model.seen)] == [True] * 3
    assert resumed_task.state_dict() == {"next_batch": 7}


def test_repeated_copy_is_blocks_of_copy_each_scored_at_every_step():
    """Csordas & Schmidhuber's repeat copy: R blocks, each L vectors and a terminator read, then written
    back (terminator included) while the input is blank; every step of every block is scored."""
    task = RepeatedCopyTask(bits=3, min_length=2, max_length=4, min_repeats=3, max_repeats=3, val_repeats=(6,),
                            batch_size=5, num_val_sequences=4, val_batch_size=4, seed=1)
    assert (task.input_size, task.output_size) == (4, 4)
    assert task.val_names == ["rep_3-3_len_2-4", "rep_6_len_2-4"]
    batch = next(iter(task.train_dataloader()))
    for inputs, targets, mask in zip(*batch):
        t, blocks = 0, 0
        while t < len(mask) and mask[t] == 1:
            length = int(inputs[t:, 3].nonzero()[0])  # the terminator ends the block's input
            assert 2 <= length <= 4
            block = inputs[t : t + length + 1]
            assert torch.equal(block[:length, 3], torch.zeros(length)) and torch.equal(block[length], torch.tensor([0.0, 0, 0, 1]))
            assert torch.equal(targets[t : t + length + 1], torch.zeros(length + 1, 4))  # silent while reading
            assert torch.equal(inputs[t + length + 1 : t + 2 * length + 2], torch.zeros(length + 1, 4))  # blank while writing
            assert torch.equal(targets[t + length + 1 : t + 2 * length + 2], block)  # the block back, terminator included
            t, blocks = t + 2 * length + 2, blocks + 1
        assert blocks == 3 and mask[t:].sum() == 0 and inputs[t:].sum() == 0  # then only padding
    longest = max(int(m.sum()) for m in batch.mask)
    assert batch.inputs.shape[1] == longest  # padded to the longest example, which is scored to its end
