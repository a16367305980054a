"""Numerical constant and argument checks shared by the memory primitives."""

from __future__ import annotations

import torch

EPS = 1e-6
"""The one epsilon of the memory primitives: keeps norms, logarithms and divisions away from zero."""


def check_shape(name: str, tensor: torch.Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``tensor`` has ``expected`` shape (``None`` = any size)."""
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(shape)}")


def check_memory(memory: torch.Tensor) -> tuple[int, int, int]:
    """Check a memory ``[B, N, W]`` and return ``(B, N, W)``; zero slots or width is an error."""
    if memory.dim() != 3:
        raise ValueError(f"memory must have shape [B, N, W], got {list(memory.shape)}")
    batch, slots, width = memory.shape
    if slots < 1 or width < 1:
        raise ValueError(f"memory must have at least 1 slot and width 1, got N={slots}, W={width}")
    return batch, slots, width


def check_weights(name: str, weights: torch.Tensor) -> tuple[int, int, int]:
    """Check a weighting ``[B, H, N]`` and return ``(B, H, N)``."""
    if weights.dim() != 3 or weights.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [B, H, N] with N >= 1, got {list(weights.shape)}")
    return tuple(weights.shape)
