"""Large per-sequence buffers kept for the next sequence (the sparse DNC's memory, usage, link and gradient).

A sparse DNC at N = 16,384 starts every sequence with ~260 MB of fresh buffers (memory and its normalised
rows, the link's lists, the gradients), most of which a step never touches. A fresh buffer that large comes
from ``mmap`` (glibc maps every block over 32 MB, whatever ``MALLOC_MMAP_THRESHOLD_`` says) and is paid
page by page when it is first filled: ~2 us per 4 kB page, ~130 ms a training step at batch 32, where
filling the same buffer again costs a tenth of that. ``full`` hands back a kept buffer of the same shape,
dtype and device, filled again, when nothing else uses it any more (the previous sequence's state and
autograd graph are gone), else a new one.

"Nothing else uses it": the pool's own reference is the only one to the tensor (Python and C++, such as
autograd's saved tensors) and to its storage (views). Buffers under ``MIN_BYTES`` go to torch's
allocator as usual; the pool keeps at most ``KEPT`` buffers, the most recently used.
"""

from __future__ import annotations

import sys
import threading

import torch

MIN_BYTES = 1 << 20  # smaller buffers: torch's allocator (malloc reuses them without new pages)
KEPT = 32  # buffers kept at most (a sparse DNC training sequence uses 10: room for three sizes at once)

_kept: list[torch.Tensor] = []  # most recently used last
_lock = threading.Lock()


def full(shape: tuple[int, ...], value: float | int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.full(shape, value, dtype=dtype, device=device)``, in a kept buffer where one is free."""
    shape = tuple(shape)
    if torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size() < MIN_BYTES:
        return torch.full(shape, value, dtype=dtype, device=device)
    device = torch.device(device)
    with _lock:
        for position in range(len(_kept)):
            if _kept[position].shape == shape and _kept[position].dtype == dtype and _unused(position, device):
                buffer = _kept.pop(position)
                _kept.append(buffer)
                return buffer.fill_(value)
        buffer = torch.full(shape, value, dtype=dtype, device=device)
        _kept.append(buffer)
        del _kept[:max(len(_kept) - KEPT, 0)]
        return buffer


def zeros(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``full(shape, 0)`` with ``like``'s device and dtype (or ``dtype``)."""
    return full(shape, 0, like.dtype if dtype is None else dtype, like.device)


def clear() -> None:
    """Let go of every kept buffer (they are freed once nothing else uses them)."""
    with _lock:
        _kept.clear()


def _unused(position: int, device: torch.device) -> bool:
    """Whether ``_kept[position]`` is on ``device`` and the pool holds the only reference to it and to its
    storage (see the module docstring): one Python reference, ``_kept``'s (``getrefcount`` adds one for its
    argument), one C++ owner of the tensor (its Python object) and one of the storage (the tensor: no views)."""
    return (sys.getrefcount(_kept[position]) == 2 and _kept[position].device == device
            and _kept[position]._use_count() == 1
            and _storage_owners(_kept[position]) == _storage_owners(torch.empty(0)))


def _storage_owners(tensor: torch.Tensor) -> int:
    """How many owners ``tensor``'s storage has, as torch counts them while it is asked (which adds the
    storage object that asks: compared with a fresh tensor's count, 1 owner)."""
    return torch._C._storage_Use_Count(tensor.untyped_storage()._cdata)
