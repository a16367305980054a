"""State size: how many numbers a model carries from one step of a sequence to the next (per example).

The x-axis of Zoology's MQAR plots (Arora et al. 2023), where a recurrent model's state is compared with
attention's keys and values. Here:

- a core with ``initial_state`` (NTM, DNC, Stack-RNN, Tape-RNN): every floating-point number of its state,
  counted on the state of one example: memory N x W, the DNC's link matrix N x N (the sparse DNC's K
  values a row), usage, weightings, read vectors and the controller's state (integer indices left out);
- a core with a ``state_size(length)`` method of its own (the LSTM baseline: 2 x layers x units; the
  Transformer: the keys and values of every layer at every position, 2 x layers x length x width);
- otherwise unknown (``None``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..memory import RowMemory


def _numel(state) -> int:
    """Floating-point numbers in ``state`` (integer tensors are indices: the sparse DNC's, the Tape-RNN's
    offsets), a memory written in place (``RowMemory``) counted as its B x N x W values."""
    if isinstance(state, RowMemory):
        return math.prod(state.shape)
    if isinstance(state, torch.Tensor):
        return state.numel() if state.is_floating_point() else 0
    if isinstance(state, (tuple, list)):
        return sum(_numel(part) for part in state)
    if isinstance(state, dict):
        return sum(_numel(part) for part in state.values())
    return 0


def state_size(core: nn.Module, length: int) -> int | None:
    """Numbers carried between steps per example, for sequences of ``length`` steps (see the module)."""
    own = getattr(core, "state_size", None)
    if callable(own):
        return int(own(length))
    if hasattr(core, "initial_state"):
        parameter = next(core.parameters(), None)
        like = torch.zeros(1, 1, getattr(core, "input_size", 1),
                           dtype=parameter.dtype if parameter is not None else torch.get_default_dtype(),
                           device=parameter.device if parameter is not None else None)
        try:
            with torch.no_grad():
                return _numel(core.initial_state(1, like))
        except TypeError:  # an initial_state of another signature: unknown rather than a failed run
            return None
    return None
