"""Content-based addressing (NTM eq. 5-6; DNC "content-based addressing"; masking from Csordas &
Schmidhuber 2019)."""

from __future__ import annotations

import torch

from ._checks import EPS, check_memory, check_shape


def content_weights(
    memory: torch.Tensor,
    keys: torch.Tensor,
    strengths: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over slots of strength x cosine similarity between each key and each memory row.

    w_c(i) = exp(beta K[k, M(i)]) / sum_j exp(beta K[k, M(j)]),   K[u, v] = u.v / (|u| |v|)   (NTM eq. 5-6)

    With ``mask`` m (key-value masking, Csordas & Schmidhuber 2019): K[k * m, M(i) * m].

    Args:
        memory: ``[B, N, W]``.
        keys: ``[B, H, W]``, one key per head.
        strengths: ``[B, H]``, beta >= 0.
        mask: optional ``[B, H, W]`` in [0, 1].
    Returns:
        ``[B, H, N]``, each row sums to 1. Safe for zero memory, zero keys and large strengths:
        norms are taken as sqrt(|x|^2 + EPS), so a zero vector has cosine 0 with everything.
    """
    cosine = cosine_similarity(memory, keys, mask)  # checks memory, keys and mask  [B,H,N]
    check_shape("strengths", strengths, tuple(cosine.shape[:2]))
    return torch.softmax(strengths.unsqueeze(-1) * cosine, dim=-1)  # NTM eq. 5


def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """K[k, M(i)] = k.M(i) / (|k| |M(i)|) for each key and slot (NTM eq. 6), under ``mask`` if given.

    Args: as ``content_weights``. Returns ``[B, H, N]`` in [-1, 1].
    """
    batch, _, width = check_memory(memory)
    check_shape("keys", keys, (batch, None, width))
    heads = keys.shape[1]
    if mask is None:
        dot = keys @ memory.transpose(1, 2)  # k . M(i)  [B,H,N]
        memory_norm_sq = memory.pow(2).sum(-1).unsqueeze(1)  # |M(i)|^2  [B,1,N], shared by all heads
    else:
        check_shape("mask", mask, (batch, heads, width))
        mask_sq = mask * mask
        dot = (keys * mask_sq) @ memory.transpose(1, 2)  # (k * m) . (M(i) * m)  [B,H,N]
        memory_norm_sq = mask_sq @ memory.pow(2).transpose(1, 2)  # |M(i) * m|^2  [B,H,N]
        keys = keys * mask
    key_norm_sq = keys.pow(2).sum(-1, keepdim=True)  # |k|^2  [B,H,1]
    # Work on [B,H,N] (not [B,N,W]): normalise the dot products, not the memory.
    return dot * torch.rsqrt(memory_norm_sq + EPS) * torch.rsqrt(key_norm_sq + EPS)
