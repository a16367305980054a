"""Neural Turing Machine (Graves, Wayne & Danihelka 2014), with the choices of Collier & Beel 2018.

Each step: the controller sees the input and the previous read vectors; one linear layer emits the
parameters of every head (clipped to +-``clip``); all heads (read heads first, then write heads) are
addressed together on the previous memory (content -> interpolation -> shift -> sharpening); the read
heads read, then the write heads erase and add. The output is a linear read-out of the controller
output and the read vectors of the same step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .. import memory as mem
from .base import MemoryCore, check_positive
from . import ntm_sequence
from .controller import make_controller

MEMORY_INITS = ("constant", "constant_fixed", "learned", "random")


class NTMState(NamedTuple):
    memory: torch.Tensor  # [B, N, W]
    weights: torch.Tensor  # [B, Hr + Hw, N] read heads first, then write heads
    read_vectors: torch.Tensor  # [B, Hr, W]
    controller: tuple  # controller state, tuple of [B, C]


class NTM(MemoryCore):
    """NTM core: ``model(x[B, T, input_size]) -> logits[B, T, output_size]``.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        controller: ``"lstm"``, ``"rnn"`` (Elman) or ``"feedforward"``.
        controller_size: the controller's width (units per layer).
        controller_layers: the controller's depth.
        memory_slots: memory slots N.
        word_size: word size W, the width of a slot.
        read_heads: number of read heads (>= 1).
        write_heads: number of write heads (>= 1).
        shift_range: S, the number of allowed shifts (odd; 3 means offsets -1, 0, +1).
        memory_init: ``"constant"``: a trained N x W matrix that starts at 1e-6 in every cell (Collier &
            Beel's best: in their code a trainable variable, so the slots can become distinguishable by
            content); ``"constant_fixed"``: the same 1e-6 matrix kept fixed (every unwritten slot then
            looks the same to content addressing: see paper section 8); ``"learned"``: a trained matrix
            starting from N(0, 0.1^2); ``"random"``: a fixed random matrix drawn at construction.
        clip: the head parameters emitted by the controller are clipped to [-clip, clip].
        compile: compile the per-step cell with ``torch.compile``.
        compile_steps: time steps per call of the compiled cell in training (``MemoryCore``: fewer
            calls' fixed costs, for a longer compile).
        sequence_kernel: with an LSTM controller, on the CPU with the C kernels (float32, float64), run a
            whole sequence as one call each way (``ntm_sequence.py``: the same values to rounding, several
            times faster at the benchmarks' batches), whatever ``compile`` says; ``record=True`` and other
            devices, dtypes or controllers step by step as without it.
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
        shift_range: int = 3,
        memory_init: str = "constant",
        clip: float = 20.0,
        compile: bool = False,
        compile_steps: int = 1,
        sequence_kernel: bool = True,
    ):
        check_positive(
            input_size=input_size, output_size=output_size, controller_size=controller_size,
            controller_layers=controller_layers, memory_slots=memory_slots, word_size=word_size,
            read_heads=read_heads, write_heads=write_heads, shift_range=shift_range,
        )
        if shift_range % 2 == 0 or shift_range > memory_slots:
            raise ValueError(f"shift_range must be odd and <= memory_slots={memory_slots}, got {shift_range}")
        if memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {', '.join(MEMORY_INITS)}, got {memory_init!r}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        super().__init__(compile=compile, compile_steps=compile_steps)
        self.input_size, self.output_size = input_size, output_size
        self.slots, self.width = memory_slots, word_size
        self.read_heads, self.write_heads, self.shift_range = read_heads, write_heads, shift_range
        self.clip = float(clip)
        self.sequence_kernel = bool(sequence_kernel)
        heads = read_heads + write_heads

        self.controller = make_controller(controller, input_size + read_heads * word_size, controller_size, controller_layers)
        # Per head: key (W), strength, gate, shift weights (S), sharpening; write heads: erase, add (W each).
        self.address_size = word_size + 3 + shift_range
        self.head_params = nn.Linear(controller_size, heads * self.address_size + 2 * write_heads * word_size)
        self.readout = nn.Linear(controller_size + read_heads * word_size, output_size)

        if memory_init == "constant":
            self.memory_init = nn.Parameter(torch.full((memory_slots, word_size), 1e-6))
        elif memory_init == "learned":
            self.memory_init = nn.Parameter(torch.randn(memory_slots, word_size) * 0.1)
        elif memory_init == "random":
            self.register_buffer("memory_init", torch.randn(memory_slots, word_size) * 0.1)
        else:  # constant_fixed
            self.register_buffer("memory_init", torch.full((memory_slots, word_size), 1e-6))
        self.read_init = nn.Parameter(torch.randn(read_heads, word_size) * 0.01)
        # Initial weightings: learned logits, starting focused on slot 0 so that location-based
        # addressing has a position to move from (a uniform start cannot be shifted).
        logits = torch.zeros(heads, memory_slots)
        logits[:, 0] = 10.0
        self.weights_init = nn.Parameter(logits)

    def initial_state(self, batch: int, like: torch.Tensor) -> NTMState:
        dtype = like.dtype
        # Contiguous copies, not broadcast views: every step then sees the same strides, so a compiled
        # step is traced once per batch size instead of once more for the first step.
        return NTMState(
            memory=self.memory_init.to(dtype).expand(batch, -1, -1).contiguous(),
            weights=torch.softmax(self.weights_init.to(dtype), dim=-1).expand(batch, -1, -1).contiguous(),
            read_vectors=self.read_init.to(dtype).expand(batch, -1, -1).contiguous(),
            controller=tuple(s.contiguous() for s in self.controller.initial_state(batch)),
        )

    def unroll(self, x: torch.Tensor, state: NTMState, record: bool = False):
        """As ``MemoryCore.unroll``; with ``sequence_kernel``, where it applies, the whole sequence in one call."""
        # With a gradient to compute only: without, the kernel would keep every step's state (the step path keeps one).
        wanted = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if self.sequence_kernel and not record and wanted and ntm_sequence.takes(self, x):
            return self.readout(ntm_sequence.features(self, x, state))
        return super().unroll(x, state, record)

    def step(self, x: torch.Tensor, state: NTMState, record: bool = False):
        """One time step. ``x[B, input_size]`` -> ``(features[B, C + Hr W], new_state, trace or None)``."""
        batch = x.shape[0]
        H, Hr, W, S = self.read_heads + self.write_heads, self.read_heads, self.width, self.shift_range
        out, controller = self.controller(torch.cat([x, state.read_vectors.flatten(1)], dim=-1), state.controller)

        params = self.head_params(out).clamp(-self.clip, self.clip)
        address = params[:, : H * self.address_size].view(batch, H, self.address_size)
        key = address[..., :W]  # k_t
        strength = F.softplus(address[..., W])  # beta_t >= 0
        gate = torch.sigmoid(address[..., W + 1])  # g_t in (0, 1)
        shift_weights = torch.softmax(address[..., W + 2 : W + 2 + S], dim=-1)  # s_t
        gamma = 1 + F.softplus(address[..., -1])  # gamma_t >= 1
        erase_add = params[:, H * self.address_size :].view(batch, self.write_heads, 2 * W)
        erase = torch.sigmoid(erase_add[..., :W])  # e_t in (0, 1)
        add = torch.tanh(erase_add[..., W:])  # a_t

        # Addressing, all heads at once (NTM eq. 5-9), on the memory of the previous step; the read heads
        # read (eq. 2), the write heads erase and add (eq. 3-4). Fused (memory/ntm_access.py: one C kernel
        # each way on the CPU); with record=True the primitives one by one, for the trace's intermediates.
        trace = None
        if not record:
            weights, read_vectors, memory = mem.address_read_write(
                state.memory, state.weights, key, strength, gate, shift_weights, gamma, erase, add, Hr)
        else:
            content = mem.content_weights(state.memory, key, strength)
            gated = mem.interpolate(content, state.weights, gate)
            weights = mem.sharpen(mem.shift(gated, shift_weights), gamma)
            read_vectors = mem.read(state.memory, weights[:, :Hr])
            memory = mem.write(state.memory, weights[:, Hr:], erase, add)
            trace = {"read_weights": weights[:, :Hr], "write_weights": weights[:, Hr:],
                     "content_weights": content, "strengths": strength, "gates": gate,
                     "shift_weights": shift_weights, "gammas": gamma}
        features = torch.cat([out, read_vectors.flatten(1)], dim=-1)
        return features, NTMState(memory, weights, read_vectors, controller), trace
