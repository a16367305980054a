"""Even pairs (Deletang et al. 2023; regular): is the number of unequal neighbours (01 and 10) even?

Input: a string of L uniform random bits (tokens 0 and 1); output: one token, the number of positions
where a bit differs from the next, modulo 2 (class 0: even). 001110 -> one 01, one 10 -> class 0;
0101001 -> 3 + 2 -> class 1. (The answer is 1 exactly when the first and last bits differ.)

Format: :mod:`tasks.chomsky.base` (input width 3, output width 2, one output step).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/regular/even_pairs.py``.
"""

from __future__ import annotations

from torch import Tensor

from .base import ChomskyTask


class EvenPairsTask(ChomskyTask):
    """Even pairs; see the module docstring."""

    name = "even_pairs"
    vocabulary = 2
    classes = 2

    def output_length(self, length: int) -> int:
        return 1

    def answer(self, tokens: Tensor) -> Tensor:
        unequal = (tokens[:, 1:] != tokens[:, :-1]).long()  # 01 and 10 pairs
        return unequal.sum(dim=1, keepdim=True) % 2
