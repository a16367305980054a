"""Controllers of the memory-augmented cores: a stack of LSTM cells, of plain (Elman) RNN cells, or a
feed-forward network.

A controller is stepped once per time step: ``out, state = controller(x, state)`` with
``x[B, input_size]`` and ``out[B, size]``; its state is a tuple of tensors (empty for feed-forward).
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMController(nn.Module):
    """``layers`` stacked ``nn.LSTMCell``s; the state is ``(h_1, c_1, ..., h_L, c_L)``, each ``[B, size]``."""

    def __init__(self, input_size: int, size: int, layers: int = 1):
        super().__init__()
        self.size = size
        self.cells = nn.ModuleList(nn.LSTMCell(input_size if i == 0 else size, size) for i in range(layers))
        # Learned initial state, broadcast over the batch.
        self.initial = nn.Parameter(torch.zeros(2 * layers, size))

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(row.expand(batch, -1) for row in self.initial)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        new_state = []
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state[2 * i], state[2 * i + 1]))
            new_state += [h, c]
            x = h
        return x, tuple(new_state)


class RNNController(nn.Module):
    """``layers`` stacked Elman cells, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (``nn.RNNCell``);
    the state is ``(h_1, ..., h_L)``, each ``[B, size]``, starting at zero and not learned (as Haiku's
    ``VanillaRNN``, the controller of Deletang et al. 2023's Stack-RNN and Tape-RNN)."""

    def __init__(self, input_size: int, size: int, layers: int = 1):
        super().__init__()
        self.size = size
        self.cells = nn.ModuleList(nn.RNNCell(input_size if i == 0 else size, size) for i in range(layers))
        # A buffer, not a parameter: it follows the module's device and dtype and stays out of checkpoints.
        self.register_buffer("initial", torch.zeros(layers, size), persistent=False)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(row.expand(batch, -1) for row in self.initial)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        new_state = []
        for cell, h in zip(self.cells, state):
            x = cell(x, h)
            new_state.append(x)
        return x, tuple(new_state)


class FeedForwardController(nn.Module):
    """``layers`` linear layers with tanh; stateless."""

    def __init__(self, input_size: int, size: int, layers: int = 1):
        super().__init__()
        self.size = size
        blocks = []
        for i in range(layers):
            blocks += [nn.Linear(input_size if i == 0 else size, size), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return ()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return self.net(x), state


def make_controller(kind: str, input_size: int, size: int, layers: int) -> nn.Module:
    """Build the controller named ``kind`` (``lstm``, ``rnn`` or ``feedforward``)."""
    if kind == "lstm":
        return LSTMController(input_size, size, layers)
    if kind == "rnn":
        return RNNController(input_size, size, layers)
    if kind == "feedforward":
        return FeedForwardController(input_size, size, layers)
    raise ValueError(f"controller must be one of 'lstm', 'rnn', 'feedforward', got {kind!r}")
