"""Multi-query associative recall (tasks/mqar.py, Arora et al. 2023): the format by hand, an independent
reference on random samples, the halves of the vocabulary, one query per pair, the power law of the query
gaps, validation sets and argument errors.  (The shared protocol tests run on it from tests/test_tasks.py.)"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tasks import MQARTask, build_task
from tasks.mqar import draw_gaps


def small(**kwargs) -> MQARTask:
    defaults = dict(vocabulary=16, sequence_length=16, pairs=3, val_settings=((20, 5),), batch_size=40,
                    num_val_sequences=12, val_batch_size=5)
    return MQARTask(**{**defaults, **kwargs})


def tokens_of(inputs: torch.Tensor) -> list[int]:
    assert torch.equal(inputs.sum(-1), torch.ones(inputs.shape[0]))  # one-hot at every step
    return inputs.argmax(-1).tolist()


def test_hand_worked_example():
    """Zoology's docstring example: V = 12, T = 16, keys 2, 4 with values 8, 7; key 4 (pair 2, gap 1) is
    queried at step 2P + 2 = 6 and key 2 (pair 1, gap 4) at step 2P + 8 = 12; filler token 0. The targets
    are the values at the query steps themselves; nothing else is scored."""
    task = MQARTask(vocabulary=12, sequence_length=16, pairs=2, val_settings=())
    batch = task.encode(torch.tensor([[2, 4]]), torch.tensor([[8, 7]]), torch.tensor([[4, 1]]),
                        torch.zeros(1, 16, dtype=torch.long))
    assert batch.inputs.shape == (1, 16, 12) and batch.targets.shape == (1, 16, 12)
    assert tokens_of(batch.inputs[0]) == [2, 8, 4, 7, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0, 0, 0]
    assert batch.mask[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    expected = torch.zeros(16, 12)
    expected[6, 7] = 1.0  # key 4 -> value 7
    expected[12, 8] = 1.0  # key 2 -> value 8
    assert torch.equal(batch.targets[0], expected)
    # The same pairs over random filler: the filler shows through everywhere but at the pairs and queries.
    filler = torch.tensor([[5, 5, 5, 5, 11, 0, 3, 9, 1, 10, 6, 2, 7, 4, 8, 11]])
    noisy = task.encode(torch.tensor([[2, 4]]), torch.tensor([[8, 7]]), torch.tensor([[4, 1]]), filler)
    assert tokens_of(noisy.inputs[0]) == [2, 8, 4, 7, 11, 0, 4, 9, 1, 10, 6, 2, 2, 4, 8, 11]
    assert torch.equal(noisy.targets, batch.targets) and torch.equal(noisy.mask, batch.mask)


@pytest.mark.parametrize("random_filler", [False, True])
def test_against_a_plain_python_reference(random_filler):
    """Each scored step holds a key of the pairs; its target is that key's value, found by a plain search of
    the pairs; every pair is queried exactly once, at an even offset after the pairs; keys come from
    1 .. V/2 - 1 and values from V/2 .. V-1, distinct within an example."""
    task = small(random_filler=random_filler)
    vocabulary, length, pairs, half = 16, 16, 3, 8
    filler_tokens = set()
    for batch in [task.train_batch(0), task.train_batch(1), *task.val_sets[0].batches]:
        assert batch.inputs.shape[1] == length
        for x, y, m in zip(*batch):
            tokens = tokens_of(x)
            keys, values = tokens[0 : 2 * pairs : 2], tokens[1 : 2 * pairs : 2]
            assert all(1 <= k < half for k in keys) and len(set(keys)) == pairs
            assert all(half <= v < vocabulary for v in values) and len(set(values)) == pairs
            scored = [t for t in range(length) if m[t] == 1]
            assert m.sum() == len(scored) == pairs
            assert all(t >= 2 * pairs and (t - 2 * pairs) % 2 == 0 for t in scored)
            assert sorted(tokens[t] for t in scored) == sorted(keys)  # every pair queried once
            for t in range(length):
                if t in scored:
                    value = None
                    for i in range(0, 2 * pairs, 2):  # find the queried key among the pairs
                        if tokens[i] == tokens[t]:
                            value = tokens[i + 1]
                    assert y[t].sum() == 1 and int(y[t].argmax()) == value
                else:
                    assert not y[t].any()
                    if t >= 2 * pairs:
                        filler_tokens.add(tokens[t])
    if random_filler:
        assert filler_tokens == set(range(vocabulary))  # uniform over the whole vocabulary
    else:
        assert filler_tokens == {0}


@pytest.mark.parametrize("power_a", [0.01, 1.0, 2.0])
def test_gaps_are_successive_draws_of_the_power_law(power_a):
    """Three gaps, two draws: the ordered pair (i, j) has probability w_i / W * w_j / (W - w_i), with
    w_g = (g + 1)^(a - 1) and W their sum."""
    draws = 20_000
    gaps = draw_gaps(torch.Generator().manual_seed(0), draws, space=3, count=2, power_a=power_a)
    weights = [(g + 1) ** (power_a - 1) for g in range(3)]
    total = sum(weights)
    counts = {pair: 0 for pair in itertools.permutations(range(3), 2)}
    for pair in gaps.tolist():
        counts[tuple(pair)] += 1
    for (i, j), count in counts.items():
        probability = weights[i] / total * weights[j] / (total - weights[i])
        assert abs(count / draws - probability) < 4 * math.sqrt(probability * (1 - probability) / draws) + 1e-3


def test_queries_follow_the_power_law_in_order_of_the_pairs():
    """At a = 0.01 the first pair's query sits at the first step of the query region (gap 0) with probability
    1 / sum_g (g + 1)^-0.99; the queries crowd the start of the region."""
    task = small(vocabulary=16, sequence_length=64, pairs=4, val_settings=(), batch_size=2000)
    batch = task.train_batch(0)
    first_key = batch.inputs[:, 0].argmax(-1)
    at_start = batch.inputs[:, 8].argmax(-1) == first_key  # step 2P
    space = (64 - 8) // 2
    probability = 1 / sum((g + 1) ** -0.99 for g in range(space))
    assert abs(float(at_start.float().mean()) - probability) < 4 * math.sqrt(probability * (1 - probability) / 2000)
    steps = batch.mask.nonzero()[:, 1].float()
    assert float(steps.median()) < 8 + space  # most queries in the first half of the region


def test_sizes_names_and_validation_batches():
    task = small()
    assert (task.input_size, task.output_size, task.scoring) == (16, 16, "classes")
    assert task.val_names == ["len_16_pairs_3", "len_20_pairs_5"]
    assert task.generalisation_arg == "val_settings" and task.vectors_to_hold() == 5
    for val_set, (length, pairs) in zip(task.val_sets, [(16, 3), (20, 5)]):
        assert [b.inputs.shape[0] for b in val_set.batches] == [5, 5, 2]
        assert all(b.inputs.shape[1] == length for b in val_set.batches)  # full length, not trimmed
        assert all(b.mask.sum(1).tolist() == [pairs] * b.mask.shape[0] for b in val_set.batches)
    assert not task.supports_curriculum
    defaults = MQARTask()
    assert (defaults.vocabulary, defaults.sequence_length, defaults.pairs, defaults.power_a) == (256, 64, 4, 0.01)
    assert defaults.random_filler is False
    assert defaults.val_names == ["len_64_pairs_4", "len_128_pairs_8", "len_256_pairs_16", "len_512_pairs_64"]
    assert isinstance(build_task("mqar", vocabulary=16, sequence_length=8, pairs=2, val_settings=()), MQARTask)


def test_the_published_vocabulary():
    """V = 8192: keys from 1 .. 4095, values from 4096 .. 8191."""
    task = MQARTask(vocabulary=8192, batch_size=2)
    batch = task.train_batch(0)
    assert batch.inputs.shape == batch.targets.shape == (2, 64, 8192)
    tokens = batch.inputs.argmax(-1)
    assert ((tokens[:, 0:8:2] >= 1) & (tokens[:, 0:8:2] < 4096)).all()
    assert (tokens[:, 1:8:2] >= 4096).all()
    assert (batch.targets.argmax(-1)[batch.mask == 1] >= 4096).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"vocabulary": 3}, "vocabulary must be >= 4, got 3"),
    ({"vocabulary": 8.0}, "vocabulary must be an integer"),
    ({"sequence_length": 63}, "sequence_length must be even, got 63"),
    ({"sequence_length": 14, "pairs": 4}, "sequence_length must be >= 4 \\* pairs = 16, got 14"),
    ({"pairs": 0}, "pairs must be >= 1, got 0"),
    ({"vocabulary": 8, "pairs": 4}, "pairs=4 needs vocabulary >= 2 \\* \\(pairs \\+ 1\\) = 10"),
    ({"val_settings": [(130, 8), 7]}, "val_settings must be a sequence of pairs"),
    ({"val_settings": [(127, 8)]}, "val_settings \\(127, 8\\): sequence_length must be even"),
    ({"val_settings": [(128, 40)]}, "val_settings \\(128, 40\\): sequence_length must be >= 4 \\* pairs"),
    ({"val_settings": [(1024, 200)]}, "val_settings \\(1024, 200\\): pairs=200 needs vocabulary"),
    ({"val_settings": [(64, 4)]}, "val_settings: \\(64, 4\\) is listed twice or is the training setting"),
    ({"power_a": 0}, "power_a must be a finite number > 0, got 0"),
    ({"power_a": float("nan")}, "power_a"),
    ({"power_a": "0.01"}, "power_a"),
    ({"random_filler": 1}, "random_filler must be true or false, got 1"),
    ({"num_val_sequences": 0}, "num_val_sequences"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MQARTask(**kwargs)
