"""Multi-query associative recall (MQAR; Arora, Eyuboglu et al. 2023, "Zoology: Measuring and Improving
Recall in Efficient Language Models"): read P key-value pairs, then recall the value of every key when it
is queried later in the sequence.  A categorical task (``scoring = "classes"``).

Source of the format: the paper's data generator, HazyResearch/zoology ``zoology/data/associative_recall.py``
(``multiquery_ar`` / ``_mqar``; the same in ``zoology/data/multiquery_ar.py`` with one pass), and the
configs of the paper's Figure 2 (``zoology/experiments/paper/zoology_figure2.py``,
``zoology/experiments/paper_configs/iclr24_zoology_figure2/configs.py``).  This is our own code from those
facts.

Format of one example of T steps with P pairs over a vocabulary of V tokens (input width V, one-hot
tokens; output width V, one-hot classes):

    step      0   1   2   3  ..  2P-2  2P-1 | 2P .. T-1
    input     k1  v1  k2  v2 ..  kP    vP   | filler, with key k_j at step 2P + 2 g_j (j = 1 .. P)
    target    0                             | value v_j at step 2P + 2 g_j, 0 elsewhere
    mask      0                             | 1 at the P query steps, 0 elsewhere

- Keys: P distinct tokens, uniform without replacement from 1 .. V//2 - 1 (the first half of the
  vocabulary; token 0 is never a key).  Values: P distinct tokens, uniform without replacement from
  V//2 .. V-1 (the second half), independent of the keys.  (Code.)
- Every pair is queried exactly once, after all the pairs.  Query j sits at an even offset 2 g_j of the
  query region (steps 2P .. T-1); the gaps g_1 .. g_P are P distinct integers of 0 .. S-1, S = (T - 2P) // 2,
  drawn one after another without replacement with probability proportional to (g + 1)^(a - 1) among those
  left (a power law: ``power_a`` a = 0.01 in the paper, for training and test; a = 1 is uniform), and g_j
  goes to pair j in the order drawn, so the first pairs tend to be queried first, as in the code (numpy's
  ``choice(replace=False, p=...)`` returns its draws in order; ours is the same law, drawn with the
  exponential race / Gumbel-top-k).  Queries therefore cluster at the start of the query region.  (Code.)
- The target of a query is its key's value, at the step of the query itself: their labels are the next
  token, shifted by one, so the value is predicted while the key is read; the value is not in the input
  after it.  Only the P query steps are scored (their other labels are -100, ignored by the loss and the
  accuracy).  (Code.)
- Filler (every other step of the query region): token 0 (``random_filler=False``, the Zoology Figure 2
  configs: ``random_non_queries=False``), or tokens uniform over the whole vocabulary 0 .. V-1
  (``random_filler=True``, the generator's default and the later Based-paper configs), which may repeat
  keys and values at unscored steps.  (Code.)

A worked example (their docstring's: V = 12, T = 16, P = 2, keys 2, 4, values 8, 7, gaps 4, 1, filler 0)::

    input   2  8  4  7  0  0  4  0  0  0  0  0  2  0  0  0
    target  .  .  .  .  .  .  7  .  .  .  .  .  8  .  .  .      (mask 1 at steps 6 and 12)

Outputs: classes over the whole vocabulary (V), as their models predict (a language-model head over the
vocabulary, cross-entropy over all V tokens); the model must also learn that answers are values.

Sizes: the paper's vocabulary is 8192 and its (T, P) settings are (64, 4), (128, 8), (256, 16) and
(512, 64), each trained and tested on its own (100,000 training and 3,000 test examples, fixed; batch
512 for T <= 128, 256 at 256, 128 at 512).  Here the training data are drawn afresh, never repeating
(``tasks.base``).  A one-hot input 8192 wide makes an input layer of 8192 x controller size (and an output
layer of controller size x 8192), and the dense one-hot batches of this protocol hold 2 x 4 x T x V bytes
per sequence (targets as wide as inputs): 4 MiB per sequence of 64 steps at V = 8192, 32 MiB at 512 steps.
So the vocabulary is an argument, and its default, 256, is our scaling (keys 1-127, values 128-255: room
for 64 pairs).  The code also asserts V > T and T even and 4P <= T; we keep the last two (an even
length, and room for P distinct gaps) and drop the first (it does not hold at T = 512 with our V = 256;
nothing in the format needs it).

Validation: the training setting first (``len_64_pairs_4``), then one set per (T, P) of ``val_settings``
(``len_128_pairs_8``, ...).  Every example of a batch has T steps (no padding), and validation batches
keep all T steps (not trimmed to the last query).  There is no curriculum.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import SequenceBatch, SequenceTask, check_int, check_pair_list


def check_setting(name: str, sequence_length: int, pairs: int, vocabulary: int) -> None:
    """Raise a one-line ValueError (prefixed with ``name``) unless (T, P) fits the format at vocabulary V."""
    if sequence_length % 2:
        raise ValueError(f"{name}sequence_length must be even, got {sequence_length}")
    if 4 * pairs > sequence_length:
        raise ValueError(f"{name}sequence_length must be >= 4 * pairs = {4 * pairs}, got {sequence_length}")
    if pairs > vocabulary // 2 - 1:
        raise ValueError(f"{name}pairs={pairs} needs vocabulary >= 2 * (pairs + 1) = {2 * (pairs + 1)} (keys are "
                         f"distinct tokens of 1 .. vocabulary // 2 - 1), got vocabulary={vocabulary}")


def draw_gaps(generator: torch.Generator, batch_size: int, space: int, count: int, power_a: float) -> Tensor:
    """``[batch_size, count]`` distinct gaps of ``0 .. space-1`` per row, drawn one after another without
    replacement with probability proportional to ``(gap + 1) ** (power_a - 1)`` among those left, in the
    order drawn.  The exponential race: each gap gets the key ``log weight - log E`` (E ~ Exp(1)); the
    gaps in decreasing key order are such a sequence of draws (Efraimidis & Spirakis 2006)."""
    log_weight = (power_a - 1.0) * torch.arange(1, space + 1, dtype=torch.float64).log()
    uniform = torch.rand(batch_size, space, dtype=torch.float64, generator=generator)
    exponential = -torch.log1p(-uniform)  # Exp(1) from U[0, 1)
    return (log_weight - exponential.log()).topk(count, dim=1, sorted=True).indices


def distinct_tokens(generator: torch.Generator, batch_size: int, low: int, high: int, count: int) -> Tensor:
    """``[batch_size, count]`` distinct tokens per row, uniform without replacement from ``low .. high-1``."""
    order = torch.rand(batch_size, high - low, generator=generator).argsort(dim=1)
    return order[:, :count] + low


class MQARTask(SequenceTask):
    """Multi-query associative recall datamodule; see the module docstring for the format and sources.

    Args:
        vocabulary: V, tokens 0 .. V-1 (the paper: 8192; default 256, our scaling).
        sequence_length: T, steps of a training example (even; the paper's settings: 64, 128, 256, 512).
        pairs: P, key-value pairs of a training example (4P <= T; the paper: 4, 8, 16, 64).
        val_settings: (T, P) of the generalisation sets (the paper's other settings by default).
        power_a: a, the power law of the query gaps, weight (g + 1)^(a - 1) (the paper: 0.01; 1: uniform).
        random_filler: False (the paper's Figure 2): token 0 between the queries; True: uniform tokens.
        batch_size, seed, num_val_sequences, val_batch_size: as every task (``tasks.base.SequenceTask``);
            fewer validation sequences by default than the bit tasks (256), as the one-hot sets are wide.
    """

    name = "mqar"
    scoring = "classes"
    generalisation_arg = "val_settings"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)

    def __init__(
        self,
        vocabulary: int = 256,
        sequence_length: int = 64,
        pairs: int = 4,
        val_settings: Sequence[tuple[int, int]] = ((128, 8), (256, 16), (512, 64)),
        power_a: float = 0.01,
        random_filler: bool = False,
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 256,
        val_batch_size: int = 128,
    ) -> None:
        self.vocabulary = check_int("vocabulary", vocabulary, minimum=4)
        self.sequence_length = check_int("sequence_length", sequence_length, minimum=4)
        self.pairs = check_int("pairs", pairs, minimum=1)
        check_setting("", self.sequence_length, self.pairs, self.vocabulary)
        self.val_settings = check_pair_list("val_settings", val_settings, minimum=1)
        seen = {(self.sequence_length, self.pairs)}
        for length, count in self.val_settings:
            check_setting(f"val_settings ({length}, {count}): ", length, count, self.vocabulary)
            if (length, count) in seen:
                raise ValueError(f"val_settings: ({length}, {count}) is listed twice or is the training setting")
            seen.add((length, count))
        self.power_a = _check_positive_real("power_a", power_a)
        if not isinstance(random_filler, bool):
            raise ValueError(f"random_filler must be true or false, got {random_filler!r}")
        self.random_filler = random_filler
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.vocabulary

    @property
    def output_size(self) -> int:
        return self.vocabulary

    def train_spec(self) -> dict[str, int]:
        return {"sequence_length": self.sequence_length, "pairs": self.pairs}

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        settings = [(self.sequence_length, self.pairs), *self.val_settings]
        return [(f"len_{t}_pairs_{p}", {"sequence_length": t, "pairs": p}) for t, p in settings]

    def vectors_to_hold(self) -> int:
        """The most key-value pairs of an example: one slot per pair (a key and its value)."""
        return max((self.pairs, *(p for _, p in self.val_settings)))

    def generate(self, generator: torch.Generator, batch_size: int, sequence_length: int, pairs: int) -> SequenceBatch:
        return self.encode(*self.draw(generator, batch_size, sequence_length, pairs))

    def draw(self, generator: torch.Generator, batch_size: int, sequence_length: int,
             pairs: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The random parts of ``batch_size`` examples: keys, values and query gaps (each ``[B, P]``) and the
        filler tokens ``[B, T]``, as :meth:`encode` takes them."""
        half = self.vocabulary // 2
        keys = distinct_tokens(generator, batch_size, 1, half, pairs)
        values = distinct_tokens(generator, batch_size, half, self.vocabulary, pairs)
        gaps = draw_gaps(generator, batch_size, (sequence_length - 2 * pairs) // 2, pairs, self.power_a)
        if self.random_filler:
            filler = torch.randint(0, self.vocabulary, (batch_size, sequence_length), generator=generator)
        else:
            filler = torch.zeros(batch_size, sequence_length, dtype=torch.long)
        return keys, values, gaps, filler

    def encode(self, keys: Tensor, values: Tensor, gaps: Tensor, filler: Tensor) -> SequenceBatch:
        """The batch of ``keys``, ``values`` and query ``gaps`` (each ``[B, P]``, pair j queried at step
        2P + 2 gaps[:, j]) over ``filler`` tokens ``[B, T]``, in the format of the module docstring."""
        pairs = keys.shape[1]
        tokens = filler.clone()
        tokens[:, 0 : 2 * pairs : 2] = keys
        tokens[:, 1 : 2 * pairs : 2] = values
        query_steps = 2 * pairs + 2 * gaps
        tokens.scatter_(1, query_steps, keys)
        answers = torch.zeros_like(tokens).scatter_(1, query_steps, values)
        mask = torch.zeros(tokens.shape).scatter_(1, query_steps, 1.0)
        inputs = torch.nn.functional.one_hot(tokens, self.vocabulary).float()
        targets = torch.nn.functional.one_hot(answers, self.vocabulary).float() * mask.unsqueeze(-1)
        return SequenceBatch(inputs, targets, mask)

    def val_batches(self, generator: torch.Generator, spec: dict[str, int]) -> list[SequenceBatch]:
        """A validation set's batches: its ``num_val_sequences`` drawn at once as tokens (so that the set is
        the same whatever ``val_batch_size``), one-hot encoded a batch of ``val_batch_size`` at a time (the
        one-hot sets are wide), each of the full T steps (not trimmed to the last query)."""
        parts = self.draw(generator, self.num_val_sequences, **spec)
        return [self.encode(*(part[start : start + self.val_batch_size] for part in parts))
                for start in range(0, self.num_val_sequences, self.val_batch_size)]


def _check_positive_real(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number > 0, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
