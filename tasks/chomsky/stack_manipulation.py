"""Stack manipulation (Deletang et al. 2023; deterministic context-free): run stack actions on a given
stack and return the stack at the end.

Input (L tokens in all): a stack of S uniform random bits, bottom to top (tokens 0 and 1), then L - S
uniform random actions: POP (token 2), PUSH 0 (token 3), PUSH 1 (token 4); S is uniform in 1 .. L - 1
(L = 1: the one-bit stack alone). A POP on an empty stack does nothing. Output (L + 1 tokens): the final
stack top to bottom (as if popped), then the termination class 2, then class 0 up to L + 1 steps; only
the steps up to the termination are scored (their accuracy mask; see :mod:`tasks.chomsky.base`):

    0 1 1 0 PUSH1 POP POP  ->  1 1 0 2 0 0 0 0      (the stack 0 1 1 0 1, then 0 1 1 0, then 0 1 1)
    1 1 0 POP POP POP      ->  2 0 0 0 0 0 0        (the stack is empty)

Format: :mod:`tasks.chomsky.base` (input width 6, output width 3, L + 1 output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/dcf/stack_manipulation.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ChomskyTask

POP, PUSH_0, PUSH_1 = 2, 3, 4  # the action tokens; tokens 0 and 1 are the bits of the initial stack


class StackManipulationTask(ChomskyTask):
    """Stack manipulation; see the module docstring."""

    name = "stack_manipulation"
    vocabulary = 5
    classes = 3
    termination_class = 2

    def output_length(self, length: int) -> int:
        return length + 1

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        if length == 1:
            stack_sizes = torch.ones(batch_size, dtype=torch.long)
        else:
            stack_sizes = torch.randint(1, length, (batch_size,), generator=generator)  # S in 1 .. L - 1
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        actions = torch.randint(POP, PUSH_1 + 1, (batch_size, length), generator=generator)
        tokens = torch.where(torch.arange(length) < stack_sizes.unsqueeze(1), bits, actions)
        return tokens, self.answer(tokens)

    def answer(self, tokens: Tensor) -> Tensor:
        """The output tokens ``[B, L + 1]`` of the inputs ``tokens [B, L]``: every token read as an action
        (a bit of the initial stack pushes itself), then the stack read from the top, the termination
        class and zeros."""
        batch, length = tokens.shape
        rows = torch.arange(batch)
        stack = torch.zeros(batch, length + 1, dtype=torch.long)  # one spare slot: the write at the top
        size = torch.zeros(batch, dtype=torch.long)
        for t in range(length):
            token = tokens[:, t]
            push = token != POP
            pushed = torch.where(token >= PUSH_0, token - PUSH_0, token)  # PUSH 0/1, or a bit of the stack
            stack[rows, size] = torch.where(push, pushed, stack[rows, size])
            size = torch.where(push, size + 1, (size - 1).clamp(min=0))
        depth = size.unsqueeze(1) - 1 - torch.arange(length + 1)  # the slot read at output step i: top - i
        outputs = torch.where(depth >= 0, stack.gather(1, depth.clamp(min=0)), torch.zeros_like(depth))
        outputs[rows, size] = self.termination_class
        return outputs
