"""Copy (NTM paper, section 4.1): read a sequence of random bit vectors, then write it back.

Format of one example of length L (input width ``bits + 1``, output width ``bits``):

    step        0 .. L-1          L              L+1 .. 2L
    input       vector 1..L       delimiter      blank
                (channels <bits)  (channel bits)
    target      0                 0              vector 1..L
    mask        0                 0              1

Each vector has ``bits`` independent uniform random bits; the delimiter step has channel ``bits`` set
and all data channels 0; the blank steps are all zero.  Only the L output steps are scored.  An
example lasts 2L + 1 steps.  Lengths are drawn uniformly from [min_length, max_length] per example
(the paper: 8 bits, lengths 1-20).  Validation: one set with the training lengths (``len_1-20``), then
one set of fixed length per entry of ``val_lengths`` (``len_10``, ``len_20``, ..., ``len_120``), the
lengths at which the paper tests generalisation.  A curriculum moves the maximum training length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import (
    SequenceBatch,
    SequenceTask,
    check_bounds,
    check_int,
    check_int_list,
    pad_and_stack,
    random_bits,
)


class CopyTask(SequenceTask):
    """Copy task datamodule; see the module docstring for the format."""

    name = "copy"
    generalisation_arg = "val_lengths"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)
    supports_curriculum = True

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 1,
        max_length: int = 20,
        val_lengths: Sequence[int] = (10, 20, 30, 50, 80, 120),
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
        curriculum_max_length: int | None = None,
    ) -> None:
        self.bits = check_int("bits", bits, minimum=1)
        self.min_length, self.max_length = check_bounds("min_length", min_length, "max_length", max_length, minimum=1)
        self.val_lengths = check_int_list("val_lengths", val_lengths, minimum=1)
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size, curriculum_max_length)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.bits + 1

    @property
    def output_size(self) -> int:
        return self.bits

    def length_range(self) -> tuple[int, int]:
        return self.min_length, self.max_length

    def train_spec(self) -> dict[str, int]:
        return {"min_length": self.min_length, "max_length": self.current_max_length}

    def vectors_to_hold(self) -> int:
        return max((self.max_length, *self.val_lengths))

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        low, high = self.min_length, self.max_length
        specs = [(f"len_{low}-{high}", {"min_length": low, "max_length": high})]
        specs += [(f"len_{length}", {"min_length": length, "max_length": length}) for length in self.val_lengths]
        return specs

    def generate(
        self, generator: torch.Generator, batch_size: int, min_length: int, max_length: int
    ) -> SequenceBatch:
        lengths = torch.randint(min_length, max_length + 1, (batch_size,), generator=generator).tolist()
        return pad_and_stack([self._example(generator, length) for length in lengths])

    def _example(self, generator: torch.Generator, length: int) -> tuple[torch.Tensor, ...]:
        bits = self.bits
        vectors = random_bits(generator, length, bits)
        steps = 2 * length + 1
        inputs = torch.zeros(steps, bits + 1)
        targets = torch.zeros(steps, bits)
        mask = torch.zeros(steps)
        inputs[:length, :bits] = vectors
        inputs[length, bits] = 1.0  # delimiter
        targets[length + 1 :] = vectors
        mask[length + 1 :] = 1.0
        return inputs, targets, mask
