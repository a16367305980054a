"""Bucket sort (Deletang et al. 2023; context-sensitive): the input tokens in increasing order.

Input: a string of L uniform random tokens from {0, ..., vocab_size - 1} (5 in the paper); output: L
tokens, the same tokens sorted. 10204112 -> 00111224.

Format: :mod:`tasks.chomsky.base` (input width vocab_size + 1, output width vocab_size, L output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/cs/bucket_sort.py``.
"""

from __future__ import annotations

from torch import Tensor

from .base import StringTask


class BucketSortTask(StringTask):
    """Bucket sort; see the module docstring."""

    name = "bucket_sort"

    def __init__(self, vocab_size: int = 5, **kwargs) -> None:  # the paper's 5 (the other string tasks: 2)
        super().__init__(vocab_size, **kwargs)

    def output_length(self, length: int) -> int:
        return length

    def answer(self, tokens: Tensor) -> Tensor:
        return tokens.sort(dim=1).values
