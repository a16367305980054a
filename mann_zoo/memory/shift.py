"""Convolutional shift (NTM eq. 8)."""

from __future__ import annotations

import torch

from ._checks import check_shape, check_weights


def shift(weights: torch.Tensor, shift_weights: torch.Tensor) -> torch.Tensor:
    """Circular convolution of each weighting with its shift distribution.

    w~(i) = sum_j w(j) s(i - j)   (NTM eq. 8, indices modulo N)

    Index k of ``shift_weights`` is the offset k - S//2; a positive offset moves the focus to higher
    slots (a one-hot focus at slot 0 shifted by +1 lands on slot 1).

    Args:
        weights: ``[B, H, N]``.
        shift_weights: ``[B, H, S]``, S odd and at most N, each row a distribution.
    Returns:
        ``[B, H, N]``; sums to 1 when both inputs do.
    """
    batch, heads, slots = check_weights("weights", weights)
    check_shape("shift_weights", shift_weights, (batch, heads, None))
    size = shift_weights.shape[-1]
    if size % 2 == 0 or size > slots:
        raise ValueError(f"shift_weights must have an odd size S <= N={slots} along the last dim, got S={size}")
    radius = size // 2
    if radius == 0:
        return weights * shift_weights
    # Pad circularly so that window i covers slots i - R .. i + R; element j of the window is w(i - R + j).
    padded = torch.cat([weights[..., slots - radius :], weights, weights[..., :radius]], dim=-1)
    windows = padded.unfold(-1, size, 1)  # [B,H,N,S]
    # w~(i) = sum_k s_k w(i - (k - R)) = sum_j w(i - R + j) s_{2R - j}: the kernel is flipped.
    return (windows * shift_weights.flip(-1).unsqueeze(-2)).sum(-1)
