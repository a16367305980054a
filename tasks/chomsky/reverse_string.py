"""Reverse string (Deletang et al. 2023; deterministic context-free): the input string backwards.

Input: a string s_1 ... s_L of uniform random tokens (binary in the paper); output: L tokens,
s_L ... s_1. 011010 -> 010110.

Format: :mod:`tasks.chomsky.base` (input width vocab_size + 1, output width vocab_size, L output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/dcf/reverse_string.py``.
"""

from __future__ import annotations

from torch import Tensor

from .base import StringTask


class ReverseStringTask(StringTask):
    """Reverse string; see the module docstring."""

    name = "reverse_string"

    def output_length(self, length: int) -> int:
        return length

    def answer(self, tokens: Tensor) -> Tensor:
        return tokens.flip(dims=[1])
