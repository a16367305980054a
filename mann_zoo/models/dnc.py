"""Differentiable Neural Computer (Graves et al. 2016), with the switches of Csordas & Schmidhuber 2019.

Each step: the controller sees the input and the previous read vectors and emits the interface
vector; usage is updated with the previous weightings and the free gates; the write weighting mixes
allocation and content lookup; memory is erased and written; the temporal links and precedence are
updated; each read head mixes backward, content and forward weightings by its read mode and reads the
new memory. The output is a linear read-out of the controller output and the new read vectors.

Improvements (Csordas & Schmidhuber 2019), all off by default:
    masking: content lookups compare key and memory under a learned mask (key-value separation).
    deallocation: slots freed by the free gates are also erased (M <- M * psi before writing).
    link_sharpness: forward/backward weightings are sharpened with a learned exponent per read head;
        their total mass (at most 1) is kept, only the shape is sharpened (``link_sharpness_norm=
        "renormalise"``: each sums to 1, as in the authors' code).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .. import memory as mem
from ..memory import sparse_access
from .base import MemoryCore, check_positive
from . import dnc_sequence, sparse_sequence
from .controller import make_controller
from .sparse_dnc import SparseDNCState, sparse_initial_state, sparse_step

LINK_SHARPNESS_NORMS = ("keep_mass", "renormalise")  # see memory.sharpen_links


class DNCState(NamedTuple):
    memory: torch.Tensor  # [B, N, W]
    usage: torch.Tensor  # [B, N]
    link: torch.Tensor  # [B, Hw, N, N]
    precedence: torch.Tensor  # [B, Hw, N]
    read_weights: torch.Tensor  # [B, Hr, N]
    write_weights: torch.Tensor  # [B, Hw, N]
    read_vectors: torch.Tensor  # [B, Hr, W]
    controller: tuple


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """1 + softplus(x): strengths >= 1, as in the DNC."""
    return 1 + F.softplus(x)


class DNC(MemoryCore):
    """DNC core: ``model(x[B, T, input_size]) -> logits[B, T, output_size]``.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        controller: ``"lstm"``, ``"rnn"`` (Elman) or ``"feedforward"``.
        controller_size: the controller's width (units per layer).
        controller_layers: the controller's depth.
        memory_slots: memory slots N.
        word_size: word size W, the width of a slot.
        read_heads: number of read heads Hr.
        write_heads: number of write heads Hw.
        masking: content-based look-up through a learned mask (Csordas & Schmidhuber 2019).
        mask_floor: with ``masking``, the masks range over [mask_floor, 1] instead of [0, 1] (their code's
            ``mask_min``: 0.1 on associative recall, 0 elsewhere).
        deallocation: erase the freed slots' contents (Csordas & Schmidhuber 2019).
        link_sharpness: sharpen the temporal link distributions (Csordas & Schmidhuber 2019).
        link_sharpness_norm: ``"keep_mass"`` (default: the sharpened forward and backward weightings keep
            the link's mass, this project's choice) or ``"renormalise"`` (each sums to 1, as in Csordas &
            Schmidhuber's code; dense only); see ``memory.sharpen_links``.
        sparse_k: sparse access (after Rae et al. 2016; ``sparse_dnc.py``): content look-ups, allocation,
            write, read and precedence weightings keep their K largest slots, the link matrix K entries per
            row and column, and memory and usage are written in place (O(K^4 + K W) per step and head
            plus the O(N W) choice of slots, not O(N^2)); None (the default): dense. K >= N is the dense DNC.
        clip: the interface vector is clipped to [-clip, clip].
        compile: compile the per-step cell with ``torch.compile`` (with ``sparse_k``: the controller and
            interface only).
        compile_steps: time steps per call of the compiled cell in training (``MemoryCore``: fewer
            calls' fixed costs, for a longer compile). Dense only (``sparse_k`` None).
        sequence_kernel: with an LSTM controller, one write head, no link sharpness and dense memory, on the CPU
            with the C kernels (float32, float64), run a whole sequence as one call each way in training
            (``dnc_sequence.py``: the same values to rounding), whatever ``compile`` says; ``record=True``,
            evaluation without gradient, and other devices, dtypes or configurations step by step as without it.
            With ``sparse_k`` (one write head, no masks or link sharpness), from the initial state and with a gradient to
            compute (not ``record``): with an LSTM controller the whole sequence is one call each way
            (``sparse_sequence.py``), with another controller each step's memory access (``memory/sparse_access.py``);
            the same values to rounding.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: str = "lstm",
        controller_size: int = 100,
        controller_layers: int = 1,
        memory_slots: int = 128,
        word_size: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        masking: bool = False,
        mask_floor: float = 0.0,
        deallocation: bool = False,
        link_sharpness: bool = False,
        link_sharpness_norm: str = "keep_mass",
        sparse_k: int | None = None,
        clip: float = 20.0,
        compile: bool = False,
        compile_steps: int = 1,
        sequence_kernel: bool = True,
    ):
        check_positive(
            input_size=input_size, output_size=output_size, controller_size=controller_size,
            controller_layers=controller_layers, memory_slots=memory_slots, word_size=word_size,
            read_heads=read_heads, write_heads=write_heads,
        )
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        if sparse_k is not None:
            check_positive(sparse_k=sparse_k)
        if not 0 <= mask_floor < 1:
            raise ValueError(f"mask_floor must be in [0, 1), got {mask_floor}")
        if link_sharpness_norm not in LINK_SHARPNESS_NORMS:
            raise ValueError(f"link_sharpness_norm must be one of {', '.join(LINK_SHARPNESS_NORMS)}, got {link_sharpness_norm!r}")
        if link_sharpness_norm == "renormalise" and sparse_k is not None:
            raise ValueError("link_sharpness_norm 'renormalise' needs the dense link (sparse_k None): a renormalised "
                             "empty link row is uniform over all N slots, which a sparse weighting cannot hold")
        if sparse_k is not None and compile_steps > 1:
            raise ValueError(f"compile_steps must be 1 with sparse_k (its step runs eager), got {compile_steps}")
        super().__init__(compile=compile, compile_steps=compile_steps)
        self.sparse_k = None if sparse_k is None else min(sparse_k, memory_slots)
        self.input_size, self.output_size = input_size, output_size
        self.slots, self.width = memory_slots, word_size
        self.read_heads, self.write_heads = read_heads, write_heads
        self.masking, self.deallocation, self.link_sharpness = bool(masking), bool(deallocation), bool(link_sharpness)
        self.renormalise_links = link_sharpness_norm == "renormalise"
        self.mask_floor = float(mask_floor)
        self.clip = float(clip)
        self.sequence_kernel = bool(sequence_kernel)
        Hr, Hw, W = read_heads, write_heads, word_size

        # Interface vector layout, grouped by activation so that each group takes one call per step:
        # name -> size, in order.
        self.linear_sizes = {"read_keys": Hr * W, "write_keys": Hw * W, "write_vectors": Hw * W}
        self.sigmoid_sizes = {"erase": Hw * W, "free_gates": Hr, "allocation_gates": Hw, "write_gates": Hw}
        if self.masking:
            self.sigmoid_sizes.update(read_masks=Hr * W, write_masks=Hw * W)
        self.oneplus_sizes = {"read_strengths": Hr, "write_strengths": Hw}
        if self.link_sharpness:
            self.oneplus_sizes.update(link_sharpness=2 * Hr)
        self.read_mode_size = Hr * (1 + 2 * Hw)
        self.interface_sizes = {**self.linear_sizes, **self.sigmoid_sizes, **self.oneplus_sizes,
                                "read_modes": self.read_mode_size}
        self.controller = make_controller(controller, input_size + Hr * W, controller_size, controller_layers)
        self.interface = nn.Linear(controller_size, sum(self.interface_sizes.values()))
        self.readout = nn.Linear(controller_size + Hr * W, output_size)
        if compile and self.sparse_k is not None:
            # The sparse step changes memory, usage and links in place (Python-side versions that the
            # compiler would guard on and recompile for every step): it runs eager, and only the
            # controller and interface are compiled.
            self._step = self.step
            self.interface_parts = torch.compile(self.interface_parts, dynamic=False)

    def initial_state(self, batch: int, like: torch.Tensor) -> DNCState | SparseDNCState:
        if self.sparse_k is not None:
            return sparse_initial_state(self, batch, like)
        N, W, Hr, Hw = self.slots, self.width, self.read_heads, self.write_heads
        zeros = lambda *shape: like.new_zeros(batch, *shape)  # noqa: E731  same device and dtype as x
        return DNCState(
            memory=zeros(N, W), usage=zeros(N), link=zeros(Hw, N, N), precedence=zeros(Hw, N),
            read_weights=zeros(Hr, N), write_weights=zeros(Hw, N), read_vectors=zeros(Hr, W),
            controller=tuple(s.contiguous() for s in self.controller.initial_state(batch)),
        )

    def unroll(self, x: torch.Tensor, state, record: bool = False):
        """As ``MemoryCore.unroll``; with ``sequence_kernel``, where it applies, the whole sequence in one call."""
        # With a gradient to compute only: without, the kernel would keep every step's state (the step path keeps one).
        wanted = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if self.sequence_kernel and not record and wanted and dnc_sequence.takes(self, x):
            return self.readout(dnc_sequence.features(self, x, state))
        if self.sequence_kernel and not record and wanted and sparse_sequence.takes(self, x, state):
            return self.readout(sparse_sequence.features(self, x, state))
        if self.sequence_kernel and not record and wanted and sparse_access.takes(self, x, state):
            return super().unroll(x, sparse_access.kernel_state(self, state))  # each step's access one C call
        return super().unroll(x, state, record)

    def interface_parts(self, x: torch.Tensor, read_vectors: torch.Tensor, controller_state: tuple):
        """The controller's step and its interface vector, split and activated.

        Returns ``(out [B, C], controller_state, parts)``: ``parts`` maps each interface name to its
        activated ``[B, size]`` tensor, and ``read_modes`` to the softmax ``[B, Hr, 1 + 2 Hw]``.
        """
        out, controller = self.controller(torch.cat([x, read_vectors.flatten(1)], dim=-1), controller_state)
        linear, sigmoid, oneplus_part, modes = self.interface(out).clamp(-self.clip, self.clip).split(
            [sum(self.linear_sizes.values()), sum(self.sigmoid_sizes.values()),
             sum(self.oneplus_sizes.values()), self.read_mode_size], dim=-1)
        parts = dict(zip(self.linear_sizes, linear.split(list(self.linear_sizes.values()), dim=-1)))
        parts.update(zip(self.sigmoid_sizes, torch.sigmoid(sigmoid).split(list(self.sigmoid_sizes.values()), dim=-1)))
        parts.update(zip(self.oneplus_sizes, oneplus(oneplus_part).split(list(self.oneplus_sizes.values()), dim=-1)))
        parts["read_modes"] = torch.softmax(modes.view(x.shape[0], self.read_heads, -1), dim=-1)
        if self.masking and self.mask_floor > 0:  # masks in [floor, 1] (Csordas & Schmidhuber's mask_min)
            for name in ("read_masks", "write_masks"):
                parts[name] = self.mask_floor + (1 - self.mask_floor) * parts[name]
        return out, controller, parts

    def step(self, x: torch.Tensor, state: DNCState, record: bool = False):
        """One time step. ``x[B, input_size]`` -> ``(features[B, C + Hr W], new_state, trace or None)``."""
        if isinstance(state, sparse_access.KernelState):
            if record:
                raise ValueError("record=True needs the sparse DNC's torch step (a SparseDNCState), not the kernel's state")
            return sparse_access.step(self, x, state)
        if self.sparse_k is not None:
            return sparse_step(self, x, state, record)
        B, Hr, Hw, W = x.shape[0], self.read_heads, self.write_heads, self.width
        out, controller, parts = self.interface_parts(x, state.read_vectors, state.controller)
        read_modes = parts["read_modes"]  # pi_t (backward, content, forward)  [B, Hr, 1 + 2 Hw]
        heads = lambda name, count: parts[name].view(B, count, W)  # noqa: E731 - [B, heads * W] -> [B, heads, W]
        # Usage and allocation, the write weighting, erase and write, links and precedence, the read weightings
        # and the reads (memory/dnc_access.py: one C kernel each way where it applies; with ``record``, the
        # composed primitives, which also return the allocation weighting for the trace).
        access = mem.access(
            state.memory, state.usage, state.link, state.precedence, state.read_weights, state.write_weights,
            read_keys=heads("read_keys", Hr), read_strengths=parts["read_strengths"], read_modes=read_modes,
            write_keys=heads("write_keys", Hw), write_strengths=parts["write_strengths"],
            erase=heads("erase", Hw), write_vectors=heads("write_vectors", Hw), free_gates=parts["free_gates"],
            allocation_gates=parts["allocation_gates"], write_gates=parts["write_gates"],
            read_masks=heads("read_masks", Hr) if self.masking else None,
            write_masks=heads("write_masks", Hw) if self.masking else None, deallocation=self.deallocation,
            link_sharpness=parts["link_sharpness"] if self.link_sharpness else None,
            renormalise_links=self.renormalise_links, composed=record)
        memory, usage, link, precedence, read_weights, write_weights, read_vectors, allocation = access
        features = torch.cat([out, read_vectors.flatten(1)], dim=-1)
        new_state = DNCState(memory, usage, link, precedence, read_weights, write_weights, read_vectors, controller)
        trace = None
        if record:
            trace = {"read_weights": read_weights, "write_weights": write_weights, "usage": usage,
                     "allocation": allocation, "allocation_gates": parts["allocation_gates"],
                     "write_gates": parts["write_gates"], "free_gates": parts["free_gates"], "read_modes": read_modes}
        return features, new_state, trace
