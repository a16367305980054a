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
from matplotlib.lines import Line2D  # noqa: E402

from .colours import COLOURS, LINE_STYLES, model_colours, model_markers  # noqa: E402
from .results import set_sizes  # noqa: E402

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
    training lengths' edge dashed and the 90 % line dotted. None without test sets.

    Each model has its colour, marker (as in the grid's other figures: ``colours``, in the results
    table's order) and a line style of its own, drawn in that order (the first solid, at the bottom), so
    that a model's line on top of another's (NTM and DNC both at 100 % on duplicate_string) leaves the one
    below it visible through its gaps."""
    tests = generalisation_rows(results).dropna(subset=["length"])
    if tests.empty:
        return None
    tasks = [task for task in LEVELS if task in set(tests["task"])] + sorted(set(tests["task"]) - set(LEVELS))
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    models = [model for model in results["model"].dropna().unique() if model in set(tests["model"])]
    colours, markers = model_colours(models), model_markers(models)
    styles = dict(zip(models, LINE_STYLES * len(models)))
    edges = training_edges(results).dropna().astype(int)
    for ax, task in zip(axes.flat, tasks):
        medians = (tests[tests["task"] == task].groupby(["model", "length"])["token_accuracy"].median()
                   .reset_index())
        for model, line in sorted(medians.groupby("model"), key=lambda item: models.index(item[0])):
            ax.plot(line["length"].astype(int), 100 * line["token_accuracy"].astype(float), marker=markers[model],
                    ms=4, ls=styles[model], color=colours[model], label=model)
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
    handles = [Line2D([], [], color=colours[model], marker=markers[model], ms=4, ls=styles[model], label=model)
               for model in models]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(7, len(handles)), fontsize=8)
    fig.suptitle("Chomsky hierarchy: token accuracy past the training lengths (1-40); median over seeds; "
                 "dotted: 90 %; dashed: the longest training length", fontsize=9)
    return fig


MQAR_TASK = "mqar"
SIZE_PART = re.compile(r"_(n|h)(\d+(?:x\d+)?)(?=_|$)")  # _n<slots>, _h<units>, _h<layers>x<units>
SIZE_NAMES = {"n": "N={}", "h": "h={}"}  # how a point is labelled with its size


def model_line(model: str) -> str:
    """``ntm_n64_lr3e3`` -> ``ntm_lr3e3``, ``lstm_h3x256`` -> ``lstm``: a model without its size (memory slots
    ``_n<slots>``, hidden sizes ``_h<units>`` or ``_h<layers>x<units>``); the sizes of one line share it."""
    return SIZE_PART.sub("", model)


def model_family(model: str) -> str:
    """The core a model runs, whose colour it takes: the longest name in ``colours.COLOURS`` that ``model``
    is or begins with (then ``_``): ``ntm_n64`` and ``ntm_n64_lr3e3`` -> ``ntm``, ``lstm_h3x256`` -> ``lstm``,
    ``transformer_2l`` -> ``transformer``; for a core without a colour of its own, :func:`model_line`."""
    known = [name for name in COLOURS if model == name or model.startswith(name + "_")]
    return max(known, key=len) if known else model_line(model)


def model_size(model: str) -> str:
    """The size in a model's name, as its point is labelled: ``ntm_n64`` -> ``N=64``, ``lstm_h3x256`` ->
    ``h=3x256``; empty for a model without one (the Transformer, whose state grows with the length)."""
    match = SIZE_PART.search(model)
    return SIZE_NAMES[match[1]].format(match[2]) if match else ""


def mqar_pairs(val_set: str) -> int | None:
    """The key-value pairs P of an MQAR validation setting (``len_64_pairs_4`` -> 4); None for another name."""
    sizes = set_sizes(val_set)
    return sizes["pairs"][0] if sizes and sizes.keys() == {"len", "pairs"} else None


def chance_accuracy(vocabulary: int) -> float:
    """The accuracy at the queries of a model that answers with a value, any value: the values are the
    upper half of the vocabulary (``tasks.mqar``: tokens V // 2 .. V - 1), so 1 in V - V // 2."""
    return 1.0 / (vocabulary - vocabulary // 2)


def preset_vocabulary(grid: str) -> int | None:
    """The MQAR vocabulary of the shipped grid named ``grid`` (``mann-zoo bench --preset <grid>`` writes
    ``paper/results/<grid>``): its MQAR runs' ``data.vocabulary`` override, else their task config's, else
    ``MQARTask``'s default. None where no shipped grid has that name, it runs no MQAR or its runs differ
    (the results table does not record the vocabulary)."""
    import inspect

    import yaml

    from ..configs import find_config
    from .grid import load_grid
    from tasks import MQARTask

    path = find_config(f"bench/{grid}.yaml")
    if not path.is_file():
        return None
    default = inspect.signature(MQARTask).parameters["vocabulary"].default
    vocabularies = set()
    for run in load_grid(path, check=False).runs:
        if run.task == MQAR_TASK:
            task_config = yaml.safe_load(run.configs[0].read_text())
            configured = task_config.get("data", {}).get("init_args", {}).get("vocabulary", default)
            vocabularies.add(int(run.overrides.get("data.vocabulary", configured)))
    return vocabularies.pop() if len(vocabularies) == 1 else None


def seeds_note(rows: pd.DataFrame) -> str:
    """What a point is, by the seeds per model and setting in ``rows``: ``one seed each``, ``median over
    2 seeds`` or ``median over 1-2 seeds`` where they differ."""
    counts = rows.groupby(["val_set", "model"])["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    if high == 1:
        return "one seed each"
    return f"median over {low if low == high else f'{low}-{high}'} seeds"


def _mqar_levels(ax: plt.Axes, pairs: int | None, vocabulary: int | None) -> None:
    """The levels the text argues from, on one setting's panel: guessing among the context's ``pairs``
    values (100 / P %, dashed) and, where the vocabulary is known, chance (:func:`chance_accuracy`, dotted)."""
    if pairs:
        ax.axhline(100 / pairs, color="0.35", ls="--", lw=0.9)
    if vocabulary:
        ax.axhline(100 * chance_accuracy(vocabulary), color="0.35", ls=":", lw=0.9)


def mqar_figure(results: pd.DataFrame, vocabulary: int | None = None) -> Figure | None:
    """MQAR accuracy at the query positions against state size (``models.state_size``, at each set's
    length: the Transformer's grows with it), a panel per validation setting (sequence length, pairs), a
    point per model (median over seeds; the title says how many), each labelled with its size
    (:func:`model_size`), the sizes of one model joined (:func:`model_line`), a colour per core
    (:func:`model_family`: the colour it has in every figure) and a marker per line; a hollow point: a run
    of that model stopped before its budget (its accuracy where it stopped). Dashed: guessing among the
    context's P values; dotted, with ``vocabulary`` (the results do not record it: :func:`preset_vocabulary`):
    chance. None without MQAR runs that recorded a state size."""
    rows = results[(results["task"] == MQAR_TASK) & (results["status"] != "failed")].dropna(
        subset=["state_size", "token_accuracy"])
    if rows.empty:
        return None
    settings = list(dict.fromkeys(rows["val_set"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(3.4 * len(settings), 3.2), squeeze=False, sharey=True,
                             layout="constrained")
    medians = (rows.groupby(["val_set", "model"], sort=False)
               .agg(state_size=("state_size", "median"), accuracy=("token_accuracy", "median"),
                    stopped=("status", lambda status: bool((status == "stopped").any()))).reset_index())
    medians = medians.assign(line=medians["model"].map(model_line), family=medians["model"].map(model_family))
    lines = sorted(medians["line"].unique(), key=lambda line: (model_family(line), line != model_family(line), line))
    colours = model_colours(sorted(medians["family"].unique()))
    markers = model_markers(lines)
    top = 1.1 * float(medians["accuracy"].max())  # the accuracy axis' top: room for the labels above the points
    for ax, setting in zip(axes[0], settings):
        _mqar_levels(ax, mqar_pairs(setting), vocabulary)
        panel = medians[medians["val_set"] == setting]
        above = label_sides(panel, top)
        for line, points in panel.groupby("line"):
            points = points.sort_values("state_size")
            _mqar_line(ax, points, line, colours[model_family(line)], markers[line],
                       [above[model] for model in points["model"]])
        ax.set_xscale("log")
        ax.set_title(setting.replace("len_", "T = ").replace("_pairs_", ", pairs = "), fontsize=9)
        ax.set_xlabel("state size (numbers per example, log)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy at the queries, %")
    axes[0, 0].set_ylim(top=100 * top)
    fig.legend(handles=_mqar_handles(lines, colours, markers, medians["stopped"].any(), vocabulary),
               loc="outside lower center", ncols=min(5, len(lines) + 3), fontsize=8)
    fig.suptitle("MQAR: accuracy against state size (numbers carried from step to step, at the set's length); "
                 f"{seeds_note(rows)}", fontsize=9)
    return fig


def label_sides(panel: pd.DataFrame, y_span: float) -> dict[str, bool]:
    """Per model of one panel's points (columns model, state_size, accuracy), whether its size label goes
    above its point (else below): away from the nearest other point, the distances as shares of the panel's
    decades of state size and of ``y_span`` (the accuracy axis' height), so that two lines close together
    (the NTM's and the DNC's, at the guessing level) are labelled on their outer sides."""
    x = np.log10(panel["state_size"].astype(float).to_numpy())
    y = panel["accuracy"].astype(float).to_numpy()
    x_span = max(float(np.ptp(x)), 1.0)
    sides = {}
    for i, model in enumerate(panel["model"]):
        distances = np.hypot((x - x[i]) / x_span, (y - y[i]) / y_span)
        distances[i] = np.inf
        sides[model] = len(y) == 1 or bool(y[int(np.argmin(distances))] <= y[i])
    return sides


def _mqar_line(ax: plt.Axes, points: pd.DataFrame, line: str, colour: str, marker: str, above: list[bool]) -> None:
    """One line of :func:`mqar_figure` on one panel: its points joined, each labelled with its size (above
    the point or, where ``above`` says not, below it: :func:`label_sides`), those of a run stopped before its
    budget hollow (drawn again, labelled ``_stopped``)."""
    x, y = points["state_size"].astype(float).to_numpy(), 100 * points["accuracy"].astype(float).to_numpy()
    ax.plot(x, y, marker=marker, ms=5, color=colour, label=line)
    stopped = points["stopped"].to_numpy(bool)
    ax.plot(x[stopped], y[stopped], ls="", marker=marker, ms=5, mfc="white", color=colour, label="_stopped")
    for size, at, accuracy, up in zip(points["model"].map(model_size), x, y, above):
        if size:
            ax.annotate(size, (at, accuracy), xytext=(0, 4 if up else -4), textcoords="offset points",
                        ha="center", va="bottom" if up else "top", fontsize=6, color=colour)


def _mqar_handles(lines: list[str], colours: dict[str, str], markers: dict[str, str], stopped: bool,
                  vocabulary: int | None) -> list[Line2D]:
    """The legend of :func:`mqar_figure`: a line per model without its size, then what hollow points and
    the dashed and dotted levels mean."""
    handles = [Line2D([], [], color=colours[model_family(line)], marker=markers[line], ms=5, label=line)
               for line in lines]
    if stopped:
        handles.append(Line2D([], [], ls="", color="0.3", marker="o", ms=5, mfc="white",
                              label="stopped before its budget"))
    handles.append(Line2D([], [], ls="--", color="0.35", label="guessing among the context's P values (100/P %)"))
    if vocabulary:
        values = round(1 / chance_accuracy(vocabulary))
        handles.append(Line2D([], [], ls=":", color="0.35", label=f"chance: one of the {values} values (1/{values})"))
    return handles
