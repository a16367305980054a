"""The protocol of Deletang et al. 2023 ("Neural Networks and the Chomsky Hierarchy") as a sequence task:
categorical inputs and outputs (``scoring = "classes"``), one length per batch, generalisation to longer
strings.

Format of one example with an input string of L tokens and an output of M tokens (input width
``vocabulary + 1``, output width ``classes``), as in their code (``make_model_with_empty_targets``): the
input tape, then M blank steps on which the model emits the output, not autoregressively:

    step        0 .. L-1                   L .. L+M-1
    input       one-hot token (< vocab.)   blank (channel ``vocabulary``)
    target      0                          one-hot class of output token 1..M
    mask        0                          1

Where the answer is shorter than M for some examples (stack manipulation, binary addition), the task
pads it as their code does: the answer, then a termination class (``termination_class``), then class 0 up
to M steps. The mask then stops at the termination step: their loss covers every output step but their
accuracy (``accuracy_mask``) only the steps up to and including the termination, and the mask here is what
the scores count (the cost is the loss, so the padding after the termination is not trained either).

Training lengths L are drawn uniformly from [min_length, max_length] (the paper: U(1, 40)), one length
per batch, as their training loop samples it; a validation set spreads its sequences evenly over its
lengths (as many of each length, give or take one) and batches the sequences of each length together, so that no batch is padded (a non-causal
model would attend over the padding). Validation: the training distribution (``len_1-40``), then
one set per entry of ``val_lengths`` (``len_50``, ...): the paper tests every length from 41 to 500 and
scores a model by the token accuracy averaged over them; ``val_lengths`` is that grid, thinned to what a
run can afford, and the report averages over every length 41-500 by interpolating between the sets
(``mann_zoo.experiments.suites``). ``token_accuracy`` here is each sequence's share of right steps, averaged
over sequences; their code pools the tokens of a batch (one length) instead, which differs only where
answers of one length differ in length (stack manipulation, binary addition). The loss is the zoo's for
every task, the cross-entropy summed over a sequence's scored steps and averaged over the batch; theirs
averages over the output steps too (with their gradient-norm clip of 1, which the suite's model configs
keep, our gradients are larger by the answer's length before clipping): our choice, kept for one training
path across tasks.

A task implements ``vocabulary``, ``classes``, ``output_length(L)`` and ``sample(generator, batch_size, L)``,
which returns the input and output tokens, and ``answer(tokens)``, the output tokens of a given input (it
sets ``termination_class`` where its answers are padded); everything else lives here. Where a task's "length" is not its number of input tokens (modular arithmetic
makes an even length odd), its module docstring says so; the set names keep the length asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..base import SequenceBatch, SequenceTask, check_bounds, check_int, check_int_list


class ChomskyTask(SequenceTask):
    """Base datamodule of the Chomsky-hierarchy tasks; see the module docstring for the format.

    Args:
        min_length, max_length: the range of training input lengths (the paper: 1 and 40).
        val_lengths: input lengths of the generalisation sets (the paper: every length 41-500).
        batch_size: training sequences per batch (the paper: 128).
        seed, num_val_sequences, val_batch_size: as every task (``tasks.base.SequenceTask``).
    """

    scoring = "classes"
    generalisation_arg = "val_lengths"  # the argument listing the generalisation sets (mann-zoo evaluate --sizes)
    vocabulary: int  # input tokens 0 .. vocabulary - 1
    classes: int  # output tokens 0 .. classes - 1
    termination_class: int | None = None  # the class that ends a padded answer, where answers are padded

    def __init__(
        self,
        min_length: int = 1,
        max_length: int = 40,
        val_lengths: Sequence[int] = (50, 100, 200, 500),
        batch_size: int = 128,
        seed: int = 0,
        num_val_sequences: int = 256,
        val_batch_size: int = 128,
    ) -> None:
        self.min_length, self.max_length = check_bounds("min_length", min_length, "max_length", max_length, minimum=1)
        self.val_lengths = check_int_list("val_lengths", val_lengths, minimum=1)
        super().__init__(batch_size, seed, num_val_sequences, val_batch_size)
        self.save_hyperparameters()

    # --- what a task provides --------------------------------------------------------------------

    def output_length(self, length: int) -> int:
        """M, the output tokens of an input string of ``length`` tokens."""
        raise NotImplementedError

    def sample(self, generator: torch.Generator, batch_size: int, length: int) -> tuple[Tensor, Tensor]:
        """Input tokens ``[batch_size, length]`` and output tokens ``[batch_size, output_length(length)]``
        (int64) of ``batch_size`` random examples, drawn with ``generator``: by default a string of uniform
        tokens from the vocabulary and its ``answer``; a task whose inputs have a structure overrides it."""
        string = torch.randint(0, self.vocabulary, (batch_size, length), generator=generator)
        return string, self.answer(string)

    def answer(self, tokens: Tensor) -> Tensor:
        """The output tokens ``[B, M]`` of given input tokens ``[B, L]`` (int64): the answer that ``sample``
        returns with them, computed from the input alone (an oracle for tests and analyses)."""
        raise NotImplementedError(f"{self.name} has no answer of a given input")

    # --- the protocol ----------------------------------------------------------------------------

    @property
    def input_size(self) -> int:
        return self.vocabulary + 1  # the tokens and the blank of the output steps

    @property
    def output_size(self) -> int:
        return self.classes

    def train_spec(self) -> dict[str, int]:
        return {"min_length": self.min_length, "max_length": self.max_length}

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        low, high = self.min_length, self.max_length
        specs = [(f"len_{low}-{high}", {"min_length": low, "max_length": high})]
        specs += [(f"len_{length}", {"min_length": length, "max_length": length}) for length in self.val_lengths]
        return specs

    def generate(self, generator: torch.Generator, batch_size: int, min_length: int, max_length: int) -> SequenceBatch:
        length = int(torch.randint(min_length, max_length + 1, (), generator=generator))  # one length per batch
        tokens, outputs = self.sample(generator, batch_size, length)
        return self.encode(tokens, outputs)

    def val_batches(self, generator: torch.Generator, spec: dict[str, int]) -> list[SequenceBatch]:
        """A validation set's batches, each of one length (no padding, as in training): the set's
        ``num_val_sequences`` spread evenly over the lengths of its range (sequence i has length
        low + floor(i K / n) of the K lengths: every length once per K sequences, or every (K / n)-th length
        when there are fewer sequences than lengths), the sequences of each length drawn at once (so that
        the set is the same whatever ``val_batch_size``) and cut into batches of ``val_batch_size``,
        shortest first."""
        low, high = spec["min_length"], spec["max_length"]
        lengths = low + torch.arange(self.num_val_sequences) * (high - low + 1) // self.num_val_sequences
        batches = []
        for length, count in zip(*torch.unique(lengths, return_counts=True)):
            whole = self.encode(*self.sample(generator, int(count), int(length)))
            batches += [SequenceBatch(*(part[start : start + self.val_batch_size] for part in whole))
                        for start in range(0, int(count), self.val_batch_size)]
        return batches

    def encode(self, tokens: Tensor, outputs: Tensor) -> SequenceBatch:
        """The batch of input tokens ``[B, L]`` and output tokens ``[B, M]`` in the format of the module
        docstring: ``inputs [B, L + M, vocabulary + 1]``, one-hot ``targets [B, L + M, classes]`` and the
        mask on the M output steps (up to the termination class, where the task has one)."""
        batch, length = tokens.shape
        steps = length + outputs.shape[1]
        blank = torch.full((batch, outputs.shape[1]), self.vocabulary, dtype=torch.long)
        inputs = torch.nn.functional.one_hot(torch.cat([tokens, blank], dim=1), self.input_size).float()
        scored = self.output_mask(outputs)
        targets = torch.zeros(batch, steps, self.classes)
        targets[:, length:] = torch.nn.functional.one_hot(outputs, self.classes).float() * scored.unsqueeze(-1)
        mask = torch.zeros(batch, steps)
        mask[:, length:] = scored
        return SequenceBatch(inputs, targets, mask)

    def output_mask(self, outputs: Tensor) -> Tensor:
        """``[B, M]`` float: 1 at the output steps that are scored: all of them, or where the task pads its
        answers, those up to and including the first ``termination_class`` (every answer has one)."""
        if self.termination_class is None:
            return torch.ones(outputs.shape, dtype=torch.float32)
        ends = (outputs == self.termination_class).long()
        return (ends.cumsum(dim=1) - ends == 0).float()  # 1 until the step after the first termination


class StringTask(ChomskyTask):
    """A task on a string of L uniform random tokens from ``vocab_size`` (reverse string, duplicate string,
    odds first, bucket sort): the output classes are the tokens, and a subclass gives ``answer``.

    Args:
        vocab_size: the tokens of the string (the paper: 2; bucket sort: 5).
        kwargs: ``min_length``, ``max_length``, ``val_lengths``, ``batch_size``, ``seed``, ``num_val_sequences``,
            ``val_batch_size``, as :class:`ChomskyTask` (the command line shows them all the same).
    """

    def __init__(self, vocab_size: int = 2, **kwargs) -> None:
        self.vocabulary = self.classes = check_int("vocab_size", vocab_size, minimum=2)
        super().__init__(**kwargs)
