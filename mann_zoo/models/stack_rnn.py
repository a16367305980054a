"""Stack-RNN (Joulin & Mikolov 2015), as Deletang et al. 2023 ("Neural Networks and the Chomsky
Hierarchy", ICLR 2023) ran it.

Each step: the controller sees the input and the top of the stack of the previous step; from its output
h_t, a softmax gives the weights of the three stack actions and a linear layer the value a push would put
on top; the stack becomes the mixture of the pushed, popped and unchanged stacks (``mem.update_stack``).
The logits are a linear read-out of ReLU(h_t).

    h_t = tanh(W_x [x_t; s_{t-1}(0)] + W_h h_{t-1} + b)       controller (Elman RNN, zero initial state)
    a_t = softmax(A h_t + b_A)                               (a_push, a_pop, a_no-op)
    v_t = D h_t + b_D                                        the push value
    s_t = update_stack(s_{t-1}, a_t, v_t)                    (see mann_zoo/memory/stack.py)
    y_t = W_y ReLU(h_t) + b_y

Sources. Deletang et al. 2023, appendix A.2: a single-layer RNN controller of 256 units, any linear
combination of push, pop and no-op with "action weights given by a softmax over a linear readout of the
RNN output", cells of dimension 8, a stack of 128 cells in training ("manually increased" for longer test
sequences), a final linear read-out; their Stack-LSTM is the same with an LSTM controller
(``controller="lstm"`` here). From their code (google-deepmind/neural_networks_chomsky_hierarchy,
models/stack_rnn.py, models/rnn.py, experiments/constants.py): Haiku's ``VanillaRNN`` controller, the
controller reads the top cell only, the push value is linear (no squashing), the stack starts empty
(zeros), the output is ``Linear(relu(h_t))``, and the stack's own default size is 30 (the paper's 128 is
our default). Their optimiser: Adam with the gradient's global norm clipped to 1 (configs/model/stack_rnn.yaml).

Where the sources differ or are silent (our choices): Joulin & Mikolov's own model differs (a sigmoid on
the push value, the top k cells read, scalar cells); we follow Deletang et al.'s code (a linear push
value, the top cell read, cells of width W). Their code allows several stacks (``n_stacks``, one softmax over all their
actions together); the paper uses one, and so do we. Weights start at PyTorch's default initialisation,
not Haiku's (truncated normal with std 1/sqrt(fan_in), zero biases).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .. import memory as mem
from .base import MemoryCore, check_positive
from .controller import make_controller


class StackRNNState(NamedTuple):
    stack: torch.Tensor  # [B, N, W], slot 0 the top
    controller: tuple  # controller state, tuple of [B, C]


class StackRNN(MemoryCore):
    """Stack-RNN core: ``model(x[B, T, input_size]) -> logits[B, T, output_size]``.

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        controller: ``"rnn"`` (Elman, the Stack-RNN), ``"lstm"`` (the Stack-LSTM) or ``"feedforward"``.
        controller_size: the controller's width (256 in Deletang et al.).
        controller_layers: the controller's depth (1 in Deletang et al.).
        memory_slots: N, the number of stack cells (128 in Deletang et al.'s training).
        word_size: W, the width of a stack cell (8 in Deletang et al.).
        compile: compile the per-step cell with ``torch.compile``.
        compile_steps: time steps per call of the compiled cell in training (``MemoryCore``: fewer
            calls' fixed costs, for a longer compile).

    ``model(x, record=True)`` also returns per-step ``actions [B, T, 3]`` (push, pop, no-op),
    ``push_values [B, T, W]`` and ``stack [B, T, N, W]`` (after the step).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: str = "rnn",
        controller_size: int = 256,
        controller_layers: int = 1,
        memory_slots: int = 128,
        word_size: int = 8,
        compile: bool = False,
        compile_steps: int = 1,
    ):
        check_positive(input_size=input_size, output_size=output_size, controller_size=controller_size,
                       controller_layers=controller_layers, memory_slots=memory_slots, word_size=word_size)
        super().__init__(compile=compile, compile_steps=compile_steps)
        self.input_size, self.output_size = input_size, output_size
        self.slots, self.width = memory_slots, word_size
        self.controller = make_controller(controller, input_size + word_size, controller_size, controller_layers)
        self.action_logits = nn.Linear(controller_size, len(mem.STACK_ACTIONS))  # A h_t + b_A
        self.push_value = nn.Linear(controller_size, word_size)  # v_t = D h_t + b_D
        self.output = nn.Linear(controller_size, output_size)

    def initial_state(self, batch: int, like: torch.Tensor) -> StackRNNState:
        """An empty stack (zeros) and the controller's initial state."""
        return StackRNNState(
            stack=like.new_zeros(batch, self.slots, self.width),
            controller=tuple(s.contiguous() for s in self.controller.initial_state(batch)),
        )

    def step(self, x: torch.Tensor, state: StackRNNState, record: bool = False):
        """One time step. ``x[B, input_size]`` -> ``(h_t[B, C], new_state, trace or None)``."""
        top = state.stack[:, 0]  # s_{t-1}(0)
        h, controller = self.controller(torch.cat([x, top], dim=-1), state.controller)
        actions = torch.softmax(self.action_logits(h), dim=-1)  # a_t = softmax(A h_t + b_A)
        push_value = self.push_value(h)  # v_t
        stack = mem.update_stack(state.stack, actions, push_value)  # s_t
        trace = {"actions": actions, "push_values": push_value, "stack": stack} if record else None
        return h, StackRNNState(stack, controller), trace

    def readout(self, features: torch.Tensor) -> torch.Tensor:
        """y_t = W_y ReLU(h_t) + b_y for all steps at once (the ReLU: Deletang et al.'s code, models/rnn.py)."""
        return self.output(torch.relu(features))
