"""Priority sort (NTM paper, section 4.5): emit the highest-priority input vectors in priority order.

Format of one example with n inputs and m outputs (input width ``bits + 2``, output width ``bits``):

    step       0 .. n-1                     n                          n+1 .. n+m
    input      vector i (channels <bits),   delimiter                  blank
               priority p_i (channel bits)  (channel bits+1)
    target     0                            0                          the m vectors of highest
                                                                       priority, highest first
    mask       0                            0                          1

Vectors have ``bits`` uniform random bits; priorities are uniform in [-1, 1].  Only the m output steps
are scored.  Every example lasts n + 1 + m steps (the paper: 8 bits, n = 20, m = 16).

Validation: one set with the training sizes (``in_20_out_16``), then one per ``(num_inputs,
num_outputs)`` pair of ``val_sizes`` (none by default).  There is no variable length, hence no
curriculum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import SequenceBatch, SequenceTask, check_bounds, check_int, check_pair_list, random_bits


class PrioritySortTask(SequenceTask):
    """Priority sort task datamodule; see the module docstring for the format."""

    name = "priority_sort"
    generalisation_arg = "val_sizes"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)

    def __init__(
        self,
        bits: int = 8,
        num_inputs: int = 20,
        num_outputs: int = 16,
        val_sizes: Sequence[tuple[int, int]] = (),
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
    ) -> None:
        self.bits = check_int("bits", bits, minimum=1)
        self.num_outputs, self.num_inputs = check_bounds("num_outputs", num_outputs, "num_inputs", num_inputs, minimum=1)
        self.val_sizes = check_pair_list("val_sizes", val_sizes, minimum=1)
        for n, m in self.val_sizes:
            if m > n:
                raise ValueError(f"val_sizes: num_outputs={m} must be <= num_inputs={n}")
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    def train_spec(self) -> dict[str, int]:
        return {"num_inputs": self.num_inputs, "num_outputs": self.num_outputs}

    def vectors_to_hold(self) -> int:
        return max((self.num_inputs, *(n for n, _ in self.val_sizes)))

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        sizes = [(self.num_inputs, self.num_outputs), *self.val_sizes]
        return [(f"in_{n}_out_{m}", {"num_inputs": n, "num_outputs": m}) for n, m in sizes]

    def generate(
        self, generator: torch.Generator, batch_size: int, num_inputs: int, num_outputs: int
    ) -> SequenceBatch:
        bits, n, m = self.bits, num_inputs, num_outputs
        vectors = random_bits(generator, batch_size, n, bits)
        priorities = torch.rand(batch_size, n, generator=generator) * 2.0 - 1.0  # U[-1, 1]
        order = priorities.argsort(dim=1, descending=True)[:, :m]  # [B, m], highest priority first
        ranked = vectors.gather(1, order.unsqueeze(-1).expand(-1, -1, bits))  # [B, m, bits]

        steps = n + 1 + m
        inputs = torch.zeros(batch_size, steps, bits + 2)
        targets = torch.zeros(batch_size, steps, bits)
        mask = torch.zeros(batch_size, steps)
        inputs[:, :n, :bits] = vectors
        inputs[:, :n, bits] = priorities
        inputs[:, n, bits + 1] = 1.0  # delimiter
        targets[:, n + 1 :] = ranked
        mask[:, n + 1 :] = 1.0
        return SequenceBatch(inputs, targets, mask)
