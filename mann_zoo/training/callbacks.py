"""Lightning callbacks of mann-zoo."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..experiments.results import (
    GENERALISATION_PLOT,
    GENERALISATION_TABLE,
    GENERALISATION_TABLE_COLUMNS,
    METRICS,
    metric_key,
    sequences_seen,
)
from ..experiments.baseline import checkout_revision
from ..experiments.runner import PROGRESS_PREFIX
from ..models.state_size import state_size
from .atomic import atomic_write_text


class ParameterDigest(L.Callback):
    """At the end of training every process writes a digest of its parameters to
    ``<dirpath>/parameter_digest_rank<r>.json``: data-parallel processes must agree exactly; and of the
    inputs of the batches it trained on (``batch_sums``): they must differ between processes."""

    def __init__(self, dirpath: str = "."):
        self.dirpath = Path(dirpath)
        self.batch_sums: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_sums.append(float(batch[0].double().sum() + (batch[0].double() * 0.5 ** torch.arange(
            batch[0].shape[1], dtype=torch.float64, device=batch[0].device).view(1, -1, 1)).sum()))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            flat = torch.cat([p.detach().double().flatten().cpu() for p in pl_module.parameters()])
        digest = {"rank": trainer.global_rank, "world_size": trainer.world_size, "step": trainer.global_step,
                  "sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(), "first": flat[:8].tolist(),
                  "batches_consumed": getattr(trainer.datamodule, "next_batch", None), "batch_sums": self.batch_sums}
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / f"parameter_digest_rank{trainer.global_rank}.json").write_text(json.dumps(digest))


class Curriculum(L.Callback):
    """Raise the task's maximum training length as the model masters the current one.

    After every training step, an exponential moving average of the training bit errors per sequence is
    compared with ``threshold``; below it, the task's curriculum length grows by ``increment`` (up to the
    task's ``max_length``) and the average starts again. After a change the average must cover at least
    ``ceil(1 / smoothing)`` steps (its time constant) before the next: the batch that Lightning fetched
    ahead still has the old length, and alone it would pass the next step too. The curriculum length lives in the
    datamodule's state, so a resumed run continues where it was. Start a curriculum with
    ``--data.curriculum_max_length L0 --trainer.callbacks+=mann_zoo.training.callbacks.Curriculum``.

    Args:
        threshold: bit errors per sequence below which the current length counts as mastered.
        increment: how much the maximum length grows each time.
        smoothing: weight of the newest batch in the moving average.
    """

    def __init__(self, threshold: float = 0.1, increment: int = 2, smoothing: float = 0.05):
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if increment < 1:
            raise ValueError(f"increment must be >= 1, got {increment}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.threshold, self.increment, self.smoothing = threshold, increment, smoothing
        self.min_steps = math.ceil(1 / smoothing)  # steps at one length before the next change
        self.average: float | None = None
        self.steps = 0  # steps averaged since the last change

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        task = trainer.datamodule
        errors = trainer.callback_metrics.get("train/bit_errors")
        if errors is None or task is None or getattr(task, "_curriculum_max_length", None) is None:
            return
        value = float(errors)
        self.average = value if self.average is None else (1 - self.smoothing) * self.average + self.smoothing * value
        self.steps += 1
        current, (_, maximum) = task.current_max_length, task.length_range()
        if self.steps >= self.min_steps and self.average < self.threshold and current < maximum:
            task.set_curriculum_max_length(min(current + self.increment, maximum))
            self.average, self.steps = None, 0
        pl_module.log("train/curriculum_max_length", float(task.current_max_length), on_step=True, on_epoch=False)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, labelled for step-based training: the training stream is endless,
    so the run has one never-ending epoch and "Epoch 0/-2" would only confuse."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Training':{len(self.validation_description)}}"

    @property
    def total_train_batches(self) -> int | float:
        """The step budget: the bar counts steps from 0 (batch_idx continues across a resume), so its total
        is ``max_steps``, not the steps left when the run resumed."""
        max_steps = self.trainer.max_steps
        return max_steps if max_steps and max_steps > 0 else super().total_train_batches

    def get_metrics(self, trainer, pl_module) -> dict:
        """The training bit errors and cost (logged with ``prog_bar=True``) under short names, without the
        logger's version (``v_num``: an id that says nothing about the run's progress)."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        short = {"train/bit_errors": "bit errors", "train/cost_bits": "cost"}
        return {short.get(name, name): value for name, value in metrics.items()}


def cpu_name() -> str:
    """The processor's model name where the system tells it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_converged(trainer: L.Trainer, threshold: float) -> bool:
    """Whether the last validation had fewer than ``threshold`` bit errors per sequence on the first
    validation set (the training distribution): the convergence criterion of Collier & Beel 2018."""
    errors = trainer.callback_metrics.get(metric_key(trainer.datamodule.val_names[0], "bit_errors"))
    return errors is not None and float(errors) < threshold


def check_patience(patience: int) -> int:
    """``patience`` (validations in a row below the threshold that make convergence), checked: an integer >= 1."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    return patience


class RunSummary(L.Callback):
    """Tracks what a benchmark reports for a run and writes it, when training ends, to
    ``<dirpath>/result.json`` (atomically) and into the W&B run's summary under the same names.

    Convergence (Collier & Beel 2018): fewer than ``threshold`` bit errors per sequence on the first
    validation set, which follows the training distribution, at ``patience`` validations in a row (the
    point of convergence is the first of them). Training wall time, sequences seen and
    the convergence point survive a resume (they are part of the checkpoint).
    """

    def __init__(self, dirpath: str = ".", threshold: float = 0.1, run_id: str | None = None, patience: int = 1):
        self.dirpath, self.threshold, self.run_id = Path(dirpath), threshold, run_id
        self.patience = check_patience(patience)
        self.train_seconds = 0.0
        self.val_seconds = 0.0  # time spent validating (not in train_seconds): for compute plans
        self.converged_at: dict | None = None
        self.below: list[dict] = []  # the validations below threshold since the last one above it
        self.step_times: list[float] = []
        self._start = None
        self._val_start = None
        self.written = False  # whether this process wrote result.json (a fit resumed at its budget does not)
        self.revision = checkout_revision()  # the code this process loaded: read now, not when a commit may have landed

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds, "val_seconds": self.val_seconds,
                "converged_at": self.converged_at, "below": self.below, "step_times": self.step_times[-2000:]}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = state["train_seconds"]
        self.val_seconds = state.get("val_seconds", 0.0)  # checkpoints from before these two were kept
        self.converged_at = state["converged_at"]
        self.below = list(state.get("below", []))
        self.step_times = list(state["step_times"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs is None:  # a skipped (diverged) step
            return
        elapsed = time.perf_counter() - self._start
        self.train_seconds += elapsed
        self.step_times.append(elapsed)

    def _sequences(self, trainer) -> int:
        return sequences_seen(trainer.global_step, trainer.datamodule.batch_size, trainer.world_size)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            train = trainer.callback_metrics.get("train/bit_errors")
            first = trainer.datamodule.val_names[0]
            val = trainer.callback_metrics.get(metric_key(first, "bit_errors"))
            print(f"{PROGRESS_PREFIX}step {trainer.global_step:,}, {self._sequences(trainer):,} sequences: bit errors "
                  f"{'-' if train is None else f'{float(train):.2f}'} (training batch), "
                  f"{'-' if val is None else f'{float(val):.2f}'} ({first})", flush=True)
        if self._val_start is not None:
            self.val_seconds += time.perf_counter() - self._val_start
        if self.converged_at is not None:
            return
        if not has_converged(trainer, self.threshold):
            self.below = []
            return
        self.below.append({"step": trainer.global_step, "sequences": self._sequences(trainer),
                           "wall_time_s": self.train_seconds})
        if len(self.below) >= self.patience:  # converged where the streak began
            self.converged_at = self.below[0]

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = None if trainer.sanity_checking else time.perf_counter()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Stopped from outside (SIGTERM, as ``mann-zoo bench`` passes on its own, or Ctrl-C): the result so
        far, with status ``stopped``; the same command resumes from the last checkpoint."""
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self.write(trainer, pl_module, status="stopped")

    def on_train_end(self, trainer, pl_module) -> None:
        self.write(trainer, pl_module)

    def write(self, trainer, pl_module, status: str | None = None) -> None:
        """Write ``result.json`` (and the W&B summary) as of now."""
        self.written = True
        if trainer.global_rank != 0:
            return
        metrics = trainer.callback_metrics
        task = trainer.datamodule
        sets = []
        for val_set in task.val_sets:
            keys = {m: metric_key(val_set.name, m) for m in METRICS}
            sets.append({"val_set": val_set.name, "val_steps": val_set.steps,
                         "state_size": state_size(pl_module.core, val_set.steps),
                         "reference_bits": val_set.bayes_optimal_bits_per_sequence,
                         **{m: float(metrics[key]) if key in metrics else None for m, key in keys.items()}})
        converged = self.converged_at or {}
        diverged_at = getattr(pl_module, "diverged_at", None)
        cuda = torch.cuda.is_available() and pl_module.device.type == "cuda"
        # the code that ran (its last segment, for a resumed run)
        revision = f" (git {self.revision})" if self.revision else ""
        summary = {
            "run_id": self.run_id, "task": task.name, "model": pl_module.core_name, "seed": task.seed,
            "steps": trainer.global_step, "sequences": self._sequences(trainer),
            "train_time_s": self.train_seconds, "val_time_s": self.val_seconds,
            "converged": self.converged_at is not None,
            "sequences_to_convergence": converged.get("sequences"),
            "wall_time_to_convergence_s": converged.get("wall_time_s"),
            "step_time_ms": 1e3 * statistics.median(self.step_times) if self.step_times else None,
            "peak_memory_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "num_parameters": pl_module.num_parameters,
            "batch_size": task.batch_size, "world_size": trainer.world_size,
            "versions": f"mann_zoo {__import__('mann_zoo').__version__}{revision}, torch {torch.__version__}, "
                        f"lightning {L.__version__}, python {platform.python_version()}",
            "hardware": (torch.cuda.get_device_name() if cuda else
                         f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"),
            "status": status or ("finished" if diverged_at is None else "diverged"),
            "note": None if diverged_at is None else f"non-finite loss at step {diverged_at}",
        }
        # The file first: the W&B calls below talk to a service, and a stopped run may not get to the end.
        atomic_write_text(self.dirpath / "result.json", json.dumps({"summary": summary, "sets": sets}, indent=1))
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "summary"):  # W&B: the same names as the results table
                experiment.summary.update({k: v for k, v in summary.items() if v is not None})
                for row in sets:
                    for m in METRICS:
                        if row[m] is not None:
                            experiment.summary[f"final/{row['val_set']}/{m}"] = row[m]
                experiment.log(generalisation_log(sets))


def generalisation_log(sets: list[dict]) -> dict:
    """W&B values of a run's generalisation: a table (one row per validation set: name, longest sequence
    in steps, bit errors, sequence accuracy, cost) and a line plot of bit errors against steps."""
    import wandb

    rows = [[row["val_set"], row["val_steps"], *(row[m] for m in ("bit_errors", "seq_accuracy", "cost_bits"))]
            for row in sets]
    table = wandb.Table(columns=list(GENERALISATION_TABLE_COLUMNS), data=rows)
    return {GENERALISATION_TABLE: table,
            GENERALISATION_PLOT: wandb.plot.line(table, "steps", "bit_errors",
                                                 title="bit errors per sequence against sequence steps")}


class StopAtConvergence(L.Callback):
    """Stop training once the bit errors per sequence on the first validation set (the training
    distribution) have stayed below ``threshold`` for ``patience`` validations in a row: Lightning's
    ``EarlyStopping`` with ``stopping_threshold``, without having to name the task's validation set."""

    def __init__(self, threshold: float = 0.1, patience: int = 1):
        self.threshold, self.patience = threshold, check_patience(patience)
        self.streak = 0

    def state_dict(self) -> dict:
        return {"streak": self.streak}

    def load_state_dict(self, state: dict) -> None:
        self.streak = state.get("streak", 0)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.streak = self.streak + 1 if has_converged(trainer, self.threshold) else 0
        if self.streak >= self.patience:
            trainer.should_stop = True
