"""Associative recall (NTM paper, section 4.3): given one item of a list, recall the item after it.

An item is ``item_length`` vectors of ``bits`` random bits (the paper: 3 vectors of 6 bits).  Format
of one example with n items, querying item q (input width ``bits + 2``, output width ``bits``; k is
``item_length``):

    step     item i (i = 0..n-1):               query:                      answer:
             1 step           k steps           1 step    k steps   1 step  k steps
    input    item delimiter   item i vectors    query     item q    query   blank
             (channel bits)   (channels <bits)  delimiter vectors   delim.
                                                (channel bits+1)
    target   0                0                 0         0         0       item q+1 vectors
    mask     0                0                 0         0         0       1

The query is item q with q uniform in [0, n-2], so it is never the last item, and the answer is item
q + 1.  Items within an example are all distinct (drawn again on a repeat), so the answer is
unambiguous.  Only the k answer steps are scored.  An example lasts n (k + 1) + 2 + 2k steps.  Item
counts are drawn uniformly from [min_items, max_items] per example (the paper: 2-6).

Validation: one set from the training distribution (``items_2-6``), then one set per entry of
``val_items`` (``items_6``, ..., ``items_20``).  A curriculum moves the maximum number of items
(``set_curriculum_max_length`` counts items here).
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


class AssociativeRecallTask(SequenceTask):
    """Associative recall task datamodule; see the module docstring for the format."""

    name = "associative_recall"
    generalisation_arg = "val_items"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)
    supports_curriculum = True

    def __init__(
        self,
        bits: int = 6,
        item_length: int = 3,
        min_items: int = 2,
        max_items: int = 6,
        val_items: Sequence[int] = (6, 8, 12, 16, 20),
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
        curriculum_max_length: int | None = None,
    ) -> None:
        self.bits = check_int("bits", bits, minimum=1)
        self.item_length = check_int("item_length", item_length, minimum=1)
        self.min_items, self.max_items = check_bounds("min_items", min_items, "max_items", max_items, minimum=2)
        self.val_items = check_int_list("val_items", val_items, minimum=2)
        # Distinct items are drawn by rejection; keep at least half of the possible items free.
        most_items = max((max_items, *self.val_items))
        if 2 ** min(bits * item_length, 62) < 2 * most_items:
            raise ValueError(
                f"bits * item_length = {bits * item_length} allows {2 ** (bits * item_length)} distinct items,"
                f" need at least 2 * {most_items} (max_items / val_items)"
            )
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size, curriculum_max_length)
        self.save_hyperparameters()

    @property
    def input_size(self) -> int:
        return self.bits + 2

    @property
    def output_size(self) -> int:
        return self.bits

    def length_range(self) -> tuple[int, int]:
        return self.min_items, self.max_items

    def train_spec(self) -> dict[str, int]:
        return {"min_items": self.min_items, "max_items": self.current_max_length}

    def vectors_to_hold(self) -> int:
        return max((self.max_items, *self.val_items)) * self.item_length

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        low, high = self.min_items, self.max_items
        specs = [(f"items_{low}-{high}", {"min_items": low, "max_items": high})]
        specs += [(f"items_{n}", {"min_items": n, "max_items": n}) for n in self.val_items]
        return specs

    def generate(
        self, generator: torch.Generator, batch_size: int, min_items: int, max_items: int
    ) -> SequenceBatch:
        counts = torch.randint(min_items, max_items + 1, (batch_size,), generator=generator).tolist()
        return pad_and_stack([self._example(generator, n) for n in counts])

    def _distinct_items(self, generator: torch.Generator, count: int) -> list[torch.Tensor]:
        items: list[torch.Tensor] = []
        seen: set[tuple[float, ...]] = set()
        while len(items) < count:
            item = random_bits(generator, self.item_length, self.bits)
            key = tuple(item.flatten().tolist())
            if key not in seen:
                seen.add(key)
                items.append(item)
        return items

    def _example(self, generator: torch.Generator, count: int) -> tuple[torch.Tensor, ...]:
        bits, k = self.bits, self.item_length
        items = self._distinct_items(generator, count)
        query = int(torch.randint(0, count - 1, (1,), generator=generator))
        steps = count * (k + 1) + 2 + 2 * k
        inputs = torch.zeros(steps, bits + 2)
        targets = torch.zeros(steps, bits)
        mask = torch.zeros(steps)
        for i, item in enumerate(items):
            start = i * (k + 1)
            inputs[start, bits] = 1.0  # item delimiter
            inputs[start + 1 : start + 1 + k, :bits] = item
        query_start = count * (k + 1)
        inputs[query_start, bits + 1] = 1.0  # query delimiter
        inputs[query_start + 1 : query_start + 1 + k, :bits] = items[query]
        inputs[query_start + 1 + k, bits + 1] = 1.0  # query delimiter again
        answer_start = query_start + 2 + k
        targets[answer_start:] = items[query + 1]
        mask[answer_start:] = 1.0
        return inputs, targets, mask
