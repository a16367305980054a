"""``mann-zoo report``: regenerate the figures and tables of ``paper/`` from benchmark results.

Reads every ``paper/results/<grid>/results.csv`` and ``curves.csv`` (``mann-zoo bench``) and
``paper/results/cost/cost.csv`` (``mann-zoo bench cost``), and writes to ``paper/figures/`` and
``paper/tables/``:

- ``learning_<grid>_<task>.png``: cost in bits per sequence on the training distribution (each task's
  first validation set) against sequences seen and against updates, median and range over seeds (a seed
  that converged is marked where it converged and carries its last value on; failed runs left out), one
  line per model; where a Bayes-optimal cost is known (n-grams), each run's cost above its own;
- ``generalisation_<grid>_<task>.png``: bit errors per sequence (token accuracy for the Chomsky and MQAR
  tasks) against the sequences' size (length, items) on a numeric axis, the training range shaded (no
  figure for tasks with one validation set, or with a line per value of a second size, each one point, as MQAR's);
- ``cost_per_step.png``: training-step time against N and W, with the fitted cost model and its residuals,
  and ``tables/cost_fit.md`` (the fitted coefficients, from ``cost_fit.csv``);
- ``speed_tasks.png``, ``tables/speed_tasks.md`` and ``tables/speed_reference.md`` from
  ``paper/results/speed/*.csv`` (``mann-zoo speed``; ``mann_zoo.experiments.speed_report``);
- the same from ``paper/results/gpu`` (``scripts/gpu_check.sh`` on a lent GPU), each name ending in ``_gpu``
  (``cost_per_step_gpu.png``, ``tables/speed_reference_gpu.md``, ...);
- ``addressing_<model>.png``: read and write weightings over time of a trained NTM and DNC on copy, with
  a colour bar and a line where the recall begins (after the delimiter) (from the runs' checkpoints, when present); ``odds_first_ntm.png``
  the same of the chomsky grid's odds-first NTM on a string longer than its memory (its kept weights);
- ``sharpening.png``: the entropy of the content weighting against the strength beta;
- ``ntm_diagnosis_*.png`` and ``tables/ntm_diagnosis.md`` from ``paper/results/ntm_diagnosis``
  (``mann_zoo.experiments.diagnosis``, paper section 8);
- ``tables/chomsky_<grid>.md`` and ``chomsky_<grid>.png`` for a grid with Chomsky-hierarchy tasks: scores beside
  Deletang et al.'s and token accuracy against test length (``mann_zoo.experiments.suites``);
- ``tables/results_<grid>.md`` (our numbers, per task and model) and ``tables/literature.md`` (beside
  the published ones, a line per grid that ran the model, a run that two grids recorded counted once:
  ``identical_runs``).

Tables are embedded into ``paper/paper.md`` and the ``README.md`` beside the paper folder wherever they
name them (``<!-- table: NAME -->`` ... ``<!-- /table -->``).
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from ..console import CommandParser  # noqa: E402
from ..training.atomic import atomic_write_text, save_figure as save  # noqa: E402
from .colours import COLOURS, LINE_STYLES, ModelStyle, model_styles  # noqa: E402
from .cost_model import FIT_OF, drift_factors, load_cost, predict, sweep_of  # noqa: E402
from .log_ticks import plain_log_ticks, plain_thousands  # noqa: E402
from .results import collect_runs  # noqa: E402
from .speed_report import device_of, speed_and_cost_outputs  # noqa: E402
from .diagnosis import FOUND_MODEL, FOUND_TASK, LONG_PRIORITY_SORT, make_diagnosis  # noqa: E402
from .diagnosis import GRID as DIAGNOSIS_GRID  # noqa: E402
from .results import (  # noqa: E402
    ADDRESSING_MODELS,
    convergence_statistics,
    format_value,
    load_curves,
    load_results,
    metric_key,
    pooled,
    seed_list,
    set_sizes,
    set_summary,
    unfinished,
    summarise,
)



def _floats(values: pd.Series) -> np.ndarray:
    """A nullable column as floats for matplotlib, missing values NaN."""
    return values.to_numpy(dtype=float, na_value=np.nan)


def training_sets(results: pd.DataFrame) -> pd.Series:
    """The validation set of each task's training distribution, as task -> val_set.

    The first set that the task's runs list (the tasks list the training distribution first;
    ``results.summarise`` takes the same set as ``first_set``), not the first of the logged metric names,
    which come in alphabetical order (``items_12`` before ``items_2-6``).
    """
    if results.empty:
        return pd.Series(dtype="string")
    return set_summary(results).drop_duplicates("task").set_index("task")["val_set"]


def seed_spread(points: pd.DataFrame, x: str, converged: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Median, min and max over the runs of one model at each ``x``, and the points to draw run by run.

    ``points``: rows of a curves table (``run_id``, ``x``: ``sequences`` or ``step``, ``value``) of one
    model and metric; ``converged``: the ids of the runs that stopped at convergence. A run that
    converged keeps its last value after it stopped (it is done; without that the median would drop or
    jump to the runs still learning when it stops), and the spread is taken where every run has a value.
    A run that stopped without converging (diverged, or a grid still running) ends the spread: the other
    runs' points from there on are returned to be drawn one by one.

    Returns ``(spread, alone)``: spread indexed by ``x`` with columns median, min, max; alone the rows of
    ``points`` from the spread's last ``x`` on, of the runs that go beyond it.
    """
    table = (points.assign(value=_floats(points["value"]), **{x: points[x].to_numpy(dtype=float)})
             .pivot_table(index=x, columns="run_id", values="value", aggfunc="last").sort_index())
    for run in table.columns.intersection(sorted(converged)):
        last = table[run].last_valid_index()
        table.loc[table.index > last, run] = table.at[last, run]
    spread = table.dropna().agg(["median", "min", "max"], axis=1)
    end = spread.index.max() if not spread.empty else -np.inf
    beyond = points.loc[points[x].to_numpy(dtype=float) > end, "run_id"].unique()
    alone = points[points["run_id"].isin(beyond) & (points[x].to_numpy(dtype=float) >= end)]
    return spread, alone


def batch_label(curves: pd.DataFrame) -> str:
    """What one update is in ``curves`` (rows with ``sequences`` and ``step``): ``32 sequences`` if every
    run has that batch (times processes), else ``a model's batch`` (the batch-size grid)."""
    batches = sorted({int(b) for b in (curves["sequences"] / curves["step"]).dropna().round()})
    return f"{batches[0]} sequences" if len(batches) == 1 else "a model's batch"


def learning_figure(curves: pd.DataFrame, results: pd.DataFrame, task: str,
                    styles: dict[str, ModelStyle] | None = None) -> Figure | None:
    """Cost on ``task``'s training distribution against sequences seen (left) and updates (right), per
    model the median and min-max over seeds (:func:`seed_spread`), each converged seed marked where it
    converged (its ``sequences_to_convergence``). Where the results table has a Bayes-optimal cost
    (n-grams), the curves are each run's cost above its own optimum, on a log axis: a gap of a bit on a
    cost of 130 is then legible. Returns the Figure, or None without a curve of that set.

    ``curves``, ``results``: the curves and results tables of one grid; a failed run (no result of its own)
    is left out. The set is the training distribution's (:func:`training_sets`); the quantity, cost in bits
    per sequence, is the one the published learning curves show (less the optimum for n-grams).
    ``styles``: the grid's colour and marker per model (:func:`grid_styles`; by default from these rows),
    so that a model looks the same in all its figures.
    """
    first_set = training_sets(results).get(task)
    if first_set is None:
        return None
    runs = results.drop_duplicates("run_id").set_index("run_id")
    failed = runs.index[runs["status"].eq("failed").fillna(False).to_numpy(dtype=bool)]
    rows = curves[(curves["task"] == task) & (curves["metric"] == metric_key(first_set, "cost_bits"))
                  & ~curves["run_id"].isin(failed)]
    if rows.empty:
        return None
    converged = set(runs.index[runs["converged"].fillna(False).to_numpy(dtype=bool)])
    on_first = results[(results["task"] == task) & (results["val_set"] == first_set)].drop_duplicates("run_id")
    reference = on_first.set_index("run_id")["reference_bits"].dropna()
    if not reference.empty:  # n-grams: the cost above each run's Bayes-optimal cost, where the gap can be read
        rows = rows[rows["run_id"].isin(reference.index)]
        rows = rows.assign(value=_floats(rows["value"]) - reference.reindex(rows["run_id"]).to_numpy(dtype=float))
    styles = present_styles(styles, rows["model"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True, layout="constrained")
    extra = {}  # legend entries beside the models', drawn only where they occur
    for model, (colour, marker) in styles.items():
        data = rows[rows["model"] == model]
        for ax, x in zip(axes, ("sequences", "step")):
            spread, alone = seed_spread(data, x, converged)
            xs = spread.index.to_numpy(dtype=float)
            ax.plot(xs, spread["median"].to_numpy(dtype=float), color=colour, label=model, marker=marker,
                    markevery=0.1, ms=4)
            ax.fill_between(xs, spread["min"].to_numpy(dtype=float), spread["max"].to_numpy(dtype=float),
                            color=colour, alpha=0.2)
            for _, run in alone.groupby("run_id"):
                run = run.sort_values(x)
                ax.plot(run[x].to_numpy(dtype=float), _floats(run["value"]), ":", color=colour)
                extra["alone"] = Line2D([], [], ls=":", color="0.3", label="one run alone (another stopped unconverged)")
            for run_id, run in data[data["run_id"].isin(converged) & data["value"].notna()].groupby("run_id"):
                at = convergence_point(run, runs.at[run_id, "sequences_to_convergence"])
                ax.plot(float(at[x]), float(at["value"]), "o", mfc="white", mec=colour, ms=7)
                extra["stop"] = Line2D([], [], marker="o", ls="none", mfc="white", mec="0.3", ms=7,
                                       label="a seed converged (first of its validations in a row below the "
                                             "threshold); its last value is carried on")
    if not reference.empty:
        extra["bayes"] = Line2D([], [], ls="none", label=(
            f"each run's cost less its Bayes-optimal cost ({float(reference.median()):.1f} bits, median over "
            "seeds); the optimum is 0, below the axis"))
    for ax in axes:
        ax.set_yscale("log", nonpositive="mask")  # (a gap at or below 0 on a finite validation set: not drawn)
        plain_log_ticks(ax.yaxis)
        plain_thousands(ax.xaxis)
        ax.grid(alpha=0.3)
    quantity = "cost" if reference.empty else "cost above the Bayes-optimal cost"
    axes[0].set(xlabel="sequences seen", ylabel=f"{quantity}, bits per sequence ({first_set})")
    axes[1].set(xlabel=f"updates (optimiser steps of {batch_label(rows)})")
    handles = [line for line in axes[0].get_lines() if line.get_label() in styles]
    handles = list({line.get_label(): line for line in handles}.values()) + list(extra.values())
    fig.legend(handles=handles, loc="outside lower center", ncol=legend_columns(len(handles), 5), fontsize=8)
    fig.suptitle(f"{task}: cost on the training distribution ({first_set}); {seeds_label(rows)}")
    return fig


def convergence_point(run: pd.DataFrame, sequences_to_convergence) -> pd.Series:
    """The point of one run's curve (rows with ``sequences``, ``step``, ``value``) where it converged: its
    validation at ``sequences_to_convergence`` (the first of those in a row below the threshold; the run
    stops some validations later), else the last one before it, else (no count recorded) its last point."""
    run = run.sort_values("sequences")
    if pd.isna(sequences_to_convergence):
        return run.iloc[-1]
    before = run[run["sequences"].to_numpy(dtype=float) <= float(sequences_to_convergence)]
    return before.iloc[-1] if not before.empty else run.iloc[0]


def grid_styles(results: pd.DataFrame) -> dict[str, ModelStyle]:
    """The colour and marker of each model of one grid (:func:`colours.model_styles`), in its results
    table's order: the same in every figure of the grid."""
    return model_styles(results["model"].dropna().unique())


def present_styles(styles: dict[str, ModelStyle] | None, models: pd.Series) -> dict[str, ModelStyle]:
    """The styles of the models in ``models`` (a figure's rows), in the order of ``styles`` (a grid's), a
    model that ``styles`` lacks (curves of a run the results table does not list) styled after them."""
    styles = styles or {}
    present = list(dict.fromkeys(models.dropna()))
    after = model_styles([*styles, *present])  # the grid's models first: the others take the next styles
    return {model: styles.get(model, after[model])
            for model in [*(m for m in styles if m in present), *(m for m in present if m not in styles)]}


def legend_columns(entries: int, most: int) -> int:
    """Columns for a legend of ``entries`` in rows of at most ``most``, the rows as even as they go: no
    entry alone on a row of its own."""
    return math.ceil(entries / math.ceil(entries / most))


def seeds_label(rows: pd.DataFrame) -> str:
    """What a model's line is, by the runs per model in ``rows``: ``one run per model``, or ``median and
    min-max over 3 seeds`` (``3 or 5`` where models differ)."""
    counts = sorted(set(rows.groupby("model")["run_id"].nunique()))
    if counts == [1]:
        return "one run per model"
    return f"median and min-max over {' or '.join(str(c) for c in counts)} seeds"


def learning_curves(results: pd.DataFrame, curves: pd.DataFrame, grid: str, out: Path) -> list[Path]:
    """``learning_<grid>_<task>.png`` (:func:`learning_figure`) for each task of one grid.

    ``results``, ``curves``: the grid's results table (``results.RESULT_COLUMNS``) and learning curves
    (``results.CURVE_COLUMNS``).
    """
    written, styles = [], grid_styles(results)
    for task in curves["task"].unique():
        fig = learning_figure(curves, results, task, styles)
        if fig is not None:
            path = out / f"learning_{grid}_{task}.png"
            save(fig, path)
            written.append(path)
    return written


# How an axis names each size of a validation set's name (``results.set_sizes``).
SIZE_NAMES = {"len": "sequence length", "items": "items", "rep": "repeats", "in": "inputs", "out": "outputs"}


def size_axes(sets: list[str]) -> tuple[str, str | None] | None:
    """What to draw a task's generalisation against, from its validation sets (training set first): the
    first size that varies between them on the x axis and the second, if any, as one line per value
    (repeat copy: length, and a line per repeat count). None if the names are not sizes of one kind or no
    size varies (a task with one set: nothing to generalise over)."""
    sizes = [set_sizes(name) for name in sets]
    if len(sets) < 2 or any(s is None or s.keys() != sizes[0].keys() for s in sizes):
        return None
    varying = [name for name in sizes[0] if len({s[name] for s in sizes}) > 1]
    if not varying:
        return None
    return varying[0], varying[1] if len(varying) > 1 else None


def _size_name(name: str) -> str:
    return SIZE_NAMES.get(name, name)


def scored_in_tokens(task: str) -> bool:
    """Whether ``task`` is scored in tokens (classes): the Chomsky-hierarchy tasks and MQAR, whose
    ``bit_errors`` count wrong tokens per sequence (``training.lightning_module``) and grow with the length
    even at chance; their score is ``token_accuracy``."""
    from . import suites

    return task in suites.LEVELS or task == suites.MQAR_TASK


def generalisation_figure(rows: pd.DataFrame, task: str, styles: dict[str, ModelStyle] | None = None) -> Figure | None:
    """Bit errors per sequence (token accuracy for a task of tokens) against the size of the sequences
    (length, items; :func:`size_axes`) on a numeric axis, per model the median and min-max over seeds, the
    training range shaded and its edge marked, and the training distribution's own value as a bar over
    that range. Returns the Figure, or None where the sets have no size to draw against (or a line per value
    of a second size that changes with the first, each one point: MQAR's pairs with its length).

    ``rows``: the results table's rows of one task (validation sets in the order the runs list them:
    the training distribution first). As in the results tables (``results.summarise``), a run stopped
    part-way counts only where its model has no other run (``results.pooled``; a model with only such runs
    is labelled "part-way"), and failed runs are then left out; so is a run stopped before it validated
    (nothing recorded). ``styles``: the grid's colour and marker per model (:func:`grid_styles`; by default
    from these rows).
    """
    sets = list(rows["val_set"].dropna().unique())
    rows = pooled(rows)
    rows = rows[~rows["status"].eq("failed").fillna(False).to_numpy(dtype=bool)]
    tokens = scored_in_tokens(task)  # its "bit errors" are wrong tokens
    metric = "token_accuracy" if tokens else "bit_errors"
    rows = rows.dropna(subset=[metric])
    layout = size_axes(sets)
    if rows.empty or layout is None:
        return None
    x_name, line_name = layout
    sizes = {name: set_sizes(name) for name in sets}
    low, high = sizes[sets[0]][x_name]
    tested = sorted((name for name in sets[1:] if sizes[name][x_name][0] == sizes[name][x_name][1]),
                    key=lambda name: sizes[name][x_name])
    groups = sorted({sizes[name][line_name] for name in tested}) if line_name else [None]
    lines = [[name for name in tested if line_name is None or sizes[name][line_name] == group] for group in groups]
    if len(lines) > 1 and max(map(len, lines)) < 2:  # the second size changes with the first: no line to draw
        return None
    errors = rows.groupby(["model", "val_set"])[metric].agg(["median", "min", "max"])
    part_way = set(rows.loc[unfinished(rows), "model"]) - set(rows.loc[~unfinished(rows), "model"])
    styles = present_styles(styles, rows["model"])
    fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
    ax.axvspan(low, high, color="0.9", label=f"training range ({_size_name(x_name)} {low}-{high})")
    ax.axvline(high, color="0.4", ls="--", lw=1)
    for model, (colour, marker) in styles.items():
        for style, group, chosen in zip(LINE_STYLES, groups, lines):
            stats = errors.loc[model].reindex(chosen) if model in errors.index else None
            if stats is None:
                continue
            xs = [sizes[name][x_name][0] for name in chosen]
            label = (model + (" (part-way)" if model in part_way else "")) if group == groups[0] else None
            ax.plot(xs, _floats(stats["median"]), style, marker=marker, color=colour, label=label,
                    clip_on=False)
            ax.fill_between(xs, _floats(stats["min"]), _floats(stats["max"]), color=colour, alpha=0.15)
        if (model, sets[0]) in errors.index:
            ax.hlines(float(errors.loc[(model, sets[0]), "median"]), low, high, colors=colour, lw=3, alpha=0.6,
                      clip_on=False)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", lw=3, alpha=0.6, label=f"training distribution ({sets[0]})"))
    if line_name:
        train_low, train_high = sizes[sets[0]][line_name]
        handles += [Line2D([], [], color="0.3", ls=style, label=f"{_size_name(line_name)} {group[0]}"
                           + (" (in training range)" if train_low <= group[0] <= train_high else ""))
                    for style, group in zip(LINE_STYLES, groups)]
    if tokens:
        ax.set_ylim(0, 1.02)
        ylabel = "token accuracy (mean per sequence)"
    else:
        ax.set_yscale("symlog", linthresh=0.1)
        plain_log_ticks(ax.yaxis)
        ax.set_ylim(bottom=-0.005)  # zeros sit just above the axis, not on it
        ylabel = "bit errors per sequence (symlog, linear below 0.1)"
    ax.set_xlim(0, 1.05 * max(sizes[name][x_name][1] for name in sets))
    # lengths and item counts are whole numbers
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set(xlabel=_size_name(x_name), ylabel=ylabel)
    fig.suptitle(f"{task}: generalisation ({seeds_label(rows)}; dashed: edge of the training range)", fontsize=9)
    ax.grid(alpha=0.3)
    # under the axes, where it covers no line
    fig.legend(handles=handles, loc="outside lower center", ncol=legend_columns(len(handles), 4), fontsize=7)
    return fig


def generalisation_curves(results: pd.DataFrame, grid: str, out: Path) -> list[Path]:
    """``generalisation_<grid>_<task>.png`` (:func:`generalisation_figure`) for each task of one grid
    whose validation sets vary in size (in a way that draws lines: not MQAR's).

    ``results``: the results table (``results.RESULT_COLUMNS``) of one grid.
    """
    written, styles = [], grid_styles(results)
    for task, rows in results.groupby("task", sort=False):
        fig = generalisation_figure(rows, task, styles)
        if fig is not None:
            path = out / f"generalisation_{grid}_{task}.png"
            save(fig, path)
            written.append(path)
    return written


def value_ticks(axis, values, most: int = 6) -> None:
    """Ticks of ``axis`` (a log axis) at ``values`` (every other one and so on, down to at most ``most``),
    labelled as plain numbers, without the minor ticks' labels: the swept N and W as they were measured,
    not 3x10^1 and 4x10^1 run together."""
    values = sorted({float(v) for v in values})
    axis.set_ticks(values[::math.ceil(len(values) / most)])
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def draw_cost(cost: pd.DataFrame, fits: pd.DataFrame) -> Figure | None:
    """The Figure of :func:`cost_figure` (None without rows)."""
    if cost.empty:
        return None
    sweep = sweep_of(cost)
    controller = cost.loc[cost["model"] == "controller", "step_ms"]
    controller = float(controller.median()) if not controller.empty else 0.0
    # fits of T itself only (an older cost_fit.csv of T - T_controller: the points without fitted lines)
    fit_by_model = {fit["model"]: fit for fit in fits.to_dict("records") if fit.get("fit_of") == FIT_OF}
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col", gridspec_kw={"height_ratios": [3, 1.3]},
                             layout="constrained")
    panels = ((0, "memory_slots", "word_size", sweep.n_sweep_word_size),
              (1, "word_size", "memory_slots", sweep.w_sweep_memory_slots))
    swept: dict[int, set] = {0: set(), 1: set()}
    for model in sorted(set(cost["model"]) - {"controller"}):
        colour = COLOURS.get(model.split(" ")[0], "black")  # the PyPI peer in black
        rows = cost[cost["model"] == model].copy()
        if "controller_ms" in rows.columns and rows["controller_ms"].notna().all():
            # as the fit sees them: each time divided by the drift of its rounds (cost_model.drift_factors)
            drift = drift_factors(rows["controller_ms"].to_numpy(dtype=float), rows["word_size"].to_numpy())
            rows["step_ms"] = rows["step_ms"] / drift
        for column, vary, fixed, fixed_value in panels:
            points = rows[rows[fixed] == fixed_value].sort_values([vary, "step_ms"])[[vary, "step_ms"]]
            if points.empty:
                continue
            xs = points[vary].to_numpy(dtype=int)
            swept[column] |= set(xs)
            measured = points["step_ms"].to_numpy(dtype=float)
            axes[0, column].plot(xs, measured, "o", color=colour, label=f"{model} measured")
            fit = fit_by_model.get(model)
            if fit:
                predicted = predict(fit, **{vary: xs, fixed: np.full_like(xs, fixed_value)})
                axes[0, column].plot(xs, predicted, "-", color=colour, alpha=0.6,
                                     label=f"{model} fit (R$^2$={float(fit['r2']):.3f})")
                axes[1, column].plot(xs, 100 * (measured - predicted) / measured, "o-", color=colour, alpha=0.8)
    for column, label in ((0, f"memory slots N (W={sweep.n_sweep_word_size})"),
                          (1, f"word size W (N={sweep.w_sweep_memory_slots})")):
        top, bottom = axes[0, column], axes[1, column]
        top.axhline(controller, color="grey", ls=":", label="controller alone")
        top.set(ylabel="training step, ms", xscale="log", yscale="log")
        plain_log_ticks(top.yaxis)
        top.legend(fontsize=7)
        bottom.axhline(0, color="grey", lw=0.8)
        bottom.set(xlabel=label, ylabel="measured - fitted,\n% of measured", xscale="log")
        if swept[column]:
            value_ticks(bottom.xaxis, swept[column])
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    device = device_of(cost)
    where = "" if device == "cpu" else f" on {device}"
    fig.suptitle(f"cost per training step{where} (batch {sweep.batch_size}, {sweep.sequence_steps} steps): measured (divided "
                 f"by the drift of its rounds), fitted cost model,\nand below, the residuals of the fit")
    return fig


def cost_figure(cost: pd.DataFrame, fits: pd.DataFrame, out: Path, name: str = "cost_per_step.png") -> Path | None:
    """``cost_per_step.png`` (or ``name``): training-step time against N (at the sweep's W) and against W (at its N),
    measured and as the fitted cost model predicts it (``cost_model.predict``), with the residuals below
    (measured - fitted, in % of measured); each time is divided by the drift of its rounds as the fit does
    (``cost_model.drift_factors``). The axes are labelled with the swept N and W.

    ``cost``: the rows of ``cost.csv`` (model, memory_slots, word_size, step_ms; the sweep's settings, see
    ``cost_model.sweep_of``); ``fits``: the rows of ``cost_fit.csv``, one per model (none: no fitted lines).
    """
    fig = draw_cost(cost, fits)
    if fig is None:
        return None
    path = out / name
    save(fig, path)
    return path


def sharpening_figure(out: Path, slots: int = 128, width: int = 20, seed: int = 0) -> Path:
    """Entropy (bits) of the content weighting against the strength beta, for a key equal to a memory
    row plus noise of several sizes: how beta turns similarity into focus."""
    from ..memory import content_weights

    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(1, slots, width, generator=g)
    betas = torch.logspace(-1, 3, 60)
    fig, ax = plt.subplots(figsize=(6, 4))
    for noise in (0.0, 0.5, 1.0, 2.0):
        key = memory[:, :1] + noise * torch.randn(1, 1, width, generator=g)
        entropies = []
        for beta in betas:
            w = content_weights(memory, key, beta.view(1, 1))[0, 0]
            entropies.append(float(-(w * torch.log2(w.clamp_min(1e-30))).sum()))
        ax.plot(betas, entropies, label=f"key = M(0) + {noise:g} noise")
    ax.axhline(math.log2(slots), color="grey", ls=":", label=f"uniform (log2 N = {math.log2(slots):.0f} bits)")
    ax.set(xscale="log", xlabel="strength beta", ylabel="entropy of w_c, bits",
           title=f"sharpening by the key strength (N={slots}, W={width}, random memory)")
    ax.legend(fontsize=8)
    path = out / "sharpening.png"
    save(fig, path)
    return path


ADDRESSING_GRID = "matched"  # the addressing figures show the matched track's runs: NTM and DNC on one memory


def addressing_checkpoints(result_dirs: list[Path]) -> list[Path]:
    """A trained copy model of each of ``ADDRESSING_MODELS``, lowest seed: the ``ADDRESSING_GRID`` folder's
    if it has one, else the first benchmark folder's that does.

    The run's own checkpoint if ``runs/`` is there, else the weights that ``mann-zoo bench`` keeps in
    ``models/`` (committed, so that a fresh clone can redraw the figures).
    """
    ordered = sorted(result_dirs, key=lambda directory: directory.name != ADDRESSING_GRID)  # stable: the rest in order
    found = []
    for model in ADDRESSING_MODELS:
        candidates = [path for directory in ordered
                      for pattern in (f"runs/copy-{model}-seed*/checkpoints/last.ckpt", f"models/copy-{model}-seed*.ckpt")
                      for path in sorted(directory.glob(pattern))]
        found += candidates[:1]
    return found


def checkpoint_run_id(checkpoint: Path) -> str:
    """``copy-ntm-seed0`` for ``.../copy-ntm-seed0/checkpoints/last.ckpt`` and ``.../copy-ntm-seed0.ckpt``."""
    return checkpoint.parents[1].name if checkpoint.name == "last.ckpt" else checkpoint.stem


def copy_example(bits: int, length: int, seed: int = 1) -> torch.Tensor:
    """One copy input of ``length`` random vectors of ``bits`` bits, the delimiter (its own channel) at
    step ``length``, then ``length`` blank steps for the recall: ``[1, 2 length + 1, bits + 1]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, 2 * length + 1, bits + 1)
    x[0, :length, :bits] = torch.randint(0, 2, (length, bits), generator=g).float()
    x[0, length, bits] = 1
    return x


def weightings_figure(core: torch.nn.Module, x: torch.Tensor, boundary: int, title: str,
                      phases: tuple[str, str] = ("input", "recall")) -> Figure:
    """Write and read weightings over time (first heads) of ``core`` (a memory model) on one example ``x``
    (``[1, T, input_size]``), on one colour scale (0 to 1, with its colour bar); the dashed line is between
    steps ``boundary - 1`` and ``boundary``: the first of ``phases`` ends before it, the second begins at
    step ``boundary`` (each step is one column, centred on its number). Returns the Figure."""
    with torch.no_grad():
        _, trace = core(x, record=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True, layout="constrained")
    for ax, key in zip(axes, ("write_weights", "read_weights")):
        weights = trace[key][0, :, 0]  # [T, N], first head
        image = ax.imshow(weights.T.numpy(), aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                          vmin=0, vmax=1)
        ax.axvline(boundary - 0.5, color="cyan", ls="--", lw=1)
        for text, side, offset in ((phases[0], "right", -3), (phases[1], "left", 3)):  # 3 points either side
            ax.annotate(text, (boundary - 0.5, 0.98), xycoords=ax.get_xaxis_transform(), xytext=(offset, 0),
                        textcoords="offset points", ha=side, va="top", color="cyan", fontsize=8)
        ax.set(title=key.replace("_", " "), xlabel=f"time step (dashed: {phases[1]} from step {boundary})")
    axes[0].set_ylabel("memory slot")
    fig.colorbar(image, ax=list(axes), label="weight", shrink=0.9)
    fig.suptitle(title)
    return fig


def addressing_figure(core: torch.nn.Module, title: str, length: int = 20) -> Figure:
    """:func:`weightings_figure` on one copy example of ``length`` vectors: the input and its delimiter
    (step ``length``), then the recall."""
    return weightings_figure(core, copy_example(core.input_size - 1, length), length + 1, title)


def draw_odds_first(core: torch.nn.Module, title: str, length: int = 200) -> Figure:
    """:func:`weightings_figure` of ``core`` (an NTM trained on odds first) on one string of ``length``
    tokens (seed 0): the string, then the answer."""
    from tasks.chomsky.odds_first import OddsFirstTask

    task = OddsFirstTask()
    x = task.encode(*task.sample(torch.Generator().manual_seed(0), 1, length)).inputs  # [1, 2 length, 3]
    return weightings_figure(core, x, length, title, phases=("string", "answer"))


def odds_first_figure(checkpoint: Path, out: Path, length: int = 200) -> Path:
    """``odds_first_ntm.png``: :func:`draw_odds_first` of the chomsky grid's odds-first NTM (its kept
    weights) on a string longer than its slots (paper section 11.1 reads it)."""
    from .. import load_model

    core = load_model(checkpoint)
    fig = draw_odds_first(core, f"NTM on odds first, a string of {length} tokens: first heads' weightings "
                                f"({checkpoint_run_id(checkpoint)}, {core.memory_slots} slots)", length)
    path = out / "odds_first_ntm.png"
    save(fig, path)
    return path


def addressing_figures(checkpoints: list[Path], out: Path, length: int = 20) -> list[Path]:
    """``addressing_<model>.png`` (:func:`addressing_figure`) for each trained copy model (NTM and DNC)."""
    from .. import load_model

    written = []
    for checkpoint in checkpoints:
        run_id = checkpoint_run_id(checkpoint)
        model_name = run_id.split("-")[1] if "-" in run_id else run_id
        core = load_model(checkpoint)
        if not hasattr(core, "step"):  # the LSTM has no memory to look at
            continue
        fig = addressing_figure(core, f"{model_name} on copy, length {length}: first heads' weightings ({run_id})", length)
        path = out / f"addressing_{model_name}.png"
        save(fig, path)
        written.append(path)
    return written


def converged_count(s) -> str:
    """``converged/runs`` of a ``results.summarise`` row, and how many runs failed (they count in neither) or
    are unfinished ("+k": left out beside finished runs)."""
    converged = 0 if pd.isna(s.converged) else int(s.converged)
    notes = [f"{s.failed} failed"] * bool(s.failed) + [
        f"{'+' if s.unfinished_left_out else ''}{s.unfinished} unfinished"] * bool(s.unfinished)
    return f"{converged}/{s.runs}" + (f" ({', '.join(notes)})" if notes else "")


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """Markdown lines from ``summary`` (``results.summarise``): per task and model, convergence and the
    training-set and longest-set errors."""
    lines = ["| task | model | runs | converged | sequences trained (median) | sequences to convergence (median) | "
             "cost, bits/seq, training set | bit errors/seq, training set | bit errors/seq, longest set | ms/step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary.itertuples():
        reference = format_value(s.optimal_cost, " (Bayes-optimal {:.1f})", missing="")
        first_set, longest_set = (format_value(name, " ({})", missing="") for name in (s.first_set, s.longest_set))
        lines.append(f"| {s.task} | {s.model} | {s.runs} | {converged_count(s)} | {format_value(s.sequences, '{:,.0f}')} | "
                     f"{format_value(s.sequences_to_convergence, '{:,.0f}')} | {format_value(s.cost, '{:.1f}')}{reference} | "
                     f"{format_value(s.first_errors, '{:.2f}')}{first_set} | "
                     f"{format_value(s.longest_errors, '{:.2f}')}{longest_set} | {format_value(s.step_ms, '{:.0f}')} |")
    return lines


def results_table(results: pd.DataFrame, grid: str) -> str:
    """Markdown: per task and model, medians over seeds (a summary, then every validation set).

    ``results``: the results table (``results.RESULT_COLUMNS``) of one grid.
    """
    summary, sets = summarise(results), set_summary(pooled(results[results["status"] != "failed"]))
    lines = [f"# Results: {grid}", "", *summary_lines(summary), "",
             "| task | model | runs | converged | sequences to convergence (median) | train time to convergence, s | "
             "bit errors per validation set (median over seeds) | ms/step | params |",
             "|---|---|---|---|---|---|---|---|---|"]
    errors = sets.groupby(["task", "model"], sort=False)
    for s in summary.itertuples():
        per_set = ", ".join(f"{row.val_set}: {format_value(row.bit_errors, '{:.2f}')}"
                            for row in (errors.get_group((s.task, s.model)).itertuples()
                                        if (s.task, s.model) in errors.groups else [])) or "-"
        lines.append(f"| {s.task} | {s.model} | {s.runs} | {converged_count(s)} | "
                     f"{format_value(s.sequences_to_convergence, '{:,.0f}')} | "
                     f"{format_value(s.wall_time_to_convergence_s, '{:.0f}')} | {per_set} | "
                     f"{format_value(s.step_ms, '{:.0f}')} | {format_value(s.params, '{:,.0f}')} |")
    return "\n".join(lines) + "\n"


def statistics_table(results: pd.DataFrame, grid: str) -> str:
    """Markdown: per task and model, the statistics over seeds of ``results.convergence_statistics`` (success
    and divergence rates, median and interquartile range of sequences and wall time to convergence, the
    best run), for the grid ``grid``."""
    def spread(median, q25, q75, pattern: str) -> str:
        if pd.isna(median):
            return "-"
        return f"{pattern.format(median)} [{pattern.format(q25)}-{pattern.format(q75)}]"

    lines = [f"# Convergence over seeds: {grid}", "",
             "Converged: < threshold bit errors per sequence on the training distribution (the grid's rule). Median "
             "[25th-75th percentile] over the converged runs; rates over all runs that did not fail and have finished "
             "(a seed marked * is a run stopped part-way, to be resumed: counted in neither).", "",
             "| task | model | seeds | converged | diverged | sequences to convergence | wall time to convergence, s | "
             "best run (sequences) |", "|---|---|---|---|---|---|---|---|"]
    for s in convergence_statistics(results).itertuples():
        converged, diverged = s.converged, s.diverged
        best = "-" if pd.isna(s.best_run) else f"{s.best_run} ({s.best_sequences:,.0f})"
        lines.append(f"| {s.task} | {s.model} | {s.seeds} | {converged}/{s.runs} | {diverged}/{s.runs} | "
                     f"{spread(s.sequences_median, s.sequences_q25, s.sequences_q75, '{:,.0f}')} | "
                     f"{spread(s.wall_time_median_s, s.wall_time_q25_s, s.wall_time_q75_s, '{:,.0f}')} | {best} |")
    return "\n".join(lines) + "\n"


# Published numbers (literature.md) and what in our results table they are set beside.
# (task, models, quantity, published value, source, measure): every model of ``models`` that a grid ran on
# ``task`` gets a line of its own (the paper track's ntm_rmsprop and ntm_adam beside the matched ntm); measure
# one of:
#   "convergence": median [IQR] sequences to convergence over the runs that converged, and how many did;
#   "cost:<set or first>": median [min-max] cost in bits per sequence; "errors:<set>": the same for bit errors
#   per sequence; "params": number of parameters.
# Published values with their sources' qualifiers: "~" is read off a plot; the NTM paper's learning curves are
# against sequences, at a batch size it does not state, so its sequences are not our updates.
NTMS = ("ntm", "ntm_rmsprop", "ntm_adam")  # the NTM in the matched and paper grids, the paper track's two optimisers
DNCS = ("dnc", "dnc_md", "dnc_mds")
# The NTM paper's curves that two of our task variants are set beside (the grid's task and its diagnosis's)
REPEAT_COPY_NTM = "~0 by ~150k (~13 at 20k; no curriculum)"
PRIORITY_SORT_NTM = "~40 at 200k, ~24 at 400k, ~17 at 1M sequences"
LITERATURE = [
    ("copy", NTMS, "sequences to ~0 cost", "~0 by ~20k (fig. 3; RMSProp 1e-4, batch size not stated)",
     "Graves et al. 2014", "convergence"),
    ("copy", ("lstm",), "cost, bits/seq", "~4.8 at 100k, ~2 at 200k, plateau ~0.5 from ~500k to 1M sequences",
     "Graves et al. 2014", "cost:first"),
    ("copy", NTMS, "bit errors/seq at length 120", "one global error (length 120)", "Graves et al. 2014",
     "errors:len_120"),
    ("copy", NTMS, "bit errors/seq at length 50", "degrades after ~36 at length 40 (one example in their README)",
     "Collier & Beel 2018", "errors:len_50"),
    ("copy", ("lstm",), "bit errors/seq at length 30", "degrades past 20", "Graves et al. 2014", "errors:len_30"),
    ("copy", NTMS, "parameters", "67,561", "Graves et al. 2014", "params"),
    ("copy", ("lstm",), "parameters", "1,352,969", "Graves et al. 2014", "params"),
    ("repeat_copy", NTMS, "sequences to ~0 cost", REPEAT_COPY_NTM, "Graves et al. 2014", "convergence"),
    (FOUND_TASK, (FOUND_MODEL,), "sequences to ~0 cost", REPEAT_COPY_NTM, "Graves et al. 2014", "convergence"),
    ("repeat_copy", ("lstm",), "sequences to ~0 cost", "~0 by ~250-300k (~20 at 100k)", "Graves et al. 2014",
     "convergence"),
    ("associative_recall", NTMS, "sequences to ~0 cost",
     "LSTM controller: 0.6 at 100k, ~0.1 by ~300k; feed-forward: near zero within ~30k", "Graves et al. 2014",
     "convergence"),
    ("associative_recall", ("lstm",), "cost, bits/seq", "~2 at 500k, ~0.7 at 1M sequences", "Graves et al. 2014",
     "cost:first"),
    ("associative_recall", NTMS, "bit errors/seq at 12 items",
     "near-perfect up to 12 items (feed-forward NTM, fig. 11); Collier & Beel: one example in their README",
     "Graves et al. 2014; Collier & Beel 2018", "errors:items_12"),
    ("ngrams", NTMS, "converged cost, bits/seq", "~133-133.5 from ~100k (optimal estimator ~131.5)",
     "Graves et al. 2014", "cost:first"),
    ("ngrams", ("lstm",), "converged cost, bits/seq", "~135.5-136", "Graves et al. 2014", "cost:first"),
    ("priority_sort", NTMS, "cost, bits/seq", PRIORITY_SORT_NTM, "Graves et al. 2014", "cost:first"),
    (LONG_PRIORITY_SORT[0], LONG_PRIORITY_SORT[1:], "cost, bits/seq", PRIORITY_SORT_NTM, "Graves et al. 2014",
     "cost:first"),
    ("priority_sort", ("lstm",), "cost, bits/seq", "~97 at 200k, ~56 at 1M sequences", "Graves et al. 2014",
     "cost:first"),
    # Csordas & Schmidhuber's own tasks (the paper track): the NTM's repeat copy and associative recall are
    # other tasks, and the 16 x 16 DNC of the old paper grid is not their profile.
    ("repeated_copy", DNCS, "sequences to ~0 cost",
     "plain DNC fails; de-allocation with sharpness: zero error and 3x faster convergence (figs. 4a/4b)",
     "Csordas & Schmidhuber 2019", "convergence"),
    ("associative_recall_cs", DNCS, "sequences to ~0 cost", "masking substantially improves convergence (fig. 3a)",
     "Csordas & Schmidhuber 2019", "convergence"),
]


def _spread(values: pd.Series, pattern: str) -> str:
    """The median of ``values`` and, over more than one value, [min-max]: ``3.12 [0.06-7.50]``."""
    values = values.astype("Float64").dropna()
    if values.empty:
        return "-"
    text = pattern.format(values.median())
    return text if len(values) == 1 else f"{text} [{pattern.format(values.min())}-{pattern.format(values.max())}]"


def ours(rows: pd.DataFrame, measure: str) -> str:
    """Our side of a literature line (``LITERATURE``'s measure) from the results rows of one grid, task and
    model (failed runs left out)."""
    per_run = rows.drop_duplicates("run_id")
    if measure == "convergence":
        s = convergence_statistics(rows).iloc[0]
        converged = s.converged
        if pd.isna(s.sequences_median):
            return f"- ({converged}/{s.runs} converged)"
        spread = "" if converged == 1 else f" [{s.sequences_q25:,.0f}-{s.sequences_q75:,.0f}]"
        return f"{s.sequences_median:,.0f}{spread} ({converged}/{s.runs} converged)"
    if measure == "params":
        return format_value(per_run["num_parameters"].median(), "{:,.0f}")
    kind, name = measure.split(":")
    sets = rows[rows["val_set"] == (rows["val_set"].iloc[0] if name == "first" else name)]
    text = _spread(sets["cost_bits" if kind == "cost" else "bit_errors"], "{:.2f}")
    reference = sets["reference_bits"].astype("Float64").dropna()
    return text + (f" (Bayes-optimal {reference.median():.1f})" if not reference.empty and text != "-" else "")


def _one_trajectory(a: pd.Series, b: pd.Series) -> bool:
    """Whether the shorter of two training curves (values indexed by step and metric) is, value for value,
    the start of the longer one."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if short.empty or not short.index.isin(long.index).all():
        return False
    return bool(np.array_equal(_floats(short), _floats(long.reindex(short.index)), equal_nan=True))


def identical_runs(results: pd.DataFrame, curves: pd.DataFrame | None) -> dict[str, str]:
    """Runs that are one run, as {run id: the run id it repeats}.

    Two grids can train the same configuration with the same seed (the default benchmark's runs on copy
    are the paper grid's seed-0 runs): one trajectory recorded twice, perhaps validated at other steps and
    so stopped at another validation. Two runs of ``results`` count as one when they have the same task,
    model, seed, parameter count and batch size and the training curve of one (its ``train/`` points in
    ``curves``) is, value for value, the start of the other's. Of such runs the one validated most often
    is kept (its convergence is located most finely; ties: the first in ``results``), and the others map
    to it. A run without a training curve is never taken for another.
    """
    if results.empty or curves is None or curves.empty:
        return {}
    train = (curves[curves["metric"].str.startswith("train/") & curves["run_id"].isin(results["run_id"])]
             .drop_duplicates(["run_id", "step", "metric"], keep="last"))
    points = {run_id: rows.set_index(["step", "metric"])["value"] for run_id, rows in train.groupby("run_id", sort=False)}
    validations = curves[curves["metric"].str.startswith("val/")].groupby("run_id")["step"].nunique()
    runs = results.drop_duplicates("run_id")
    order = {run_id: i for i, run_id in enumerate(runs["run_id"])}
    same: dict[str, str] = {}
    for _, group in runs.groupby(["task", "model", "seed", "num_parameters", "batch_size"], sort=False, dropna=False):
        kept: list[str] = []
        for run_id in sorted((r for r in group["run_id"] if r in points),
                             key=lambda r: (-int(validations.get(r, 0)), order[r])):
            match = next((k for k in kept if _one_trajectory(points[k], points[run_id])), None)
            if match is None:
                kept.append(run_id)
            else:
                same[run_id] = match
    return same


def literature_table(results: pd.DataFrame, curves: pd.DataFrame | None = None) -> str:
    """Markdown: each published number beside ours, one line per grid that ran the model on the task (the
    grids are other configurations: the matched track, the paper track, the first paper grid), with the
    median and spread over its distinct runs and their seeds.

    ``results``: the results tables of every grid, one after the other, with a ``grid`` column (run ids
    kept apart by grid); ``curves``: their learning curves (same run ids), with which runs that are one run
    (``identical_runs``) are counted once.
    """
    same = identical_runs(results, curves)
    results = results[~results["run_id"].isin(list(same)) & (results["status"] != "failed")]
    once = ""
    if same:
        once = (" Runs that are one run (same task, model and seed, and the training curve of one, value for value, "
                "the start of the other's) count once: " + ", ".join(f"{run} as {kept}" for run, kept in same.items())
                + ".")
    lines = ["# Our numbers beside the published ones", "",
             "Every grid in paper/results/ that ran the model on the task, a line each (`matched`: the matched track; "
             "`paper_track`: each model in its paper's configuration; `paper`: the first paper grid, batch 32 and "
             "Adam 1e-3). Ours: the median over the grid's distinct runs that did not fail, with [25th-75th "
             "percentile] of the sequences to convergence over the runs that converged, or [min-max] of a cost or "
             "error over the runs; 'budget' is the median of the sequences a run was trained on (runs stop at "
             "convergence; a run stopped part-way, to be resumed, is counted where it stands, its seed marked *, only "
             "where no run of its line has finished)." + once + " Published set-ups differ "
             "('~': read off a published plot; the NTM paper does not state its batch size, so its sequences are "
             "not our updates): see paper.md, section 7. Repeat copy: the paper and the `paper` and `paper_track` grids train "
             "without a curriculum, the `matched` grid and ntm_diagnosis's repeat_copy_rmsprop with one "
             "(configs/task/repeat_copy.yaml).", "",
             "| task | model | grid | quantity | published | source | ours | runs (seeds) | budget (median sequences) |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_run = results.groupby(["task", "model", "grid"], sort=False)
    for task, models, quantity, published, source, measure in LITERATURE:
        found = [(model, grid) for (t, model, grid) in by_run.groups if t == task and model in models]
        if not found:
            lines.append(f"| {task} | {' / '.join(models)} | - | {quantity} | {published} | {source} | not run yet | "
                         "0 | - |")
        for model, grid in sorted(found, key=lambda pair: models.index(pair[0])):
            rows = by_run.get_group((task, model, grid))
            rows = pooled(rows)  # runs stopped part-way count only where none of the line's runs has finished
            per_run = rows.drop_duplicates("run_id")
            seeds = seed_list(per_run["seed"], unfinished(per_run))
            lines.append(f"| {task} | {model} | {grid} | {quantity} | {published} | {source} | {ours(rows, measure)} | "
                         f"{len(per_run)} ({seeds}) | {format_value(per_run['sequences'].median(), '{:,.0f}')} |")
    return "\n".join(lines) + "\n"


TABLE_MARKER = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n).*?(<!-- /table -->)", re.S)


def embed_tables(document: Path, tables: Path) -> bool:
    """Put the current tables into ``document`` between ``<!-- table: NAME -->`` and ``<!-- /table -->``.

    The write-up quotes the generated tables instead of numbers typed by hand. Returns whether it changed.
    """
    text = document.read_text()

    def body(match: re.Match) -> str:
        path = tables / match["name"]
        if not path.is_file():
            return match[0]
        lines = path.read_text().splitlines()
        if lines and lines[0].startswith("# "):  # the table file's own title
            lines = lines[1:]
        return match[1] + "\n".join(lines).strip() + "\n" + match[3]

    new = TABLE_MARKER.sub(body, text)
    if new != text:
        atomic_write_text(document, new)
    return new != text


def suite_outputs(results: pd.DataFrame, grid: str, tables: Path, figures: Path) -> list[Path]:
    """``tables/chomsky_<grid>.md`` and ``figures/chomsky_<grid>.png`` for a grid that ran Chomsky-hierarchy
    tasks, ``figures/mqar_<grid>.png`` for one that ran MQAR (``suites``); nothing otherwise."""
    from . import suites

    written = []
    chomsky = results[results["task"].isin(list(suites.LEVELS))]
    if not chomsky.empty:
        path = tables / f"chomsky_{grid}.md"
        atomic_write_text(path, suites.chomsky_table(chomsky))
        written.append(path)
        fig = suites.chomsky_figure(chomsky)
        if fig is not None:
            save(fig, figures / f"chomsky_{grid}.png")
            written.append(figures / f"chomsky_{grid}.png")
    fig = suites.mqar_figure(results, suites.preset_vocabulary(grid))  # (the results do not record it)
    if fig is not None:
        save(fig, figures / f"mqar_{grid}.png")
        written.append(figures / f"mqar_{grid}.png")
    return written


def make_report(result_dirs: list[Path], paper: Path, cost_dir: Path | None = None) -> list[Path]:
    """Regenerate every figure and table that the inputs allow; returns the files written."""
    figures, tables = paper / "figures", paper / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    written = [sharpening_figure(figures)]
    all_results, all_curves = [], []
    for directory in result_dirs:
        grid = directory.name
        results = load_results(directory / "results.csv")  # no rows if the file does not exist
        curves = load_curves(directory / "curves.csv") if (directory / "curves.csv").is_file() else None
        # Run ids repeat across grids (default and paper both have copy-ntm-seed0): keep them apart. Whether
        # two such runs are one run the literature table decides from their curves (identical_runs).
        tagged = results.assign(run_id=grid + "/" + results["run_id"], grid=grid)
        if grid == DIAGNOSIS_GRID:
            # The NTM diagnosis (paper section 8) draws figures of its own, and only its configuration
            # found and its priority sort run on to 1M sequences join the literature table: its other runs
            # are one-seed hypotheses.
            tagged = tagged[tagged["task"].isin([FOUND_TASK, LONG_PRIORITY_SORT[0]])]
            written += make_diagnosis(directory.parent, paper)
        elif not results.empty:
            written += generalisation_curves(results, grid, figures)
            written += suite_outputs(results, grid, tables, figures)
            for path, text in ((tables / f"results_{grid}.md", results_table(results, grid)),
                               (tables / f"statistics_{grid}.md", statistics_table(results, grid))):
                atomic_write_text(path, text)
                written.append(path)
        all_results.append(tagged)
        if curves is not None:
            tagged_curves = curves.assign(run_id=grid + "/" + curves["run_id"])
            all_curves.append(tagged_curves[tagged_curves["run_id"].isin(tagged["run_id"])])
            if grid != DIAGNOSIS_GRID:
                written += learning_curves(results, curves, grid, figures)
    all_results = [results for results in all_results if not results.empty]
    if all_results:
        path = tables / "literature.md"
        curves = pd.concat(all_curves, ignore_index=True) if all_curves else None
        atomic_write_text(path, literature_table(pd.concat(all_results, ignore_index=True), curves))
        written.append(path)
    written += addressing_figures(addressing_checkpoints(result_dirs), figures)
    for directory in result_dirs:  # the Chomsky grid's odds-first NTM (kept weights: keep_models)
        kept = sorted(directory.glob("models/odds_first-ntm-seed*.ckpt"))
        if kept:
            written.append(odds_first_figure(kept[0], figures))
            break
    gpu = paper / "results" / "gpu"   # scripts/gpu_check.sh's files, from a lent GPU: speed and cost together
    for speed_dir, costs, suffix in ((paper / "results" / "speed", cost_dir or paper / "results" / "cost", ""),
                                     (gpu, gpu, "_gpu")):
        if (costs / "cost.csv").is_file():
            path = cost_figure(load_cost(costs / "cost.csv"), load_cost(costs / "cost_fit.csv"), figures,
                               f"cost_per_step{suffix}.png")
            if path:
                written.append(path)
        written += speed_and_cost_outputs(speed_dir, costs, tables, figures, suffix)
    for document in (paper / "paper.md", paper.parent / "README.md"):  # the README beside the paper folder
        if document.is_file() and embed_tables(document, tables):
            written.append(document)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo report", __doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, nargs="+",
                        help="benchmark result folders (default: every paper/results/*/ with a results.csv)")
    parser.add_argument("--cost", type=Path, help="cost sweep folder (default: paper/results/cost)")
    parser.add_argument("--paper", type=Path, default=Path("paper"),
                        help="the paper folder whose figures/ and tables/ are written (default: ./paper, the project's)")
    args = parser.parse_args(argv)
    if not args.paper.is_dir():
        parser.error(f"--paper {args.paper}: not a folder (run from the project's root, or name the paper folder)")
    results = args.results or sorted(p.parent for p in (args.paper / "results").glob("*/results.csv"))
    for directory in results:
        if not directory.is_dir():
            parser.error(f"--results {directory} is not a folder")
        if not (directory / "results.csv").is_file() and not any(directory.rglob("result.json")):
            parser.error(f"--results {directory}: neither a benchmark folder (results.csv) nor run folders "
                         "(result.json, as 'mann-zoo fit' writes)")
    with tempfile.TemporaryDirectory() as scratch:
        # Run folders of 'mann-zoo fit' become a grid of their own, named after the folder (nothing is
        # written into them).
        folders = [directory if (directory / "results.csv").is_file()
                   else collect_runs(directory, Path(scratch) / directory.resolve().name) for directory in results]
        for path in make_report(folders, args.paper, args.cost):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
