"""The cost model of ``mann-zoo bench cost`` in one place: its terms, the fit and the prediction, and what
the sweep held fixed.

    T = c + d N + a N W               (NTM: content look-up, read and write are O(N W); softmax, shift and
                                       sharpening over slots are O(N))
    T = c + d N + a N W + b N^2       (DNC, and the PyPI peer: the link matrix is N x N)
    T = c + d N + a N W + s N log2 N  (sparse DNC, K fixed: scores over all N W for the content look-ups,
                                       top-k over N; the rest O(K^2 + K W))

T is the training-step time (forward, backward, optimiser update; batch ``BATCH_SIZE``, ``SEQUENCE_STEPS``
steps) at N memory slots of W words; c is what does not grow with the memory: the controller and the
fixed cost of the memory operations (one call per operation per time step, whatever N). The controller
alone (an LSTMCell loop, timed in the same rounds: T_controller) is recorded beside the fit as a
reference, not subtracted: the NTM's and DNC's sequence kernels run their controller in C, faster than
that torch loop, so T - T_controller is negative at small N. Every coefficient is in microseconds per
training step per unit of its term (``TERMS``: c in us, d in us per slot, a in us per slot-word, b in us
per slot^2, s in us per slot x log2 slots: Rae et al.'s N K log N with K = 8 in the coefficient; top-k by
partial selection is O(N log K), so the fit may well leave it out).
``cost.py`` measures and fits, ``report.py`` draws the fit and its residuals with :func:`predict`;
neither imports the other.
"""

from __future__ import annotations

import itertools
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

# A term of the model: its fit-file column (the coefficient, in microseconds per training step per unit of
# the term) and how it is written in a formula.
TERMS = {"fixed": ("fixed_us", "1"), "N": ("us_per_N", "N"), "NW": ("us_per_NW", "N W"), "N2": ("us_per_N2", "N^2"),
         "NlogN": ("us_per_NlogN", "N log2 N")}
FIT_OF = "T"  # a fit-file row's ``fit_of``: the model fitted T itself (rows without it fitted T - T_controller)
LINK_MODELS = ("dnc", "pypi dnc")  # models whose cost has the N^2 term of a dense link matrix...
SPARSE_MODELS = ("dnc_sparse",)  # ...except the sparse DNC's


def has_dense_link(model: str) -> bool:
    """Whether ``model`` (a short name or the peer's) keeps an N x N link matrix."""
    return model.startswith(LINK_MODELS) and not model.startswith(SPARSE_MODELS)


def model_terms(model: str) -> list[str]:
    """The terms of ``model``'s cost: fixed, N and N W; N^2 as well for a dense DNC (its link matrix),
    N log2 N for the sparse DNC."""
    if model.startswith(SPARSE_MODELS):
        return ["fixed", "N", "NW", "NlogN"]
    return ["fixed", "N", "NW", "N2"] if has_dense_link(model) else ["fixed", "N", "NW"]


def term_values(memory_slots, word_size) -> dict[str, np.ndarray]:
    """Each term's value at ``memory_slots`` N and ``word_size`` W (numbers or arrays of one shape)."""
    n, w = np.asarray(memory_slots, dtype=float), np.asarray(word_size, dtype=float)
    return {"fixed": np.ones_like(n * w), "N": n * np.ones_like(w), "NW": n * w, "N2": n * n * np.ones_like(w),
            "NlogN": n * np.log2(np.maximum(n, 1)) * np.ones_like(w)}


def fit_cost_model(rows: list[dict], model: str, base_ms: float) -> dict:
    """Fit of T over ``rows`` of ``model`` (dicts with memory_slots, word_size, step_ms and, optionally,
    controller_ms: the controller timed in the same rounds); ``base_ms``, T_controller, is recorded with it.

    Each T is first divided by the drift of its rounds (``drift_factors``), then fitted by least squares in
    relative error (each point weighted by 1/T), so that the small memories, a few ms
    apart, count as much as the large ones, seconds apart. The controller's own growth with W (wider read
    vectors) is part of what the N W term measures. Costs cannot be negative: of every subset of the
    model's terms whose fit has no negative coefficient, the one with the least weighted error is kept
    (non-negative least squares by enumeration: at most 15 subsets).

    Returns the fit-file row: model, fit_of (``FIT_OF``), controller_ms (``base_ms``, not part of the
    model), one coefficient column per term in ``TERMS`` (us; 0 for a term left out, None for a term the
    model does not have), r2, max_relative_error (of the fitted T over the drift-corrected points), points;
    ``{}`` with fewer points than terms.
    """
    data = [r for r in rows if r["model"] == model]
    terms = model_terms(model)
    if len(data) < len(terms):
        return {}
    values = term_values([r["memory_slots"] for r in data], [r["word_size"] for r in data])
    own = np.array([_number(r.get("controller_ms"), base_ms) for r in data])
    drift = drift_factors(own, np.array([r["word_size"] for r in data]))
    measured = np.array([r["step_ms"] for r in data], dtype=float) / drift
    y, weight = measured, 1 / measured
    best = None  # (weighted squared error, terms, coefficients)
    for size in range(1, len(terms) + 1):
        for subset in itertools.combinations(terms, size):
            design = np.stack([values[name] for name in subset], axis=1)
            coef, *_ = np.linalg.lstsq(design * weight[:, None], y * weight, rcond=None)
            error = float((((design @ coef - y) * weight) ** 2).sum())
            if (coef >= 0).all() and (best is None or error < best[0] - 1e-12):
                best = (error, subset, coef)
    if best is None:  # nothing non-negative fits (the fixed term alone does, unless a time is not positive)
        return {}
    _, subset, coef = best
    coefficients = dict(zip(subset, coef))
    predicted = np.stack([values[name] for name in subset], axis=1) @ coef
    r2 = 1 - ((measured - predicted) ** 2).sum() / max(((measured - measured.mean()) ** 2).sum(), 1e-12)
    return {"model": model, "fit_of": FIT_OF, "controller_ms": base_ms,
            **{column: (1e3 * coefficients.get(name, 0.0) if name in terms else None)
               for name, (column, _) in TERMS.items()},
            "r2": float(r2), "max_relative_error": float(np.max(np.abs(predicted - measured) / measured)),
            "points": len(data)}


def drift_factors(controller_ms: np.ndarray, word_size: np.ndarray) -> np.ndarray:
    """The machine's drift in each configuration's rounds.

    The controller alone is timed in every configuration's rounds, with read vectors of that W: its median
    per W is its cost, its ratio to that median the drift of those rounds (a shared VM runs slow at
    times); a step time divided by its drift is what it would have been at the typical speed.
    """
    typical = np.array([np.median(controller_ms[word_size == w]) for w in word_size])
    return np.divide(controller_ms, typical, out=np.ones_like(controller_ms), where=typical > 0)


def _number(value, default: float) -> float:
    return default if value is None or pd.isna(value) else float(value)


def predict(fit_row, memory_slots, word_size):
    """The step time in ms that the fit ``fit_row`` (a row of ``cost_fit.csv``: a dict or Series) predicts
    at ``memory_slots`` N and ``word_size`` W (numbers or arrays of one shape). A row of a fit made before
    the model fitted T itself (no ``fit_of``) is refused: ``mann-zoo bench cost --out DIR`` refits it from
    ``DIR/cost.csv`` (nothing measured again)."""
    check_fit_of(fit_row)
    total = 0.0
    for name, value in term_values(memory_slots, word_size).items():
        coefficient = fit_row.get(TERMS[name][0])
        if pd.notna(coefficient):  # None or NaN: a term the model does not have
            total = total + float(coefficient) / 1e3 * value
    return total


def check_fit_of(fit_row) -> None:
    """A one-line ``ValueError`` unless ``fit_row`` is a fit of T itself (``fit_of`` = ``FIT_OF``)."""
    fit_of = fit_row.get("fit_of")
    if fit_of != FIT_OF:
        raise ValueError(f"cost fit of {fit_row.get('model')!r}: fit_of must be {FIT_OF!r} (T = c + d N + ...), got "
                         f"{fit_of!r}: a cost_fit.csv of T - T_controller, from before 2026-12-03 13:40; "
                         "`mann-zoo bench cost --out DIR` refits it from DIR/cost.csv")


def format_us(value) -> str:
    """A coefficient in us, to three significant digits, without an exponent: 2,500 / 1.5 / 0.0312."""
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def formula(fit_row) -> str:
    """The fitted model as text: ``T = 27,400 us + 0.61 us x N + ...``."""
    check_fit_of(fit_row)
    parts = []
    for name, (column, written) in TERMS.items():
        coefficient = fit_row.get(column)
        if pd.notna(coefficient):
            parts.append(format_us(coefficient) + " us" + ("" if name == "fixed" else f" x {written}"))
    return "T = " + " + ".join(parts)


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
