"""Keep freed memory for reuse: a process-wide allocator setting that the ``mann-zoo`` command applies.

A recurrent core allocates the same few large tensors at every time step (the memory, the DNC's link
matrix, their gradients: hundreds of KB to a few MB each). glibc's ``malloc`` serves blocks above its mmap
threshold (128 KiB, raised on the fly up to 32 MiB) with fresh pages from the kernel, and trims the top of
its heap back to the kernel when more than twice that is free; either way, such a tensor costs page faults
and the zeroing of its pages on every step. Measured on the 2-core machine (paper/results/speed_tasks):
the DNC's fused link update and its backward take about half the time with freed memory kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to here come from the heap and are reused
TRIM_THRESHOLD = 2**30  # free memory kept at the top of the heap before any is given back
TOP_PAD = 64 * 2**20  # extra heap asked for at each growth, so that growth is rare
OPT_OUT = "MANN_ZOO_SYSTEM_MALLOC"  # set to 1 to leave glibc's defaults alone


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold, trim threshold and top pad so that freed tensors' memory is reused
    instead of returned to the kernel; True if set. A no-op off Linux/glibc, or with
    ``MANN_ZOO_SYSTEM_MALLOC=1``. The process's resident memory then stays near its peak."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "0") not in ("", "0"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    # The mmap threshold first: setting either other value alone turns glibc's adaptive threshold off
    # and leaves it at 128 KiB, which is slower than the default.
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
