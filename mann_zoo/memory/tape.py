"""Differentiable tape (the Tape-RNN of Deletang et al. 2023, after the Baby-NTM of Suzgun et al. 2019).

The tape is stored relative to its head: slot 0 is the cell under the head, slot i the cell i steps to
the head's left (slot N - 1: one step to its right; the tape is circular), and moving the head is a
circular shift of the whole tape (google-deepmind/neural_networks_chomsky_hierarchy, models/tape_rnn.py,
does the same with permutation matrices). A mixture of moves is a mixture of shifted tapes, so the
contents blur, not the head.
"""

from __future__ import annotations

import torch

from ._checks import check_memory, check_shape

TAPE_ACTIONS = ("write_stay", "write_left", "write_right", "jump_left", "jump_right")
"""The Tape-RNN's actions, in the order of the reference code (``TapeInputLengthJumpCore``)."""


def tape_offsets(jump: torch.Tensor) -> torch.Tensor:
    """The offset o_a of each action of ``TAPE_ACTIONS`` for :func:`move_tape`: ``(0, +1, -1, +l, -l)``.

    ``left`` is offset +1: the tape shifts one slot towards slot 0, so the head then reads the cell that
    was in slot 1, one step to its left (the reference code's ``write_left``, ``roll(eye, -1)``); ``right``
    is -1; ``jump_left`` and ``jump_right`` move l cells the same ways.

    Args:
        jump: ``[B]`` integer jump lengths l (the input length in Deletang et al.).
    Returns:
        ``[B, 5]`` integer offsets, the dtype of ``jump``.
    """
    if jump.dim() != 1 or jump.is_floating_point():
        raise ValueError(f"jump must be a 1-d integer tensor [B], got {jump.dtype} of shape {list(jump.shape)}")
    step = torch.ones_like(jump)
    return torch.stack([torch.zeros_like(jump), step, -step, jump, -jump], dim=1)


def write_at_head(tape: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Replace the cell under the head: M'(0) = v, M'(i) = M(i) for i >= 1.

    (Deletang et al. 2023, appendix A.2: "writing at the current position"; the reference code replaces
    the cell, it does not blend it.)

    Args:
        tape: ``[B, N, W]``, slot 0 under the head.
        value: ``[B, W]``, the value written.
    Returns:
        ``[B, N, W]``.
    """
    batch, _, width = check_memory(tape)
    check_shape("value", value, (batch, width))
    return torch.cat([value.unsqueeze(1), tape[:, 1:]], dim=1)


def move_tape(tape: torch.Tensor, actions: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """A mixture of head moves: M'(i) = sum_a w_a M((i + o_a) mod N).

    Moving the head by o_a cells brings the cell at slot o_a under it (slot 0); the tape is circular.

    Args:
        tape: ``[B, N, W]``, slot 0 under the head.
        actions: ``[B, A]`` action weights w_a (normally a softmax; any weights are accepted, and weights
            that sum to 1 keep the tape's scale).
        offsets: ``[B, A]`` integer offsets o_a, any sign and size (taken modulo N), one row per example.
    Returns:
        ``[B, N, W]``. Linear in ``tape`` and in ``actions``: no NaN for any finite input.
    """
    batch, slots, width = check_memory(tape)
    check_shape("actions", actions, (batch, None))
    check_shape("offsets", offsets, tuple(actions.shape))
    if offsets.is_floating_point():
        raise ValueError(f"offsets must be an integer tensor, got {offsets.dtype}")
    moves = actions.shape[1]
    source = (torch.arange(slots, device=tape.device) + offsets.unsqueeze(-1)) % slots  # (i + o_a) mod N  [B,A,N]
    index = source.unsqueeze(-1).expand(batch, moves, slots, width)
    shifted = tape.unsqueeze(1).expand(batch, moves, slots, width).gather(2, index)  # M((i + o_a) mod N)  [B,A,N,W]
    return (actions[:, :, None, None] * shifted).sum(1)  # sum_a w_a M((i + o_a) mod N)
