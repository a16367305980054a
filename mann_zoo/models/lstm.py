"""LSTM baseline: a stacked fused ``torch.nn.LSTM`` with a linear read-out."""

from __future__ import annotations

import torch
from torch import nn

from .base import check_positive


class LSTMBaseline(nn.Module):
    """``model(x[B, T, input_size]) -> logits[B, T, output_size]``; the state starts at zero per sequence.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        controller_size: hidden units per layer.
        controller_layers: number of stacked layers.
        compile: accepted for a uniform interface; the fused LSTM kernel needs no compilation.
    """

    def __init__(self, input_size: int, output_size: int, controller_size: int = 256,
                 controller_layers: int = 3, compile: bool = False):
        check_positive(input_size=input_size, output_size=output_size,
                       controller_size=controller_size, controller_layers=controller_layers)
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.lstm = nn.LSTM(input_size, controller_size, controller_layers, batch_first=True)
        self.readout = nn.Linear(controller_size, output_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_size(self, length: int) -> int:
        """Numbers carried from step to step per example: h and c of every layer (``models.state_size``)."""
        return 2 * self.lstm.num_layers * self.lstm.hidden_size

    def forward(self, x: torch.Tensor, record: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape [B, T, {self.input_size}], got {list(x.shape)}")
        hidden, _ = self.lstm(x)
        logits = self.readout(hidden)
        return (logits, {}) if record else logits
