"""The C kernels, compiled at first use with the system's C compiler and called through ctypes, for
contiguous float32 and float64 CPU tensors: ``link_kernel.c``, the DNC's link update and directional reads
in one pass over the link per step, forward and backward (``linkage.py``); ``ntm_kernel.c``, the NTM's
addressing, read and write of one step in two passes over the memory each way (``ntm_access.py``);
``ntm_sequence_kernel.c``, the NTM with an LSTM controller over a whole sequence, with ``ntm_kernel.c``'s step
(``models/ntm_sequence.py``);
``sparse_kernel.c``, the sparse DNC's content look-up candidates in one pass over the memory (``sparse.py``);
``dnc_kernel.c``, the DNC's memory access of one step with one write head, with ``link_kernel.c``'s link pass
(``dnc_access.py``), and the DNC with an LSTM controller over a whole sequence, with ``ntm_sequence_kernel.c``'s
controller step (``models/dnc_sequence.py``);
``sparse_access_kernel.c``, the sparse DNC's access of one step with one write head, forward and backward, with
``sparse_kernel.c``'s pieces (``sparse_access.py``), and the sparse DNC with an LSTM controller over a whole
sequence, with ``ntm_sequence_kernel.c``'s controller step (``models/sparse_sequence.py``).

The library is built in a temporary folder, removed once the library is loaded (plain C, no Python or torch
headers), for this machine's CPU (``-march=native``, or what the compiler takes instead), and kept in a cache
folder (``MANN_ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/mann_zoo``, else ``~/.cache/mann_zoo``; ``0``, ``off``,
``false`` or ``no`` keep nothing) under a name that hashes everything the build depends on (the program, the
compiler, its flags and the instruction sets it targets here, this machine's CPU), so that the next process
loads it instead of compiling again (about 14 s of one core); the ``CACHED_BUILDS`` most recent are kept. A cached library that does not load is built
again and replaced.
Without a compiler, or where the build fails (a warning says why), :func:`kernels` is None and
``linkage.py`` runs its torch kernels instead (same values to rounding, slower). ``MANN_ZOO_NATIVE=0`` (or
``off``, ``false``, ``no``) switches the kernels off.
The kernels run on one thread (as the benchmark grids train); the torch kernels use torch's threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from . import pool
from ._checks import EPS

SOURCES = tuple(Path(__file__).with_name(name)
                for name in ("link_kernel.c", "ntm_kernel.c", "ntm_sequence_kernel.c", "sparse_kernel.c", "dnc_kernel.c",
                                 "sparse_access_kernel.c"))
SWITCHED_OFF = ("0", "false", "no", "off")  # what MANN_ZOO_NATIVE and MANN_ZOO_CACHE_DIR take for "none"
SUFFIXES = {torch.float32: ("float", "_f32"), torch.float64: ("double", "_f64")}
FLAGS = ("-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
TUNING = (("-march=native",), ("-mcpu=native",), ())  # tried in turn: compilers differ (clang on arm64: -mcpu)
CACHED_BUILDS = 8  # libraries kept in the cache folder, the most recently written (each ~0.5 MB; every edit of a
# source makes another)


class Kernels(NamedTuple):
    """The compiled functions, each a dict from dtype to function: the link's ``forward`` and ``backward``
    (``link_kernel.c``), the NTM step's ``ntm_forward`` and ``ntm_backward`` (``ntm_kernel.c``), the NTM
    sequence's ``ntm_sequence_forward`` and ``ntm_sequence_backward`` (``ntm_sequence_kernel.c``), the sparse
    DNC's ``content_candidates``, ``link_columns_update``, ``merge_plan`` and ``least_used``
    (``sparse_kernel.c``), the DNC step's ``dnc_forward`` and ``dnc_backward`` and the DNC sequence's
    ``dnc_sequence_forward`` and ``dnc_sequence_backward`` (``dnc_kernel.c``), the sparse DNC step's
    ``sparse_tape_sizes``, ``sparse_access_forward`` and ``sparse_access_backward`` and the sparse DNC sequence's
    ``sparse_sequence_forward`` and ``sparse_sequence_backward`` (``sparse_access_kernel.c``)."""
    forward: dict
    backward: dict
    ntm_forward: dict
    ntm_backward: dict
    ntm_sequence_forward: dict
    ntm_sequence_backward: dict
    content_candidates: dict
    link_columns_update: dict
    merge_plan: dict
    least_used: dict
    dnc_forward: dict
    dnc_backward: dict
    dnc_sequence_forward: dict
    dnc_sequence_backward: dict
    sparse_tape_sizes: dict
    sparse_access_forward: dict
    sparse_access_backward: dict
    sparse_sequence_forward: dict
    sparse_sequence_backward: dict


@functools.cache
def kernels() -> Kernels | None:
    """The compiled kernels, or None where they cannot be built (no compiler, a failed build: said once, as a
    warning) or are switched off (``MANN_ZOO_NATIVE=0``)."""
    if os.environ.get("MANN_ZOO_NATIVE", "1").strip().lower() in SWITCHED_OFF:
        return None
    try:
        return _build()
    except Exception as error:  # noqa: BLE001 - whatever stops the build, the torch kernels stand in
        warnings.warn(f"mann_zoo: the C kernels did not build ({type(error).__name__}: "
                      f"{str(error).strip().splitlines()[-1] if str(error).strip() else 'no message'}); the DNC's "
                      "link and the NTM's step run torch kernels instead (same values, slower)", RuntimeWarning,
                      stacklevel=2)
        return None


def cache_folder() -> Path | None:
    """Where built libraries are kept: ``MANN_ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/mann_zoo``, else
    ``~/.cache/mann_zoo``; None where ``MANN_ZOO_CACHE_DIR`` is ``0``, ``off``, ``false`` or ``no``."""
    chosen = os.environ.get("MANN_ZOO_CACHE_DIR", "").strip()
    if chosen.lower() in SWITCHED_OFF:
        return None
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache") / "mann_zoo"


def _fingerprint(program: str, compiler: list[str]) -> str:
    """A hash of what the library depends on: the program and the sources' text (not their folder: every copy
    of the same sources shares one library), the compiler's command and executable (its path, size and time),
    the flags, this machine's CPU and what the compiler targets on it (:func:`_target`)."""
    for source in SOURCES:  # the sources by name and text, not by where this copy of the package lies
        program = program.replace(f'"{source}"', f'"{source.name}"')
    parts = [program, *(Path(source).read_text() for source in SOURCES), repr(compiler), repr(FLAGS),
             repr(TUNING), platform.machine(), platform.processor()]
    executable = shutil.which(compiler[0]) if compiler else None
    if executable:
        stat = os.stat(executable)
        parts.append(f"{os.path.realpath(executable)} {stat.st_size} {stat.st_mtime_ns}")
    try:  # the first CPU's model and feature flags: -march=native builds for them
        cpuinfo = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        parts += [line for line in cpuinfo.splitlines() if line.split(":")[0].strip() in
                  ("model name", "flags", "Features", "CPU part", "CPU implementer")]
    except OSError:
        pass
    parts.append(_target(compiler))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _target(compiler: list[str]) -> str:
    """What the compiler builds for here: its predefined macros under the first ``TUNING`` it takes (its
    version and the instruction sets ``-march=native`` enables: ``__AVX2__``, ``__ARM_FEATURE_SVE``...).
    This covers what ``/proc/cpuinfo`` cannot: a machine without it (macOS) and a compiler behind a wrapper
    (ccache), whose executable says nothing of the compiler it calls. Empty where the compiler does not run."""
    for tuning in TUNING:
        try:
            macros = subprocess.run([*compiler, *tuning, "-dM", "-E", "-x", "c", "-"], input="", text=True,
                                    capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ""
        if macros.returncode == 0:
            return "\n".join(sorted(macros.stdout.splitlines()))
    return ""


def _compile(compiler: list[str], program: str, library: Path) -> None:
    """Compile ``program`` into the shared library ``library``, trying the ``TUNING`` flags in turn."""
    for tuning in TUNING:
        build = subprocess.run([*compiler, *FLAGS, *tuning, "-x", "c", "-", "-o", str(library), "-lm"],
                               input=program, text=True, capture_output=True, timeout=120)
        if build.returncode == 0:
            return
    raise OSError(f"{compiler[0]} exited with {build.returncode}: {build.stderr.strip() or 'no message'}")


def _keep(library: Path, cached: Path) -> None:
    """Copy the built library into the cache under its final name in one step (a copy beside it, then
    ``os.replace``), so that another process never loads half a file, and remove all but the
    ``CACHED_BUILDS`` most recent libraries there (one another process has loaded stays mapped); a cache that
    cannot be written is passed over."""
    partial = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f"{cached.name}.", suffix=".partial", dir=cached.parent)
        os.close(handle)
        shutil.copyfile(library, partial)
        os.replace(partial, cached)
        partial = None
        _prune(cached.parent, cached)
    except OSError:
        pass
    finally:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)


def _prune(folder: Path, newest: Path) -> None:
    """Remove the libraries of ``folder`` beyond the ``CACHED_BUILDS`` most recently written, never ``newest``."""
    built = sorted(folder.glob("kernels-*.so"), key=lambda path: path.stat().st_mtime_ns, reverse=True)
    for old in [path for path in built if path != newest][CACHED_BUILDS - 1:]:
        old.unlink(missing_ok=True)


def _load(compiler: list[str], program: str) -> ctypes.CDLL:
    """The library from the cache where it is there and loads; else compiled in a temporary folder (removed
    once loaded: the library stays loaded) and kept in the cache."""
    cached = None
    try:  # the cache is a shortcut: whatever goes wrong with it (no home, a folder not ours), build instead
        folder = cache_folder()
        cached = None if folder is None else folder / f"kernels-{_fingerprint(program, compiler)}.so"
        if cached is not None and cached.is_file():
            return _declared(ctypes.CDLL(str(cached)))
    except (OSError, RuntimeError, AttributeError):  # also a truncated library, or one lacking a function
        pass
    build = tempfile.mkdtemp(prefix="mann_zoo_native_")
    try:
        library = Path(build) / "kernels.so"
        _compile(compiler, program, library)
        lib = _declared(ctypes.CDLL(str(library)))
        if cached is not None:
            _keep(library, cached)
        return lib
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _build() -> Kernels:
    """Compile ``SOURCES`` (float and double) into one library, or load it from the cache, and declare the
    functions' arguments."""
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or "cc"]
    program = f"#define EPS ((REAL){EPS!r})\n#define KEEP ((REAL){1 - EPS!r})\n" + "".join(
        f"#define REAL {real}\n#define SUFFIX {suffix}\n" + "".join(f'#include "{source}"\n' for source in SOURCES)
        + "#undef REAL\n#undef SUFFIX\n" for real, suffix in SUFFIXES.values())
    return _functions(_load(compiler, program))


SIGNATURES = {"link_reads_forward": (7, 4, None), "link_reads_backward": (11, 4, ctypes.c_int),
              "ntm_access_forward": (18, 6, ctypes.c_int), "ntm_access_backward": (28, 6, ctypes.c_int),
              "ntm_sequence_forward": (15, 9, ctypes.c_int), "ntm_sequence_backward": (19, 9, ctypes.c_int),
              "content_candidates": (5, 5, ctypes.c_int), "link_columns_update": (8, 4, ctypes.c_int),
              "merge_plan": (4, 4, ctypes.c_int), "least_used": (2, 4, ctypes.c_int),
              "dnc_access_forward": (26, 5, ctypes.c_int), "dnc_access_backward": (48, 5, ctypes.c_int),
              "dnc_sequence_forward": (19, 9, ctypes.c_int), "dnc_sequence_backward": (27, 9, ctypes.c_int),
              "sparse_tape_sizes": (1, 3, None), "sparse_access_forward": (26, 6, ctypes.c_int),
              "sparse_access_backward": (29, 6, ctypes.c_int), "sparse_sequence_forward": (29, 9, ctypes.c_int),
              "sparse_sequence_backward": (32, 9, ctypes.c_int)}
"""name: (pointer arguments, size arguments, result: None, or int where 1 says a buffer was not allocated)"""


def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """``lib`` with every function of ``SIGNATURES`` declared (AttributeError where one is missing)."""
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t  # ptrdiff_t
    for name, (pointers, sizes, result) in SIGNATURES.items():
        for _, suffix in SUFFIXES.values():
            function = getattr(lib, f"{name}{suffix}")
            function.argtypes, function.restype = [pointer] * pointers + [size] * sizes, result
    return lib


def _functions(lib: ctypes.CDLL) -> Kernels:
    """The declared functions of ``lib`` as :class:`Kernels`."""
    return Kernels(*({dtype: getattr(lib, f"{name}{suffix}") for dtype, (_, suffix) in SUFFIXES.items()}
                     for name in SIGNATURES))


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


def check_usable(name: str, *tensors: torch.Tensor | None) -> None:
    """A one-line ``ValueError`` naming ``name`` unless the kernels take all of ``tensors`` (:func:`usable`)."""
    if not usable(*tensors):
        kinds = sorted({f"{t.dtype} on {t.device}" for t in tensors if t is not None})
        raise ValueError(f"{name}: its C kernels take float32 or float64 CPU tensors, all of one dtype, and a C "
                         f"compiler (native.kernels()); got {', '.join(kinds)}"
                         f"{'' if available() else ', without the kernels'}")


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


def ntm_access_forward(memory: torch.Tensor, previous: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor,
                       gates: torch.Tensor, shift_weights: torch.Tensor, gammas: torch.Tensor, erase: torch.Tensor,
                       add: torch.Tensor, read_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(weights [B, H, N], reads [B, Hr, W], new memory [B, N, W], saved)`` (``ntm_access.address_read_write``);
    ``saved`` holds what the backward reuses, one after the other (one allocation): content, shifted,
    log(shifted + EPS) and cosine ``[B, H, N]``, the memory's row norms ``[B, N]`` and the keys' ``[B, H]``
    (norms as 1 / sqrt(|x|^2 + EPS))."""
    inputs = _prepared(memory, previous, keys, strengths, gates, shift_weights, gammas, erase, add)
    memory, previous = inputs[:2]
    (B, N, W), H, S = memory.shape, previous.shape[1], shift_weights.shape[-1]
    weights, saved = previous.new_empty(B, H, N), memory.new_empty(saved_size(B, N, H))
    outputs = (weights, memory.new_empty(B, read_heads, W), torch.empty_like(memory))
    if kernels().ntm_forward[memory.dtype](*map(_address, (*inputs, *outputs)), *_saved_addresses(saved, B, N, H),
                                           B, N, W, read_heads, H - read_heads, S):
        raise MemoryError(f"ntm_kernel.c: no memory for a weighting of {N} slots")
    return (*outputs, saved)


def saved_size(B: int, N: int, H: int) -> int:
    """Elements of :func:`ntm_access_forward`'s ``saved``: four ``[B, H, N]``, one ``[B, N]``, one ``[B, H]``."""
    return B * (4 * H * N + N + H)


def _saved_addresses(saved: torch.Tensor, B: int, N: int, H: int) -> list[int]:
    """The addresses of the six arrays in ``saved``."""
    sizes = (B * H * N,) * 4 + (B * N,)
    offsets = [sum(sizes[:k]) for k in range(6)]
    return [saved.data_ptr() + offset * saved.element_size() for offset in offsets]


def ntm_access_backward(inputs: tuple[torch.Tensor, ...], weights: torch.Tensor, saved: torch.Tensor,
                        grad_weights: torch.Tensor | None, grad_reads: torch.Tensor | None,
                        grad_new_memory: torch.Tensor | None, read_heads: int) -> tuple[torch.Tensor, ...]:
    """Gradients with respect to the nine ``inputs`` of :func:`ntm_access_forward`, given its ``weights`` and
    ``saved``; a None gradient is zeros."""
    inputs = _prepared(*inputs)
    weights, saved, grad_weights, grad_reads, grad_new_memory = _prepared(weights, saved, grad_weights, grad_reads,
                                                                          grad_new_memory)
    memory, previous, shift_weights = inputs[0], inputs[1], inputs[5]
    (B, N, W), H, S = memory.shape, previous.shape[1], shift_weights.shape[-1]
    grads = tuple(torch.empty_like(t) for t in inputs)
    if kernels().ntm_backward[memory.dtype](*map(_address, (*inputs, weights)), *_saved_addresses(saved, B, N, H),
                                            *map(_address, (grad_weights, grad_reads, grad_new_memory, *grads)),
                                            B, N, W, read_heads, H - read_heads, S):
        raise MemoryError(f"ntm_kernel.c: no memory for a weighting of {N} slots")
    return grads


class SequenceForward(NamedTuple):
    """What :func:`ntm_sequence_forward` computes, time-major, slot 0 of h, c, memories, weights and reads the
    initial state (``ntm_sequence_kernel.c``): all the backward needs."""
    h: torch.Tensor  # [L, T + 1, B, C]
    c: torch.Tensor  # [L, T + 1, B, C]
    act: torch.Tensor  # [L, T, B, 4C]: i, f, g, o after their activations
    tanh_c: torch.Tensor  # [L, T, B, C]
    params: torch.Tensor  # [T, B, P]: the head parameters before the clip
    memories: torch.Tensor  # [T + 1, B, N, W]
    weights: torch.Tensor  # [T + 1, B, H, N]
    reads: torch.Tensor  # [T + 1, B, Hr, W]
    saved: torch.Tensor  # [T, saved_size(B, N, H)]: what ntm_access_backward reuses, per step


def ntm_sequence_forward(gates_x: torch.Tensor, rec_t: torch.Tensor, bias: torch.Tensor, head_t: torch.Tensor,
                         head_b: torch.Tensor, clip: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                         memory: torch.Tensor, weights: torch.Tensor, reads: torch.Tensor, shift: int) -> SequenceForward:
    """The NTM with an LSTM controller over a sequence (``ntm_sequence_kernel.c``): ``gates_x [T, B, 4C]`` (the
    input's product and the first layer's biases), ``rec_t`` (each layer's recurrent weights, transposed,
    flattened one after the other), ``bias [L, 4C]``, ``head_t [C, P]``, ``head_b [P]``, ``clip [1]``; the initial
    state ``h0, c0 [L, B, C]``, ``memory [B, N, W]``, ``weights [B, H, N]``, ``reads [B, Hr, W]``; S shifts."""
    gates_x, rec_t, bias, head_t, head_b, clip = _prepared(gates_x, rec_t, bias, head_t, head_b, clip)
    (T, B, G), (L, _, C), (N, W), H, Hr = gates_x.shape, h0.shape, memory.shape[1:], weights.shape[1], reads.shape[1]
    _check_sequence_shapes(T, B, L, C, N, W, H, Hr, shift, gates_x=gates_x, rec_t=rec_t, bias=bias, head_t=head_t,
                           head_b=head_b, clip=clip, h0=h0, c0=c0, memory=memory, weights=weights, reads=reads)
    new = lambda *shape: pool.empty(shape, gates_x.dtype, gates_x.device)  # noqa: E731 - kept for the next call
    out = SequenceForward(new(L, T + 1, B, C), new(L, T + 1, B, C), new(L, T, B, G), new(L, T, B, C),
                          new(T, B, head_t.shape[1]), new(T + 1, B, N, W), new(T + 1, B, H, N), new(T + 1, B, Hr, W),
                          new(T, saved_size(B, N, H)))
    for buffer, first in ((out.h[:, 0], h0), (out.c[:, 0], c0), (out.memories[0], memory), (out.weights[0], weights),
                          (out.reads[0], reads)):
        buffer.copy_(first)
    if kernels().ntm_sequence_forward[gates_x.dtype](*map(_address, (gates_x, rec_t, bias, head_t, head_b, clip, *out)),
                                                     T, B, L, C, N, W, Hr, H - Hr, shift):
        raise MemoryError(f"ntm_sequence_kernel.c: no memory for a step of {N} slots")
    return out


def _check_sequence_shapes(T: int, B: int, L: int, C: int, N: int, W: int, H: int, Hr: int, S: int,
                           **tensors: torch.Tensor) -> None:
    """A one-line ValueError where a tensor of :func:`ntm_sequence_forward`'s call does not have the shape the
    others imply (the C loop trusts them all), or a size is below what the loop takes (T, B, L, C, N, W, S,
    Hr >= 1 and H - Hr >= 1)."""
    for name, value, least in (("T", T, 1), ("B", B, 1), ("L", L, 1), ("C", C, 1), ("N", N, 1), ("W", W, 1),
                               ("S", S, 1), ("Hr", Hr, 1), ("H - Hr", H - Hr, 1)):
        if value < least:
            raise ValueError(f"ntm_sequence_forward: {name} must be >= {least}, got {value}")
    P = H * (W + 3 + S) + 2 * (H - Hr) * W  # each head's key, beta, gate, shift, gamma; the writers' erase and add
    expected = {"gates_x": (T, B, 4 * C), "rec_t": ((Hr * W + C) * 4 * C + (L - 1) * 8 * C * C,),
                "bias": (L, 4 * C), "head_t": (C, P), "head_b": (P,), "clip": (1,), "h0": (L, B, C),
                "c0": (L, B, C), "memory": (B, N, W), "weights": (B, H, N), "reads": (B, Hr, W)}
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"ntm_sequence_forward: {name} must have shape {list(expected[name])}, "
                             f"got {list(tensor.shape)}")


def ntm_sequence_backward(forward: SequenceForward, rec: torch.Tensor, head: torch.Tensor, clip: torch.Tensor,
                          grad_hs: torch.Tensor | None, grad_reads: torch.Tensor | None, shift: int
                          ) -> tuple[torch.Tensor, ...]:
    """``(grad_gates [L, T, B, 4C], grad_params [T, B, P], grad_h0, grad_c0 [L, B, C], grad_memory [B, N, W],
    grad_weights [B, H, N], grad_reads0 [B, Hr, W])`` from ``forward`` (:func:`ntm_sequence_forward`'s), ``rec``
    (each layer's recurrent weights, not transposed, flattened one after the other), ``head [P, C]``, ``clip
    [1]``, and the gradients of the top layer's ``h [T, B, C]`` and of the reads ``[T, B, Hr, W]`` (None: zeros)."""
    rec, head, clip, grad_hs, grad_reads = _prepared(rec, head, clip, grad_hs, grad_reads)
    (L, T, B, G), (_, _, H, N), (_, _, Hr, W) = forward.act.shape, forward.weights.shape, forward.reads.shape
    C, new = G // 4, head.new_empty
    grads = (pool.empty((L, T, B, G), head.dtype, head.device), pool.empty((T, B, head.shape[0]), head.dtype,
             head.device), new(L, B, C), new(L, B, C), new(B, N, W), new(B, H, N), new(B, Hr, W))
    f = forward
    if kernels().ntm_sequence_backward[head.dtype](*map(_address, (rec, head, clip, f.act, f.tanh_c, f.c, f.params,
                                                                   f.memories, f.weights, f.saved, grad_hs,
                                                                   grad_reads, *grads)),
                                                   T, B, L, C, N, W, Hr, H - Hr, shift):
        raise MemoryError(f"ntm_sequence_kernel.c: no memory for a step of {N} slots")
    return grads


MAX_KEYS = 16
"""``content_candidates`` takes at most this many keys per call (``sparse_kernel.c``'s SPARSE_MAX_HEADS)."""


def content_candidates(units: torch.Tensor, keys: torch.Tensor, m: int, written: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index [B, H, m] int64, score [B, H, m])``: for each key ``[B, H, W]``, the ``m`` slots of the N = N1 - 1
    with the largest cosine to it, best first (``sparse.content_candidates``), from ``units [B, W, N1]``, the
    memory's normalised rows as columns (``RowMemory.units``). ``m <= N``, at most ``MAX_KEYS`` keys.
    ``written [B, N1]`` bool, if given: the slots written since the memory was all zeros (the rest are zero
    columns of ``units``); where they are few, only they and the ``m`` lowest others are scored (the same result)."""
    units, keys, written = _prepared(units, keys, written)
    (B, W, N1), H = units.shape, keys.shape[1]
    if not 1 <= m <= N1 - 1:
        raise ValueError(f"content_candidates: m must be in [1, {N1 - 1}], got {m}")
    if written is not None and (written.shape != (B, N1) or written.dtype != torch.bool):
        raise ValueError(f"content_candidates: written must be bool [{B}, {N1}], got {written.dtype} {list(written.shape)}")
    index, score = torch.empty(B, H, m, dtype=torch.int64), keys.new_empty(B, H, m)
    status = kernels().content_candidates[units.dtype](*map(_address, (units, keys, written, index, score)),
                                                       B, W, N1, H, m)
    if status == 1:
        raise MemoryError(f"sparse_kernel.c: no memory for the scores of {H} keys")
    if status:
        raise ValueError(f"content_candidates: at most {MAX_KEYS} keys, got {H}")
    return index, score


def link_columns_update(columns: torch.Tensor, rows: torch.Tensor, places: torch.Tensor, values: torch.Tensor,
                        written: torch.Tensor, old_columns: torch.Tensor, new_columns: torch.Tensor,
                        new_values: torch.Tensor) -> None:
    """The sparse link's column lists after the rows ``written [G, K]`` were rewritten, in place
    (``sparse_link._leave_columns`` then ``_join_columns``): ``columns``, ``rows``, ``places`` ``[G, N + 1, C]``
    int64 (contiguous: changed in place), ``values [G, N + 1, C]``, ``old_columns``, ``new_columns``,
    ``new_values [G, K, C]``."""
    if not all(t.is_contiguous() for t in (columns, rows, places)):
        raise ValueError("link_columns_update: columns, rows and places must be contiguous (changed in place)")
    values, written, old_columns, new_columns, new_values = _prepared(values, written, old_columns, new_columns,
                                                                      new_values)
    (G, N1, C), K = columns.shape, written.shape[1]
    status = kernels().link_columns_update[values.dtype](
        *map(_address, (columns, rows, places, values, written, old_columns, new_columns, new_values)), G, N1, C, K)
    if status == 1:
        raise MemoryError("sparse_kernel.c: no memory for the dropped entries' list")
    if status:
        raise ValueError(f"link_columns_update: at most 256 candidates per column (C + K), got {C + K}")


def merge_plan(index: torch.Tensor, value: torch.Tensor, k: int, none: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept [..., k], position [..., M])`` int64 for ``sparse.merge`` of ``index``, ``value [..., M]``: the slots
    kept, best first (``none``: padding), and where each entry's value goes (``k``: dropped). ``1 <= k <= M``."""
    index, value = _prepared(index, value.detach())
    M = index.shape[-1]
    kept = index.new_empty(*index.shape[:-1], k)
    position = torch.empty_like(index)
    if kernels().merge_plan[value.dtype](*map(_address, (index, value, kept, position)), index.numel() // max(M, 1),
                                         M, k, none):
        raise MemoryError(f"sparse_kernel.c: no memory to merge {M} entries")
    return kept, position


def least_used(usage: torch.Tensor, k: int) -> torch.Tensor:
    """``index [B, k]`` int64: for each row of ``usage [B, N]`` (rows may be strided, as the first N columns of
    the usage buffer), the ``k`` least used slots, least used first, ties: the lower slot first
    (``sparse.allocation_weights``; ``usage.topk(k, largest=False)`` up to the order of ties). ``1 <= k <= N``."""
    if usage.dim() != 2 or usage.dtype not in SUFFIXES:
        raise ValueError(f"least_used: usage must be float32 or float64 [B, N], got {usage.dtype} {list(usage.shape)}")
    B, N = usage.shape
    if not 1 <= k <= N:
        raise ValueError(f"least_used: k must be in [1, {N}], got {k}")
    if usage.stride(-1) != 1 or usage.is_neg():
        usage = usage.resolve_neg().contiguous()
    index = torch.empty(B, k, dtype=torch.int64)
    if kernels().least_used[usage.dtype](usage.data_ptr(), index.data_ptr(), B, N, usage.stride(0), k):
        raise MemoryError(f"sparse_kernel.c: no memory for {k} usage values")
    return index


def dnc_saved_size(N: int, R: int) -> int:
    """Elements per example of :func:`dnc_access_forward`'s ``saved`` (``dnc_kernel.c``'s DNC_SAVED_SIZE): psi, the
    allocation order and the allocation, the write look-up's content, cosine and row norms ``[N]`` and key norm, the
    read look-ups' content, cosine and row norms ``[R, N]`` and key norms ``[R]``, forward and backward ``[R, N]``."""
    return 6 * N + 5 * R * N + 1 + R


def dnc_access_forward(*inputs: torch.Tensor | None, deallocation: bool) -> tuple[torch.Tensor, ...]:
    """``(memory, usage, link, precedence, read_weights, write_weights, read_vectors, saved)`` of the DNC step's
    memory access with one write head (``dnc_kernel.c``) from the previous state (memory ``[B, N, W]``, usage
    ``[B, N]``, link ``[B, N, N]``, precedence ``[B, N]``, read weights ``[B, R, N]``, write weights ``[B, N]``) and
    the interface (read keys ``[B, R, W]``, read strengths ``[B, R]``, read masks ``[B, R, W]`` or None, read modes
    ``[B, R, 3]``, write key ``[B, W]``, write strength ``[B]``, write mask ``[B, W]`` or None, erase ``[B, W]``,
    write vector ``[B, W]``, free gates ``[B, R]``, allocation gate ``[B]``, write gate ``[B]``); ``saved [B,
    dnc_saved_size(N, R)]`` is what the backward reuses.
    Shapes are the caller's to check (``dnc_access.py``)."""
    inputs = _prepared(*inputs)
    memory, read_weights = inputs[0], inputs[4]
    (B, N, W), R = memory.shape, read_weights.shape[1]
    outputs = (torch.empty_like(memory), memory.new_empty(B, N), memory.new_empty(B, N, N), memory.new_empty(B, N),
               memory.new_empty(B, R, N), memory.new_empty(B, N), memory.new_empty(B, R, W),
               memory.new_empty(B, dnc_saved_size(N, R)))
    if kernels().dnc_forward[memory.dtype](*map(_address, (*inputs, *outputs)), B, N, W, R, int(deallocation)):
        raise MemoryError(f"dnc_kernel.c: no memory for a step of {N} slots")
    return outputs


def dnc_access_backward(inputs: tuple[torch.Tensor | None, ...], outputs: tuple[torch.Tensor, ...],
                        grads: tuple[torch.Tensor | None, ...], deallocation: bool) -> tuple[torch.Tensor | None, ...]:
    """Gradients with respect to the 18 ``inputs`` of :func:`dnc_access_forward` (None for a mask that is None),
    given its ``outputs`` ``(memory, usage, read_weights, write_weights, saved)`` and the gradients of its seven
    results (``grads``, None: zeros)."""
    inputs, outputs, grads = _prepared(*inputs), _prepared(*outputs), _prepared(*grads)
    memory, read_weights = inputs[0], inputs[4]
    (B, N, W), R = memory.shape, read_weights.shape[1]
    result = tuple(None if t is None else torch.empty_like(t) for t in inputs)
    _raise_for(kernels().dnc_backward[memory.dtype](*map(_address, (*inputs, *outputs, *grads, *result)),
                                                    B, N, W, R, int(deallocation)), N)
    return result


def _raise_for(status: int, N: int) -> None:
    """The error for a non-zero status of dnc_kernel.c's backward functions."""
    if status == 1:
        raise MemoryError(f"dnc_kernel.c: no memory for a step of {N} slots")
    if status:
        raise ValueError(f"dnc_kernel.c: saved must hold the forward's allocation order (slots in [0, {N})); "
                         "it does not")


def dnc_interface_size(R: int, W: int, masking: bool) -> int:
    """The DNC's interface parameters with one write head and no link sharpness (``dnc_kernel.c``)."""
    return R * W + 3 * W + 5 * R + 3 + (R * W + W if masking else 0)


class DNCSequenceForward(NamedTuple):
    """What :func:`dnc_sequence_forward` computes, time-major, slot 0 of the state's tensors the initial state
    (``dnc_kernel.c``): all the backward needs."""
    h: torch.Tensor  # [L, T + 1, B, C]
    c: torch.Tensor  # [L, T + 1, B, C]
    act: torch.Tensor  # [L, T, B, 4C]
    tanh_c: torch.Tensor  # [L, T, B, C]
    params: torch.Tensor  # [T, B, P]: the interface before the clip
    memories: torch.Tensor  # [T + 1, B, N, W]
    usage: torch.Tensor  # [T + 1, B, N]
    links: torch.Tensor  # [T + 1, B, N, N]
    precedence: torch.Tensor  # [T + 1, B, N]
    read_weights: torch.Tensor  # [T + 1, B, R, N]
    write_weights: torch.Tensor  # [T + 1, B, N]
    reads: torch.Tensor  # [T + 1, B, R, W]
    saved: torch.Tensor  # [T, B, dnc_saved_size(N, R)]


def dnc_sequence_forward(gates_x: torch.Tensor, rec_t: torch.Tensor, bias: torch.Tensor, iface_t: torch.Tensor,
                         iface_b: torch.Tensor, consts: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
                         state: tuple[torch.Tensor, ...], masking: bool, deallocation: bool) -> DNCSequenceForward:
    """The DNC with an LSTM controller over a sequence (``dnc_kernel.c``): ``gates_x [T, B, 4C]`` (the input's
    product and the first layer's biases), ``rec_t`` (each layer's recurrent weights, transposed, flattened one
    after the other), ``bias [L, 4C]``, ``iface_t [C, P]``, ``iface_b [P]``, ``consts [2]`` (clip, mask floor); the
    initial state ``h0, c0 [L, B, C]`` and ``state``: memory ``[B, N, W]``, usage ``[B, N]``, link ``[B, N, N]``,
    precedence ``[B, N]``, read weights ``[B, R, N]``, write weights ``[B, N]``, reads ``[B, R, W]``."""
    gates_x, rec_t, bias, iface_t, iface_b, consts = _prepared(gates_x, rec_t, bias, iface_t, iface_b, consts)
    (T, B, G), (L, _, C) = gates_x.shape, h0.shape
    (_, N, W), R = state[0].shape, state[4].shape[1]
    P = dnc_interface_size(R, W, masking)
    expected = {"gates_x": (gates_x, (T, B, 4 * C)), "rec_t": (rec_t, ((R * W + C) * 4 * C + (L - 1) * 8 * C * C,)),
                "bias": (bias, (L, 4 * C)), "iface_t": (iface_t, (C, P)), "iface_b": (iface_b, (P,)),
                "consts": (consts, (2,)), "h0": (h0, (L, B, C)), "c0": (c0, (L, B, C)),
                **{name: (tensor, shape) for name, tensor, shape in zip(
                    ("memory", "usage", "link", "precedence", "read_weights", "write_weights", "reads"), state,
                    ((B, N, W), (B, N), (B, N, N), (B, N), (B, R, N), (B, N), (B, R, W)))}}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"dnc_sequence_forward: {name} must have shape {list(shape)}, got {list(tensor.shape)}")
    if min(T, B, L, C, N, W, R) < 1:
        raise ValueError(f"dnc_sequence_forward: every size must be >= 1, got T={T} B={B} L={L} C={C} N={N} W={W} R={R}")
    check_usable("dnc_sequence_forward", gates_x, rec_t, bias, iface_t, iface_b, consts, h0, c0, *state)
    new = lambda *shape: pool.empty(shape, gates_x.dtype, gates_x.device)  # noqa: E731 - kept for the next call
    out = DNCSequenceForward(new(L, T + 1, B, C), new(L, T + 1, B, C), new(L, T, B, G), new(L, T, B, C), new(T, B, P),
                             new(T + 1, B, N, W), new(T + 1, B, N), new(T + 1, B, N, N), new(T + 1, B, N),
                             new(T + 1, B, R, N), new(T + 1, B, N), new(T + 1, B, R, W), new(T, B, dnc_saved_size(N, R)))
    out.h[:, 0].copy_(h0)
    out.c[:, 0].copy_(c0)
    for buffer, first in zip(out[5:12], state):
        buffer[0].copy_(first)
    if kernels().dnc_sequence_forward[gates_x.dtype](*map(_address, (gates_x, rec_t, bias, iface_t, iface_b, consts,
                                                                     *out)),
                                                     T, B, L, C, N, W, R, int(masking), int(deallocation)):
        raise MemoryError(f"dnc_kernel.c: no memory for a step of {N} slots")
    return out


def dnc_sequence_backward(forward: DNCSequenceForward, rec: torch.Tensor, iface: torch.Tensor, consts: torch.Tensor,
                          grad_hs: torch.Tensor | None, grad_reads: torch.Tensor | None, masking: bool,
                          deallocation: bool) -> tuple[torch.Tensor, ...]:
    """``(grad_gates [L, T, B, 4C], grad_params [T, B, P], grad_h0, grad_c0 [L, B, C], and the gradients of the
    initial memory, usage, link, precedence, read weights, write weights and reads)`` from ``forward``
    (:func:`dnc_sequence_forward`'s), ``rec`` (each layer's recurrent weights, not transposed, flattened one after
    the other), ``iface [P, C]``, ``consts [2]``, and the gradients of the top layer's ``h [T, B, C]`` and of the
    reads ``[T, B, R, W]`` (None: zeros)."""
    rec, iface, consts, grad_hs, grad_reads = _prepared(rec, iface, consts, grad_hs, grad_reads)
    f = forward
    (L, T, B, G), (_, _, N, W), R = f.act.shape, f.memories.shape, f.reads.shape[2]
    check_usable("dnc_sequence_backward", rec, iface, consts, grad_hs, grad_reads, *f)
    C, new = G // 4, iface.new_empty
    grads = (pool.empty((L, T, B, G), iface.dtype, iface.device), pool.empty((T, B, iface.shape[0]), iface.dtype,
             iface.device), new(L, B, C), new(L, B, C), new(B, N, W), new(B, N), new(B, N, N), new(B, N), new(B, R, N),
             new(B, N), new(B, R, W))
    _raise_for(kernels().dnc_sequence_backward[iface.dtype](
        *map(_address, (rec, iface, consts, f.act, f.tanh_c, f.c, f.params, f.memories, f.usage, f.links,
                        f.precedence, f.read_weights, f.write_weights, f.saved, grad_hs, grad_reads, *grads)),
        T, B, L, C, N, W, R, int(masking), int(deallocation)), N)
    return grads



