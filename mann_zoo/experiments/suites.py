"""The report's tables and figures of the length-generalisation suites (issue 13): the Chomsky-hierarchy
table of Deletang et al. 2023 with our models beside theirs, accuracy against test length, and MQAR's
accuracy against state size (Arora et al. 2023's axes).

Score, as theirs: a run's per-sequence token accuracy averaged over the test lengths, every length from
the longest training length + 1 (41) to the longest tested, each equally (their 41-500). A grid tests a
few of them (every validation set but the first, which follows the training distribution: 50, 100, 200 and
500 in the chomsky grid); the accuracy between two tested lengths is interpolated linearly, and held at
the shortest tested one below it: an estimate of their mean, where a plain mean of the four sets would
weigh lengths 41-150 as much as 150-500. Over seeds, the median and the best (they report the best of 3
learning rates x 10 seeds); "solved" at >= 90 %.
"""

from __future__ import annotations

import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .colours import model_colours  # noqa: E402

SOLVED = 0.9  # Deletang et al.'s threshold on the score
# Their scores in %, literature.md ("from a secondary copy of table 2"), by their model as named here (rnn: their
# plain RNN, which this project does not have). Tasks they report that are not listed here: not checked yet.
PUBLISHED = {
    "modular_arithmetic": {"rnn": 100.0, "stack_rnn": 100.0, "tape_rnn": 100.0, "transformer": 24.2, "lstm": 100.0},
    "parity_check": {"rnn": 100.0, "stack_rnn": 100.0, "tape_rnn": 100.0, "transformer": 52.0, "lstm": 100.0},
    "stack_manipulation": {"rnn": 56.0, "stack_rnn": 100.0, "tape_rnn": 100.0, "transformer": 57.5, "lstm": 59.1},
    "reverse_string": {"rnn": 62.0, "stack_rnn": 100.0, "tape_rnn": 100.0, "transformer": 62.3, "lstm": 60.9},
    "duplicate_string": {"rnn": 50.3, "stack_rnn": 52.8, "tape_rnn": 100.0, "transformer": 52.8, "lstm": 57.6},
    "odds_first": {"rnn": 51.0, "stack_rnn": 51.9, "tape_rnn": 100.0, "transformer": 52.8, "lstm": 55.6},
}
SEED_MARKS = {"stopped": "*", "diverged": "x"}  # beside a seed in the table: how its run ended, if not at its budget
LEVELS = {  # the Chomsky-hierarchy level of each task (Deletang et al., table 2)
    "parity_check": "R", "modular_arithmetic": "R", "cycle_navigation": "R", "even_pairs": "R",
    "reverse_string": "DCF", "stack_manipulation": "DCF", "modular_arithmetic_brackets": "DCF",
    "duplicate_string": "CS", "odds_first": "CS", "missing_duplicate": "CS", "binary_addition": "CS",
    "bucket_sort": "CS",
}


def generalisation_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of the test sets: every validation set of a run but its first (the training distribution),
    with ``length`` (the set's input length, from ``len_<n>``). Failed runs left out."""
    rows = results[results["status"] != "failed"]
    first = rows.groupby("run_id", sort=False)["val_set"].transform("first")
    rows = rows[rows["val_set"] != first]
    return rows.assign(length=rows["val_set"].str.extract(r"^len_(\d+)$", expand=False).astype("Int64"))


def training_edges(results: pd.DataFrame) -> pd.Series:
    """Per run id, the longest training length (from its first validation set, ``len_<a>-<b>``: b); NaN
    where that set is not a length range."""
    first = results.groupby("run_id", sort=False)["val_set"].first()
    return first.str.extract(r"^len_\d+-(\d+)$", expand=False).astype("Int64")


def length_weighted_mean(lengths: list[int], accuracies: list[float], shortest: int) -> float:
    """The mean, over every length from ``shortest`` to the longest of ``lengths``, of the accuracy
    interpolated linearly between the tested ``lengths`` (held at the first tested value below it)."""
    order = np.argsort(lengths)
    every = np.arange(shortest, max(lengths) + 1)
    return float(np.interp(every, np.asarray(lengths)[order], np.asarray(accuracies, dtype=float)[order]).mean())


def run_score(tests: pd.DataFrame, trained_to: int | None) -> float:
    """A run's score from its test sets' rows (``generalisation_rows``): :func:`length_weighted_mean` from
    ``trained_to`` + 1 (the longest training length; None: from the shortest tested length); the plain mean
    of the sets where a set is not one length (``len_<n>``)."""
    tests = tests.dropna(subset=["token_accuracy"])
    if tests.empty:
        return float("nan")
    if tests["length"].isna().any():
        return float(tests["token_accuracy"].mean())
    lengths = tests["length"].astype(int).tolist()
    shortest = min(lengths) if trained_to is None else min(trained_to + 1, min(lengths))
    return length_weighted_mean(lengths, tests["token_accuracy"].astype(float).tolist(), shortest)


def chomsky_scores(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: task, model, seed, status (``results.py``: finished, stopped, diverged) and score
    (its token accuracy averaged over the test lengths: :func:`run_score`, the module docstring)."""
    tests = generalisation_rows(results)
    trained = training_edges(results)
    rows = []
    for (task, model, run_id), run in tests.groupby(["task", "model", "run_id"], sort=False):
        edge = trained.get(run_id)
        rows.append({"task": task, "model": model, "run_id": run_id, "seed": run["seed"].iloc[0],
                     "status": run["status"].iloc[0],
                     "score": run_score(run, None if pd.isna(edge) else int(edge))})
    return pd.DataFrame(rows, columns=["task", "model", "run_id", "seed", "status", "score"])


def chomsky_table(results: pd.DataFrame) -> str:
    """Markdown: per task (in hierarchy order) and model, our score (median, best and seeds) beside the
    published one where literature.md has it."""
    scores = chomsky_scores(results)
    lines = ["Score: a run's per-sequence token accuracy averaged over the test lengths, in %: every length from "
             "the longest training length + 1 to the longest tested, each equally, interpolated linearly between "
             "the tested lengths (the validation sets past the training lengths) and held at the shortest tested "
             "below it; ours the median and the best over seeds; solved: best >= 90 %. "
             "Published: Deletang et al. 2023 table 2 (from a secondary copy, literature.md), the best of 3 "
             "learning rates x 10 seeds at 1M steps and test lengths 41-500: our protocol is scaled down "
             "(the grid file says how). A seed marked * stopped before its budget (resumable): its score is "
             "the point where it stopped; marked x, it diverged (a non-finite loss).", "",
             "| level | task | model | ours: median (best) | seeds | solved | published |", "|---|---|---|---|---|---|---|"]
    order = {task: i for i, task in enumerate(LEVELS)}
    for (task, model), runs in sorted(scores.groupby(["task", "model"], sort=False),
                                      key=lambda item: (order.get(item[0][0], len(order)), item[0][1])):
        values = runs["score"].dropna()
        seeds = " ".join(f"{int(run.seed)}{SEED_MARKS.get(run.status, '')}"
                         for run in runs.dropna(subset=["seed"]).sort_values("seed").itertuples())
        ours = "-" if values.empty else f"{100 * values.median():.1f} ({100 * values.max():.1f})"
        solved = "-" if values.empty else ("yes" if values.max() >= SOLVED else "no")
        published = PUBLISHED.get(task, {}).get(model)
        lines.append(f"| {LEVELS.get(task, '-')} | {task} | {model} | {ours} | {seeds} | {solved} | "
                     f"{'-' if published is None else f'{published:.1f}'} |")
    return "\n".join(lines) + "\n"


def chomsky_figure(results: pd.DataFrame) -> Figure | None:
    """Token accuracy against test length, a panel per task, a line per model (median over seeds), the
    training lengths' edge dashed and the 90 % line dotted. None without test sets."""
    tests = generalisation_rows(results).dropna(subset=["length"])
    if tests.empty:
        return None
    tasks = [task for task in LEVELS if task in set(tests["task"])] + sorted(set(tests["task"]) - set(LEVELS))
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    colours = model_colours(sorted(tests["model"].unique()))
    edges = training_edges(results).dropna().astype(int)
    for ax, task in zip(axes.flat, tasks):
        medians = (tests[tests["task"] == task].groupby(["model", "length"])["token_accuracy"].median()
                   .reset_index())
        for model, line in medians.groupby("model"):
            ax.plot(line["length"].astype(int), 100 * line["token_accuracy"].astype(float), marker="o", ms=3,
                    color=colours[model], label=model)
        ax.axhline(100 * SOLVED, color="0.5", ls=":", lw=1)
        if not edges.empty:
            ax.axvline(int(edges.max()), color="0.4", ls="--", lw=1)
        ax.set_title(f"{task} ({LEVELS.get(task, '?')})", fontsize=9)
        ax.set_xscale("log")
        ticks = sorted(set(tests["length"].astype(int)) | set(edges.astype(int)))
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)  # the lengths themselves, not 4 x 10^1
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("token accuracy, %")
    for ax in axes[-1]:
        ax.set_xlabel("test length (log)")
    handles = [plt.Line2D([], [], color=colour, marker="o", ms=3, label=model) for model, colour in colours.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(7, len(handles)), fontsize=8)
    fig.suptitle("Chomsky hierarchy: token accuracy past the training lengths (1-40); median over seeds; "
                 "dotted: 90 %; dashed: the longest training length", fontsize=9)
    return fig


MQAR_TASK = "mqar"


def model_family(model: str) -> str:
    """``ntm_n64`` -> ``ntm``, ``lstm_h3x256`` -> ``lstm``: the models of one family (one core at several
    memory sizes ``_n<slots>`` or hidden sizes ``_h<units>``, ``_h<layers>x<units>``) share a line."""
    return re.sub(r"_[nh]\d+(x\d+)?$", "", model)


def mqar_figure(results: pd.DataFrame) -> Figure | None:
    """MQAR accuracy at the query positions against state size (``models.state_size``, at each set's
    length: the Transformer's grows with it), a panel per validation setting (sequence length, pairs), a
    point per model (median over seeds), the sizes of one family joined; a hollow point: a run of that
    model stopped before its budget (its accuracy where it stopped). None without MQAR runs that recorded a
    state size."""
    rows = results[(results["task"] == MQAR_TASK) & (results["status"] != "failed")].dropna(
        subset=["state_size", "token_accuracy"])
    if rows.empty:
        return None
    settings = list(dict.fromkeys(rows["val_set"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(3.4 * len(settings), 3.0), squeeze=False, sharey=True,
                             layout="constrained")
    medians = (rows.groupby(["val_set", "model"], sort=False)
               .agg(state_size=("state_size", "median"), accuracy=("token_accuracy", "median"),
                    stopped=("status", lambda status: bool((status == "stopped").any()))).reset_index())
    medians = medians.assign(family=medians["model"].map(model_family))
    families = sorted(medians["family"].unique())
    colours = model_colours(families)
    for ax, setting in zip(axes[0], settings):
        for family, points in medians[medians["val_set"] == setting].groupby("family"):
            points = points.sort_values("state_size")
            x, y = points["state_size"].astype(float), 100 * points["accuracy"].astype(float)
            ax.plot(x, y, marker="o", ms=4, color=colours[family], label=family)
            stopped = points["stopped"].to_numpy(bool)
            ax.plot(x[stopped], y[stopped], ls="", marker="o", ms=4, mfc="white", color=colours[family],
                    label="_stopped")
        ax.set_xscale("log")
        ax.set_title(setting.replace("len_", "T = ").replace("_pairs_", ", pairs = "), fontsize=9)
        ax.set_xlabel("state size (numbers per example, log)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy at the queries, %")
    handles = [plt.Line2D([], [], color=colours[f], marker="o", ms=4, label=f) for f in families]
    if medians["stopped"].any():
        handles.append(plt.Line2D([], [], ls="", color="0.3", marker="o", ms=4, mfc="white",
                                  label="stopped before its budget"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(7, len(handles)), fontsize=8)
    fig.suptitle("MQAR: accuracy against state size (numbers carried from step to step, at the set's length); "
                 "median over seeds", fontsize=9)
    return fig
