"""The link kernels of ``link_kernel.c``, compiled at first use with the system's C compiler and called
through ctypes: the DNC's link update and directional reads in one pass over the link per step, forward
and backward (``linkage.py`` uses them for contiguous float32 and float64 CPU tensors).

The library is built once per process in a temporary folder, removed once the library is loaded (plain C,
no Python or torch headers), for this machine's CPU (``-march=native``, or what the compiler takes instead).
Without a compiler, or where the build fails (a warning says why), :func:`kernels` is None and
``linkage.py`` runs its torch kernels instead (same values to rounding, slower). ``MANN_ZOO_NATIVE=0`` (or
``off``, ``false``, ``no``) switches the kernels off.
The kernels run on one thread (as the benchmark grids train); the torch kernels use torch's threads.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

SOURCE = Path(__file__).with_name("link_kernel.c")
SUFFIXES = {torch.float32: ("float", "_f32"), torch.float64: ("double", "_f64")}
FLAGS = ("-O3", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC")
TUNING = (("-march=native",), ("-mcpu=native",), ())  # tried in turn: compilers differ (clang on arm64: -mcpu)


class LinkKernels(NamedTuple):
    """The compiled functions, per dtype: ``forward[dtype]``, ``backward[dtype]``."""
    forward: dict
    backward: dict


@functools.cache
def kernels() -> LinkKernels | None:
    """The compiled kernels, or None where they cannot be built (no compiler, a failed build: said once, as a
    warning) or are switched off (``MANN_ZOO_NATIVE=0``)."""
    if os.environ.get("MANN_ZOO_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        return _build()
    except Exception as error:  # noqa: BLE001 - whatever stops the build, the torch kernels stand in
        warnings.warn(f"mann_zoo: the DNC link's C kernels did not build ({type(error).__name__}: "
                      f"{str(error).strip().splitlines()[-1] if str(error).strip() else 'no message'}); "
                      "its torch kernels run instead (same values, slower)", RuntimeWarning, stacklevel=2)
        return None


def _build() -> LinkKernels:
    """Compile ``link_kernel.c`` (float and double) into a temporary folder, load it, remove the folder (the
    library stays loaded) and declare the functions' arguments."""
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or "cc"]
    program = "".join(f'#define REAL {real}\n#define SUFFIX {suffix}\n#include "{SOURCE}"\n#undef REAL\n#undef SUFFIX\n'
                      for real, suffix in SUFFIXES.values())
    folder = tempfile.mkdtemp(prefix="mann_zoo_native_")
    try:
        library = Path(folder) / "link_kernel.so"
        for tuning in TUNING:
            build = subprocess.run([*compiler, *FLAGS, *tuning, "-x", "c", "-", "-o", str(library)], input=program,
                                   text=True, capture_output=True, timeout=120)
            if build.returncode == 0:
                break
        if build.returncode != 0:
            raise OSError(f"{compiler[0]} exited with {build.returncode}: {build.stderr.strip() or 'no message'}")
        lib = ctypes.CDLL(str(library))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t  # ptrdiff_t
    forward, backward = {}, {}
    for dtype, (_, suffix) in SUFFIXES.items():
        forward[dtype] = getattr(lib, f"link_reads_forward{suffix}")
        forward[dtype].argtypes = [pointer] * 7 + [size] * 4
        forward[dtype].restype = None
        backward[dtype] = getattr(lib, f"link_reads_backward{suffix}")
        backward[dtype].argtypes = [pointer] * 11 + [size] * 4
        backward[dtype].restype = ctypes.c_int  # 1: its row buffer could not be allocated
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


def _prepared(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The tensors as the kernels read them: contiguous, negation views resolved (``data_ptr`` ignores the
    neg bit); None stays None (no gradient)."""
    return [None if t is None else t.resolve_neg().contiguous() for t in tensors]


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def link_reads_forward(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                       read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_t [B, Hw, N, N], forward, backward [B, Hr, Hw, N])``, contiguous
    (``linkage.link_and_directional_read_weights``)."""
    link, precedence, write_weights, read_weights = _prepared(link, precedence, write_weights, read_weights)
    B, Hw, N = write_weights.shape
    Hr = read_weights.shape[1]
    new_link = torch.empty_like(link)
    forward = link.new_empty(B, Hr, Hw, N)
    backward = torch.empty_like(forward)
    kernels().forward[link.dtype](*map(_address, (link, precedence, write_weights, read_weights, new_link, forward,
                                                   backward)), B, Hw, Hr, N)
    return new_link, forward, backward


def link_reads_backward(link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor,
                        read_weights: torch.Tensor, grad_new_link: torch.Tensor | None,
                        grad_forward: torch.Tensor | None, grad_backward: torch.Tensor | None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients with respect to (link, precedence, write_weights, read_weights); a None gradient is zeros."""
    link, precedence, write_weights, read_weights, grad_new_link, grad_forward, grad_backward = _prepared(
        link, precedence, write_weights, read_weights, grad_new_link, grad_forward, grad_backward)
    B, Hw, N = write_weights.shape
    Hr = read_weights.shape[1]
    grads = (torch.empty_like(link), torch.empty_like(precedence), torch.empty_like(write_weights),
             torch.empty_like(read_weights))
    if kernels().backward[link.dtype](*map(_address, (link, precedence, write_weights, read_weights, grad_new_link,
                                                       grad_forward, grad_backward, *grads)), B, Hw, Hr, N):
        raise MemoryError(f"link_kernel.c: no memory for a row of {N} slots")
    return grads
