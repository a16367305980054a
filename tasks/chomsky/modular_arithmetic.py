"""Modular arithmetic (Deletang et al. 2023; regular): the value of an expression of numbers and +, -, *
modulo 5, without brackets.

Input: ``d_0 o_1 d_1 ... o_k d_k``: numbers ``d_i`` uniform in {0, ..., modulus - 1} (tokens 0 .. modulus-1)
and operators ``o_i`` uniform in {+, -, *} (tokens ``modulus`` + 0, 1, 2). Token ``modulus + 3`` is their
blank operator ``_``: never drawn, kept so that the input width is theirs (modulus + 4, here + 1 blank
step channel). Output: one token, the value modulo ``modulus`` with the usual precedence (``*`` before
``+`` and ``-``, left to right): 1 + 2 * 3 = 2, 1 - 1 - 1 = 4 (mod 5).

Length: an expression has an odd number of tokens; as in their code, a length L asks for L tokens if L is
odd and L - 1 if L is even (so ``len_50`` holds 49-token expressions, ``len_2`` single numbers).

Format: :mod:`tasks.chomsky.base` (input width modulus + 5, output width modulus, one output step).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/regular/modular_arithmetic.py``
(modulus 5 in the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..base import check_int
from .base import ChomskyTask

PLUS, MINUS, TIMES = 0, 1, 2  # operator tokens are modulus + these; modulus + 3 is the unused blank operator


class ModularArithmeticTask(ChomskyTask):
    """Modular arithmetic without brackets; see the module docstring.

    Args:
        modulus: the numbers and the answer are residues modulo ``modulus`` (the paper: 5).
        kwargs: ``min_length``, ``max_length``, ``val_lengths``, ``batch_size``, ``seed``,
            ``num_val_sequences``, ``val_batch_size``, as :class:`tasks.chomsky.base.ChomskyTask`.
    """

    name = "modular_arithmetic"

    def __init__(
        self,
        modulus: int = 5,
        **kwargs,  # the protocol's arguments (ChomskyTask's), shown on the command line all the same
    ) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        self.vocabulary = self.modulus + 4  # residues, +, -, * and their unused blank operator
        self.classes = self.modulus
        super().__init__(**kwargs)

    def output_length(self, length: int) -> int:
        return 1

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        terms = (length + 1) // 2  # the numbers of an expression of L tokens, or L - 1 if L is even
        numbers = torch.randint(0, self.modulus, (batch_size, terms), generator=generator)
        operators = torch.randint(0, 3, (batch_size, terms - 1), generator=generator)
        tokens = torch.empty(batch_size, 2 * terms - 1, dtype=torch.long)
        tokens[:, 0::2] = numbers
        tokens[:, 1::2] = self.modulus + operators
        return tokens, self.answer(tokens)

    def answer(self, tokens: Tensor) -> Tensor:
        """The values ``[B, 1]`` modulo ``modulus`` of the expressions ``tokens [B, 2k + 1]``: a running sum
        of the finished terms and the current product term, read left to right."""
        numbers, operators = tokens[:, 0::2], tokens[:, 1::2] - self.modulus
        total = torch.zeros_like(numbers[:, 0])
        term = numbers[:, 0]
        for i in range(operators.shape[1]):
            op, number = operators[:, i], numbers[:, i + 1]
            times = op == TIMES
            total = torch.where(times, total, total + term) % self.modulus  # + or -: the term is finished
            term = torch.where(times, term * number, torch.where(op == MINUS, -number, number)) % self.modulus
        return ((total + term) % self.modulus).unsqueeze(1)
