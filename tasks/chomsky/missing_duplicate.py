"""Missing duplicate (Deletang et al. 2023; context-sensitive): a binary string written twice with one
token hidden; which bit is hidden?

Input (L tokens): a string w of L // 2 uniform random bits (tokens 0 and 1) written twice, ww, with the
token at one uniform random position of ww replaced by the placeholder 2, then, if L is odd, the empty
token 3. Output: one token, the hidden bit. 01100210 -> 1 (w = 0110); 1011213 -> 0 (w = 101).
L = 1 has no string to duplicate: as in their code, every example is then the input 1 and the answer 1.

Format: :mod:`tasks.chomsky.base` (input width 5, output width 2, one output step).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/cs/missing_duplicate_string.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ChomskyTask

HIDDEN, EMPTY = 2, 3  # the placeholder of the hidden bit, and the token that pads an odd length


class MissingDuplicateTask(ChomskyTask):
    """Missing duplicate; see the module docstring."""

    name = "missing_duplicate"
    vocabulary = 4
    classes = 2

    def output_length(self, length: int) -> int:
        return 1

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        if length == 1:
            return torch.ones(batch_size, 1, dtype=torch.long), torch.ones(batch_size, 1, dtype=torch.long)
        half = torch.randint(0, 2, (batch_size, length // 2), generator=generator)
        doubled = torch.cat([half, half], dim=1)
        hidden = torch.randint(0, doubled.shape[1], (batch_size, 1), generator=generator)
        tokens = doubled.scatter(1, hidden, HIDDEN)
        if length % 2:
            tokens = torch.cat([tokens, torch.full((batch_size, 1), EMPTY)], dim=1)
        return tokens, self.answer(tokens)

    def answer(self, tokens: Tensor) -> Tensor:
        """The hidden bits ``[B, 1]``: the twin of the placeholder's position in the other half (1 where
        L = 1)."""
        half = tokens.shape[1] // 2
        if half == 0:
            return torch.ones_like(tokens)
        hidden = (tokens == HIDDEN).long().argmax(dim=1, keepdim=True)
        twin = torch.where(hidden < half, hidden + half, hidden - half)
        return tokens.gather(1, twin)
