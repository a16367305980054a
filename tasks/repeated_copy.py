"""Repeated copy (Csordas & Schmidhuber 2019, "repeat copy"): R independent copy tasks, one after the
other, in one sequence. Unlike the NTM paper's repeat copy there is no repeat count to read: the model
copies each block back right after it, and must free and reuse its memory from block to block.

Format of one block of L vectors (input and output width ``bits + 1``):

    step        0 .. L-1          L                         L+1 .. 2L          2L+1
    input       vector 1..L       terminator (channel bits) blank              blank
    target      0                 0                         vector 1..L        terminator
    mask        1                 1                         1                  1

An example is R such blocks, each with its own length, and lasts sum(2 L_r + 2) steps. Every step is
scored, as in the authors' code (the loss sums over all steps; the target is 0 while the input is
read). Repeats and each block's length are drawn uniformly (the authors' profile: 8 bits, repeats 1-8,
lengths 2-14). The authors draw one list of block lengths per batch; here each sequence draws its own
(the same distribution per sequence, with validation sets of varied sequences). Their inputs are
mapped to +-1; here bits are {0, 1}, as in the other tasks.

Validation: one set from the training distribution (``rep_1-8_len_2-14``), then one set per entry of
``val_repeats`` (``rep_12_len_2-14``, ...): more blocks than in training, each of a training length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import SequenceBatch, SequenceTask, check_bounds, check_int, check_int_list, pad_and_stack, random_bits


class RepeatedCopyTask(SequenceTask):
    """Repeated copy task datamodule; see the module docstring for the format."""

    name = "repeated_copy"
    generalisation_arg = "val_repeats"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 2,
        max_length: int = 14,
        min_repeats: int = 1,
        max_repeats: int = 8,
        val_repeats: Sequence[int] = (12, 16),
        batch_size: int = 16,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
        curriculum_max_length: int | None = None,
    ) -> None:
        self.bits = check_int("bits", bits, minimum=1)
        self.min_length, self.max_length = check_bounds("min_length", min_length, "max_length", max_length, minimum=1)
        self.min_repeats, self.max_repeats = check_bounds("min_repeats", min_repeats, "max_repeats", max_repeats,
                                                          minimum=1)
        self.val_repeats = check_int_list("val_repeats", val_repeats, minimum=1)
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size, curriculum_max_length)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.bits + 1

    @property
    def output_size(self) -> int:
        return self.bits + 1

    def train_spec(self) -> dict[str, int]:
        return {"min_repeats": self.min_repeats, "max_repeats": self.max_repeats}

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        lengths = f"len_{self.min_length}-{self.max_length}"
        specs = [(f"rep_{self.min_repeats}-{self.max_repeats}_{lengths}", self.train_spec())]
        specs += [(f"rep_{r}_{lengths}", {"min_repeats": r, "max_repeats": r}) for r in self.val_repeats]
        return specs

    def generate(self, generator: torch.Generator, batch_size: int, min_repeats: int, max_repeats: int) -> SequenceBatch:
        repeats = torch.randint(min_repeats, max_repeats + 1, (batch_size,), generator=generator).tolist()
        return pad_and_stack([self._example(generator, r) for r in repeats])

    def _example(self, generator: torch.Generator, repeats: int) -> tuple[torch.Tensor, ...]:
        lengths = torch.randint(self.min_length, self.max_length + 1, (repeats,), generator=generator).tolist()
        blocks = [self._block(generator, length) for length in lengths]
        return tuple(torch.cat(parts) for parts in zip(*blocks))

    def _block(self, generator: torch.Generator, length: int) -> tuple[torch.Tensor, ...]:
        bits = self.bits
        vectors = torch.zeros(length + 1, bits + 1)  # the vectors, then the terminator
        vectors[:length, :bits] = random_bits(generator, length, bits)
        vectors[length, bits] = 1.0
        blank = torch.zeros_like(vectors)
        inputs, targets = torch.cat([vectors, blank]), torch.cat([blank, vectors])
        return inputs, targets, torch.ones(2 * (length + 1))
