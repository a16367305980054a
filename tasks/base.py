"""The sequence-task protocol shared by every task datamodule.

A task turns random numbers into batches of ``SequenceBatch(inputs, targets, mask)``:

- ``inputs``  ``[B, T, input_size]``  float32, what the model reads at each step;
- ``targets`` ``[B, T, output_size]`` float32 bits in {0, 1}, what it should emit (0 where not scored);
- ``mask``    ``[B, T]``              float32, 1 at the steps that are scored, 0 elsewhere and on padding.

A task's ``scoring`` says how the targets are read: ``"bits"`` (the default: every output channel a bit of
its own, binary cross-entropy), or ``"classes"`` (categorical tasks, as in the Chomsky-hierarchy suite:
one-hot inputs, and at each scored step a one-hot target over the ``output_size`` classes; cross-entropy
over the outputs, scored by token and sequence accuracy). The training command links it into the model.

Examples of different lengths in one batch are padded at the end with zeros (mask 0).  An example of a
padded task ends with a scored step, so a batch can be trimmed to its longest example by looking at the
mask (``split_batch``); a task whose examples end with unscored steps (MQAR's filler) makes batches of one
length and its validation batches itself (``val_batches``).

Training data is generated on the fly and never repeats: batch number ``i`` is a pure function of
``(seed, i)`` (a ``torch.Generator`` seeded with ``seed * 1_000_003 + i``) and of the current curriculum
length, if one is set.  The datamodule remembers how many training batches have been consumed;
``state_dict()`` returns ``{"next_batch": i}`` (plus ``"curriculum_max_length"`` while a curriculum is
on), which Lightning stores in checkpoints, so a resumed run continues the stream where it stopped.

Inside ``Trainer.fit`` the count advances in ``on_before_batch_transfer`` (called once per batch that
the training loop actually uses), not when the loader yields, because Lightning fetches one batch
ahead.  If the LightningModule also overrides ``on_before_batch_transfer``, Lightning uses the
datamodule's (and warns).  Outside a trainer, the count advances as the loader yields.

Validation sets are generated once, from a seed stream disjoint from training
(``seed * 1_000_003 + 2**40 + crc32(set name)``), so a named set (e.g. ``len_20``) holds the same
sequences whatever the rest of the grid or the validation batch size.  ``val_dataloader()`` returns one
loader per set, in the order of ``val_names``.  The first set follows the training distribution, the
others probe generalisation beyond it.

A task implements ``input_size``, ``output_size``, ``generate(generator, batch_size, **spec)``,
``train_spec()`` and ``val_specs()``; everything else lives here.
"""

from __future__ import annotations

import numbers
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

_SEED_STRIDE = 1_000_003  # training batch i of seed s uses generator seed s * _SEED_STRIDE + i
_VAL_SEED_OFFSET = 2**40  # validation sets draw from seeds far above any training batch index
_MAX_GENERATOR_SEED = 2**63


class SequenceBatch(NamedTuple):
    """One batch of a sequence task; a NamedTuple of tensors, so Lightning moves it to a device."""

    inputs: Tensor  # [B, T, input_size] float32
    targets: Tensor  # [B, T, output_size] float32 in {0, 1}
    mask: Tensor  # [B, T] float32, 1 at scored steps


# ---------------------------------------------------------------------------------------------------
# Argument checks: one-line ValueErrors naming the field and the accepted range.


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[minimum, maximum]``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_bounds(low_name: str, low: Any, high_name: str, high: Any, minimum: int) -> tuple[int, int]:
    """Return ``(low, high)`` if both are integers >= ``minimum`` and ``low <= high``, else raise ValueError."""
    low, high = check_int(low_name, low, minimum=minimum), check_int(high_name, high, minimum=minimum)
    if low > high:
        raise ValueError(f"{low_name}={low} must be <= {high_name}={high}")
    return low, high


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_int_list(name: str, values: Any, minimum: int) -> tuple[int, ...]:
    """Return ``values`` as a tuple of integers >= ``minimum`` (an empty sequence is allowed)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of integers >= {minimum}, got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}, got {list(values)!r}")
    return tuple(int(value) for value in values)


def check_pair_list(name: str, pairs: Any, minimum: int) -> tuple[tuple[int, int], ...]:
    """Return ``pairs`` as a tuple of (int, int) pairs, both >= ``minimum``."""
    message = f"{name} must be a sequence of pairs of integers >= {minimum}, got {pairs!r}"
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise ValueError(message)
    result = []
    for pair in pairs:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(message)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum for v in pair):
            raise ValueError(message)
        result.append((int(pair[0]), int(pair[1])))
    return tuple(result)


# ---------------------------------------------------------------------------------------------------
# Batch helpers.


def random_bits(generator: torch.Generator, *shape: int) -> Tensor:
    """Uniform random bits in {0, 1} as float32."""
    return torch.randint(0, 2, shape, generator=generator).float()


def pad_and_stack(examples: Sequence[tuple[Tensor, Tensor, Tensor]]) -> SequenceBatch:
    """Stack per-example ``(inputs[T_b, I], targets[T_b, O], mask[T_b])`` into one padded batch."""
    steps = max(inputs.shape[0] for inputs, _, _ in examples)
    batch = len(examples)
    input_size = examples[0][0].shape[1]
    output_size = examples[0][1].shape[1]
    inputs = torch.zeros(batch, steps, input_size)
    targets = torch.zeros(batch, steps, output_size)
    mask = torch.zeros(batch, steps)
    for b, (x, y, m) in enumerate(examples):
        length = x.shape[0]
        inputs[b, :length] = x
        targets[b, :length] = y
        mask[b, :length] = m
    return SequenceBatch(inputs, targets, mask)


def split_batch(batch: SequenceBatch, size: int) -> list[SequenceBatch]:
    """Cut a batch into chunks of ``size`` sequences, each trimmed to its longest example."""
    chunks = []
    for start in range(0, batch.inputs.shape[0], size):
        inputs, targets, mask = (t[start : start + size] for t in batch)
        scored_steps = mask.any(dim=0).nonzero()
        steps = int(scored_steps.max()) + 1 if len(scored_steps) else mask.shape[1]
        chunks.append(
            SequenceBatch(
                inputs[:, :steps].contiguous(), targets[:, :steps].contiguous(), mask[:, :steps].contiguous()
            )
        )
    return chunks


# ---------------------------------------------------------------------------------------------------
# Datasets.


class TrainingStream(IterableDataset):
    """Endless stream of whole training batches, starting at the task's ``next_batch``.

    Use with ``DataLoader(stream, batch_size=None, num_workers=0)``: the batches are already collated,
    and the stream position lives in the datamodule (worker processes would not see it).
    """

    def __init__(self, task: SequenceTask) -> None:
        self.task = task

    def __iter__(self) -> Iterator[SequenceBatch]:
        index = self.task.next_batch
        while True:
            batch = self.task.train_batch(index)
            index += 1
            if not self.task._counted_by_trainer():
                self.task.next_batch = index
            yield batch


class ValidationSet(Dataset):
    """A fixed validation set stored as ready-made batches (use with ``DataLoader(batch_size=None)``).

    ``bayes_optimal_bits_per_sequence`` holds the mean cost of the Bayes-optimal predictor on this set
    where a task can compute it (dynamic n-grams), else None.
    """

    def __init__(self, name: str, batches: list[SequenceBatch]) -> None:
        self.name = name
        self.batches = batches
        self.bayes_optimal_bits_per_sequence: float | None = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> SequenceBatch:
        return self.batches[index]

    @property
    def num_sequences(self) -> int:
        return sum(batch.inputs.shape[0] for batch in self.batches)

    @property
    def steps(self) -> int:
        """Time steps of the set's longest sequence (the width of its widest padded batch)."""
        return max(int(batch.inputs.shape[1]) for batch in self.batches)


# ---------------------------------------------------------------------------------------------------
# The datamodule base.


class SequenceTask(L.LightningDataModule):
    """Base LightningDataModule of the algorithmic sequence tasks.

    Subclasses check and set their own fields first, then call ``super().__init__(...)``.

    Args:
        batch_size: training sequences per batch.
        seed: seeds the training stream and the validation sets (integer >= 0).
        num_val_sequences: sequences in each validation set.
        val_batch_size: sequences per validation batch.
        curriculum_max_length: None (default) samples training lengths up to the task's full maximum;
            an integer starts a curriculum at that maximum, to be raised with
            ``set_curriculum_max_length`` (only tasks with a variable length support it).
    """

    name: str = "sequence_task"
    scoring: str = "bits"  # "bits", or "classes" for one-hot class targets (see the module docstring)
    supports_curriculum: bool = False  # tasks with a variable length set this and override length_range

    def __init__(
        self,
        batch_size: int = 32,
        seed: int = 0,
        num_val_sequences: int = 640,
        val_batch_size: int = 128,
        curriculum_max_length: int | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        self.num_val_sequences = check_int("num_val_sequences", num_val_sequences, minimum=1)
        self.val_batch_size = check_int("val_batch_size", val_batch_size, minimum=1)
        self.next_batch = 0  # index of the next training batch to consume
        self._val_sets: list[ValidationSet] | None = None
        self._curriculum_max_length: int | None = None
        # Subclasses set their own fields before calling this __init__, so the range is known here.
        self.set_curriculum_max_length(curriculum_max_length)

    # --- what a task provides --------------------------------------------------------------------

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    def generate(self, generator: torch.Generator, batch_size: int, **spec: int) -> SequenceBatch:
        """One batch of ``batch_size`` sequences drawn with ``generator``; ``spec`` sets the sizes."""
        raise NotImplementedError

    def train_spec(self) -> dict[str, int]:
        """The ``generate`` sizes of training batches (respecting the curriculum)."""
        raise NotImplementedError

    def val_specs(self) -> list[tuple[str, dict[str, int]]]:
        """``(name, generate sizes)`` of each validation set, the training distribution first."""
        raise NotImplementedError

    generalisation_arg: str | None = None  # the __init__ argument that lists the generalisation sets, if any

    def vectors_to_hold(self) -> int | None:
        """The most input vectors an example (training or validation) asks a model to hold at once: a
        memory with fewer slots cannot store them one per slot. None where that does not apply."""
        return None

    def length_range(self) -> tuple[int, int]:
        """The (min, max) training length that a curriculum moves within."""
        raise NotImplementedError(f"{self.name} has no variable length to put on a curriculum")

    # --- training stream -------------------------------------------------------------------------

    def train_batch(self, index: int) -> SequenceBatch:
        """Training batch number ``index`` of this process: a pure function of (seed, index, curriculum
        length, and under data-parallel training the process's rank and the number of processes, so
        that the processes draw disjoint batches: process r of n takes stream batch index * n + r)."""
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        stream_index = index * world + rank
        generator = torch.Generator().manual_seed((self.seed * _SEED_STRIDE + stream_index) % _MAX_GENERATOR_SEED)
        return self.generate(generator, self.batch_size, **self.train_spec())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TrainingStream(self), batch_size=None, num_workers=0)

    def _counted_by_trainer(self) -> bool:
        """True while a trainer drives this datamodule: it counts consumed batches in the hook below."""
        return self.trainer is not None

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self.next_batch += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"next_batch": self.next_batch}
        if self._curriculum_max_length is not None:
            state["curriculum_max_length"] = self._curriculum_max_length
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_batch = check_int("next_batch", state_dict["next_batch"], minimum=0)
        self.set_curriculum_max_length(state_dict.get("curriculum_max_length"))

    # --- curriculum ------------------------------------------------------------------------------

    @property
    def current_max_length(self) -> int:
        """The largest training length now sampled (the curriculum's, or the task's maximum)."""
        if self._curriculum_max_length is not None:
            return self._curriculum_max_length
        return self.length_range()[1]

    def set_curriculum_max_length(self, length: int | None) -> None:
        """Sample training lengths up to ``length`` from now on; None turns the curriculum off."""
        if length is not None:
            self._check_curriculum("curriculum_max_length", length)
        self._curriculum_max_length = length

    def _check_curriculum(self, name: str, length: int) -> None:
        if not self.supports_curriculum:
            raise NotImplementedError(f"{self.name} has no variable length to put on a curriculum")
        low, high = self.length_range()
        check_int(name, length, minimum=low, maximum=high)

    # --- validation ------------------------------------------------------------------------------

    @property
    def val_names(self) -> list[str]:
        """Names of the validation sets, in the order of ``val_dataloader()``."""
        return [name for name, _ in self.val_specs()]

    @property
    def val_sets(self) -> list[ValidationSet]:
        """The validation sets, generated on first use."""
        if self._val_sets is None:
            self._val_sets = [self._make_val_set(name, spec) for name, spec in self.val_specs()]
        return self._val_sets

    def _make_val_set(self, name: str, spec: dict[str, int]) -> ValidationSet:
        seed = (self.seed * _SEED_STRIDE + _VAL_SEED_OFFSET + zlib.crc32(name.encode())) % _MAX_GENERATOR_SEED
        return ValidationSet(name, self.val_batches(torch.Generator().manual_seed(seed), spec))

    def val_batches(self, generator: torch.Generator, spec: dict[str, int]) -> list[SequenceBatch]:
        """The batches of one validation set of ``generate`` sizes ``spec``: ``num_val_sequences`` drawn
        with ``generator`` at once, in batches of ``val_batch_size`` trimmed to their longest example."""
        return split_batch(self.generate(generator, self.num_val_sequences, **spec), self.val_batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(val_set, batch_size=None, shuffle=False, num_workers=0) for val_set in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
