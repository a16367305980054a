"""Modular arithmetic with brackets (Deletang et al. 2023; deterministic context-free): the value modulo 5
of a random bracketed expression of numbers and +, -, *.

Input: an expression of exactly L tokens drawn from their grammar: a length 1 to 4 is ``d``, ``-d``,
``(d)`` or ``(-d)`` with ``d`` uniform in {0, ..., modulus - 1}; a longer length n is ``(A o B)``, ``A``
of a length uniform in 1 .. n - 4, ``B`` of the rest (n - 3 - |A|), both drawn the same way, and the
operator ``o`` uniform in {+, -, *} (their task table sets ``mult=True``). Tokens: numbers 0 .. modulus - 1,
then ``+ - * ( )`` (modulus + 0 .. 4) and their unused ``x`` (modulus + 5), so the input width is theirs
(modulus + 6, here + 1 blank step channel). Output: one token, the value modulo ``modulus``:
``((1-2)*(-3))`` -> (-1)(-3) = 3; ``(4+(2*3))`` -> 10 = 0 (mod 5).

Format: :mod:`tasks.chomsky.base` (input width modulus + 7, output width modulus, one output step).
Source: google-deepmind/neural_networks_chomsky_hierarchy, ``tasks/dcf/modular_arithmetic_brackets.py``
and ``training/constants.py`` (modulus 5, multiplication on). Their generator recurses in Python, example
by example; so does this one (it reads its random numbers from one tensor per batch, drawn with the
batch's generator).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..base import check_int
from .base import ChomskyTask

PLUS, MINUS, TIMES, OPEN, CLOSE = 0, 1, 2, 3, 4  # tokens modulus + these; modulus + 5 is their unused 'x'


class ModularArithmeticBracketsTask(ChomskyTask):
    """Modular arithmetic with brackets; see the module docstring.

    Args:
        modulus: the numbers and the answer are residues modulo ``modulus`` (the paper: 5).
        multiplication: whether ``*`` is one of the operators (the paper: yes), else only + and -.
        kwargs: ``min_length``, ``max_length``, ``val_lengths``, ``batch_size``, ``seed``,
            ``num_val_sequences``, ``val_batch_size``, as :class:`tasks.chomsky.base.ChomskyTask`.
    """

    name = "modular_arithmetic_brackets"

    def __init__(
        self,
        modulus: int = 5,
        multiplication: bool = True,
        **kwargs,  # the protocol's arguments (ChomskyTask's), shown on the command line all the same
    ) -> None:
        self.modulus = check_int("modulus", modulus, minimum=2)
        if not isinstance(multiplication, bool):
            raise ValueError(f"multiplication must be true or false, got {multiplication!r}")
        self.multiplication = multiplication
        self.vocabulary = self.modulus + 6  # residues, + - * ( ) and their unused x
        self.classes = self.modulus
        super().__init__(**kwargs)

    def output_length(self, length: int) -> int:
        return 1

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        # An expression of n tokens has at most n parts, each using at most two random numbers.
        uniforms = torch.rand(batch_size, 2 * length, generator=generator, dtype=torch.float64).tolist()
        tokens, values = [], []
        for row in uniforms:
            expression: list[int] = []
            values.append(self.expression(length, iter(row), expression))
            tokens.append(expression)
        return torch.tensor(tokens, dtype=torch.long), torch.tensor(values, dtype=torch.long).unsqueeze(1)

    def expression(self, length: int, uniforms: Iterator[float], out: list[int]) -> int:
        """Append an expression of ``length`` tokens to ``out`` and return its value modulo ``modulus``;
        ``uniforms`` supplies the random numbers (floats in [0, 1))."""
        m = self.modulus

        def draw(low: int, high: int) -> int:  # uniform in low .. high - 1
            return low + int(next(uniforms) * (high - low))

        if length <= 4:  # d, -d, (d), (-d)
            number = draw(0, m)
            negated = length in (2, 4)
            bracketed = length >= 3
            out.extend([m + OPEN] * bracketed + [m + MINUS] * negated + [number] + [m + CLOSE] * bracketed)
            return -number % m if negated else number
        left_length = draw(1, length - 3)  # 1 .. length - 4
        operator = draw(0, 3 if self.multiplication else 2)
        out.append(m + OPEN)
        left = self.expression(left_length, uniforms, out)
        out.append(m + operator)
        right = self.expression(length - 3 - left_length, uniforms, out)
        out.append(m + CLOSE)
        return self._apply(operator, left, right)

    def answer(self, tokens: Tensor) -> Tensor:
        """The values ``[B, 1]`` modulo ``modulus`` of the expressions ``tokens [B, L]``, parsed example by
        example (the grammar of the module docstring: ``d``, ``-d``, ``(E)``, ``(E o E)``)."""
        values = []
        for row in tokens.tolist():
            value, end = self._parse(row, 0)
            if end != len(row):
                raise ValueError(f"not one expression: {row}")
            values.append(value)
        return torch.tensor(values, dtype=torch.long).unsqueeze(1)

    def _parse(self, row: list[int], i: int) -> tuple[int, int]:
        """The value of the expression that starts at ``row[i]``, and the index after it."""
        m = self.modulus
        if row[i] < m:  # d
            return row[i], i + 1
        if row[i] == m + MINUS:  # -d
            return -row[i + 1] % m, i + 2
        if row[i] != m + OPEN:
            raise ValueError(f"no expression starts at token {i} of {row}")
        left, i = self._parse(row, i + 1)
        if row[i] == m + CLOSE:  # (d) or (-d)
            return left, i + 1
        right, end = self._parse(row, i + 1)
        if row[end] != m + CLOSE:
            raise ValueError(f"unclosed bracket in {row}")
        return self._apply(row[i] - m, left, right), end + 1

    def _apply(self, operator: int, left: int, right: int) -> int:
        if operator == PLUS:
            return (left + right) % self.modulus
        if operator == MINUS:
            return (left - right) % self.modulus
        return left * right % self.modulus
