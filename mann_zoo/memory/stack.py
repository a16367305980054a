"""Differentiable stack (Joulin & Mikolov 2015, as in the Stack-RNN of Deletang et al. 2023)."""

from __future__ import annotations

import torch

from ._checks import check_memory, check_shape

STACK_ACTIONS = ("push", "pop", "no_op")
"""The order of the stack actions along the last dimension of ``actions``."""


def update_stack(stack: torch.Tensor, actions: torch.Tensor, push_value: torch.Tensor) -> torch.Tensor:
    """One step of the stack: a mixture of push, pop and no-op, weighted by the action probabilities.

    s_t(0) = a_push v_t + a_pop s_{t-1}(1) + a_no-op s_{t-1}(0)                    (the top)
    s_t(i) = a_push s_{t-1}(i-1) + a_pop s_{t-1}(i+1) + a_no-op s_{t-1}(i),   i >= 1

    (the pushdown update of Joulin & Mikolov 2015 with their no-op extension; vectors in the cells as in
    Deletang et al. 2023, appendix A.2, and their code, google-deepmind/neural_networks_chomsky_hierarchy
    models/stack_rnn.py, ``_update_stack``.) Slot 0 is the top. The stack is bounded: a push drops the
    bottom cell s_{t-1}(N-1); a pop brings an empty (zero) cell up into the bottom slot, s_{t-1}(N) = 0.
    Several stacks per example fold into the batch.

    Args:
        stack: ``[B, N, W]``, N cells of width W, slot 0 the top.
        actions: ``[B, 3]``, the weights of (push, pop, no-op) (``STACK_ACTIONS``), normally a softmax.
        push_value: ``[B, W]``, v_t, the vector a push puts on top.
    Returns:
        ``[B, N, W]`` the new stack. Linear in each input, so no NaN for any finite input.
    """
    batch, slots, width = check_memory(stack)
    check_shape("actions", actions, (batch, len(STACK_ACTIONS)))
    check_shape("push_value", push_value, (batch, width))
    pushed = torch.cat([push_value.unsqueeze(1), stack[:, :-1]], dim=1)  # slot i <- s(i-1), slot 0 <- v
    popped = torch.cat([stack[:, 1:], stack.new_zeros(batch, 1, width)], dim=1)  # slot i <- s(i+1), bottom <- 0
    push, pop, no_op = (actions[:, k, None, None] for k in range(3))
    return push * pushed + pop * popped + no_op * stack
