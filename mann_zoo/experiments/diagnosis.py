"""``mann-zoo report`` for ``paper/results/ntm_diagnosis``: why the NTM did not learn repeat copy.

Paper section 8 explains the figures and the table written here:

- ``ntm_diagnosis_repeat_copy.png``: cost per sequence on the training distribution against sequences
  and against updates, for the NTM before the diagnosis (the paper grid's runs), each hypothesis (one
  seed each) and the configuration found (three seeds), beside the paper's curve read off its figure 7,
  and a third panel zoomed on the plateau where the failing hypotheses lie within a few bits;
- ``ntm_diagnosis_priority_sort.png``: the same for priority sort (figure 18), to the paper's 1M sequences;
- ``ntm_found_repeat_copy.png``, ``ntm_found_priority_sort.png``: the configuration found alone, each of
  its three seeds a line of its own, against sequences and updates, beside the paper's curve;
- ``ntm_diagnosis_heads.png``: read and write weightings over one repeat-copy example of a failing and
  of a solved NTM (from the weights that ``mann-zoo bench`` keeps in ``models/``);
- ``tables/ntm_diagnosis.md``: per run, the cost after 80,000, 200,000 and 300,000 sequences and the
  sequences to < 10 bits.

``one_pass_cost`` computes the plateau near which the failing runs stop: the cost of a model that
reproduces one pass over the stored vectors (or the first vector on every step) and guesses the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from ..training.atomic import atomic_write_text, save_figure  # noqa: E402
from .log_ticks import plain_log_ticks, plain_thousands  # noqa: E402
from .results import is_metric_key, load_curves, load_results, parse_metric_key  # noqa: E402

GRID = "ntm_diagnosis"
FOUND_TASK, FOUND_MODEL = "repeat_copy_rmsprop", "ntm_rmsprop"  # the grid's runs of the configuration found
LONG_PRIORITY_SORT = ("priority_sort_b8", "ntm_b8")  # run on to the paper's 1M sequences: in the literature table
SOLVED_TASKS = (FOUND_TASK, "repeat_copy_final", "repeat_copy_ff")  # whose kept models are scored on longer sequences
BEFORE_GRID = "paper"  # the reproduction grid's runs: the NTM as it was before the diagnosis
REPEAT_COPY_SET = "len_1-10_rep_1-10"  # the training distributions' validation sets
PRIORITY_SORT_SET = "in_20_out_16"


@dataclass(frozen=True)
class Variant:
    """One line of the figures (one row of the table per seed): which runs (grid, task, model), on which
    validation set, the table's label, and how the figures draw it.

    ``style`` and ``marker`` tell apart lines that lie on one another (the runs that stay on the plateau
    are within a few bits of each other); ``drawn_by``: the ``key`` (grid, task, model) of the variant whose
    line is this one's too (the same run continued, or a run with the identical curve), so that the figure
    draws it once and that variant's ``legend`` says so; the table keeps both. ``legend``: the figure's label
    where it must say more than the table's ``label`` (default: the same)."""

    grid: str
    task: str
    model: str
    label: str
    colour: str
    val_set: str = REPEAT_COPY_SET
    style: str = "-"
    marker: str = ""
    drawn_by: tuple[str, str, str] | None = None
    legend: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """(grid, task, model): which runs the variant draws, as ``drawn_by`` names them."""
        return self.grid, self.task, self.model

    @property
    def legend_label(self) -> str:
        return self.legend or self.label


REPEAT_COPY_VARIANTS = [
    Variant(BEFORE_GRID, "repeat_copy", "ntm", "before: fixed 1e-6 memory, count R/10 (paper grid)", "0.55",
            style=":", marker="x"),
    Variant(GRID, "repeat_copy", "ntm_fixed", "count standardised (as the paper)", "tab:purple",
            style="--", marker="o"),
    Variant(GRID, "repeat_copy", "ntm", "+ trained 1e-6 memory (Collier & Beel)", "tab:brown",
            style="--", marker="s"),
    Variant(GRID, "repeat_copy", "ntm_learned", "+ trained N(0, 0.1) memory", "tab:olive", style="--", marker="^"),
    Variant(GRID, "repeat_copy", "ntm_random", "+ fixed N(0, 0.1) memory", "tab:cyan", style="--", marker="v"),
    Variant(GRID, "repeat_copy", "ntm_ff", "feed-forward controller", "tab:red",
            drawn_by=(GRID, "repeat_copy_ff", "ntm_ff")),
    Variant(GRID, "repeat_copy_curriculum", "ntm", "+ curriculum on repeats, threshold 1 (first callback)", "tab:orange"),
    Variant(GRID, "repeat_copy_final", "ntm", "+ curriculum on repeats, threshold 3", "tab:blue"),
    Variant(GRID, "repeat_copy_final6", "ntm", "+ curriculum on repeats, threshold 6", "tab:green"),
    Variant(GRID, "repeat_copy_b8", "ntm_b8", "+ curriculum on repeats, threshold 3, batch 8", "black"),
    Variant(GRID, "repeat_copy_ff", "ntm_ff", "feed-forward controller, 200k (seed 0: the run above, longer)", "tab:red",
            legend="feed-forward controller, to 200k (seed 0's first 80k: the feed-forward hypothesis run, "
                   "the same curve)"),
    Variant(GRID, "repeat_copy_ff_curriculum", "ntm_ff", "feed-forward controller + curriculum on repeats, threshold 3",
            "teal", style="-."),
    Variant(GRID, FOUND_TASK, FOUND_MODEL, "+ curriculum, batch 8, the paper's optimiser "
            "(RMSProp 1e-4, momentum 0.9, clip 10; found: configs/task/repeat_copy.yaml)", "magenta"),
    Variant(GRID, "repeat_copy_rmsprop_plain", "ntm_rmsprop",
            "the paper's optimiser, batch 8, no curriculum", "darkgoldenrod", style="-.", marker="D"),
]
PRIORITY_SORT_VARIANTS = [
    Variant(BEFORE_GRID, "priority_sort", "ntm", "before: fixed 1e-6 memory (paper grid)", "0.55", PRIORITY_SORT_SET,
            style=":", marker="x"),
    Variant(GRID, "priority_sort", "ntm", "trained 1e-6 memory (Collier & Beel)", "tab:brown", PRIORITY_SORT_SET,
            style="--", marker="s"),
    Variant(GRID, "priority_sort", "ntm_learned", "trained N(0, 0.1) memory", "tab:olive", PRIORITY_SORT_SET,
            style="--", marker="^", legend="trained N(0, 0.1) memory, clip 20 or 100 (the same curve: the clip "
                                           "never binds)"),
    Variant(GRID, "priority_sort", "ntm_learned_clip", "trained N(0, 0.1) memory, clip 100", "tab:red",
            PRIORITY_SORT_SET, drawn_by=(GRID, "priority_sort", "ntm_learned")),
    Variant(GRID, "priority_sort_b8", "ntm_b8", "trained 1e-6 memory, batch 8", "tab:cyan", PRIORITY_SORT_SET),
    Variant(GRID, "priority_sort_rmsprop", "ntm_rmsprop_3e5", "batch 8, the paper's optimiser at 3e-5", "magenta",
            PRIORITY_SORT_SET, style="-.", marker="D"),
]
TARGET_BITS = {"repeat_copy": 10.0, "priority_sort": 40.0}  # issue 8: within 200k and 300k sequences
# The paper's NTM with an LSTM controller, read off its figures (sequences, bits; "~" values).
PAPER_POINTS = {
    "repeat_copy": [(20_000, 13.0), (50_000, 4.0), (100_000, 4.0), (150_000, 0.0)],  # fig. 7 ("~3-5 at 50-100k")
    "priority_sort": [(200_000, 40.0), (400_000, 24.0), (1_000_000, 17.0)],  # fig. 18
}


def one_pass_cost(task) -> dict[str, float]:
    """Mean bits per sequence, over ``task``'s first validation set, of three repeat-copy strategies,
    at one bit per guessed bit.

    ``all``: every data bit guessed; ``one_pass``: the stored vectors
    reproduced once and the later R - 1 passes guessed, 8 (R - 1) L bits; ``first_vector``: the first
    vector emitted on every step, right R times, 8 (R L - R) bits.  The end marker is left out.
    """
    task.setup("fit")
    totals = {"all": 0.0, "one_pass": 0.0, "first_vector": 0.0}
    count = 0
    for batch in task.val_dataloader()[0]:
        delimiter = batch.inputs[..., task.bits].argmax(dim=1).to(torch.float64)  # L: the delimiter's step
        scored = batch.mask.sum(dim=1).to(torch.float64) - 1  # R L copy steps (the end marker left out)
        repeats = scored / delimiter
        totals["all"] += float((task.bits * scored).sum())
        totals["one_pass"] += float((task.bits * (repeats - 1) * delimiter).sum())
        totals["first_vector"] += float((task.bits * (scored - repeats)).sum())
        count += batch.inputs.shape[0]
    return {name: value / count for name, value in totals.items()}


def training_curves(results: Path) -> pd.DataFrame:
    """Cost per sequence on every validation set of every run of both grids: one row per validation,
    columns grid, task, model, seed, val_set, step, sequences, updates, cost_bits, converged (whether the
    run stopped at convergence; False for a run without a row in the grid's results table)."""
    columns = ["grid", "task", "model", "seed", "val_set", "step", "sequences", "updates", "cost_bits", "converged"]
    frames = []
    for grid in (BEFORE_GRID, GRID):
        path = results / grid / "curves.csv"
        if path.is_file():
            curves = load_curves(path)
            val_sets = {key: parse_metric_key(key)[0] for key in curves["metric"].unique()
                        if is_metric_key(key) and parse_metric_key(key)[1] == "cost_bits"}
            costs = curves[curves["metric"].isin(list(val_sets))]
            runs = load_results(results / grid / "results.csv")
            converged = runs.loc[runs["converged"].fillna(False), "run_id"].unique()
            frames.append(costs.assign(grid=grid, val_set=costs["metric"].map(val_sets),
                                       converged=costs["run_id"].isin(converged)))
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True).rename(columns={"value": "cost_bits"})
    frame["updates"] = frame["step"]  # optimiser steps, whatever the run's batch size
    return frame[columns]


def _variant(variants: list[Variant], task: str) -> Variant:
    return next(v for v in variants if v.task == task)


def runs_of(curves: pd.DataFrame, variant: Variant) -> pd.DataFrame:
    """The rows of ``variant``'s runs on its validation set."""
    return curves[(curves.grid == variant.grid) & (curves.task == variant.task) & (curves.model == variant.model)
                  & (curves.val_set == variant.val_set)]


@dataclass(frozen=True)
class Zoom:
    """A third panel: the first ``sequences`` on a linear cost axis from ``low`` to ``high`` bits, where the
    runs that stay on the plateau lie within a few bits of each other (on the log axis, one line)."""

    sequences: int
    low: float
    high: float


# Where the runs that stay on the plateau lie: 80,000-sequence hypotheses at ~195-225 bits on repeat copy
# (the one-pass cost, 184, and guessing everything, 226) and at ~120-125 on priority sort.
PLATEAU_ZOOM = {"repeat_copy": Zoom(100_000, 185.0, 245.0), "priority_sort": Zoom(210_000, 119.5, 126.0)}
# The seeds of a variant drawn alone (the configuration found), in turn: a colour and a line style each.
SEED_STYLES = (("black", "-"), ("tab:red", "--"), ("tab:blue", "-."))
SEQUENCES_MARGIN = 1.05  # the sequences axis ends 5 % past the longest run or the paper's last point


def same_curve(curves: pd.DataFrame, variant: Variant, other: Variant) -> bool:
    """Whether every validation of ``variant``'s runs has the cost of ``other``'s run of the same seed at
    the same sequences: the same run continued, or runs whose difference never mattered."""
    mine = runs_of(curves, variant)[["seed", "sequences", "cost_bits"]]
    theirs = runs_of(curves, other)[["seed", "sequences", "cost_bits"]]
    paired = mine.merge(theirs, on=["seed", "sequences"], how="left", suffixes=("", "_other"))
    return not mine.empty and bool((paired["cost_bits"] == paired["cost_bits_other"]).all())


def drawn_variants(curves: pd.DataFrame, variants: list[Variant]) -> list[Variant]:
    """The variants a figure draws: one whose ``drawn_by`` variant has the same curve is left out, and that
    variant keeps its ``legend`` (which says so); where the curves differ, both are drawn under their
    table labels (a legend that claimed the same curve would be wrong)."""
    by_key = {variant.key: variant for variant in variants}
    merged = {variant.key: variant.drawn_by for variant in variants
              if variant.drawn_by in by_key and same_curve(curves, variant, by_key[variant.drawn_by])}
    drawers = set(merged.values())
    return [variant if variant.key in drawers else replace(variant, legend="")
            for variant in variants if variant.key not in merged]


def sequence_limit(curves: pd.DataFrame, variants: list[Variant], paper_task: str) -> float:
    """The right end of the sequences axis: ``SEQUENCES_MARGIN`` past the longest of ``variants``' runs
    or the paper's last point, whichever is further (priority sort runs to the paper's 1M)."""
    runs = [runs_of(curves, variant)["sequences"] for variant in variants]
    longest = max((float(sequences.max()) for sequences in runs if not sequences.empty), default=0.0)
    return SEQUENCES_MARGIN * max(longest, PAPER_POINTS[paper_task][-1][0])


def _draw_variant(axes: list[tuple[plt.Axes, str]], curves: pd.DataFrame, variant: Variant, seeds_apart: bool) -> bool:
    """Draw ``variant``'s runs on each (axis, x column) of ``axes``, one line per seed: one legend entry for
    the variant (its seed count), or with ``seeds_apart`` one per seed, each in a colour and line style of
    its own (``SEED_STYLES``). A marker on about every tenth validation (long runs validate 500 times).
    Returns whether it had runs."""
    runs = runs_of(curves, variant)
    count = runs.seed.nunique()
    for i, (seed, run) in enumerate(runs.groupby("seed")):
        run = run.sort_values("sequences")
        if seeds_apart:
            (colour, style), label = SEED_STYLES[i % len(SEED_STYLES)], f"{variant.legend_label}: seed {seed}"
        else:
            colour, style = variant.colour, variant.style
            label = f"{variant.legend_label} ({count} seed{'s' if count > 1 else ''})" if i == 0 else None
        for ax, x in axes:
            ax.plot(run[x], run["cost_bits"], color=colour, ls=style, marker=variant.marker, ms=3.5,
                    markevery=max(1, len(run) // 10), label=label, lw=1.2)
    return count > 0


def _zoom_panel(ax: plt.Axes, zoom: Zoom) -> None:
    plain_thousands(ax.xaxis)
    ax.set(xlim=(0, zoom.sequences), ylim=(zoom.low, zoom.high), xlabel="sequences seen",
           title="the plateau, zoomed (linear axes)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)


def curves_figure(curves: pd.DataFrame, variants: list[Variant], paper_task: str, path: Path,
                  title: str = "what made the difference (paper section 8)", seeds_apart: bool = False,
                  zoom: Zoom | None = None) -> Path | None:
    """Cost against sequences (left) and updates (right), one line per run, the paper's points beside;
    the legend below the panels (its long labels would cover the curves).

    The sequences axis runs to the longest run (:func:`sequence_limit`); a variant with the same curve as
    another is drawn once (:func:`drawn_variants`); ``seeds_apart``: each seed a colour, a line style and a
    legend entry of its own (the text refers to seeds one by one); ``zoom``: a third panel (:class:`Zoom`)."""
    fig, axes = plt.subplots(1, 3 if zoom else 2, figsize=(16, 5) if zoom else (12, 4.5), layout="constrained",
                             width_ratios=[1, 1, 0.7] if zoom else None)
    axes[1].sharey(axes[0])
    axes[1].tick_params(labelleft=False)
    x_columns = [(axes[0], "sequences"), (axes[1], "updates")] + ([(axes[2], "sequences")] if zoom else [])
    drawn = [variant for variant in drawn_variants(curves, variants)
             if _draw_variant(x_columns, curves, variant, seeds_apart)]
    if not drawn:
        plt.close(fig)
        return None
    points = PAPER_POINTS[paper_task]
    for ax, x in zip(axes, ("sequences", "updates")):
        # The paper's x axis counts sequences; its batch size is not stated (one per update is plausible).
        ax.plot([p[0] for p in points], [p[1] for p in points], "kx", ms=9, mew=2,
                label="Graves et al. 2014 (~, read off the plot)" + ("" if x == "sequences" else ", if batch 1"))
        if x == "sequences":
            ax.set(xlabel="sequences seen", xlim=(0, sequence_limit(curves, drawn, paper_task)))
            plain_thousands(ax.xaxis)
        else:  # log scale: our updates (batch 32) and the paper's (batch 1, if so) on one axis
            ax.set(xlabel="updates (ours: batch 32 unless stated; the paper's batch is not stated)", xscale="log",
                   xlim=(100, 2 * max(p[0] for p in points)))
        ax.set(yscale="symlog")
        plain_log_ticks(ax.yaxis)
        ax.axhline(TARGET_BITS[paper_task], color="k", ls=":", lw=0.8)  # issue 8's target
        ax.grid(alpha=0.3)
    if zoom:
        _zoom_panel(axes[2], zoom)
    axes[0].set_ylabel("cost, bits per sequence (training distribution)")
    fig.legend(handles=axes[1].get_legend_handles_labels()[0], loc="outside lower center",
               ncol=2, fontsize=7)
    fig.suptitle(f"NTM on {paper_task.replace('_', ' ')}: {title}")
    save_figure(fig, path)
    return path


# How each row of the heads figure was trained, by its task in the grid (the title says it beside the run id).
HEADS_NOTES = {"repeat_copy": "Adam, no curriculum", FOUND_TASK: "the paper's RMSProp, curriculum",
               "repeat_copy_final": "Adam, curriculum",
               "repeat_copy_ff": "Adam, feed-forward controller, no curriculum"}
WRAPPED_SLOTS = 4  # the heads figure shows the last slots below slot 0: the shift wraps round the memory


def heads_runs(models: Path) -> list[tuple[str, str, Path]]:
    """The heads figure's rows, top to bottom: (kind, task, checkpoint) of the failing run, then of the
    lowest seed kept of each task in ``SOLVED_TASKS``, in that order; those without a kept model left out."""
    rows = [("failing", "repeat_copy", models / "repeat_copy-ntm_fixed-seed0.ckpt")]
    rows += [("solved", task, path) for task in SOLVED_TASKS
             for path in sorted(models.glob(f"{task}-*-seed*.ckpt"))[:1]]
    return [row for row in rows if row[2].is_file()]


def _slot_axis(ax: plt.Axes, memory_slots: int, shown: int, label: bool) -> None:
    """Label the slot axis of a heads panel: slots ``-WRAPPED_SLOTS .. -1`` are the memory's last ones
    (``memory_slots - WRAPPED_SLOTS`` ..), drawn below slot 0 and under a dashed line, where the
    shift from slot 0 takes the heads; the axis title where ``label`` (the left column)."""
    ticks = [-WRAPPED_SLOTS, -WRAPPED_SLOTS // 2, *range(0, shown, 5)]
    ax.set_yticks(ticks, [str(t % memory_slots) for t in ticks])
    ax.axhline(-0.5, color="0.6", ls="--", lw=0.6)
    if label:
        ax.set_ylabel(f"memory slot (below the dashed line:\nslots {memory_slots - WRAPPED_SLOTS}-"
                      f"{memory_slots - 1}, wrapped round)", fontsize=8)


def heads_figure(models: Path, path: Path, length: int = 6, repeats: int = 3) -> Path | None:
    """Read and write weightings over one repeat-copy example: a failing NTM and the solved ones
    (:func:`heads_runs`, how each was trained in its title), on one colour scale (0 to 1, its colour bar
    beside), the delimiter dotted, the memory's last slots below slot 0 (:func:`_slot_axis`)."""
    from .. import load_model
    from ..training.lightning_module import sequence_scores
    from tasks import RepeatCopyTask

    runs = heads_runs(models)
    if not runs:
        return None
    task = RepeatCopyTask()
    batch = task.generate(torch.Generator().manual_seed(1), 1, length, length, repeats, repeats)
    fig, axes = plt.subplots(len(runs), 2, figsize=(12, 3.2 * len(runs)), squeeze=False, layout="constrained")
    slots = 3 * length + 4
    for row, (kind, task_name, checkpoint) in enumerate(runs):
        core = load_model(checkpoint)
        with torch.no_grad():
            logits, trace = core(batch.inputs, record=True)
        errors = int(sequence_scores(logits, batch.targets, batch.mask)["bit_errors"].sum())
        for column, (ax, key) in enumerate(zip(axes[row], ("write_weights", "read_weights"))):
            weights = trace[key][0, :, 0]  # [T, N], first head
            shown = torch.cat([weights[:, -WRAPPED_SLOTS:], weights[:, :slots]], dim=1)  # slots -4 .. slots-1
            image = ax.imshow(shown.T.numpy(), aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                              extent=(-0.5, weights.shape[0] - 0.5, -WRAPPED_SLOTS - 0.5, slots - 0.5), vmin=0, vmax=1)
            ax.axvline(length, color="w", ls=":", lw=0.8)  # the delimiter step
            ax.set(xlabel="time step")
            _slot_axis(ax, weights.shape[1], slots, label=column == 0)
            ax.set_title(f"{kind} ({HEADS_NOTES.get(task_name, task_name)}): {key.replace('_', ' ')}\n"
                         f"{checkpoint.stem}", fontsize=8)
        axes[row][1].text(0.99, 0.02, f"{errors} bit errors", transform=axes[row][1].transAxes, ha="right",
                          color="w", fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="weight", shrink=0.5)
    fig.suptitle(f"Repeat copy, length {length}, {repeats} repeats: first heads' weightings (dotted: delimiter)")
    save_figure(fig, path)
    return path


def _at(run: pd.DataFrame, sequences: int) -> str:
    """The cost of the last validation at or before ``sequences``; '-' if the run stopped earlier,
    unless it stopped because it converged (then its last cost stands for the later budgets)."""
    before = run[run.sequences <= sequences]
    if before.empty or run.sequences.max() < sequences and not run.converged.iloc[-1]:
        return "-"
    return f"{before.cost_bits.iloc[-1]:.1f}"


def curriculum_at_end(results: Path) -> dict[tuple[str, str, int], float]:
    """The curriculum level (the repeats allowed) at the end of each run of the grid that ran a Curriculum:
    ``(task, model, seed) -> level``, from ``train/curriculum_max_length`` in its curves."""
    curves = load_curves(results / GRID / "curves.csv")
    levels = curves[curves.metric == "train/curriculum_max_length"].sort_values("step")
    return {key: float(group.value.iloc[-1]) for key, group in levels.groupby(["task", "model", "seed"])}


def diagnosis_table(curves: pd.DataFrame, variants: list[Variant],
                    curriculum: dict[tuple[str, str, int], float] | None = None) -> str:
    """Markdown: per run, cost after 80k, 200k and 300k sequences, the sequences to issue 8's target
    (``TARGET_BITS``: 10 bits on repeat copy, 40 on priority sort), and where a
    curriculum ran, the repeats it had reached at the end (``curriculum``: :func:`curriculum_at_end`)."""
    curriculum = curriculum or {}
    lines = ["| task | variant | seed | cost at 80k | at 200k | at 300k | sequences to the target (repeat copy "
             f"< {TARGET_BITS['repeat_copy']:.0f} bits, priority sort < {TARGET_BITS['priority_sort']:.0f}) | "
             "trained for | cost at the end | curriculum at the end |", "|---|---|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        target = TARGET_BITS["priority_sort" if variant.val_set == PRIORITY_SORT_SET else "repeat_copy"]
        for seed, run in runs_of(curves, variant).groupby("seed"):
            run = run.sort_values("sequences")
            below = run[run.cost_bits < target]
            first = f"{int(below.sequences.iloc[0]):,}" if len(below) else "-"
            level = curriculum.get((variant.task, variant.model, int(seed)))
            lines.append(f"| {variant.task} | {variant.label} | {seed} | {_at(run, 80_000)} | {_at(run, 200_000)} | "
                         f"{_at(run, 300_000)} | {first} | {int(run.sequences.max()):,} | {run.cost_bits.iloc[-1]:.1f} | "
                         f"{'-' if level is None else f'{level:.0f} repeat' + ('' if level == 1 else 's')} |")
    return "\n".join(lines) + "\n"


GENERALISATION_COLUMNS = ["run_id", "val_set", "sequences", "cost_bits", "bit_errors", "seq_accuracy"]


def evaluate_kept_models(models: Path, tasks: tuple[str, ...] = SOLVED_TASKS, num_sequences: int = 320) -> pd.DataFrame:
    """Every kept model of the grid's ``tasks`` (its run id starts with ``<task>-``), scored on the validation sets of
    ``configs/task/repeat_copy.yaml`` (the training distribution, then length 20 and 20 repeats):
    mean cost, bit errors and sequence accuracy per sequence, one row per model and set."""
    from .. import load_model
    from .evaluate import score_sets
    from tasks import RepeatCopyTask

    task = RepeatCopyTask(num_val_sequences=num_sequences)  # the sets of configs/task/repeat_copy.yaml
    rows = [score_sets(load_model(checkpoint), task).assign(run_id=checkpoint.stem)
            for task_name in tasks for checkpoint in sorted(models.glob(f"{task_name}-*.ckpt"))]
    return pd.concat(rows, ignore_index=True)[GENERALISATION_COLUMNS] if rows else pd.DataFrame(columns=GENERALISATION_COLUMNS)


def generalisation_table(scores: pd.DataFrame) -> str:
    """Markdown: bit errors per sequence (and sequence accuracy) of each kept model on each set."""
    if scores.empty:
        return ""
    sets = list(dict.fromkeys(scores.val_set))
    lines = ["| run | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for run_id, run in scores.groupby("run_id", sort=True):
        cells = {r.val_set: f"{r.bit_errors:.2f} ({100 * r.seq_accuracy:.0f} %)" for r in run.itertuples()}
        lines.append(f"| {run_id} | " + " | ".join(cells.get(name, "-") for name in sets) + " |")
    return "\n".join(lines) + "\n"


def make_diagnosis(results: Path, paper: Path) -> list[Path]:
    """Write the figures and the table of paper section 8; returns the files written."""
    curves = training_curves(results)
    if curves.empty:
        return []
    figures, tables = paper / "figures", paper / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    written = [
        curves_figure(curves, REPEAT_COPY_VARIANTS, "repeat_copy", figures / "ntm_diagnosis_repeat_copy.png",
                      zoom=PLATEAU_ZOOM["repeat_copy"]),
        curves_figure(curves, PRIORITY_SORT_VARIANTS, "priority_sort", figures / "ntm_diagnosis_priority_sort.png",
                      zoom=PLATEAU_ZOOM["priority_sort"]),
        heads_figure(results / GRID / "models", figures / "ntm_diagnosis_heads.png"),
        *(curves_figure(curves, [replace(variant, label=label)], task, figures / f"ntm_found_{task}.png",
                        title=f"the configuration found ({label})", seeds_apart=True)
          for task, variant, label in (
              ("repeat_copy", _variant(REPEAT_COPY_VARIANTS, FOUND_TASK), "RMSProp, batch 8, curriculum"),
              ("priority_sort", _variant(PRIORITY_SORT_VARIANTS, "priority_sort_b8"), "Adam, batch 8"))),
    ]
    table = tables / "ntm_diagnosis.md"
    from tasks import RepeatCopyTask

    plateau = one_pass_cost(RepeatCopyTask(num_val_sequences=320, val_lengths_repeats=()))
    text = ("# NTM diagnosis: cost per sequence on the training distribution\n\n"
            + diagnosis_table(curves, REPEAT_COPY_VARIANTS + PRIORITY_SORT_VARIANTS, curriculum_at_end(results))
            + f"\nOn the repeat-copy validation set ({REPEAT_COPY_SET}, 320 sequences, seed 0), at one bit per "
              f"guessed bit and without the end marker: guessing every bit costs {plateau['all']:.1f} bits; "
              f"reproducing the stored vectors once and guessing the later passes {plateau['one_pass']:.1f}; "
              f"emitting the first vector on every step {plateau['first_vector']:.1f} (`one_pass_cost`).\n")
    scores = results / GRID / "generalisation.csv"
    if scores.is_file():
        text += ("\nBit errors per sequence (share of sequences without error) of the trained models "
                 f"(`{GENERALISATION_COMMAND}`):\n\n" + generalisation_table(pd.read_csv(scores)))
    atomic_write_text(table, text)
    return [path for path in written if path is not None] + [table]


GENERALISATION_COMMAND = "python -m mann_zoo.experiments.diagnosis --evaluate"


def main(argv: list[str] | None = None) -> None:
    from ..console import CommandParser

    parser = CommandParser("python -m mann_zoo.experiments.diagnosis", __doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=Path("paper") / "results", help="benchmark results folder")
    parser.add_argument("--paper", type=Path, default=Path("paper"), help="where figures/ and tables/ go")
    parser.add_argument("--evaluate", action="store_true", help="first score the kept repeat-copy models on "
                        f"the generalisation sets, into <results>/{GRID}/generalisation.csv")
    args = parser.parse_args(argv)
    if args.evaluate:
        path = args.results / GRID / "generalisation.csv"
        if not (args.results / GRID / "models").is_dir():
            parser.error(f"--evaluate: no kept models in {args.results / GRID / 'models'}")
        scores = evaluate_kept_models(args.results / GRID / "models")
        atomic_write_text(path, scores.to_csv(index=False))
        print(f"wrote {path}")
    for path in make_diagnosis(args.results, args.paper):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
