"""The cost model of ``mann-zoo bench cost`` in one place: its terms, the least-squares fit and the prediction,
and what the sweep held fixed.

    T = T_controller + c + a N W            (NTM: every op is O(N W))
    T = T_controller + c + a N W + b N^2    (DNC: the link matrix is N x N)

T is the training-step time in ms at N memory slots of W words; c (``fixed_ms``) is the fixed cost of the
memory operations, a and b (``ns_per_NW``, ``ns_per_N2``) are in ns. ``cost.py`` measures and fits,
``report.py`` draws the fit with :func:`predict`; neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# What `mann-zoo bench cost` measures: copy batches of 32 sequences of length 20 (2 x 20 + 1 = 41 steps);
# N is swept at W = 20 (--width), W at N = 128.
BATCH_SIZE = 32
COPY_LENGTH = 20
SEQUENCE_STEPS = 2 * COPY_LENGTH + 1
N_SWEEP_WORD_SIZE = 20
W_SWEEP_MEMORY_SLOTS = 128

# A term of the model: its fit-file column and that column's units per ms (c in ms, a and b in ns).
COEFFICIENTS = {"fixed": ("fixed_ms", 1.0), "NW": ("ns_per_NW", 1e6), "N2": ("ns_per_N2", 1e6)}


def model_terms(model: str) -> list[str]:
    """The terms of ``model``'s cost: a fixed cost and N W, plus N^2 for a DNC (its link matrix)."""
    return ["fixed", "NW", "N2"] if model.startswith("dnc") else ["fixed", "NW"]


def term_values(memory_slots, word_size) -> dict[str, np.ndarray]:
    """Each term's value at ``memory_slots`` N and ``word_size`` W (numbers or arrays of one shape)."""
    n, w = np.asarray(memory_slots, dtype=float), np.asarray(word_size, dtype=float)
    return {"fixed": np.ones_like(n * w), "NW": n * w, "N2": n * n}


def fit_cost_model(rows: list[dict], model: str, base_ms: float) -> dict:
    """Least-squares fit of T - T_controller over ``rows`` of ``model`` (dicts with memory_slots,
    word_size, step_ms; ``base_ms`` is T_controller).

    Returns the fit-file row: model, controller_ms, fixed_ms, ns_per_NW, ns_per_N2 (None without that
    term), r2, points; ``{}`` with fewer than three points. Costs cannot be negative: a term whose fitted
    coefficient is negative is dropped and the fit redone (the W sweep is small beside the DNC's N^2 term,
    so N W and N^2 are not always separable).
    """
    data = [r for r in rows if r["model"] == model]
    if len(data) < 3:
        return {}
    values = term_values([r["memory_slots"] for r in data], [r["word_size"] for r in data])
    y = np.array([r["step_ms"] for r in data]) - base_ms
    terms = model_terms(model)
    while True:
        design = np.stack([values[name] for name in terms], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        negative = [name for name, c in zip(terms, coef) if name != "fixed" and c < 0]
        if not negative:
            break
        terms.remove(negative[0])
    coefficients = dict(zip(terms, coef))
    predicted = design @ coef
    r2 = 1 - ((y - predicted) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
    return {"model": model, "controller_ms": base_ms,
            **{column: (coefficients[name] * per_ms if name in coefficients else (None if name == "N2" else 0.0))
               for name, (column, per_ms) in COEFFICIENTS.items()},
            "r2": float(r2), "points": len(data)}


def predict(fit_row, memory_slots, word_size):
    """The step time in ms, controller included, that the fit ``fit_row`` (a row of ``cost_fit.csv``: a
    dict or Series) predicts at ``memory_slots`` N and ``word_size`` W (numbers or arrays of one shape)."""
    total = float(fit_row["controller_ms"])
    for name, value in term_values(memory_slots, word_size).items():
        column, per_ms = COEFFICIENTS[name]
        coefficient = fit_row.get(column)
        if coefficient is not None and not pd.isna(coefficient):
            total = total + float(coefficient) / per_ms * value
    return total


@dataclass(frozen=True)
class Sweep:
    """What a cost sweep held fixed: sequences per batch, time steps per sequence, W of the N sweep and N
    of the W sweep."""

    batch_size: int = BATCH_SIZE
    sequence_steps: int = SEQUENCE_STEPS
    n_sweep_word_size: int = N_SWEEP_WORD_SIZE
    w_sweep_memory_slots: int = W_SWEEP_MEMORY_SLOTS


SWEEP_COLUMNS = ["batch_size", "sequence_steps", "n_sweep_word_size", "w_sweep_memory_slots"]


def sweep_of(cost: pd.DataFrame) -> Sweep:
    """The settings of the sweep in ``cost`` (the rows of ``cost.csv``), from its columns ``SWEEP_COLUMNS``.

    A ``cost.csv`` written before those columns (the committed one) gets the values ``cost.py`` used then:
    batch 32, 41 steps, N = 128 for the W sweep, and for the N sweep the most common word size.
    """
    values = {name: int(cost[name].dropna().iloc[0]) for name in SWEEP_COLUMNS
              if name in cost.columns and cost[name].notna().any()}
    if "n_sweep_word_size" not in values:
        widths = cost.loc[cost["model"] != "controller", "word_size"]
        if not widths.empty:
            values["n_sweep_word_size"] = int(widths.mode().iloc[0])
    return Sweep(**values)


def load_cost(path: Path) -> pd.DataFrame:
    """The rows of a ``cost.csv`` or ``cost_fit.csv``; a table without rows if there is no file."""
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()
