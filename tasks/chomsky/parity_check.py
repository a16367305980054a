"""Parity check (Deletang et al. 2023; regular): is the number of 1s in a binary string odd?

Input: a string of L uniform random bits (tokens 0 and 1); output: one token, the number of 1s modulo 2
(class 1: odd). Format: :mod:`tasks.chomsky.base` (input width 3, output width 2, one output step).
"""

from __future__ import annotations

from torch import Tensor

from .base import ChomskyTask


class ParityCheckTask(ChomskyTask):
    """Parity check; see the module docstring."""

    name = "parity_check"
    vocabulary = 2
    classes = 2

    def output_length(self, length: int) -> int:
        return 1

    def answer(self, tokens: Tensor) -> Tensor:
        return tokens.sum(dim=1, keepdim=True) % 2  # parity = (sum of the bits) mod 2
