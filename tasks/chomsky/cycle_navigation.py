"""Cycle navigation (Deletang et al. 2023; regular): where does a walk on a cycle of 5 states end?

Input: L uniform random moves, token 0 (one step left, -1), 1 (stay, 0) or 2 (one step right, +1), from
state 0. Output: one token, the final state, (sum of the moves) modulo 5. Their code draws the tokens
0, 1, 2 and subtracts 1 (their docstring's "0 is stay, 1 is right" describes the moves, not the tokens):
0 1 2 0 0 -> -1 + 0 + 1 - 1 - 1 = -2 -> class 3.

Format: :mod:`tasks.chomsky.base` (input width 4, output width 5, one output step).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/regular/cycle_navigation.py``.
"""

from __future__ import annotations

from torch import Tensor

from .base import ChomskyTask


class CycleNavigationTask(ChomskyTask):
    """Cycle navigation; see the module docstring."""

    name = "cycle_navigation"
    vocabulary = 3
    classes = 5  # the states of the cycle

    def output_length(self, length: int) -> int:
        return 1

    def answer(self, tokens: Tensor) -> Tensor:
        return (tokens - 1).sum(dim=1, keepdim=True) % self.classes  # token t moves t - 1 steps
