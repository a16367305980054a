"""What every recurrent core shares: argument checks, parameter count and the per-step cell."""

from __future__ import annotations

import torch
from torch import nn


def check_positive(**values: int) -> None:
    """Raise a one-line ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class MemoryCore(nn.Module):
    """Base of the memory-augmented cores (NTM, DNC, Stack-RNN, Tape-RNN).

    Subclasses define ``initial_state(batch, like)``, ``step(x_t, state, record)`` returning
    ``(features_t, state, trace_t)`` and ``readout``; the sequence loop, ``torch.compile`` of the
    step and recording of traces live here. ``model(x[B, T, I]) -> logits[B, T, O]``; memory is fresh
    for every sequence. ``model(x, record=True)`` also returns a dict of per-step tensors ``[B, T, ...]``
    (weightings, gates, usage) for plots; the default path stores nothing.
    """

    def __init__(self, compile: bool = False):
        super().__init__()
        self.compiled = bool(compile)
        if compile:
            # One compiled variant per batch size x {first step, later steps} x {grad, no_grad,
            # inference_mode}: training plus validation at another batch size already needs 8,
            # dynamo's default limit, after which it would silently fall back to eager.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # The per-step cell is compiled, not the unrolled sequence: the first compile stays short.
        self._step = torch.compile(self.step, dynamic=False) if compile else self.step

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def memory_slots(self) -> int:
        """N, the number of memory slots (subclasses set ``self.slots``)."""
        return self.slots

    def forward(self, x: torch.Tensor, record: bool = False):
        self.check_input(x)
        return self.unroll(x, self.initial_state(x.shape[0], x), record)

    def check_input(self, x: torch.Tensor) -> None:
        """A one-line ``ValueError`` unless ``x`` is ``[B, T >= 1, input_size]``."""
        if x.dim() != 3 or x.shape[-1] != self.input_size or x.shape[1] < 1:
            raise ValueError(f"x must have shape [B, T >= 1, {self.input_size}], got {list(x.shape)}")

    def unroll(self, x: torch.Tensor, state, record: bool = False):
        """Step through ``x[B, T, I]`` from ``state``: ``logits[B, T, O]`` (and the traces if ``record``)."""
        features, traces = [], []
        for t in range(x.shape[1]):  # the only Python loop: over time
            # a copy with T-free strides (.contiguous() keeps a batch of one's): x[:, t]'s strides depend
            # on T, and the compiled step (dynamic=False) would compile again for every sequence length
            x_t = x[:, t].clone(memory_format=torch.contiguous_format)
            feature, state, trace = self._step(x_t, state, record)
            features.append(feature)
            if record:
                traces.append(trace)
        logits = self.readout(torch.stack(features, dim=1))  # one matmul for all steps
        if not record:
            return logits
        return logits, {key: torch.stack([tr[key] for tr in traces], dim=1) for key in traces[0]}
