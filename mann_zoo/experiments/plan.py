"""A grid's compute plan from measured speed: ``mann-zoo bench --plan``.

Before a long grid starts, each of its (task, model) configurations is trained for a few steps (one seed,
the grid's own arguments, the full training distribution: no curriculum), through the same Ray runner
as the grid, and timed: the median training step, and the mean of :data:`PROBE_VALIDATIONS` validations
of all the task's validation sets (the first compiles for the validation lengths: its share is an
overestimate that a long run amortises). Time it on a quiet machine: the plan is only as good as that.
The plan is then, per (task, model), the runs times their budget:

    hours per run = (max_steps x step time + max_steps / val_check_interval x validation time) / 3600

an upper bound (a run that converges stops earlier). Once runs have finished, the plan also says what is
left: per (task, model), the runs not yet finished times the median measured time (training and
validation) of those that have, capped at the upper bound, or the upper bound where none has. (A finished
run that took longer than the bound ran slower code or on a busier machine than the probe: after a speed-up,
``--retime`` the probes and the cap follows; the finished runs' times stay as they were.) The probes go to ``<out>/plan/``
(a rerun reuses them, from their folders or, in a fresh clone, from ``<out>/plan/results.csv``: delete
that folder to time again). A probe is reused only while its configuration is the one it timed
(:func:`probe_fingerprint`, kept in ``<out>/plan/probes.json``): one whose config files or overrides have
changed since is timed again. The plan is written as ``<out>/plan.csv`` and as a Markdown table,
``<out>/plan.md``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

from ..training.atomic import atomic_write_text
from .grid import Grid, RunSpec
from .results import CURVE_COLUMNS, RESULT_COLUMNS, load_curves, load_results, result_summary, save_table

PROBE_STEPS = 20  # training steps between the probe's validations (the first steps compile: they fall out of the median)
PROBE_VALIDATIONS = 3  # validations per probe; the plan takes their mean
UNTIMED = ("model.lr",)  # overrides that do not change the time of a step: runs that differ only there share a probe
FINGERPRINTS = "probes.json"  # in the probes' folder: {probe run id: probe_fingerprint}
PLAN_COLUMNS = {
    "task": "string", "model": "string", "runs": "Int64", "max_steps": "Int64", "sequences": "Int64",
    "step_ms": "Float64", "validation_s": "Float64", "hours_per_run": "Float64", "hours": "Float64",
    "finished": "Int64", "measured_hours_per_run": "Float64", "hours_left": "Float64",
}


def timing_key(spec: RunSpec) -> tuple:
    """What decides the time of ``spec``'s steps: its config files and overrides, less :data:`UNTIMED`."""
    timed = {key: value for key, value in spec.overrides.items() if key not in UNTIMED}
    return spec.configs, json.dumps(timed, sort_keys=True)


def has_curriculum(spec: RunSpec) -> bool:
    """Whether the task of ``spec`` (the data class its config files name, the last one winning) can run a
    curriculum (``supports_curriculum``)."""
    from ..models.registry import import_object

    class_path = None
    for config in spec.configs:
        data = (yaml.safe_load(Path(config).read_text()) or {}).get("data") or {}
        class_path = data.get("class_path", class_path)
    return class_path is not None and bool(getattr(import_object(class_path), "supports_curriculum", False))


def probe_grid(grid: Grid, steps: int = PROBE_STEPS) -> Grid:
    """One short run per configuration of ``grid`` (:func:`timing_key`): its first seed,
    :data:`PROBE_VALIDATIONS` x ``steps`` steps with a validation every ``steps``, the whole training
    distribution from the first step (no curriculum), no early stop."""
    first = {}
    for spec in grid.runs:
        first.setdefault(timing_key(spec), spec)
    runs = [replace(spec, max_steps=PROBE_VALIDATIONS * steps, keep_model=False,
                    overrides={**spec.overrides, **({"data.curriculum_max_length": None, "trainer.callbacks": []}
                                                    if has_curriculum(spec) else {})})
            for spec in first.values()]
    return replace(grid, name=f"{grid.name}-plan", runs=runs, val_check_interval=steps, stop_at_convergence=False)


def probes_for(declared: Grid, runs: list[RunSpec], steps: int = PROBE_STEPS) -> Grid:
    """The probes that time ``runs`` (some runs of the grid, as ``--only`` and ``--seeds`` chose them): those
    of :func:`probe_grid` of the ``declared`` grid (its own seeds) whose configuration one of ``runs`` has.
    A probe's run id is then the same whichever runs are planned, and it is timed once."""
    keys = {timing_key(spec) for spec in runs}
    return probe_grid(replace(declared, runs=[spec for spec in declared.runs if timing_key(spec) in keys]), steps)


def plan_table(grid: Grid, probes: dict[tuple, dict], measured: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The plan (``PLAN_COLUMNS``, one row per (task, model) in grid order, then a total row) from the
    probes' ``result.json`` summaries, keyed by :func:`timing_key`.

    ``measured``: the hours (training and validation) of each finished run of the grid, by run id. A
    (task, model)'s ``hours_left`` is its unfinished runs times the median of its finished runs' hours capped
    at the upper bound ``hours_per_run`` (module docstring), or times that bound where none has finished (a run
    stopped part-way counts as unfinished, whole)."""
    measured = measured or {}
    rows, spent = {}, {}
    for spec in grid.runs:
        key = (spec.task, spec.model)
        if key not in rows:
            probe = probes[timing_key(spec)]
            step_s, validation_s = probe["step_time_ms"] / 1e3, probe["val_time_s"] / PROBE_VALIDATIONS
            per_run = (spec.max_steps * step_s + spec.max_steps / grid.val_check_interval * validation_s) / 3600
            rows[key] = {"task": spec.task, "model": spec.model, "runs": 0, "max_steps": spec.max_steps,
                         "sequences": spec.max_steps * probe["batch_size"], "step_ms": 1e3 * step_s,
                         "validation_s": validation_s, "hours_per_run": per_run, "finished": 0}
            spent[key] = []
        rows[key]["runs"] += 1
        if spec.run_id in measured:
            rows[key]["finished"] += 1
            spent[key].append(measured[spec.run_id])
    for key, row in rows.items():
        median = float(pd.Series(spent[key]).median()) if spent[key] else None
        row["measured_hours_per_run"] = median
        per_run = row["hours_per_run"] if median is None else min(median, row["hours_per_run"])
        row["hours_left"] = (row["runs"] - row["finished"]) * per_run
    table = pd.DataFrame(list(rows.values()))
    table["hours"] = table["runs"] * table["hours_per_run"]
    total = {"task": "total", "model": "", "runs": table["runs"].sum(), "hours": table["hours"].sum(),
             "finished": table["finished"].sum(), "hours_left": table["hours_left"].sum()}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True).astype(PLAN_COLUMNS)


def measured_hours(recorded: pd.DataFrame, finished: set[str]) -> dict[str, float]:
    """The hours each run of ``finished`` (run ids) took, training and validation, from its rows of the
    ``recorded`` results table."""
    runs = recorded.drop_duplicates("run_id").set_index("run_id")
    runs = runs[runs.index.isin(finished)]
    return ((runs["train_time_s"].astype(float) + runs["val_time_s"].astype(float).fillna(0)) / 3600).dropna().to_dict()


def markdown(table: pd.DataFrame, threads: int, jobs: int, only: list[str] | None = None) -> str:
    """The plan as a Markdown table, with the wall time at ``jobs`` runs side by side; ``only``: the
    ``bench --only`` patterns that chose its runs (said under the table; None: the whole grid)."""
    lines = ["| task | model | runs | budget (steps / sequences) | ms/step | s/validation | hours/run | hours "
             "| finished | measured hours/run (median) | hours left |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        if r.task == "total":
            continue
        measured = "-" if pd.isna(r.measured_hours_per_run) else f"{r.measured_hours_per_run:.2f}"
        lines.append(f"| {r.task} | {r.model} | {r.runs} | {r.max_steps:,} / {r.sequences:,} | {r.step_ms:.0f} | "
                     f"{r.validation_s:.1f} | {r.hours_per_run:.2f} | {r.hours:.1f} | {r.finished} | {measured} | "
                     f"{r.hours_left:.1f} |")
    total = table.iloc[-1]
    lines.append(f"| **total** | | {total['runs']} | | | | | **{total['hours']:.1f}** | {total['finished']} | | "
                 f"**{total['hours_left']:.1f}** |")
    return ("\n".join(lines) + f"\n\nUpper bound (every run to its budget): {total['hours']:.1f} core-hours at {threads} "
            f"thread(s) per run, {total['hours'] / jobs:.1f} hours of wall time with {jobs} runs side by "
            f"side. Left: {total['runs'] - total['finished']} runs, about {total['hours_left']:.1f} core-hours "
            f"({total['hours_left'] / jobs:.1f} wall hours), at the median measured time of each (task, model)'s "
            "finished runs capped at its upper bound (finished runs slower than the bound ran older code or on a "
            "busier machine), or the upper bound where none has finished.\n"
            + ("" if only is None else f"\nOnly the runs that `--only {' '.join(only)}` names.\n"))


def read_probes(out: Path, grid: Grid, probes_grid: Grid) -> dict[tuple, dict]:
    """The summaries of the probe runs ``probes_grid`` (:func:`probe_grid` of ``grid``, or :func:`probes_for`
    the declared ``grid``) in ``out``, keyed by the :func:`timing_key` of the runs they stand for: a probe's
    ``result.json``, else its row of ``out/results.csv`` (a fresh clone has the committed table, not the run
    folders)."""
    stands_for = {(spec.task, spec.model, spec.seed): timing_key(spec) for spec in grid.runs}
    recorded = load_results(out / "results.csv").drop_duplicates("run_id").set_index("run_id")
    probes = {}
    for spec in probes_grid.runs:
        summary = result_summary(spec.folder(out))
        if summary is None and spec.run_id in recorded.index:
            summary = recorded.loc[spec.run_id].to_dict()
        summary = summary or {}
        if any(summary.get(key) is None or pd.isna(summary.get(key)) for key in ("step_time_ms", "val_time_s")):
            raise RuntimeError(f"probe {spec.run_id}: no timing in its result (see {spec.folder(out) / 'stdout.log'})")
        probes[stands_for[(spec.task, spec.model, spec.seed)]] = summary
    return probes


def write_plan(table: pd.DataFrame, out: Path, threads: int, jobs: int, only: list[str] | None = None) -> str:
    """Write ``plan.csv`` and ``plan.md`` into ``out`` (atomically); returns the Markdown."""
    text = markdown(table, threads, jobs, only)
    save_table(table, out / "plan.csv", PLAN_COLUMNS)
    atomic_write_text(out / "plan.md", text)
    return text


def probe_fingerprint(spec: RunSpec) -> str:
    """What the probe ``spec`` times, as a short hash: its config files' contents (parsed: an edited comment
    does not count) and its overrides less :data:`UNTIMED`. Its run id stays when the grid's entry changes
    (another model config, an override such as ``compile_steps`` added); this does not. Not in it: the
    code's revision, ``--threads`` and :data:`PROBE_STEPS` (``bench --plan --retime``, or delete ``<out>/plan``,
    to time again after those)."""
    configs, overrides = timing_key(spec)
    contents = [yaml.safe_load(Path(config).read_text()) for config in configs]
    text = json.dumps([contents, json.loads(overrides)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def forget_changed_probes(out: Path, probes: Grid) -> list[str]:
    """Drop from the probes' folder ``out`` each probe of ``probes`` whose configuration has changed since it
    was timed (its :func:`probe_fingerprint` in ``out/probes.json`` differs; :func:`forget_probes`), so that
    the next ``run_grid`` times it again. A probe without a recorded fingerprint (timed before they were
    kept) stays. Returns the run ids dropped."""
    recorded = _fingerprints(out)
    return forget_probes(out, [spec for spec in probes.runs
                               if spec.run_id in recorded and recorded[spec.run_id] != probe_fingerprint(spec)])


def forget_probes(out: Path, specs: list[RunSpec]) -> list[str]:
    """Drop the probes ``specs`` from the probes' folder ``out``: their run folders, their carried state
    (``resume/``, from which they would go on) and their rows of ``out/results.csv`` and ``curves.csv`` (also
    ``bench --plan --retime``: after a change in the code, which no fingerprint covers). Returns their run
    ids, those that had been timed or begun."""
    timed = set(load_results(out / "results.csv")["run_id"]) if (out / "results.csv").is_file() else set()
    ids = [spec.run_id for spec in specs if spec.run_id in timed or spec.folder(out).exists()
           or (out / "resume" / spec.run_id).exists()]
    for spec in specs:
        shutil.rmtree(spec.folder(out), ignore_errors=True)
        shutil.rmtree(out / "resume" / spec.run_id, ignore_errors=True)
    if ids:
        for name, load, columns in (("results.csv", load_results, RESULT_COLUMNS),
                                    ("curves.csv", load_curves, CURVE_COLUMNS)):
            if (out / name).is_file():
                table = load(out / name)
                save_table(table[~table["run_id"].isin(ids)], out / name, columns)
    return ids


def record_fingerprints(out: Path, timed: list[RunSpec]) -> None:
    """Keep the :func:`probe_fingerprint` of the probes ``timed`` (those just timed: not those reused, whose
    configuration then is not known) in ``out/probes.json``, beside the other probes' fingerprints."""
    if not timed:
        return
    fingerprints = {**_fingerprints(out), **{spec.run_id: probe_fingerprint(spec) for spec in timed}}
    atomic_write_text(out / FINGERPRINTS, json.dumps(dict(sorted(fingerprints.items())), indent=1) + "\n")


def _fingerprints(out: Path) -> dict[str, str]:
    path = out / FINGERPRINTS
    return json.loads(path.read_text()) if path.is_file() else {}
