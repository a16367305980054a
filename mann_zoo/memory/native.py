"""The link kernels of ``link_kernel.c``, compiled at first use with the system's C compiler and called
through ctypes: the DNC's link update and directional reads in one pass over the link per step, forward
and backward (``linkage.py`` uses them for contiguous float32 and float64 CPU tensors).

The library is built once per process into a temporary folder (a fraction of a second: plain C, no Python
or torch headers), for this machine's CPU (``-march=native``). Without a compiler, or where the build
fails, :func:`kernels` is None and ``linkage.py`` runs its torch formulas instead (same values to
rounding). ``MANN_ZOO_NATIVE=0`` switches the kernels off.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

SOURCE = Path(__file__).with_name("link_kernel.c")
SUFFIXES = {torch.float32: ("float", "_f32"), torch.float64: ("double", "_f64")}
FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC")


class LinkKernels(NamedTuple):
    """The compiled functions, per dtype: ``forward[dtype]``, ``backward[dtype]``."""
    forward: dict
    backward: dict



@functools.cache
def kernels() -> LinkKernels | None:
    """The compiled kernels, or None where they cannot be built (no compiler, a failed build) or are
    switched off (``MANN_ZOO_NATIVE=0``)."""
    if os.environ.get("MANN_ZOO_NATIVE", "1") == "0":
        return None
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")]
    if compiler[0] is None:
        return None
    program = "".join(f'#define REAL {real}\n#define SUFFIX {suffix}\n#include "{SOURCE}"\n#undef REAL\n#undef SUFFIX\n'
                      for real, suffix in SUFFIXES.values())
    try:
        folder = tempfile.mkdtemp(prefix="mann_zoo_native_")
        atexit.register(shutil.rmtree, folder, True)
        library = Path(folder) / "link_kernel.so"
        subprocess.run([*compiler, *FLAGS, "-x", "c", "-", "-o", str(library)], input=program, text=True,
                       capture_output=True, check=True, timeout=120)
        lib = ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError):
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_long
    forward, backward = {}, {}
    for dtype, (_, suffix) in SUFFIXES.items():
        forward[dtype] = getattr(lib, f"link_reads_forward{suffix}")
        forward[dtype].argtypes = [pointer] * 7 + [size] * 4
        forward[dtype].restype = None
        backward[dtype] = getattr(lib, f"link_reads_backward{suffix}")
        backward[dtype].argtypes = [pointer] * 11 + [size] * 4
        backward[dtype].restype = None
    return LinkKernels(forward, backward)


@torch.compiler.assume_constant_result  # a constant to torch.compile, which does not trace the build
def available() -> bool:
    """Whether the kernels are built (:func:`kernels`)."""
    return kernels() is not None


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors: built, on the CPU, all float32 or all float64."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    return (dtype in SUFFIXES and all(t.device.type == "cpu" and t.dtype == dtype for t in present)
            and available())


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def link_reads_forward(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                       read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_t [B, Hw, N, N], forward, backward [B, Hr, Hw, N])``, contiguous (``linkage.link_and_directional_read_weights``)."""
    link, precedence, write_weights, read_weights = (t.contiguous() for t in (link, precedence, write_weights, read_weights))
    B, Hw, N = write_weights.shape
    Hr = read_weights.shape[1]
    new_link = torch.empty_like(link)
    forward = link.new_empty(B, Hr, Hw, N)
    backward = torch.empty_like(forward)
    kernels().forward[link.dtype](*map(_address, (link, precedence, write_weights, read_weights, new_link, forward, backward)),
                                  B, Hw, Hr, N)
    return new_link, forward, backward


def link_reads_backward(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                        read_weights: torch.Tensor, grad_new_link: torch.Tensor | None,
                        grad_forward: torch.Tensor | None, grad_backward: torch.Tensor | None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients with respect to (link, precedence, write_weights, read_weights); a None gradient is zeros."""
    link, precedence, write_weights, read_weights = (t.contiguous() for t in (link, precedence, write_weights, read_weights))
    grad_new_link, grad_forward, grad_backward = (None if t is None else t.contiguous()
                                                  for t in (grad_new_link, grad_forward, grad_backward))
    B, Hw, N = write_weights.shape
    Hr = read_weights.shape[1]
    grads = (torch.empty_like(link), torch.empty_like(precedence), torch.empty_like(write_weights),
             torch.empty_like(read_weights))
    kernels().backward[link.dtype](*map(_address, (link, precedence, write_weights, read_weights, grad_new_link,
                                                    grad_forward, grad_backward, *grads)), B, Hw, Hr, N)
    return grads
