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

    With ``compile_steps = k > 1``, training (train mode, gradient enabled, no traces) runs k time steps
    per call of the compiled cell (``step_chunk``): much of a compiled NTM step at small batches is the
    call's fixed cost (guards, wrapper, autograd), and k steps in one graph also fuse across steps, to the
    same values up to rounding. Everything else steps one at a time: a chunk compiles for much longer than
    a step, so only training pays it.
    """

    def __init__(self, compile: bool = False, compile_steps: int = 1):
        check_positive(compile_steps=compile_steps)
        super().__init__()
        self.compiled = bool(compile)
        self.compile_steps = compile_steps
        if compile:
            # One compiled variant per batch size x {first step, later steps} x {grad, no_grad,
            # inference_mode}: training plus validation at another batch size already needs 8,
            # dynamo's default limit, after which it would silently fall back to eager.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # The per-step cell is compiled, not the unrolled sequence: the first compile stays short.
        self._step = torch.compile(self.step, dynamic=False) if compile else self.step
        # k steps per call (``compile_steps``): compiled once per batch size, whatever T (the chunks' strides
        # do not depend on it); T mod k steps are left to the one-step cell.
        chunked = compile and compile_steps > 1
        self._step_chunk = torch.compile(self.step_chunk, dynamic=False) if chunked else self.step_chunk

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
        T = x.shape[1]
        chunk = self.compile_steps if self.training and torch.is_grad_enabled() and not record else 1
        blocks, traces = [], []  # features [B, k or 1, F] per call
        t = 0
        while chunk > 1 and t + chunk <= T:  # the only Python loop: over time (k steps per call)
            block, state = self._step_chunk(_time_slice(x, t, t + chunk), state)
            blocks.append(block)
            t += chunk
        for t in range(t, T):  # the rest, one step per call
            feature, state, trace = self._step(_time_slice(x, t, t + 1)[:, 0], state, record)
            blocks.append(feature.unsqueeze(1))
            if record:
                traces.append(trace)
        logits = self.readout(torch.cat(blocks, dim=1))  # one matmul for all steps
        if not record:
            return logits
        return logits, {key: torch.stack([tr[key] for tr in traces], dim=1) for key in traces[0]}

    def step_chunk(self, xs: torch.Tensor, state):
        """``step`` over ``xs[B, k, I]`` in one call (compiled as one graph): ``(features [B, k, F], state)``."""
        features = []
        for t in range(xs.shape[1]):
            feature, state, _ = self.step(xs[:, t], state, False)
            features.append(feature)
        return torch.stack(features, dim=1), state


def _time_slice(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``x[:, start:stop]`` as a copy with T-free strides (``.contiguous()`` keeps a batch of one's): the
    view's strides depend on T, and a compiled cell (dynamic=False) would compile again for every length."""
    return x[:, start:stop].clone(memory_format=torch.contiguous_format)
