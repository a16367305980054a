"""Dynamic n-grams (NTM paper, section 4.4): predict the next bit of a sequence drawn from a random
n-gram table, adapting to the table within the sequence.

For each sequence a fresh 6-gram table is drawn: for each of the 2^c contexts of c = ``context_length``
(5) previous bits, the probability that the next bit is 1 comes from Beta(1/2, 1/2).  The first c bits
of the sequence are uniform; each later bit is drawn from the table given the c bits before it.  A
sequence has ``sequence_length`` (200) bits b_0 .. b_{S-1}.

Format (input width 1, output width 1, S - 1 steps):

    step        t = 0 .. S-2
    input       b_t
    target      b_{t+1}              (predict the next bit from the bits seen so far)
    mask        1                    (every step is scored: S - 1 = 199 predictions)

The first c - 1 predictions (of b_1 .. b_{c-1}, uniform bits with no full context yet) are scored
too; the Bayes-optimal predictive there is 1/2, one bit each.  Scoring them keeps costs on the
paper's scale: the Bayes-optimal cost comes out at ~131 bits per sequence (the paper: ~131-132),
of which c - 1 = 4 bits come from those first steps.

Bayes-optimal predictor: for the context c of the next bit, with N0 / N1 the number of times c was
followed by 0 / 1 earlier in the sequence, P(next = 1) = (N1 + 1/2) / (N0 + N1 + 1), the posterior
predictive under the Beta(1/2, 1/2) prior.  ``bayes_optimal_cost`` scores it exactly like the models
(-log2 of the probability given to each actual next bit, summed over all steps), and every
validation set carries its mean as ``bayes_optimal_bits_per_sequence``.

Validation: one set at the training length (``len_200``), then one per entry of ``val_lengths``
(none by default).  All sequences of a set have the same length, so there is no padding and no
curriculum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SequenceBatch, SequenceTask, ValidationSet, check_int, check_int_list


def _as_bits(bits_sequence) -> Tensor:
    bits = torch.as_tensor(bits_sequence)
    if bits.dim() == 0:
        raise ValueError("bits_sequence must have a time dimension, got a scalar")
    if not ((bits == 0) | (bits == 1)).all():
        raise ValueError("bits_sequence must hold only 0 and 1")
    return bits.to(torch.long)


def bayes_optimal_predictive(bits_sequence, context_length: int = 5) -> Tensor:
    """Bayes-optimal P(b_{t+1} = 1 | b_0..b_t) at each model step t = 0 .. S-2.

    Args:
        bits_sequence: bits in {0, 1}, shape ``[..., S]`` (any leading batch dimensions).
        context_length: c, the number of previous bits that select the table entry.

    Returns:
        float64 tensor ``[..., S-1]``: (N1 + 1/2) / (N0 + N1 + 1) for the context of b_{t+1} where it
        has a full context (t >= c - 1), and 1/2 at the first c - 1 steps.
    """
    bits = _as_bits(bits_sequence)
    batch_shape, length = bits.shape[:-1], bits.shape[-1]
    bits = bits.reshape(-1, length)
    rows = torch.arange(bits.shape[0])
    counts = torch.zeros(bits.shape[0], 2**context_length, 2, dtype=torch.float64)  # [B, context, N0/N1]
    predictive = torch.full((bits.shape[0], max(length - 1, 0)), 0.5, dtype=torch.float64)
    context = torch.zeros(bits.shape[0], dtype=torch.long)  # the last c bits, most recent lowest
    for t in range(length):
        if t >= context_length:  # b_t has a full context: predict it, then count it
            n0, n1 = counts[rows, context, 0], counts[rows, context, 1]
            predictive[:, t - 1] = (n1 + 0.5) / (n0 + n1 + 1.0)
            counts[rows, context, bits[:, t]] += 1.0
        context = ((context << 1) | bits[:, t]) & (2**context_length - 1)
    return predictive.reshape(*batch_shape, -1)


def bayes_optimal_cost(bits_sequence, context_length: int = 5) -> Tensor:
    """Cost in bits of the Bayes-optimal predictor on each sequence, scored like the models.

    Args:
        bits_sequence: bits in {0, 1}, shape ``[S]`` or ``[..., S]``.
        context_length: c, the number of previous bits that select the table entry.

    Returns:
        float64 tensor of shape ``bits_sequence.shape[:-1]`` (a scalar tensor for one sequence):
        the sum over all S - 1 steps of -log2 P(actual next bit).
    """
    bits = _as_bits(bits_sequence)
    p_one = bayes_optimal_predictive(bits, context_length)
    nxt = bits[..., 1:]
    p_actual = torch.where(nxt == 1, p_one, 1.0 - p_one)
    return -torch.log2(p_actual).sum(dim=-1)


class NgramsTask(SequenceTask):
    """Dynamic n-grams task datamodule; see the module docstring for the format."""

    name = "ngrams"

    def __init__(
        self,
        context_length: int = 5,
        sequence_length: int = 200,
        val_lengths: Sequence[int] = (),
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
    ) -> None:
        self.context_length = check_int("context_length", context_length, minimum=1, maximum=16)
        self.sequence_length = check_int("sequence_length", sequence_length, minimum=context_length + 1)
        self.val_lengths = check_int_list("val_lengths", val_lengths, minimum=context_length + 1)
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def train_spec(self) -> dict[str, int]:
        return {"sequence_length": self.sequence_length}

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        lengths = [self.sequence_length, *self.val_lengths]
        return [(f"len_{length}", {"sequence_length": length}) for length in lengths]

    def generate(self, generator: torch.Generator, batch_size: int, sequence_length: int) -> SequenceBatch:
        c = self.context_length
        # Beta(1/2, 1/2) is the arcsine law: sin^2(pi U / 2) with U uniform.
        table = torch.sin(0.5 * math.pi * torch.rand(batch_size, 2**c, generator=generator)) ** 2
        uniforms = torch.rand(batch_size, sequence_length, generator=generator)
        bits = torch.zeros(batch_size, sequence_length, dtype=torch.long)
        bits[:, :c] = (uniforms[:, :c] < 0.5).long()
        rows = torch.arange(batch_size)
        context = torch.zeros(batch_size, dtype=torch.long)  # the last c bits, most recent lowest
        for t in range(sequence_length):
            if t >= c:
                bits[:, t] = (uniforms[:, t] < table[rows, context]).long()
            context = ((context << 1) | bits[:, t]) & (2**c - 1)
        return self.batch_from_bits(bits)

    def batch_from_bits(self, bits: Tensor) -> SequenceBatch:
        """The model-facing batch of bit sequences ``[B, S]`` (see the module docstring)."""
        bits = bits.float()
        inputs = bits[:, :-1].unsqueeze(-1).contiguous()
        targets = bits[:, 1:].unsqueeze(-1).contiguous()
        mask = torch.ones(bits.shape[0], bits.shape[1] - 1)  # every prediction is scored
        return SequenceBatch(inputs, targets, mask)

    @staticmethod
    def bits_from_batch(batch: SequenceBatch) -> Tensor:
        """Recover the bit sequences ``[B, S]`` from a batch."""
        return torch.cat([batch.inputs[:, :1, 0], batch.targets[:, :, 0]], dim=1).long()

    def _make_val_set(self, name: str, spec: dict[str, int]) -> ValidationSet:
        val_set = super()._make_val_set(name, spec)
        bits = [self.bits_from_batch(batch) for batch in val_set.batches]
        costs = [bayes_optimal_cost(sequences, self.context_length) for sequences in bits]
        val_set.bayes_optimal_bits_per_sequence = float(torch.cat(costs).mean())
        return val_set

    @property
    def bayes_optimal_bits_per_sequence(self) -> dict[str, float]:
        """Mean Bayes-optimal cost of each validation set, by name."""
        return {val_set.name: val_set.bayes_optimal_bits_per_sequence for val_set in self.val_sets}
