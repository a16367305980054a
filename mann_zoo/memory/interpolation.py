"""Interpolation gate (NTM eq. 7)."""

from __future__ import annotations

import torch

from ._checks import check_shape, check_weights


def interpolate(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """w_g = g w_c + (1 - g) w_{t-1}   (NTM eq. 7)

    Args:
        content: ``[B, H, N]`` content weighting w_c.
        previous: ``[B, H, N]`` previous weighting w_{t-1}.
        gate: ``[B, H]``, g in [0, 1].
    Returns:
        ``[B, H, N]``; sums to 1 when both inputs do.
    """
    batch, heads, slots = check_weights("content", content)
    check_shape("previous", previous, (batch, heads, slots))
    check_shape("gate", gate, (batch, heads))
    g = gate.unsqueeze(-1)
    return previous + g * (content - previous)  # = g w_c + (1 - g) w_prev
