"""The results layer shared by training, ``mann-zoo bench`` and ``mann-zoo report``: the two tables the benchmark
writes (their columns and pandas dtypes), reading and writing them, the summary per task and model, the names of
logged validation metrics and the count of sequences seen (no figures, no training).

- ``results.csv`` (``RESULT_COLUMNS``): one row per run and validation set, the run's columns
  (``RUN_COLUMNS``) then the set's (``SET_COLUMNS``);
- ``curves.csv`` (``CURVE_COLUMNS``): one row per run, logged step and metric.

Dtypes are pandas' nullable ones, so a value that may be missing reads as ``<NA>``: a run that did not
converge has no ``sequences_to_convergence``, a task without a Bayes-optimal reference no ``reference_bits``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..training.atomic import atomic_write_text

ADDRESSING_MODELS = ("ntm", "dnc")  # trained on copy, their weightings over time are drawn by the report

METRICS = ("cost_bits", "bit_errors", "seq_accuracy", "token_accuracy")  # on every validation set (training.lightning_module)

RUN_COLUMNS = {  # one run: what RunSummary writes to result.json's "summary"
    "run_id": "string", "task": "string", "model": "string", "seed": "Int64", "steps": "Int64",
    "sequences": "Int64", "train_time_s": "Float64", "val_time_s": "Float64", "converged": "boolean",
    "sequences_to_convergence": "Int64", "wall_time_to_convergence_s": "Float64", "step_time_ms": "Float64",
    "peak_memory_mb": "Float64", "num_parameters": "Int64", "batch_size": "Int64", "world_size": "Int64",
    "versions": "string", "hardware": "string", "status": "string", "note": "string",
}
# status: "finished" (trained to its budget or to convergence), "stopped" (by SIGTERM or Ctrl-C: resumable),
# "diverged" (a non-finite loss stopped it; note: at which step), "failed" (the process exited with an error;
# note: its log).
STATUSES = ("finished", "stopped", "diverged", "failed")
# Columns added after tables were committed: a table without them reads with these values.
LATER_COLUMNS = {"status": "finished", "note": pd.NA, "val_time_s": pd.NA, "token_accuracy": pd.NA,
                 "state_size": pd.NA}
SET_COLUMNS = {  # one validation set of a run: result.json's "sets"
    # state_size: numbers the model carries from step to step at the set's length (models.state_size)
    "val_set": "string", "val_steps": "Int64", "state_size": "Int64", "reference_bits": "Float64",
    **{metric: "Float64" for metric in METRICS},
}
RESULT_COLUMNS = {**RUN_COLUMNS, **SET_COLUMNS}
CURVE_COLUMNS = {
    "run_id": "string", "task": "string", "model": "string", "seed": "Int64", "step": "Int64",
    "sequences": "Int64", "metric": "string", "value": "Float64",
}

# --- names shared with training ---------------------------------------------------------------


def metric_key(val_set: str, metric: str) -> str:
    """The logged name of ``metric`` on validation set ``val_set``: ``val/<set>/<metric>``."""
    return f"val/{val_set}/{metric}"


# What each run logs to W&B besides the CSV's scalars (RunSummary, at the end of training), and what
# 'mann-zoo bench cost' logs: the keys the dashboard's panels read (experiments.dashboard).
GENERALISATION_TABLE = "generalisation/table"  # columns GENERALISATION_TABLE_COLUMNS, one row per validation set
GENERALISATION_PLOT = "generalisation/bit_errors_vs_steps"  # bit errors per sequence against sequence steps
GENERALISATION_TABLE_COLUMNS = ("val_set", "steps", "bit_errors", "seq_accuracy", "cost_bits")
COST_TABLE = "cost/table"  # the rows of cost.csv
COST_PLOT = "cost/step_ms_vs_slots"  # ms per training step against memory slots N, one line per model
SUMMARY_KEYS = ("sequences", "train_time_s", "converged", "sequences_to_convergence", "step_time_ms",
                "num_parameters")  # of RunSummary's summary, the ones the dashboard's results table shows


# What a validation set's name says about its sequences (``len_1-20``, ``items_6``, ``len_10_rep_20``,
# ``in_20_out_16``, ``len_64_pairs_4``: the tasks' val_specs).
SET_NAME = re.compile(r"[a-z]+_\d+(?:-\d+)?(?:_[a-z]+_\d+(?:-\d+)?)*")
SIZE_PART = re.compile(r"([a-z]+)_(\d+)(?:-(\d+))?")


def set_sizes(val_set: str) -> dict[str, tuple[int, int]] | None:
    """The sizes in a validation set's name, each as (lowest, highest): ``len_1-10_rep_20`` ->
    ``{"len": (1, 10), "rep": (20, 20)}``; None for a name that is not made of sizes."""
    if not SET_NAME.fullmatch(val_set):
        return None
    return {name: (int(low), int(high or low)) for name, low, high in SIZE_PART.findall(val_set)}


def is_metric_key(key: str) -> bool:
    """Whether ``key`` names a validation metric (``val/<set>/<metric>``, both parts non-empty)."""
    val_set, _, metric = key.removeprefix("val/").rpartition("/")
    return key.startswith("val/") and bool(val_set) and bool(metric)


def parse_metric_key(key: str) -> tuple[str, str]:
    """``(val_set, metric)`` of a key made by :func:`metric_key`."""
    if not is_metric_key(key):
        raise ValueError(f"metric key {key!r}: expected val/<set>/<metric>")
    val_set, _, metric = key.removeprefix("val/").rpartition("/")
    return val_set, metric


def sequences_seen(step, batch_size, world_size):
    """Training sequences seen after ``step`` optimiser steps of ``batch_size`` sequences on each of
    ``world_size`` processes (element-wise for arrays and Series)."""
    return step * batch_size * world_size


# --- reading and writing ----------------------------------------------------------------------


def _truth(value) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{value!r} is neither True nor False")


def _cast(values: pd.Series, dtype: str) -> pd.Series:
    """``values`` (text as read from CSV, Python values or already typed) as ``dtype``."""
    if dtype in ("Int64", "Float64") and not pd.api.types.is_numeric_dtype(values):
        values = pd.to_numeric(values)
    elif dtype == "boolean" and not pd.api.types.is_bool_dtype(values):
        values = values.map(_truth, na_action="ignore")
    return values.astype(dtype)


def empty_table(columns: dict[str, str]) -> pd.DataFrame:
    """A table without rows, with ``columns`` (name: dtype)."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """``frame``'s ``columns`` (name: dtype), in that order and of those dtypes; other columns are left out.
    A ValueError names the first column missing or not castable."""
    cast = {}
    for name, dtype in columns.items():
        if name not in frame.columns and name in LATER_COLUMNS:
            frame = frame.assign(**{name: LATER_COLUMNS[name]})
        if name not in frame.columns:
            raise ValueError(f"column {name!r}: missing")
        try:
            cast[name] = _cast(frame[name], dtype)
        except (TypeError, ValueError) as error:
            raise ValueError(f"column {name!r}: not {dtype}: {error}") from None
    return pd.DataFrame(cast, index=frame.index)


def load_table(path: Path | str, columns: dict[str, str]) -> pd.DataFrame:
    """The table in CSV file ``path``, typed by ``columns``; a table without rows if there is no file."""
    path = Path(path)
    if not path.is_file():
        return empty_table(columns)
    try:
        return typed(pd.read_csv(path, dtype=str), columns)  # text first: a bad cell's error names its column
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def load_results(path: Path | str) -> pd.DataFrame:
    """The results table (``RESULT_COLUMNS``) in ``path``: one row per run and validation set."""
    return load_table(path, RESULT_COLUMNS)


def load_curves(path: Path | str) -> pd.DataFrame:
    """The learning curves (``CURVE_COLUMNS``) in ``path``: one row per run, logged step and metric."""
    return load_table(path, CURVE_COLUMNS)


def table_columns(frame: pd.DataFrame) -> dict[str, str]:
    """The schema whose columns ``frame`` has: the results table's, else the curves table's."""
    for columns in (RESULT_COLUMNS, CURVE_COLUMNS):
        if set(columns) <= set(frame.columns):
            return columns
    missing = sorted(set(CURVE_COLUMNS) - set(frame.columns))
    raise ValueError(f"column {missing[0]!r}: missing (neither a results nor a curves table)")


def save_table(frame: pd.DataFrame, path: Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Write ``frame`` to ``path`` as CSV, atomically, with ``columns`` in schema order (by default the
    results or the curves table's, whichever ``frame`` has; other columns are left out). Missing values are
    empty cells; lines end in CRLF like the committed tables (the csv module's dialect). Returns the
    typed table as written."""
    table = typed(frame, columns or table_columns(frame))
    atomic_write_text(path, table.to_csv(index=False, lineterminator="\r\n"))
    return table


# --- summaries --------------------------------------------------------------------------------


def set_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per task, model and validation set (in the order first seen), medians over the runs.

    Columns: task, model, val_set, val_steps (the longest sequence of the set), reference_bits, cost_bits,
    bit_errors, seq_accuracy; ``<NA>`` where no run has the value.
    """
    medians = {name: (name, "median") for name in ("reference_bits", *METRICS)}
    return (results.groupby(["task", "model", "val_set"], sort=False)
            .agg(val_steps=("val_steps", "max"), **medians).reset_index())


def unfinished(results: pd.DataFrame) -> pd.Series:
    """Rows of runs stopped part-way (status ``stopped``, not converged): carried to be resumed, neither a
    success nor a failure yet."""
    return results["status"].eq("stopped").fillna(False) & ~results["converged"].fillna(False).astype(bool)


def seed_list(seeds: pd.Series, open_: pd.Series) -> str:
    """The seeds sorted and joined by spaces, an unfinished run's (``open_``) marked ``*``; missing seeds left out."""
    pairs = sorted((int(seed), bool(o)) for seed, o in zip(seeds, open_) if pd.notna(seed))
    return " ".join(f"{seed}{'*' if o else ''}" for seed, o in pairs)


def pooled(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` without the unfinished runs of each task and model that has a finished run: medians pool
    runs where they ended, and a run stopped part-way counts where it stands only while it is the only kind."""
    open_ = unfinished(results)
    has_finished = (~open_).groupby([results["task"], results["model"]], sort=False).transform("any")
    return results[~(open_ & has_finished)]


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per task and model (in the order first seen), medians over seeds.

    ``results``: the results table (``RESULT_COLUMNS``). Columns: task, model, runs, converged (runs that
    converged), sequences (trained), sequences_to_convergence and wall_time_to_convergence_s (over the runs
    that converged; ``<NA>`` if none did), cost (on the first set, the training distribution) and
    optimal_cost (its Bayes-optimal reference), first_set and longest_set (the set of the longest
    sequences), first_errors and longest_errors (bit errors per sequence on them), step_ms, params,
    diverged and failed (runs with that status; the medians leave failed runs out), unfinished (runs stopped
    part-way, left out of every count and median where the task and model has a finished run: ``pooled``)
    and unfinished_left_out.
    """
    columns = ["task", "model", "runs", "diverged", "failed", "converged", "sequences", "sequences_to_convergence",
               "wall_time_to_convergence_s", "cost", "optimal_cost", "first_set", "longest_set", "first_errors",
               "longest_errors", "step_ms", "params", "unfinished", "unfinished_left_out"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    every_run = results.drop_duplicates(["task", "model", "run_id"])
    results = pooled(results)
    per_run = results.drop_duplicates(["task", "model", "run_id"])
    open_counts = pd.DataFrame({
        "unfinished": unfinished(every_run).groupby([every_run["task"], every_run["model"]], sort=False).sum(),
        "unfinished_left_out": every_run.groupby(["task", "model"], sort=False).size()
        - per_run.groupby(["task", "model"], sort=False).size()}).astype(int)
    counts = per_run.groupby(["task", "model"], sort=False).agg(
        runs=("run_id", "size"), diverged=("status", lambda s: int((s == "diverged").sum())),
        failed=("status", lambda s: int((s == "failed").sum())))
    results = results[results["status"] != "failed"]
    runs = (results.drop_duplicates(["task", "model", "run_id"])
            .groupby(["task", "model"], sort=False)
            .agg(converged=("converged", "sum"), sequences=("sequences", "median"),
                 sequences_to_convergence=("sequences_to_convergence", "median"),
                 wall_time_to_convergence_s=("wall_time_to_convergence_s", "median"),
                 step_ms=("step_time_ms", "median"), params=("num_parameters", "median")))
    sets = set_summary(results)
    by_model = sets.groupby(["task", "model"], sort=False)
    first = by_model.head(1).set_index(["task", "model"])
    longest = (sets.assign(val_steps=sets["val_steps"].fillna(0))
               .loc[lambda s: s.groupby(["task", "model"], sort=False)["val_steps"].idxmax()]
               .set_index(["task", "model"]))
    picks = pd.DataFrame({"cost": first["cost_bits"], "optimal_cost": first["reference_bits"],
                          "first_set": first["val_set"], "longest_set": longest["val_set"],
                          "first_errors": first["bit_errors"], "longest_errors": longest["bit_errors"]})
    return counts.join(runs).join(picks).join(open_counts).reset_index()[columns]


def convergence_statistics(results: pd.DataFrame) -> pd.DataFrame:
    """Per task and model (in the order first seen), what the reference suites report over seeds (issue 12):

    runs (failed runs and unfinished ones left out), unfinished (runs stopped before they converged or
    reached their budget: carried to be resumed, neither a success nor a failure yet), seeds (sorted,
    joined by spaces; an unfinished run's seed marked ``*``), converged and diverged (counts of runs),
    success_rate (converged / runs; NaN without runs), divergence_rate (a non-finite loss stopped them / runs), the median and interquartile range (25th and
    75th percentiles, linear interpolation) of sequences_to_convergence and of wall_time_to_convergence_s
    over the converged runs (``<NA>`` if none converged), and the best run (fewest sequences to
    convergence: best_run, best_sequences). ``results``: the results table (``RESULT_COLUMNS``).
    """
    columns = ["task", "model", "runs", "unfinished", "seeds", "converged", "diverged", "success_rate", "divergence_rate",
               "sequences_median", "sequences_q25", "sequences_q75", "wall_time_median_s", "wall_time_q25_s",
               "wall_time_q75_s", "best_run", "best_sequences"]
    rows = []
    per_run = results[results["status"] != "failed"].drop_duplicates(["task", "model", "run_id"])
    for (task, model), every_run in per_run.groupby(["task", "model"], sort=False):
        open_ = unfinished(every_run)
        runs = every_run[~open_]
        converged = runs[runs["converged"].fillna(False).astype(bool)]
        diverged = int((runs["status"] == "diverged").sum())
        sequences = converged["sequences_to_convergence"].astype("Float64").dropna()
        wall = converged["wall_time_to_convergence_s"].astype("Float64").dropna()
        best = converged.loc[converged["sequences_to_convergence"].idxmin()] if not sequences.empty else None
        quantiles = lambda values, q: values.quantile(q) if not values.empty else pd.NA  # noqa: E731
        share = lambda count: count / len(runs) if len(runs) else float("nan")  # noqa: E731
        rows.append({"task": task, "model": model, "runs": len(runs), "unfinished": int(open_.sum()),
                     "seeds": seed_list(every_run["seed"], open_), "converged": len(converged), "diverged": diverged,
                     "success_rate": share(len(converged)), "divergence_rate": share(float(diverged)),
                     "sequences_median": quantiles(sequences, 0.5), "sequences_q25": quantiles(sequences, 0.25),
                     "sequences_q75": quantiles(sequences, 0.75), "wall_time_median_s": quantiles(wall, 0.5),
                     "wall_time_q25_s": quantiles(wall, 0.25), "wall_time_q75_s": quantiles(wall, 0.75),
                     "best_run": None if best is None else best["run_id"],
                     "best_sequences": pd.NA if best is None else best["sequences_to_convergence"]})
    return pd.DataFrame(rows, columns=columns).astype({"seeds": "string", "best_run": "string"})


def result_summary(run_folder: Path) -> dict | None:
    """The summary (``RUN_COLUMNS``) in the ``result.json`` that ``RunSummary`` writes to ``run_folder``;
    None before the run has written one."""
    result = run_folder / "result.json"
    return json.loads(result.read_text())["summary"] if result.is_file() else None


def format_value(value, pattern: str, missing: str = "-") -> str:
    """``pattern.format(value)``, or ``missing`` for a missing value (``None``, ``<NA>``, NaN)."""
    return missing if value is None or pd.isna(value) else pattern.format(value)


# --- run records to tables -------------------------------------------------------------------

# The training metrics kept in curves.csv beside val/: cost, bit errors and, where a Curriculum runs, its level.
TRAIN_CURVES = ("train/cost_bits", "train/bit_errors", "train/curriculum_max_length")


def run_tables(directory: Path, data: dict) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows of one run (its ``result.json`` as ``data``) in the results table, and its curves from
    ``metrics.csv`` (None without one, or without the batch size that counts its sequences)."""
    summary = {**LATER_COLUMNS, **{k: v for k, v in data["summary"].items() if v is not None}}
    run = [{**{k: summary.get(k) for k in RUN_COLUMNS}, **{k: row.get(k) for k in SET_COLUMNS}}
           for row in data["sets"] or [{}]]  # a run that failed before validating: one row, no set
    metrics = directory / "metrics.csv"
    # A run recorded as failed before it wrote a result has no batch size to count its sequences by.
    counted = metrics.is_file() and data["summary"].get("batch_size") is not None
    return (typed(pd.DataFrame(run, columns=list(RESULT_COLUMNS)), RESULT_COLUMNS),
            _curves(metrics, data["summary"]) if counted else None)


def collect_runs(folder: Path, out: Path) -> Path:
    """The runs of ``mann-zoo fit`` under ``folder`` (each run folder with its ``result.json``), written
    as a grid's tables to ``out`` (``results.csv``, ``curves.csv``) so that the report can read them
    beside the benchmark grids; a run's id is its folder relative to ``folder``. Returns ``out``."""
    rows, curves = [], []
    for result in sorted(folder.rglob("result.json")):
        data = json.loads(result.read_text())
        run_id = str(result.parent.relative_to(folder)) if result.parent != folder else folder.name
        data["summary"]["run_id"] = run_id
        run_rows, run_curves = run_tables(result.parent, data)
        rows.append(run_rows)
        curves.append(run_curves)
    save_table(without_unstarted(stack(rows, RESULT_COLUMNS)), out / "results.csv", RESULT_COLUMNS)
    save_table(stack(curves, CURVE_COLUMNS), out / "curves.csv", CURVE_COLUMNS)
    return out


def without_unstarted(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` minus the rows of runs stopped before their first step (nothing to record: such a run
    starts from 0 next time); failed runs keep their rows, whatever their steps."""
    unstarted = results["steps"].eq(0).fillna(False) & results["status"].eq("stopped").fillna(False)
    return results[~unstarted].reset_index(drop=True)


def stack(tables: list[pd.DataFrame | None], columns: dict[str, str]) -> pd.DataFrame:
    """The rows of ``tables`` (typed by ``columns``; None and tables without rows left out), one after the other."""
    tables = [table for table in tables if table is not None and not table.empty]
    return pd.concat(tables, ignore_index=True) if tables else empty_table(columns)


def _curves(metrics: Path, summary: dict) -> pd.DataFrame:
    """Tidy learning curves (``CURVE_COLUMNS``) from a run's CSV log: validation metrics and the training
    cost and bit errors, row by row of the log. The log's step counts from 0: the curves' from 1."""
    log = pd.read_csv(metrics)
    keep = [key for key in log.columns if is_metric_key(key) or key in TRAIN_CURVES]
    if "step" not in log.columns or not keep:
        return empty_table(CURVE_COLUMNS)
    log = log[log["step"].notna()]
    values = log.set_index(log["step"].astype(int) + 1)[keep].stack().dropna()  # (step, metric) -> value
    step = values.index.get_level_values(0)
    curves = pd.DataFrame({"run_id": summary["run_id"], "task": summary["task"], "model": summary["model"],
                           "seed": summary["seed"], "step": step,
                           "sequences": sequences_seen(step, summary["batch_size"], summary["world_size"]),
                           "metric": values.index.get_level_values(1), "value": values.to_numpy(dtype=float)})
    return typed(curves, CURVE_COLUMNS)


