"""Duplicate string (Deletang et al. 2023; context-sensitive): the input string twice.

Input: a string s_1 ... s_L of uniform random tokens (binary in the paper); output: 2L tokens,
s_1 ... s_L s_1 ... s_L, without a separator. 101 -> 101101.

Format: :mod:`tasks.chomsky.base` (input width vocab_size + 1, output width vocab_size, 2L output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/cs/duplicate_string.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import StringTask


class DuplicateStringTask(StringTask):
    """Duplicate string; see the module docstring."""

    name = "duplicate_string"

    def output_length(self, length: int) -> int:
        return 2 * length

    def answer(self, tokens: Tensor) -> Tensor:
        return torch.cat([tokens, tokens], dim=1)
