"""Binary addition (Deletang et al. 2023; context-sensitive): the sum of two binary numbers, little-endian.

Input (L >= 3 tokens): n, the token 2 (``+``), then m: two positive numbers in little-endian binary (least
significant bit first, tokens 0 and 1), n with a length uniform in 1 .. L - 2 and m with the rest, each
uniform among the nonzero numbers of its length (so a number may end in zeros: its high bits). Output
(L + 1 tokens): n + m in little-endian binary without high zeros, then the termination class 2, then
class 0 up to L + 1 steps; only the steps up to the termination are scored (their accuracy mask; see
:mod:`tasks.chomsky.base`). The answer's length depends on the example, not only on L: the padding to
L + 1 steps is theirs.

    0 0 1 + 0 1 1 0 1  ->  0 1 0 1 1 2 0 0 0 0      (4 + 22 = 26)

L = 1 or 2 has no room for ``+``: as in their code, the input is one number of L bits, uniform in
0 .. 2^L - 2 (L = 1: always 0), and the output is that number (0 as a single 0), 2, zeros.

Format: :mod:`tasks.chomsky.base` (input width 4, output width 3, L + 1 output steps).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/cs/binary_addition.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ChomskyTask

PLUS = 2  # the input token between the two numbers


class BinaryAdditionTask(ChomskyTask):
    """Binary addition; see the module docstring."""

    name = "binary_addition"
    vocabulary = 3
    classes = 3
    termination_class = 2

    def output_length(self, length: int) -> int:
        return length + 1

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        if length <= 2:  # one number, 0 .. 2^L - 2, in L bits
            number = torch.randint(0, 2**length - 1, (batch_size, 1), generator=generator)
            tokens = (number >> torch.arange(length)) & 1
            return tokens, self.answer(tokens)
        first_lengths = torch.randint(1, length - 1, (batch_size, 1), generator=generator)  # 1 .. L - 2
        positions = torch.arange(length)
        first = positions < first_lengths  # where n's bits are; m's are after the + at first_lengths
        second = positions > first_lengths
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        while True:  # each number uniform among the nonzero ones of its length: redraw rows with a zero
            zero = ~(bits.bool() & first).any(dim=1) | ~(bits.bool() & second).any(dim=1)
            if not zero.any():
                break
            bits[zero] = torch.randint(0, 2, (int(zero.sum()), length), generator=generator)
        tokens = torch.where(first | second, bits, PLUS)
        return tokens, self.answer(tokens)

    def answer(self, tokens: Tensor) -> Tensor:
        """The output tokens ``[B, L + 1]`` of the inputs ``tokens [B, L]`` (``n + m``, or one number where
        there is no ``+``): the sum's bits up to its highest 1 (a single 0 for 0), the termination class,
        zeros."""
        batch, length = tokens.shape
        positions = torch.arange(length)
        has_plus = (tokens == PLUS).any(dim=1, keepdim=True)
        plus = torch.where(has_plus, (tokens == PLUS).long().argmax(dim=1, keepdim=True), length)
        n = torch.where(positions < plus, tokens, 0)  # n's bits, little-endian, in place
        m_bit = (positions + plus + 1).clamp(max=length - 1)  # where m's bit i is, for i < L - 1 - |n|
        m = tokens.gather(1, m_bit) * (positions < length - 1 - plus)
        total = torch.zeros(batch, length + 1, dtype=torch.long)
        carry = torch.zeros(batch, dtype=torch.long)
        for i in range(length):  # ripple-carry addition, bit i: s_i = (n_i + m_i + c) mod 2
            column = n[:, i] + m[:, i] + carry
            total[:, i], carry = column % 2, column // 2
        total[:, length] = carry
        highest = torch.where(total.bool(), torch.arange(length + 1), -1).max(dim=1).values
        digits = (highest + 1).clamp(min=1)  # bits of the sum without high zeros; "0" for 0
        total[torch.arange(batch), digits] = self.termination_class
        return total
