"""A CSV log that survives a resume, and a W&B logger without Lightning's deprecated setting.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder already has one, so a resumed run (``--ckpt_path
last``) loses the curve logged before the checkpoint. :class:`ResumableCSVLogger` keeps the file and appends;
on the first step it logs, it drops the rows from that step on: those were logged after the checkpoint the
run resumed from, and are about to be logged again.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from .atomic import atomic_write_text

RUN_IN_USE_WAIT_S = 120  # how long a resumed run waits for the W&B run its killed attempt held


class _KeepingWriter(ExperimentWriter):
    """Lightning's writer, minus the deletion; the existing header is kept as the starting column set."""

    def __init__(self, log_dir: str) -> None:
        self._resumed = False
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv here
        pass

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        if not self._resumed and step is not None:
            self._resumed = True
            self._drop_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_from(self, step: int) -> None:
        """Keep only the rows logged before ``step`` (and none cut short: a run killed while its log was
        written leaves a last line without all its cells), rewriting the file atomically."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            fieldnames = list(reader.fieldnames or [])
            rows = [row for row in reader if None not in row.values() and _logged_before(row.get("step"), step)]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(Path(self.metrics_file_path), text.getvalue())



def _logged_before(cell: str | None, step: int) -> bool:
    """Whether a row's ``step`` cell (empty: logged without a step) is before ``step``; False if garbled."""
    if cell in (None, ""):
        return True
    try:
        return int(cell) < step
    except ValueError:
        return False


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps the history of a resumed run (see the module's docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class QuietWandbLogger(WandbLogger):
    """Lightning's W&B logger minus the ``anonymous`` setting it always passes to ``wandb.init`` (as None),
    which wandb deprecates with a warning printed on every run; and a resumed run waits (up to
    ``RUN_IN_USE_WAIT_S``) for its W&B run to be free while ``wandb.init`` refuses the id ("is in use"): the
    W&B service of an attempt that was just killed may still be shutting down (``mann-zoo bench``'s runner
    kills a killed attempt's service before retrying: ``experiments.runner.end_orphans``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self):
        waited = 0.0
        while True:
            try:
                return WandbLogger.experiment.fget(self)
            except Exception as error:  # noqa: BLE001 - wandb's ServerResponseError, by its message
                if "is in use" not in str(error) or waited >= RUN_IN_USE_WAIT_S:
                    raise
                time.sleep(2.0)
                waited += 2.0
