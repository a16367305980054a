"""Tables and a figure of ``mann-zoo speed`` and ``mann-zoo bench cost`` results, for ``mann-zoo report``:
what the README and paper section 6 quote (embedded between ``<!-- table: NAME -->`` markers).

Inputs are the CSV files those commands write (``paper/results/speed/*.csv``, ``paper/results/cost/
cost_fit.csv``); every number in the tables is read from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .cost_model import TERMS, format_us, formula
from .peer import PEER_NAME

THIS_CHECKOUT = "this checkout"  # the version column of this checkout's rows (else a revision's hash)
CONTROLLER_ALONE = "controller alone"  # the model column of the yardstick's rows


def _has_baseline(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has a baseline revision's rows (``mann-zoo speed --baseline``) beside this checkout's."""
    return bool((frame["version"] != THIS_CHECKOUT).any())


def _before_label(frame: pd.DataFrame) -> str:
    """The column label of the baseline revision's rows (this checkout's are "now")."""
    before = sorted(set(frame["version"]) - {THIS_CHECKOUT})
    return f"@{before[0]}" if before else "before"


def device_of(frame: pd.DataFrame) -> str:
    """The device the rows were measured on (their ``device`` column: ``cpu``, ``cuda``, a GPU's name);
    ``cpu`` for files from before the column existed or without a value in it."""
    if "device" not in frame.columns or frame["device"].isna().all():
        return "cpu"
    return str(frame["device"].dropna().iloc[0])


def _where(frame: pd.DataFrame) -> str:
    """Where the rows were measured: ``1 thread(s)`` on the CPU, the device on a GPU."""
    device = device_of(frame)
    return f"{int(frame.threads.iloc[0])} thread(s)" if device == "cpu" else device


def _rate(rows: pd.DataFrame, model: str, compiled: bool, now: bool) -> float:
    """Sequences per second per core of one model, compiled or not, this checkout's (``now``) or the
    baseline revision's; NaN where ``rows`` has no such row."""
    match = rows[(rows.model == model) & (rows.compiled == compiled) & ((rows.version == THIS_CHECKOUT) == now)]
    return float(match.sequences_per_s_per_core.iloc[0]) if not match.empty else np.nan


def reference_table(frame: pd.DataFrame) -> str:
    """The reference step (``mann-zoo speed`` without --task): one row per model and compilation, this
    checkout's and the baseline revision's side by side (where there is one), with x controller and the peer."""
    before_label = _before_label(frame)
    baseline = _has_baseline(frame)
    first = frame.iloc[0]
    header = ["model", *([f"ms/step {before_label}"] if baseline else []), "ms/step now",
              *([f"speed-up ({before_label} / now)"] if baseline else []), "x controller (now)", "activations MB",
              "parameters"]
    lines = [f"# Reference step: batch {first.batch_size}, {first.steps} steps, {_where(frame)}", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    ours = frame[frame["version"] == THIS_CHECKOUT]
    for row in ours.itertuples():
        before = frame[(frame["model"] == row.model) & (frame["compiled"] == row.compiled)
                       & (frame["version"] != THIS_CHECKOUT)]
        before_ms = f"{before.ms_per_step.iloc[0]:.1f}" if not before.empty else ""
        speedup = f"{before.ms_per_step.iloc[0] / row.ms_per_step:.2f}" if not before.empty else ""
        label = row.model + (" compiled" if row.compiled else "")
        cells = [label, *([before_ms] if baseline else []), f"{row.ms_per_step:.1f}", *([speedup] if baseline else []),
                 f"{row.x_controller:.2f}", f"{row.activation_mb:.1f}", f"{int(row.num_parameters):,}"]
        lines.append("| " + " | ".join(cells) + " |")
    peer = ours[ours["model"] == PEER_NAME]
    dnc = ours[ours["model"] == "dnc"]
    if not peer.empty and not dnc.empty:
        ratios = ", ".join(f"{'compiled' if r.compiled else 'default'} {r.ms_per_step / peer.ms_per_step.iloc[0]:.2f}"
                           for r in dnc.itertuples())
        lines += ["", f"The DNC's step over the peer's ({peer.model.iloc[0]}), same process and rounds: {ratios}."]
    return "\n".join(lines) + "\n"


def _variants(frame: pd.DataFrame) -> list[tuple[bool, bool]]:
    """The (compiled, now) variants that ``frame`` measured, in the order default before, default now, compiled
    before, compiled now ("default": built without ``compile``; eager, or the NTM's and DNC's sequence kernels) (no "before" without a baseline revision's rows, no "compiled" without --compile)."""
    baseline = _has_baseline(frame)
    return [(compiled, now) for compiled in (False, True) for now in (False, True)
            if (now or baseline) and (frame["compiled"] == compiled).any()]


def _variant_name(variant: tuple[bool, bool], before_label: str) -> str:
    compiled, now = variant
    return f"{'compiled' if compiled else 'default'} {'now' if now else before_label}"


def tasks_table(frame: pd.DataFrame) -> str:
    """Training sequences per second per core at each task's batch: per task and model, default and compiled
    (the variants measured), the baseline revision's and this checkout's (where there is one), and this
    checkout's x controller."""
    before_label = _before_label(frame)
    baseline = _has_baseline(frame)
    variants = _variants(frame)
    names = [_variant_name(variant, before_label) for variant in variants]
    header = ["task (batch, steps)", "model", *names,
              *([f"speed-up (best now / best {before_label})"] if baseline else []), "x controller (best now)"]
    device = device_of(frame)
    title = f"per core ({_where(frame)} per process)" if device == "cpu" else f"on {device}"
    lines = [f"# Training sequences per second {title}", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for (task, batch), rows in frame.groupby(["task", "batch_size"], sort=False):
        steps = int(rows.steps.iloc[0])
        for model in dict.fromkeys(rows.model):
            if model == CONTROLLER_ALONE:
                continue
            cells = {variant: _rate(rows, model, *variant) for variant in variants}
            before = max((c for (_, now), c in cells.items() if not now and not np.isnan(c)), default=np.nan)
            best_now = max((c for (_, now), c in cells.items() if now and not np.isnan(c)), default=np.nan)
            ours = rows[(rows.model == model) & (rows.version == THIS_CHECKOUT)]
            best = ours.loc[ours.sequences_per_s_per_core.idxmax()]
            text = ["" if np.isnan(c) else f"{c:,.0f}" for c in cells.values()]
            ratio = [] if not baseline else ["" if np.isnan(before) else f"{best_now / before:.2f}"]
            lines.append("| " + " | ".join([f"{task} ({batch}, {steps})", model, *text, *ratio,
                                            f"{best.x_controller:.2f}"]) + " |")
    return "\n".join(lines) + "\n"


NOT_MEASURED = {"marker": "x", "color": "0.45", "ms": 5, "ls": "none"}  # where a variant has no bar


def _bars(ax, values: list[float], offset: float, width: float, **style) -> bool:
    """One variant's bars, one per model (``values``, in the models' order) at ``offset`` from its slot; a
    model it did not measure (NaN) gets no bar but a ``NOT_MEASURED`` mark at the foot of the axis: on a log
    axis a bar of 0 does not exist, and an empty slot would read as a value below the axis. Returns
    whether any model was not measured."""
    slots = np.arange(len(values)) + offset
    measured = ~np.isnan(np.asarray(values, dtype=float))
    ax.bar(slots[measured], np.asarray(values)[measured], width, **style)
    ax.plot(slots[~measured], np.full((~measured).sum(), 0.03), transform=ax.get_xaxis_transform(), **NOT_MEASURED)
    return not measured.all()


def speed_figure(frame: pd.DataFrame, out: Path, name: str = "speed_tasks.png") -> Path:
    """Bars of training sequences per second per core (on a GPU: per second), per task and model: the
    variants measured (:func:`_variants`: the baseline revision's and this checkout's, default and compiled),
    on a log axis with plain tick labels from half the lowest rate up (so the lowest bar has a height); a
    variant a model was not measured in marked x at the foot of the axis (:func:`_bars`)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..training.atomic import save_figure
    from .log_ticks import plain_log_ticks

    tasks = list(dict.fromkeys(frame.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    before_label = _before_label(frame)
    colours = {(False, False): "#bbbbbb", (False, True): "#6699cc", (True, False): "#888888", (True, True): "#1f4e99"}
    variants = _variants(frame)
    width = 0.8 / len(variants)
    device = device_of(frame)
    ylabel = "training sequences / s per core" if device == "cpu" else f"training sequences / s on {device}"
    missing = False
    for ax, task in zip(axes[0], tasks):
        rows = frame[frame.task == task]
        models = list(dict.fromkeys(rows.model))
        for k, variant in enumerate(variants):
            missing |= _bars(ax, [_rate(rows, model, *variant) for model in models],
                             (k - (len(variants) - 1) / 2) * width, width, color=colours[variant],
                             label=_variant_name(variant, before_label))
        ax.set_xticks(np.arange(len(models)), [m.replace(CONTROLLER_ALONE, "controller\nalone")
                                               .replace(PEER_NAME, "PyPI dnc") for m in models], fontsize=8,
                      rotation=30, ha="right", rotation_mode="anchor")  # long names (dnc_sparse_n16384) apart
        ax.set(title=f"{task} (batch {rows.batch_size.iloc[0]}, {rows.steps.iloc[0]} steps)", ylabel=ylabel,
               yscale="log", ylim=(0.5 * rows.sequences_per_s_per_core.min(), None))  # the lowest bar is seen
        plain_log_ticks(ax.yaxis)
    handles = axes[0][0].get_legend_handles_labels()[0]
    if missing:
        handles.append(Line2D([], [], label="not measured", **NOT_MEASURED))
    axes[0][0].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    path = out / name
    save_figure(fig, path)
    return path


def cost_fit_table(fits: pd.DataFrame) -> str:
    """The fitted cost model per model: each coefficient with its unit, R^2 and the largest relative error."""
    columns = [column for column, _ in TERMS.values()]
    units = {"fixed_us": "c (us)", "us_per_N": "d (us per N)", "us_per_NW": "a (us per N W)",
             "us_per_N2": "b (us per N^2)", "us_per_NlogN": "s (us per N log2 N)"}
    lines = ["# Fitted cost model: T = c + d N + a N W + b N^2 + s N log2 N (T_controller: the controller alone, "
             "timed in the same rounds, for reference)", "",
             "| model | " + " | ".join(units[c] for c in columns)
             + " | R^2 | largest error | points | T_controller (ms) |",
             "|---" * (len(columns) + 5) + "|"]
    for fit in fits.to_dict("records"):
        cells = ["-" if pd.isna(fit.get(c)) else format_us(fit[c]) for c in columns]
        lines.append(f"| {fit['model']} | " + " | ".join(cells) + f" | {fit['r2']:.3f} | "
                     f"{100 * fit['max_relative_error']:.0f} % | {int(fit['points'])} | {fit['controller_ms']:.1f} |")
    lines += ["", *[f"- {fit['model']}: {formula(fit)}" for fit in fits.to_dict("records")]]
    return "\n".join(lines) + "\n"


def speed_and_cost_outputs(speed_dir: Path, cost_dir: Path, tables: Path, figures: Path,
                           suffix: str = "") -> list[Path]:
    """Write the tables (and the speed figure) that the files in ``speed_dir`` and ``cost_dir`` allow, each
    name ending in ``suffix`` (``_gpu`` for ``paper/results/gpu``, where speed and cost files lie together)."""
    from ..training.atomic import atomic_write_text

    written = []
    sources = [(speed_dir / "reference.csv", f"speed_reference{suffix}.md", reference_table),
               (speed_dir / "tasks.csv", f"speed_tasks{suffix}.md", tasks_table),
               (speed_dir / "batches_copy.csv", f"speed_batches_copy{suffix}.md", tasks_table),
               (cost_dir / "cost_fit.csv", f"cost_fit{suffix}.md", cost_fit_table)]
    frames = {source: pd.read_csv(source) for source, _, _ in sources if source.is_file()}  # each read once
    for source, name, render in sources:
        frame = frames.get(source)
        if frame is not None and ("fit_of" in frame.columns or source.name != "cost_fit.csv"):  # a fit of T itself
            atomic_write_text(tables / name, render(frame))
            written.append(tables / name)
    if speed_dir / "tasks.csv" in frames:
        written.append(speed_figure(frames[speed_dir / "tasks.csv"], figures, f"speed_tasks{suffix}.png"))
    return written
