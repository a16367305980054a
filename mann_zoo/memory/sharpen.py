"""Sharpening (NTM eq. 9)."""

from __future__ import annotations

import torch

from ._checks import EPS, check_shape, check_weights


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """w(i) = w~(i)^gamma / sum_j w~(j)^gamma   (NTM eq. 9)

    Computed as softmax(gamma * log(w~ + EPS)): the same value, but safe for one-hot and all-zero
    weightings (no 0^gamma log 0 in the gradient) and for large gamma (no underflow to 0 / 0).

    Args:
        weights: ``[B, H, N]``, non-negative.
        gamma: ``[B, H]``, gamma >= 1.
    Returns:
        ``[B, H, N]``, each row sums to 1 (an all-zero row becomes uniform).
    """
    batch, heads, _ = check_weights("weights", weights)
    check_shape("gamma", gamma, (batch, heads))
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(weights + EPS), dim=-1)
