"""Large per-sequence buffers kept for the next sequence (the sparse DNC's memory, usage, link and gradient;
the NTM sequence kernel's memories, weightings, saved values and gate gradients of every step).

A sparse DNC at N = 16,384 starts every sequence with ~260 MB of fresh buffers (memory and its normalised
rows, the link's lists, the gradients), most of which a step never touches. On the CPU a fresh buffer that
large comes from ``mmap`` (glibc maps every block over 32 MB, whatever ``MALLOC_MMAP_THRESHOLD_`` says) and
is paid page by page when it is first filled: ~2 us per 4 kB page, ~130 ms a training step at batch 32,
where filling the same buffer again costs a tenth of that. ``full`` hands back a kept buffer of the same
shape, dtype and device, filled again, when nothing else uses it any more (the previous sequence's state
and autograd graph are gone), else a new one; ``empty`` the same without filling it (for a buffer that its
user writes whole). Elsewhere (CUDA: its caching allocator already reuses
memory, and a buffer refilled here would bypass its stream tracking) and for buffers under ``MIN_BYTES``,
``full`` is ``torch.full`` and ``empty`` ``torch.empty``.

"Nothing else uses it": the pool holds the only reference to the tensor (Python's and C++'s, such as
autograd's saved tensors) and to its storage (no view, no ``detach()``, no storage object held). Kept
buffers are normal tensors, also when made under ``torch.inference_mode`` (so that a training step may fill
them after an evaluation). The same tensor object is handed out again; one that was made to require
gradients is not. The pool keeps at most ``KEPT`` buffers and ``MAX_BYTES`` in all, the most recently
used; ``clear()`` lets go of them. ``MAX_BYTES`` is half the memory this process may use (the machine's, or
a container's limit where lower; at least 2 GiB), or ``MANN_ZOO_POOL_BYTES`` where set (``mann-zoo bench`` sets
it to that half over ``--jobs`` for each run, so that runs side by side keep no more together): a dense DNC
sequence at N = 1,024, batch 32, saves 5.6 GB of link matrices, and with a 2 GiB cap it was mapped afresh
every training step (1.5 million page faults, 6-16 s of system time against 7 s of computation).
"""

from __future__ import annotations

import os
import sys
import threading

import torch

from .. import settings

MIN_BYTES = 1 << 20  # smaller buffers: torch's allocator (malloc reuses them without new pages)
KEPT = 128  # buffers kept at most (MAX_BYTES is the bound that matters). A sparse DNC training sequence uses 10 (its
# store and gradients) and with the LSTM controller up to 17 more (its sequence kernel), the DNC's sequence kernel 15,
# the NTM's 11: the speed command's interleaved rounds (some 16 models in turn) need them
# all, or the last used push out the next model's, which at N = 16,384 are mapped again page by page (32 kept:
# the sparse DNC's copy step 209 ms in those rounds against 155 with three models, 2026-12-03)


CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1


def half_of_memory(at_least: int = 2 << 30) -> int:
    """Half of the machine's physical memory or of the container's limit (the lower), in bytes; ``at_least``
    where that is more or neither is known."""
    known = []
    try:
        known.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        pass
    for path in CGROUP_LIMITS:
        try:
            with open(path) as limit:
                known.append(int(limit.read().strip()))  # "max" (no limit): ValueError
        except (OSError, ValueError):
            pass
    return max(at_least, min(known) // 2) if known else at_least


def _max_bytes() -> int:
    """``MANN_ZOO_POOL_BYTES`` if set (``settings.SettingError`` unless a whole number >= 0), else
    :func:`half_of_memory`."""
    setting = settings.pool_bytes()
    return half_of_memory() if setting is None else setting


MAX_BYTES = _max_bytes()  # bytes kept at most (a sparse DNC at N = 16,384, batch 32: ~260 MB a sequence)

_kept: list[torch.Tensor] = []  # most recently used last
_lock = threading.RLock()


def full(shape: tuple[int, ...], value: float | int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``torch.full(shape, value, dtype=dtype, device=device)``, in a kept buffer where one is free."""
    return _buffer(shape, value, dtype, device)


def empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, in a kept buffer where one is free (holding whatever
    its last user left there)."""
    return _buffer(shape, None, dtype, device)


def _buffer(shape: tuple[int, ...], value: float | int | None, dtype: torch.dtype, device: torch.device | str
            ) -> torch.Tensor:
    """A kept buffer where one is free, else a new one; filled with ``value`` unless it is None."""
    shape, device = tuple(shape), torch.device(device)

    def new() -> torch.Tensor:
        if value is None:
            return torch.empty(shape, dtype=dtype, device=device)
        return torch.full(shape, value, dtype=dtype, device=device)
    if device.type != "cpu" or torch.Size(shape).numel() * dtype.itemsize < MIN_BYTES:
        return new()
    with _lock, torch.inference_mode(False):  # normal tensors: filled in place in and out of inference mode
        for position in range(len(_kept)):
            if _kept[position].shape == shape and _kept[position].dtype == dtype and _unused(position):
                buffer = _kept.pop(position)
                _kept.append(buffer)
                known = buffer.__dict__.pop(_FILLED, None)  # a mark holds for one hand-out
                return buffer if value is None or (known is not None and known == value) else buffer.fill_(value)
        buffer = new()
        _kept.append(buffer)
        while len(_kept) > KEPT or sum(b.nbytes for b in _kept) > MAX_BYTES:
            del _kept[0]
        return buffer


_FILLED = "_mann_zoo_pool_filled"  # the attribute that marks a buffer as holding one value everywhere


def filled(buffer: torch.Tensor, value: float | int) -> None:
    """Mark ``buffer`` (one that ``full`` handed out) as holding ``value`` everywhere, so that the next ``full`` of
    its shape, dtype and value hands it back without filling it again. Its user marks it last, once it writes no
    more (``unmark`` before writing again): the sparse DNC's access kernel puts its state back to the initial one
    at the end of the backward pass (``sparse_access.Store``), which spares ~200 MB of filling a sequence at N =
    16,384."""
    setattr(buffer, _FILLED, value)


def unmark(buffer: torch.Tensor) -> None:
    """Take back ``filled``'s mark (before writing to the buffer again)."""
    buffer.__dict__.pop(_FILLED, None)


def zeros(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``full(shape, 0)`` with ``like``'s device and dtype (or ``dtype``)."""
    return full(shape, 0, like.dtype if dtype is None else dtype, like.device)


def clear() -> None:
    """Let go of every kept buffer (each is freed once nothing else uses it)."""
    with _lock:
        _kept.clear()


def _unused(position: int) -> bool:
    """Whether nothing but the pool uses ``_kept[position]`` (see the module docstring). Counted as for a
    fresh tensor held once: Python references to the tensor (``getrefcount`` adds its argument), C++ owners
    of the tensor (its Python object), and of its storage (the tensor, and the storage object asked, which
    may be one someone holds: its Python references are counted too)."""
    if sys.getrefcount(_kept[position]) != 2 or _kept[position]._use_count() != 1 or _kept[position].requires_grad:
        return False
    return _storage_references(_kept[position]) == _storage_references(torch.empty(1))


def _storage_references(tensor: torch.Tensor) -> tuple[int, int]:
    """(Python references to ``tensor``'s storage object, C++ owners of the storage), while asked."""
    storage = tensor.untyped_storage()
    return sys.getrefcount(storage), torch._C._storage_Use_Count(storage._cdata)
