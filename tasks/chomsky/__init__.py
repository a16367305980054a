"""The Chomsky-hierarchy length-generalisation tasks of Deletang et al. 2023 (categorical: one-hot tokens
in, one class per output step out; ``tasks.chomsky.base`` has the format). Regular: parity check, even
pairs, modular arithmetic, cycle navigation; deterministic context-free: modular arithmetic with brackets,
reverse string, stack manipulation; context-sensitive: duplicate string, missing duplicate, odds first,
binary addition, bucket sort. (Not here: their solve equation, binary multiplication, compute sqrt.)"""

from .base import ChomskyTask
from .binary_addition import BinaryAdditionTask
from .bucket_sort import BucketSortTask
from .cycle_navigation import CycleNavigationTask
from .duplicate_string import DuplicateStringTask
from .even_pairs import EvenPairsTask
from .missing_duplicate import MissingDuplicateTask
from .modular_arithmetic import ModularArithmeticTask
from .modular_arithmetic_brackets import ModularArithmeticBracketsTask
from .odds_first import OddsFirstTask
from .parity_check import ParityCheckTask
from .reverse_string import ReverseStringTask
from .stack_manipulation import StackManipulationTask

CHOMSKY_TASKS: dict[str, type[ChomskyTask]] = {
    "parity_check": ParityCheckTask,
    "even_pairs": EvenPairsTask,
    "modular_arithmetic": ModularArithmeticTask,
    "cycle_navigation": CycleNavigationTask,
    "modular_arithmetic_brackets": ModularArithmeticBracketsTask,
    "reverse_string": ReverseStringTask,
    "stack_manipulation": StackManipulationTask,
    "duplicate_string": DuplicateStringTask,
    "missing_duplicate": MissingDuplicateTask,
    "odds_first": OddsFirstTask,
    "binary_addition": BinaryAdditionTask,
    "bucket_sort": BucketSortTask,
}

__all__ = [
    "CHOMSKY_TASKS",
    "ChomskyTask",
    "BinaryAdditionTask",
    "BucketSortTask",
    "CycleNavigationTask",
    "DuplicateStringTask",
    "EvenPairsTask",
    "MissingDuplicateTask",
    "ModularArithmeticBracketsTask",
    "ModularArithmeticTask",
    "OddsFirstTask",
    "ParityCheckTask",
    "ReverseStringTask",
    "StackManipulationTask",
]
