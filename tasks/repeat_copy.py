"""Repeat copy (NTM paper, section 4.2): copy a sequence a given number of times, then mark the end.

Format of one example with L vectors and R repeats (input width ``bits + 2``, output width ``bits + 1``):

    step        0 .. L-1          L                           L+1 .. L+RL          L+RL+1
    input       vector 1..L       delimiter (channel bits)    blank                blank
                (channels <bits)  + the encoded repeat count
                                  on channel bits+1
    target      0                 0                           vectors 1..L,        end marker
                                                              R times (channels    (channel bits),
                                                              <bits), channel      data channels 0
                                                              bits 0
    mask        0                 0                           1                    1

The repeat count is a scalar encoded by ``repeat_encoding``: ``"standardised"`` (the default, as the
paper: "normalised to have mean zero and variance one" over the *training* repeats, i.e.
(R - mean) / std of the uniform distribution on min_repeats..max_repeats) or ``"fraction"``
(R / max_repeats, this project's encoding before paper section 8's diagnosis).  Either way the
training range fixes the scale, so counts beyond it give values beyond the training values (as in the
paper's generalisation test).  The
R * L copy steps and the end-marker step are scored (R * L + 1 steps, including the end-marker
channel being 0 during the copies).  An example lasts L + 1 + R * L + 1 steps.  Lengths and repeats
are drawn uniformly and independently per example (the paper: 8 bits, lengths 1-10, repeats 1-10).

Validation: one set from the training distribution (``len_1-10_rep_1-10``), then one set per
``(length, repeats)`` pair of ``val_lengths_repeats`` (``len_20_rep_10``, ...).  A curriculum moves
the maximum training length, or with ``curriculum_on="repeats"`` the maximum number of repeats
(``curriculum_max_length`` is then the starting maximum of repeats).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import (
    SequenceBatch,
    SequenceTask,
    check_bounds,
    check_choice,
    check_int,
    check_pair_list,
    pad_and_stack,
    random_bits,
)


REPEAT_ENCODINGS = ("standardised", "fraction")
CURRICULUM_ON = ("length", "repeats")


class RepeatCopyTask(SequenceTask):
    """Repeat copy task datamodule; see the module docstring for the format."""

    name = "repeat_copy"
    generalisation_arg = "val_lengths_repeats"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)
    supports_curriculum = True

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 1,
        max_length: int = 10,
        min_repeats: int = 1,
        max_repeats: int = 10,
        val_lengths_repeats: Sequence[tuple[int, int]] = ((10, 10), (20, 10), (10, 20), (20, 20)),
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
        curriculum_max_length: int | None = None,
        repeat_encoding: str = "standardised",
        curriculum_on: str = "length",
    ) -> None:
        self.bits = check_int("bits", bits, minimum=1)
        self.min_length, self.max_length = check_bounds("min_length", min_length, "max_length", max_length, minimum=1)
        self.min_repeats, self.max_repeats = check_bounds("min_repeats", min_repeats, "max_repeats", max_repeats,
                                                          minimum=1)
        self.repeat_encoding = check_choice("repeat_encoding", repeat_encoding, REPEAT_ENCODINGS)
        self.curriculum_on = check_choice("curriculum_on", curriculum_on, CURRICULUM_ON)
        self.val_lengths_repeats = check_pair_list("val_lengths_repeats", val_lengths_repeats, minimum=1)
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size, curriculum_max_length)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits + 1

    def length_range(self) -> tuple[int, int]:
        """The range the curriculum moves in: lengths, or repeats with ``curriculum_on="repeats"``."""
        if self.curriculum_on == "repeats":
            return self.min_repeats, self.max_repeats
        return self.min_length, self.max_length

    def train_spec(self) -> dict[str, int]:
        on_repeats = self.curriculum_on == "repeats"
        return {
            "min_length": self.min_length,
            "max_length": self.max_length if on_repeats else self.current_max_length,
            "min_repeats": self.min_repeats,
            "max_repeats": self.current_max_length if on_repeats else self.max_repeats,
        }

    def vectors_to_hold(self) -> int:
        return max((self.max_length, *(length for length, _ in self.val_lengths_repeats)))

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        train_name = f"len_{self.min_length}-{self.max_length}_rep_{self.min_repeats}-{self.max_repeats}"
        train = {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "min_repeats": self.min_repeats,
            "max_repeats": self.max_repeats,
        }
        specs = [(train_name, train)]
        for length, repeats in self.val_lengths_repeats:
            spec = {"min_length": length, "max_length": length, "min_repeats": repeats, "max_repeats": repeats}
            specs.append((f"len_{length}_rep_{repeats}", spec))
        return specs

    def generate(
        self,
        generator: torch.Generator,
        batch_size: int,
        min_length: int,
        max_length: int,
        min_repeats: int,
        max_repeats: int,
    ) -> SequenceBatch:
        lengths = torch.randint(min_length, max_length + 1, (batch_size,), generator=generator).tolist()
        repeats = torch.randint(min_repeats, max_repeats + 1, (batch_size,), generator=generator).tolist()
        return pad_and_stack([self._example(generator, n, r) for n, r in zip(lengths, repeats)])

    def encode_repeats(self, repeats: int) -> float:
        """The scalar that tells the model the repeat count ``repeats`` (see ``repeat_encoding``)."""
        if self.repeat_encoding == "fraction":
            return repeats / self.max_repeats
        # Discrete uniform on min..max: mean (min + max) / 2, variance ((max - min + 1)^2 - 1) / 12.
        mean = (self.min_repeats + self.max_repeats) / 2
        variance = ((self.max_repeats - self.min_repeats + 1) ** 2 - 1) / 12
        return (repeats - mean) / variance**0.5 if variance > 0 else repeats - mean

    def _example(self, generator: torch.Generator, length: int, repeats: int) -> tuple[torch.Tensor, ...]:
        bits = self.bits
        vectors = random_bits(generator, length, bits)
        output_start = length + 1
        end = output_start + repeats * length  # the end-marker step
        steps = end + 1
        inputs = torch.zeros(steps, bits + 2)
        targets = torch.zeros(steps, bits + 1)
        mask = torch.zeros(steps)
        inputs[:length, :bits] = vectors
        inputs[length, bits] = 1.0  # delimiter
        inputs[length, bits + 1] = self.encode_repeats(repeats)
        targets[output_start:end, :bits] = vectors.repeat(repeats, 1)
        targets[end, bits] = 1.0  # end marker
        mask[output_start:] = 1.0
        return inputs, targets, mask
