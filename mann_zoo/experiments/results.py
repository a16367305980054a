"""The results layer shared by training, ``mann-zoo bench`` and ``mann-zoo report``: the names of logged
validation metrics and the count of sequences seen, reading the tables the benchmark writes and summarising
them per task and model (no figures, no training)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

ADDRESSING_MODELS = ("ntm", "dnc")  # trained on copy, their weightings over time are drawn by the report

METRICS = ("cost_bits", "bit_errors", "seq_accuracy")  # measured on every validation set (training.lightning_module)

# --- names shared with training ---------------------------------------------------------------


def metric_key(val_set: str, metric: str) -> str:
    """The logged name of ``metric`` on validation set ``val_set``: ``val/<set>/<metric>``."""
    return f"val/{val_set}/{metric}"


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


def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV file as dicts of strings; none if the file does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def median(values: list[float]) -> float:
    """The median of ``values`` (the mean of the two middle ones for an even count)."""
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def group_by(rows: list[dict], *keys: str) -> dict:
    """Rows grouped by the values of ``keys`` (one key: the value; several: a tuple), in first-seen order."""
    groups = defaultdict(list)
    for row in rows:
        groups[row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)].append(row)
    return groups


def summarise(results: list[dict]) -> list[dict]:
    """Per task and model (rows of the results table, as read from CSV), medians over seeds: runs,
    converged runs, sequences trained and to convergence, the cost on the first (training) set and its
    Bayes-optimal reference, bit errors on the first and the longest set, ms/step, parameters."""
    summaries = []
    for (task, model), rows in group_by(results, "task", "model").items():
        runs = {r["run_id"]: r for r in rows}
        sets = list(dict.fromkeys(r["val_set"] for r in rows))
        first = sets[0]
        longest = max(sets, key=lambda s: max(int(float(r["val_steps"] or 0)) for r in rows if r["val_set"] == s))
        conv = [float(r["sequences_to_convergence"]) for r in runs.values() if r["sequences_to_convergence"] not in ("", None)]
        optimal = [float(r["reference_bits"]) for r in rows if r["val_set"] == first and r.get("reference_bits") not in ("", None)]
        summaries.append({
            "task": task, "model": model, "runs": len(runs),
            "converged": sum(r["converged"] == "True" for r in runs.values()),
            "sequences": median([float(r["sequences"]) for r in runs.values()]),
            "sequences_to_convergence": median(conv) if conv else None,
            "cost": median([float(r["cost_bits"]) for r in rows if r["val_set"] == first]),
            "optimal_cost": median(optimal) if optimal else None,
            "first_set": first, "longest_set": longest,
            **{f"{name}_errors": median([float(r["bit_errors"]) for r in rows if r["val_set"] == s])
               for name, s in (("first", first), ("longest", longest))},
            "step_ms": median([float(r["step_time_ms"]) for r in runs.values()]),
            "params": median([float(r["num_parameters"]) for r in runs.values()]),
        })
    return summaries
