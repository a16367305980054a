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


def sharpen_links(weights: torch.Tensor, sharpness: torch.Tensor, renormalise: bool = False) -> torch.Tensor:
    """Link sharpness (Csordas & Schmidhuber 2019): a forward or backward weighting L w^r sharpened by an
    exponent s >= 1 before the read modes mix it in.

        renormalise=True (their code):  d <- d + EPS;  d <- d / max d;  d <- d^s;  d <- d / sum_j d(j)
                                        = :func:`sharpen` (d, s); each row sums to 1
        renormalise=False (default):    the same, times sum_j d(j) before sharpening: the mass that the
                                        link gave (at most 1, 0 where nothing links) is kept, only its
                                        shape is sharpened

    Args:
        weights: ``[B, H, N]``, non-negative, rows summing to at most 1.
        sharpness: ``[B, H]``, s >= 1.
    Returns:
        ``[B, H, N]``.
    """
    sharpened = sharpen(weights, sharpness)
    return sharpened if renormalise else sharpened * weights.sum(-1, keepdim=True)
