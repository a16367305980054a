"""Tape-RNN (Deletang et al. 2023, "Neural Networks and the Chomsky Hierarchy", ICLR 2023), a recurrent
controller with a differentiable tape, inspired by the Baby-NTM of Suzgun et al. 2019.

Each step: the controller sees the input and the cell under the head of each tape; from its output h_t,
an MLP gives the value to write on each tape and a softmax per tape the weights of five actions; each
tape gets the value written under its head, then becomes the mixture of its five moved copies
(``mem.write_at_head``, ``mem.move_tape``). The logits are a linear read-out of ReLU(h_t).

    h_t = tanh(W_x [x_t; M^1_{t-1}(0); ...; M^K_{t-1}(0)] + W_h h_{t-1} + b)   controller (Elman RNN)
    v^k_t = MLP(h_t)^k                                   the value written on tape k (an MLP 64-64-W)
    a^k_t = softmax(A^k h_t + b^k)                       (write-stay, write-left, write-right, jump-left, jump-right)
    M'^k = write_at_head(M^k_{t-1}, v^k_t)               M'(0) = v, the rest unchanged
    M^k_t(i) = sum_a a^k_a M'^k((i + o_a) mod N)         offsets o = (0, +1, -1, +l, -l)
    y_t = W_y ReLU(h_t) + b_y

with l the length of the input (``input_length`` below). Slot 0 of a tape is the cell under its head,
slot i the cell i steps to its left; "left" brings the cell of slot 1 under the head (the reference
code's names and shifts; see mann_zoo/memory/tape.py).

Sources. Deletang et al. 2023, appendix A.2: a single-layer RNN controller of 256 units; "any linear
combination of write-right, write-left, write-stay, jump-left, and jump-right ... with action weights given
by a softmax"; jumps of l cells, "where l is the length of the input"; cells of dimension 8; a tape of 256
cells in training (appendix A.2; increased for longer test sequences); one or four tapes (appendix A.4
sweeps both), and "computation" tokens appended to the input (a task's business, not the core's). From
their code (google-deepmind/neural_networks_chomsky_hierarchy, models/tape_rnn.py ``TapeInputLengthJumpCore``,
models/rnn.py, experiments/example.py): Haiku's ``VanillaRNN`` controller (zero initial state); the
controller reads the cell under each head; the written value comes from an MLP with hidden layers
(64, 64) and ReLU; the write replaces the cell; one action softmax per tape; the tape moves (a circular
shift), not the head; the tape starts at zeros; the output is ``Linear(relu(h_t))``; l is the number of
input tokens, before the computation and output tokens; the class's default tape size is 30, the
example's 40 (the paper's 256 is our default).

Where the sources differ or are silent (our choices):
- The paper's jumps move "without writing"; the code's five actions all write first ("write and move
  input_length cells left"), and its results are the paper's. ``jump_writes=True`` (the default) is the
  code; ``jump_writes=False`` the paper's text (the jumps move the tape as it was before the write).
- l comes with the sequence: ``model(x, input_length=l)`` (an int, or a ``[B]`` integer tensor for
  examples of different lengths). Training, validation and ``mann-zoo evaluate`` pass the steps before a
  sequence's first scored step (``training.lightning_module.core_logits``: a Chomsky-hierarchy string's
  length). Without it, l = T, the number of steps of ``x`` (the core cannot tell the input from the steps
  after it): our choice, for a plain ``model(x)``.
- The paper does not say what lies beyond the ends of the tape; the code's shifts are circular
  (``jnp.roll``), and so are ours (the paper sizes the tape "large enough to simulate infinite memory").
- Weights start at PyTorch's default initialisation, not Haiku's (truncated normal, std 1/sqrt(fan_in)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .. import memory as mem
from .base import MemoryCore, check_positive
from .controller import make_controller


class TapeRNNState(NamedTuple):
    tape: torch.Tensor  # [B, K, N, W], slot 0 of each tape under its head
    offsets: torch.Tensor  # [B, 5] integer offsets of the five actions, (0, +1, -1, +l, -l)
    controller: tuple  # controller state, tuple of [B, C]


class TapeRNN(MemoryCore):
    """Tape-RNN core: ``model(x[B, T, input_size], input_length=None) -> logits[B, T, output_size]``.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        controller: ``"rnn"`` (Elman, as in Deletang et al.), ``"lstm"`` or ``"feedforward"``.
        controller_size: the controller's width (256 in Deletang et al.).
        controller_layers: the controller's depth (1 in Deletang et al.).
        memory_slots: N, the number of cells of a tape (256 in Deletang et al.'s training).
        word_size: W, the width of a cell (8 in Deletang et al.).
        tapes: K, the number of tapes (1 or 4 in Deletang et al.'s sweep).
        write_mlp_size: the width of the hidden layers of the MLP that emits the written values (64 in
            the reference code).
        write_mlp_layers: its number of hidden layers (2 in the reference code; 0: a linear layer).
        jump_writes: whether the jumps write before they move (the reference code: True) or only move
            (the paper's text: False).
        compile: compile the per-step cell with ``torch.compile``.
        compile_steps: time steps per call of the compiled cell in training (``MemoryCore``: fewer
            calls' fixed costs, for a longer compile).

    ``model(x, record=True)`` also returns per-step ``actions [B, T, K, 5]`` (``mem.TAPE_ACTIONS``),
    ``write_values [B, T, K, W]`` and ``tape [B, T, K, N, W]`` (after the step).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: str = "rnn",
        controller_size: int = 256,
        controller_layers: int = 1,
        memory_slots: int = 256,
        word_size: int = 8,
        tapes: int = 1,
        write_mlp_size: int = 64,
        write_mlp_layers: int = 2,
        jump_writes: bool = True,
        compile: bool = False,
        compile_steps: int = 1,
    ):
        check_positive(input_size=input_size, output_size=output_size, controller_size=controller_size,
                       controller_layers=controller_layers, memory_slots=memory_slots, word_size=word_size,
                       tapes=tapes, write_mlp_size=write_mlp_size)
        if not isinstance(write_mlp_layers, int) or isinstance(write_mlp_layers, bool) or write_mlp_layers < 0:
            raise ValueError(f"write_mlp_layers must be an integer >= 0, got {write_mlp_layers!r}")
        super().__init__(compile=compile, compile_steps=compile_steps)
        self.input_size, self.output_size = input_size, output_size
        self.slots, self.width, self.tapes = memory_slots, word_size, tapes
        self.jump_writes = bool(jump_writes)
        self.controller = make_controller(controller, input_size + tapes * word_size, controller_size, controller_layers)
        layers, width = [], controller_size
        for _ in range(write_mlp_layers):
            layers += [nn.Linear(width, write_mlp_size), nn.ReLU()]
            width = write_mlp_size
        self.write_mlp = nn.Sequential(*layers, nn.Linear(width, tapes * word_size))  # v_t = MLP(h_t)
        self.action_logits = nn.Linear(controller_size, tapes * len(mem.TAPE_ACTIONS))  # A^k h_t + b^k, all k
        self.output = nn.Linear(controller_size, output_size)

    def forward(self, x: torch.Tensor, record: bool = False, input_length: int | torch.Tensor | None = None):
        """``logits[B, T, O]`` (and the traces if ``record``); ``input_length`` is l, the jump length: an
        int, a ``[B]`` integer tensor, or None for l = T."""
        self.check_input(x)
        return self.unroll(x, self.initial_state(x.shape[0], x, input_length), record)

    def initial_state(self, batch: int, like: torch.Tensor, input_length: int | torch.Tensor | None = None) -> TapeRNNState:
        """Blank tapes (zeros), the action offsets for jumps of ``input_length`` (default: the number of
        steps of ``like``, ``[B, T, I]``), and the controller's initial state."""
        if input_length is None:
            if like.dim() != 3:
                raise ValueError(f"input_length is needed when like is not [B, T, I], got {list(like.shape)}")
            input_length = like.shape[1]
        if isinstance(input_length, torch.Tensor):
            if input_length.shape != (batch,) or input_length.is_floating_point():
                raise ValueError(f"input_length must be an int or an integer tensor of shape [{batch}], "
                                 f"got {input_length.dtype} of shape {list(input_length.shape)}")
            jump = input_length.to(device=like.device, dtype=torch.long)
        elif isinstance(input_length, int) and not isinstance(input_length, bool):
            jump = torch.full((batch,), input_length, dtype=torch.long, device=like.device)
        else:
            raise ValueError(f"input_length must be an int or an integer tensor of shape [{batch}], got {input_length!r}")
        return TapeRNNState(
            tape=like.new_zeros(batch, self.tapes, self.slots, self.width),
            offsets=mem.tape_offsets(jump),
            controller=tuple(s.contiguous() for s in self.controller.initial_state(batch)),
        )

    def step(self, x: torch.Tensor, state: TapeRNNState, record: bool = False):
        """One time step. ``x[B, input_size]`` -> ``(h_t[B, C], new_state, trace or None)``."""
        batch, K, N, W = state.tape.shape
        actions_count = len(mem.TAPE_ACTIONS)
        under_heads = state.tape[:, :, 0].flatten(1)  # [M^1_{t-1}(0); ...; M^K_{t-1}(0)]
        h, controller = self.controller(torch.cat([x, under_heads], dim=-1), state.controller)
        write_values = self.write_mlp(h).view(batch, K, W)  # v^k_t
        actions = torch.softmax(self.action_logits(h).view(batch, K, actions_count), dim=-1)  # a^k_t

        # The K tapes of an example fold into the batch: the primitives act on [B K, N, W].
        tape = state.tape.reshape(batch * K, N, W)
        weights = actions.reshape(batch * K, actions_count)
        offsets = state.offsets.repeat_interleave(K, dim=0)  # [B K, 5]
        written = mem.write_at_head(tape, write_values.reshape(batch * K, W))  # M'(0) = v
        if self.jump_writes:  # the reference code: every action writes, then moves
            moved = mem.move_tape(written, weights, offsets)
        else:  # the paper's text: write-stay/left/right write then move; the jumps move the unwritten tape
            writes, jumps = slice(0, 3), slice(3, 5)  # TAPE_ACTIONS[writes], TAPE_ACTIONS[jumps]
            moved = (mem.move_tape(written, weights[:, writes], offsets[:, writes])
                     + mem.move_tape(tape, weights[:, jumps], offsets[:, jumps]))
        new_tape = moved.view(batch, K, N, W)

        trace = {"actions": actions, "write_values": write_values, "tape": new_tape} if record else None
        return h, TapeRNNState(new_tape, state.offsets, controller), trace

    def readout(self, features: torch.Tensor) -> torch.Tensor:
        """y_t = W_y ReLU(h_t) + b_y for all steps at once (the ReLU: Deletang et al.'s code, models/rnn.py)."""
        return self.output(torch.relu(features))
