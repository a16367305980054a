"""Odds first (Deletang et al. 2023; context-sensitive): the tokens at odd positions, then those at even
positions.

Input: a string s_0 ... s_{L-1} of uniform random tokens (binary in the paper; positions counted from 0);
output: L tokens, s_1 s_3 s_5 ... then s_0 s_2 s_4 .... 00110101 -> 0111 0100; 110 -> 1 10.
This is their code (``[:, 1::2]`` then ``[:, ::2]``), which made the data of the paper's results. Their
docstring counts from 1 and puts s_1 s_3 ... (1-based) first, which is the other order (00110101 ->
0100 0111); the two tasks are mirror images, equally hard.

Format: :mod:`tasks.chomsky.base` (input width vocab_size + 1, output width vocab_size, L output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/cs/odds_first.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import StringTask


class OddsFirstTask(StringTask):
    """Odds first; see the module docstring."""

    name = "odds_first"

    def output_length(self, length: int) -> int:
        return length

    def answer(self, tokens: Tensor) -> Tensor:
        return torch.cat([tokens[:, 1::2], tokens[:, 0::2]], dim=1)
