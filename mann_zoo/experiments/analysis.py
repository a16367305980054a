"""Hand-derived results used in the write-up (paper/), each checked against autograd in the tests."""

from __future__ import annotations

import torch

from ..memory import EPS


def content_weights_key_jacobian(memory: torch.Tensor, key: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """d w_c / d k for one head, derived by hand (paper/paper.md, section 3).

    With nu = sqrt(|k|^2 + EPS), m^_i = M(i) / sqrt(|M(i)|^2 + EPS), k^ = k / nu and K_i = k^ . m^_i
    (the cosine as ``content_weights`` computes it), w_i = softmax_i(beta K_i) and

        d K_i / d k = (m^_i - K_i k^) / nu
        d w_i / d k = beta w_i (d K_i / d k - sum_j w_j d K_j / d k)

    Args:
        memory: ``[N, W]``.  key: ``[W]``.  strength: beta.
    Returns:
        ``[N, W]``: row i is the gradient of w_i with respect to the key.
    """
    nu = torch.sqrt(key.pow(2).sum() + EPS)
    unit_memory = memory / torch.sqrt(memory.pow(2).sum(-1, keepdim=True) + EPS)  # m^_i
    unit_key = key / nu  # k^
    cosine = unit_memory @ unit_key  # K_i  [N]
    weights = torch.softmax(strength * cosine, dim=0)  # w_i  [N]
    d_cosine = (unit_memory - cosine[:, None] * unit_key[None, :]) / nu  # [N, W]
    return strength * weights[:, None] * (d_cosine - weights @ d_cosine)


def entropy_bits(weights: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of weightings along the last dimension."""
    return -(weights * torch.log2(weights.clamp_min(1e-30))).sum(-1)
