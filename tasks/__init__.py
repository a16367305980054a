"""Algorithmic tasks of the NTM paper (and Csordas & Schmidhuber's repeated copy), and the Chomsky-hierarchy
tasks of Deletang et al. 2023 (``tasks.chomsky``), as LightningDataModules sharing one sequence-task protocol.

Every task yields ``SequenceBatch(inputs, targets, mask)`` batches (see ``tasks.base``) and exposes
``input_size``, ``output_size``, ``name`` and ``val_names``.  Build one by name with ``build_task``.
"""

from __future__ import annotations

from typing import Any

from .associative_recall import AssociativeRecallTask
from .base import SequenceBatch, SequenceTask, ValidationSet
from .chomsky import (
    CHOMSKY_TASKS,
    BinaryAdditionTask,
    BucketSortTask,
    ChomskyTask,
    CycleNavigationTask,
    DuplicateStringTask,
    EvenPairsTask,
    MissingDuplicateTask,
    ModularArithmeticBracketsTask,
    ModularArithmeticTask,
    OddsFirstTask,
    ParityCheckTask,
    ReverseStringTask,
    StackManipulationTask,
)
from .copy import CopyTask
from .mqar import MQARTask
from .ngrams import NgramsTask, bayes_optimal_cost, bayes_optimal_predictive
from .priority_sort import PrioritySortTask
from .repeat_copy import RepeatCopyTask
from .repeated_copy import RepeatedCopyTask

TASKS: dict[str, type[SequenceTask]] = {
    "copy": CopyTask,
    "repeat_copy": RepeatCopyTask,
    "associative_recall": AssociativeRecallTask,
    "ngrams": NgramsTask,
    "priority_sort": PrioritySortTask,
    "repeated_copy": RepeatedCopyTask,
    "mqar": MQARTask,
    **CHOMSKY_TASKS,
}


def build_task(name: str, **kwargs: Any) -> SequenceTask:
    """The datamodule of task ``name`` built with ``kwargs``; ValueError for an unknown name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; accepted: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = [
    "TASKS",
    "AssociativeRecallTask",
    "BinaryAdditionTask",
    "BucketSortTask",
    "ChomskyTask",
    "CopyTask",
    "CycleNavigationTask",
    "DuplicateStringTask",
    "EvenPairsTask",
    "MQARTask",
    "MissingDuplicateTask",
    "ModularArithmeticBracketsTask",
    "ModularArithmeticTask",
    "NgramsTask",
    "OddsFirstTask",
    "ParityCheckTask",
    "PrioritySortTask",
    "RepeatCopyTask",
    "RepeatedCopyTask",
    "ReverseStringTask",
    "SequenceBatch",
    "SequenceTask",
    "StackManipulationTask",
    "ValidationSet",
    "bayes_optimal_cost",
    "bayes_optimal_predictive",
    "build_task",
]
