"""``mann-zoo bench``: NTM, DNC and LSTM head to head on the same tasks.

A benchmark is a grid of tasks x models x seeds described by a YAML file (:mod:`mann_zoo.experiments.grid`;
``--preset NAME`` picks the shipped ``mann_zoo/configs/bench/NAME.yaml``), checked before any run starts. Every run goes through the same training path as
``mann-zoo fit`` (a child process running the same command line, with ``RunSummary`` recording what
the results table needs), each run a Ray task (:mod:`~mann_zoo.experiments.runner`): locally several
side by side (``--jobs``), each on ``--threads`` threads, or on a Ray cluster (``--address``). A run
whose worker dies is retried and resumes from its last checkpoint.

Everything lands in ``--out`` (default ``results/<grid name>`` in the current folder):

- ``runs/<task>-<model>-seed<seed>/``: the run's checkpoints, CSV metrics, W&B offline run, log;
- ``results.csv``: the tidy results table, one row per run and validation set (``results.RESULT_COLUMNS``);
- ``curves.csv``: the learning curves of every run (step, sequences, metric, value: ``results.CURVE_COLUMNS``);
- ``models/<run id>.ckpt``: the weights (only) of every converged run, and of the runs the report's
  figures use (the copy NTM and DNC, and what a grid's ``keep_models`` names);
- ``resume/<run id>/``: a stopped run's last checkpoint, ``metrics.csv`` and ``result.json`` (see below).

Rerunning the same command skips finished runs and resumes unfinished ones from their last
checkpoint; raising ``--max-steps`` continues runs that have not converged. Tables are written
atomically. ``runs/`` is not committed: in a fresh clone the committed ``results.csv`` and
``curves.csv`` stand for the runs whose folders are gone. Their rows stay in the tables until the run is
trained again as far and replaces them (a retraining stopped earlier loses nothing); with ``--skip-recorded`` they count as finished, which continues a grid
begun in another clone instead of training it again. A run stopped before its end leaves what it needs
to go on (last checkpoint, curve, result) in ``resume/<run id>/``, which is committed: the same command in
a fresh clone puts it back into ``runs/`` and resumes the run there, its curve intact (a session ends,
the grid goes on in the next one); a finished run's copy is removed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..configs import CONFIGS, shipped
from .. import settings
from ..console import CommandParser
from ..training.atomic import atomic_write_text
from .grid import Grid, GridError, RunSpec, load_grid
from .runner import Outcome, TrainingRun, execute
from .results import (
    CURVE_COLUMNS,
    RESULT_COLUMNS,
    format_value,
    load_curves,
    load_results,
    result_summary,
    run_tables,
    save_table,
    set_summary,
    stack,
    summarise,
    without_unstarted,
)

PRESETS = CONFIGS / "bench"


def recorded_results(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results and curves tables already in ``out`` (typed; without rows where there is no file).

    They stand for runs whose folder is gone (``runs/`` is not committed): a rerun in a fresh clone keeps
    them instead of writing an empty table.
    """
    return load_results(out / "results.csv"), load_curves(out / "curves.csv")


def run_summary(out: Path, spec: RunSpec, recorded: pd.DataFrame | None = None) -> dict | None:
    """Steps and convergence of a run: from its ``result.json``, else from its rows of the ``recorded``
    results table (if given)."""
    summary = result_summary(spec.folder(out))
    if summary is not None:
        return {"steps": int(summary["steps"]), "converged": bool(summary["converged"]),
                "status": summary.get("status") or "finished"}
    if recorded is None:
        return None
    rows = recorded[recorded["run_id"] == spec.run_id]
    if rows.empty:
        return None
    return {"steps": int(rows["steps"].iloc[0]), "converged": bool(rows["converged"].fillna(False).iloc[0]),
            "status": str(rows["status"].iloc[0])}


def record_failure(out: Path, spec: RunSpec, note: str) -> None:
    """Mark ``spec``'s run as failed in its ``result.json`` (a row in the results table with status
    ``failed`` and ``note``); the numbers of an earlier, stopped attempt stay."""
    path = spec.folder(out) / "result.json"
    result = json.loads(path.read_text()) if path.is_file() else {
        "summary": {"run_id": spec.run_id, "task": spec.task, "model": spec.model, "seed": spec.seed, "steps": 0,
                    "converged": False}, "sets": []}
    result["summary"].update(status="failed", note=note)
    atomic_write_text(path, json.dumps(result, indent=1))


def is_finished(out: Path, spec: RunSpec, grid: Grid, recorded: pd.DataFrame | None = None) -> bool:
    """A run is finished when its result exists and it used its budget or converged (and stops there), or
    diverged (it would again); a failed run is not (the next command retries it).

    ``recorded`` (the results table of :func:`recorded_results`) stands in for the runs without a ``result.json``.
    """
    summary = run_summary(out, spec, recorded)
    if summary is None or summary["status"] == "failed":
        return False
    if summary["status"] == "diverged":
        return True
    return summary["steps"] >= spec.max_steps or (grid.stop_at_convergence and summary["converged"])


# What a stopped run needs to go on elsewhere, in the order it is copied: the checkpoint last, so that a copy
# cut short leaves an older checkpoint beside a newer curve (the logger drops the rows past the checkpoint),
# never a newer checkpoint beside an older curve. result.json is missing where the run was killed before
# writing it; it then goes on without one (the committed rows stand for it until its next result).
CARRIED = {"result.json": "result.json", "metrics.csv": "metrics.csv", "last.ckpt": "checkpoints/last.ckpt"}
NEEDED = ("metrics.csv", "last.ckpt")


def _copy(source: Path, target: Path) -> None:
    """``source``'s bytes to ``target``, atomically (``training.atomic``)."""
    from ..training.atomic import atomic_write

    data = source.read_bytes()
    atomic_write(target, lambda f: f.write(data), binary=True)


def _steps_done(folder: Path) -> int:
    """The steps a run folder's training has done: its ``result.json``'s, else its last checkpoint's."""
    summary = result_summary(folder)
    if summary is not None:
        return int(summary["steps"])
    import torch

    return int(torch.load(folder / CARRIED["last.ckpt"], map_location="cpu", weights_only=True)["global_step"])


def carry_unfinished(out: Path, specs: list[RunSpec], grid: Grid) -> None:
    """What an unfinished run of ``specs`` needs to go on in another clone, copied from its run folder to
    ``out/resume/<run id>/`` (committed where ``out`` is, unlike ``runs/``): its last checkpoint (weights,
    optimiser, data stream and loop state), ``metrics.csv`` (its curve so far) and ``result.json``. That
    holds for a stopped run, a failed one (retried from there) and one killed before it wrote a result.
    A finished (or diverged) run's copy is removed. Left as they are: runs without a checkpoint here, and a
    retraining that has not come as far as the run's committed row (a fresh clone without --skip-recorded:
    the row, not the shorter retraining, is what the next clone goes on from)."""
    import shutil

    recorded = load_results(out / "results.csv")  # the rows only: not the curves, which can be large
    steps_recorded = recorded.groupby("run_id")["steps"].max() if not recorded.empty else pd.Series(dtype=int)
    for spec in specs:
        folder, kept = spec.folder(out), out / "resume" / spec.run_id
        if not (folder / CARRIED["last.ckpt"]).is_file():
            continue
        if result_summary(folder) is not None and is_finished(out, spec, grid):
            shutil.rmtree(kept, ignore_errors=True)
            continue
        if not all((folder / CARRIED[name]).is_file() for name in NEEDED):
            continue
        if _steps_done(folder) < steps_recorded.get(spec.run_id, 0):
            continue
        (kept / "result.json").unlink(missing_ok=True)  # not one of an earlier stop beside this checkpoint
        for name, source in CARRIED.items():
            if (folder / source).is_file():
                _copy(folder / source, kept / name)


def restore_carried(out: Path, specs: list[RunSpec]) -> list[str]:
    """Put back the carried state (:func:`carry_unfinished`) of every run of ``specs`` that has no checkpoint
    in its run folder (a fresh clone): training then resumes from it, its curve intact. Returns their ids."""
    restored = []
    for spec in specs:
        folder, kept = spec.folder(out), out / "resume" / spec.run_id
        if (folder / CARRIED["last.ckpt"]).is_file() or not all((kept / name).is_file() for name in NEEDED):
            continue
        for name, target in CARRIED.items():  # the checkpoint last: a restore cut short is done again
            if (kept / name).is_file():
                _copy(kept / name, folder / target)
        restored.append(spec.run_id)
    return restored


def training_run(out: Path, spec: RunSpec, grid: Grid) -> TrainingRun:
    """The ``mann-zoo fit`` run of ``spec`` (absolute paths: a Ray worker may start elsewhere)."""
    out = out.absolute()
    directory = spec.folder(out)
    callbacks = [{"class_path": "mann_zoo.training.callbacks.RunSummary",
                  "init_args": {"dirpath": str(directory), "threshold": grid.threshold, "run_id": spec.run_id,
                                "patience": grid.patience}}]
    if grid.stop_at_convergence:
        callbacks.append({"class_path": "mann_zoo.training.callbacks.StopAtConvergence",
                          "init_args": {"threshold": grid.threshold, "patience": grid.patience}})
    args = (*spec.args, "--data.seed", str(spec.seed), "--seed_everything", str(spec.seed),
            "--trainer.max_steps", str(spec.max_steps), "--trainer.val_check_interval", str(grid.val_check_interval),
            "--trainer.default_root_dir", str(out / "runs"), "--run_name", spec.run_id,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            *(f"--trainer.callbacks+={json.dumps(callback)}" for callback in callbacks))
    return TrainingRun(spec.run_id, directory, args)


def read_results(out: Path, specs: list[RunSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results table (``RESULT_COLUMNS``) and learning curves (``CURVE_COLUMNS``) of every run of
    ``specs`` that has a result, in the order of ``specs``.

    A run's ``result.json`` wins once it has come as far (in steps) as the run's rows in the tables
    already in ``out``; until then, and for a run without one, those rows stay. A run stopped before its
    first step has no row.
    """
    recorded_rows, recorded_curves = (dict(tuple(table.groupby("run_id", sort=False)))
                                      for table in recorded_results(out))
    rows, curves = [], []
    for spec in specs:
        directory = spec.folder(out)
        result = directory / "result.json"
        if not result.is_file():
            rows.append(recorded_rows.get(spec.run_id))
            curves.append(recorded_curves.get(spec.run_id))
            continue
        data = json.loads(result.read_text())
        if not data["sets"] and spec.run_id in recorded_rows:  # failed before validating: the record stays, marked
            note = data["summary"].get("note")
            rows.append(recorded_rows[spec.run_id].assign(status=data["summary"].get("status", "failed"),
                                                          note=pd.array([note] * len(recorded_rows[spec.run_id]), dtype="string")))
            curves.append(recorded_curves.get(spec.run_id))
            continue
        if spec.run_id in recorded_rows and data["summary"]["steps"] < recorded_rows[spec.run_id]["steps"].iloc[0]:
            # Trained again (a fresh clone without --skip-recorded) and stopped before it came as far as the
            # record: the record, and its curve, stay until the new run passes it.
            rows.append(recorded_rows[spec.run_id])
            curves.append(recorded_curves.get(spec.run_id))
            continue
        # The grid's task and model names (e.g. repeat_copy_final, dnc_md), not the datamodule's and the
        # core's (repeat_copy, dnc): variants of a task or a core stay apart.
        data["summary"]["task"], data["summary"]["model"] = spec.task, spec.model
        run_rows, run_curves = run_tables(directory, data)
        rows.append(run_rows)
        curves.append(run_curves)
    return without_unstarted(stack(rows, RESULT_COLUMNS)), stack(curves, CURVE_COLUMNS)


def keep_model(out: Path, spec: RunSpec) -> Path | None:
    """Keep the weights of a finished run that converged, or that the report's figures use
    (``spec.keep_model``: by default the copy NTM and DNC of the addressing figures; a grid names others
    with ``keep_models``).

    ``runs/`` is not committed; ``models/<run_id>.ckpt`` (hyperparameters and weights only, written
    atomically, read by ``mann_zoo.load_model``) is, so a fresh clone can redraw the figures.
    """
    import torch

    from ..training.atomic import atomic_write

    checkpoint = spec.folder(out) / "checkpoints" / "last.ckpt"
    summary = run_summary(out, spec)
    converged = summary is not None and summary["converged"]
    if not (spec.keep_model or converged) or not checkpoint.is_file():
        return None
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    slim = {"hyper_parameters": state["hyper_parameters"], "state_dict": state["state_dict"]}
    path = out / "models" / f"{spec.run_id}.ckpt"
    atomic_write(path, lambda f: torch.save(slim, f), binary=True)
    return path


def write_tables(out: Path, specs: list[RunSpec]) -> pd.DataFrame:
    """Write ``results.csv`` and ``curves.csv`` for ``specs`` (atomically); returns the results table as written."""
    results, curves = read_results(out, specs)
    written = save_table(results, out / "results.csv", RESULT_COLUMNS)
    save_table(curves, out / "curves.csv", CURVE_COLUMNS)
    return written


def comparison_tables(results: pd.DataFrame) -> list:
    """Rich tables of the results table ``results`` that fit 80 columns: per task and model (medians over
    seeds), convergence and cost; then, per task, the bit errors per sequence on every validation set
    (the training distribution first, then the generalisation sets by length)."""
    from rich import box
    from rich.table import Table

    summary = summarise(results)
    convergence = Table(title="head to head: medians over seeds (conv.: converged runs; sequences and seconds "
                              "to convergence)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("task", "model", "runs", "conv.", "sequences", "seconds", "ms/step", "params"):
        convergence.add_column(name, justify="left" if name in ("task", "model") else "right", no_wrap=True)
    for s in summary.itertuples():
        runs = str(s.runs) + "".join(f" ({n} {what[0]})" for n, what in ((s.diverged, "diverged"), (s.failed, "failed")) if n)
        convergence.add_row(s.task, s.model, runs, f"{s.converged}/{s.runs}",
                            format_value(s.sequences_to_convergence / 1e3, "{:,.0f}k"),
                            format_value(s.wall_time_to_convergence_s, "{:,.0f}"), format_value(s.step_ms, "{:.0f}"),
                            _count(s.params))
    tables = [convergence]
    sets = set_summary(results[results["status"] != "failed"])
    for task, rows in sets.groupby("task", sort=False):
        names = list(dict.fromkeys(rows.sort_values("val_steps", kind="stable")["val_set"]))
        first = rows["val_set"].iloc[0]  # the training distribution
        names = [first] + [n for n in names if n != first]
        title = f"{task}: bit errors per sequence (median over seeds)"
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, min_width=min(len(title), 80))
        table.add_column("model", overflow="fold")
        for name in names:
            table.add_column(name.removeprefix("len_"), justify="right", overflow="fold")
        for model, by_model in rows.groupby("model", sort=False):
            errors = dict(zip(by_model["val_set"], by_model["bit_errors"]))
            table.add_row(model, *(format_value(errors.get(name), "{:.2f}") for name in names))
        tables.append(table)
    return tables


def _count(value) -> str:
    """A parameter count in 6 characters: 63.1k, 1.33M."""
    if value is None or pd.isna(value):
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def select(runs: list[RunSpec], only: str | list[str] | None) -> list[RunSpec]:
    """The runs that one of ``only`` names, in the order of ``only`` (all runs when None). A pattern names
    the run whose id it is (``copy-ntm-seed10``, not ``repeat_copy-ntm-seed10`` too); with ``*``, ``?`` or
    ``[`` it is a glob on the whole id (``copy-*``: copy's runs, not repeat copy's); otherwise, the runs
    whose id contains it (``seed0``, ``lstm``). A pattern that names no run is a :class:`ValueError` (a
    mistyped id would otherwise run nothing and say nothing)."""
    if only is None:
        return list(runs)
    ids = {s.run_id for s in runs}
    chosen = {}
    for pattern in [only] if isinstance(only, str) else list(only):
        if pattern in ids:
            names = lambda run_id: run_id == pattern  # noqa: E731
        elif any(c in pattern for c in "*?["):
            names = lambda run_id: fnmatch.fnmatchcase(run_id, pattern)  # noqa: E731
        else:
            names = lambda run_id: pattern in run_id  # noqa: E731
        if not any(names(s.run_id) for s in runs):
            raise ValueError(f"--only {pattern!r} names no run of the grid (run ids are task-model-seedN, "
                             f"e.g. {runs[0].run_id})" if runs else f"--only {pattern!r}: the grid has no runs")
        chosen.update({s.run_id: s for s in runs if names(s.run_id) and s.run_id not in chosen})
    return list(chosen.values())


def _stop(signum, frame) -> None:
    """SIGTERM to bench: stop as Ctrl-C does (the runs write their results and keep their checkpoints: the
    same command resumes the grid)."""
    raise SystemExit(128 + signum)


def _pool_bytes_per_run(jobs: int) -> str:
    """Each of ``jobs`` runs side by side keeps buffers (``memory.pool``) up to its share of the half of the
    memory that one process would otherwise keep alone."""
    from ..memory.pool import half_of_memory  # torch: only when runs are launched

    return str(half_of_memory() // max(jobs, 1))


def run_grid(grid: Grid, out: Path, jobs: int, threads: int, only: str | list[str] | None = None,
             skip_recorded: bool = False, table_runs: list[RunSpec] | None = None,
             address: str | None = None, show: bool = True) -> pd.DataFrame:
    """Run every unfinished run of ``grid`` as Ray tasks (:mod:`~mann_zoo.experiments.runner`: locally
    ``jobs`` at a time on ``threads`` threads each, or on the Ray cluster at ``address``), then write the
    tables (and, with ``show``, prints the comparison); returns the results table as written.

    With ``skip_recorded``, a run recorded in ``out``'s results table counts as finished by that record.
    The tables cover ``table_runs`` (default: the grid's runs): with ``--seeds`` the grid's own seeds keep
    their rows.
    """
    table_runs = list({spec.run_id: spec for spec in (table_runs or []) + grid.runs}.values())
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    specs = select(grid.runs, only)
    restored = restore_carried(out, specs)
    if restored:
        console.print(f"resuming {len(restored)} run(s) from the state carried in {out / 'resume'}")
    recorded = recorded_results(out)[0] if skip_recorded else None
    todo = [s for s in specs if not is_finished(out, s, grid, recorded)]
    console.print(f"[bold]{grid.name}[/]: {len(specs)} runs, {len(specs) - len(todo)} already finished; "
                  f"{jobs} at a time, {threads} thread(s) each; results in {out}")
    pool_bytes = settings.pool_bytes()  # the caller's, else each run's share (memory.pool)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true",
           settings.POOL_BYTES: _pool_bytes_per_run(jobs) if pool_bytes is None else str(pool_bytes)}
    specs_by_id = {spec.run_id: spec for spec in todo}
    failed = []

    def done(run: TrainingRun, outcome: Outcome) -> None:
        spec = specs_by_id[run.run_id]
        progress.advance(bar)
        if outcome.status != 0:
            failed.append(spec.run_id)
            log = run.directory / "stdout.log"
            why = f"exit {outcome.status}" if outcome.status is not None else outcome.error
            record_failure(out, spec, f"{why}; see {log}")
            progress.console.print(f"[red]failed[/] {spec.run_id} ({why}); see {log}", highlight=False)
        else:
            progress.console.print(f"done {spec.run_id} in {outcome.seconds:.0f} s")
            keep_model(out, spec)
            carry_unfinished(out, [spec], grid)  # finished: its carried state goes
        write_tables(out, table_runs)  # the whole grid: --only must not drop the other runs' rows

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            bar = progress.add_task("runs", total=len(todo))
            execute([training_run(out, spec, grid) for spec in todo], env, jobs, threads, address,
                    lambda line: progress.console.print(line, highlight=False), done)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        carry_unfinished(out, specs, grid)  # the stopped runs' state, to commit: another clone goes on from it
        results = write_tables(out, table_runs)  # also when stopped: the stopped runs' curves so far, to commit
    if show and not results.empty:
        for table in comparison_tables(results):
            console.print(table)
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/]: {', '.join(failed)}; rerun the same command to retry")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(
        "mann-zoo bench", __doc__.split("\n\n")[0],
        epilog="examples:\n  mann-zoo bench                      # the default preset (~15 min on 2 CPU cores)\n"
               "  mann-zoo bench --preset smoke       # seconds; writes results/smoke/ here\n"
               "  mann-zoo bench --preset paper --out paper/results/paper --jobs 2   # the project's paper grid\n"
               "  mann-zoo bench cost --help          # cost per step against memory size")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default="default", help=f"a shipped grid ({', '.join(shipped('bench'))})")
    source.add_argument("--config", type=Path, help="a grid YAML file of your own")
    parser.add_argument("--out", type=Path, help="results folder (default: results/<grid name> in the current folder)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the grid's seeds")
    parser.add_argument("--max-steps", type=int, help="override the grid's training budget per run (steps)")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (the embedded Ray's CPUs: jobs x threads)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--address", help="run on the Ray cluster at this address (default: $RAY_ADDRESS, else an "
                                          "embedded Ray on this machine); its nodes must see --out and the configs")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only these runs, in this order: a run id names that run; a glob (copy-*) "
                             "matches whole ids; other texts, the ids that contain them (seed0)")
    parser.add_argument("--skip-recorded", action="store_true",
                        help="count the runs recorded in the results table as finished even without their run "
                             "folder (to continue a grid begun in another clone instead of training it again)")
    parser.add_argument("--plan", action="store_true",
                        help="do not train: time each (task, model) of the grid (of the runs --only names) for a "
                             "few steps and write the compute plan (runs x hours, an upper bound; and what is left, "
                             "at the measured time of the finished runs, capped at the bound) to --out as plan.md and plan.csv; probes "
                             "timed before are reused unless their configuration changed (--retime: time again)")
    parser.add_argument("--retime", action="store_true",
                        help="with --plan: time again the probes of the runs --only names (all by default), as "
                             "after a change in the code, which the probes' fingerprints do not cover")
    parser.add_argument("--report", type=Path, metavar="PAPER",
                        help="afterwards regenerate the figures and tables of this paper folder (e.g. paper)")
    args = parser.parse_args(argv)
    if args.retime and not args.plan:
        parser.error("--retime goes with --plan (it times the plan's probes again)")
    if args.jobs < 1 or args.threads < 1:
        parser.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    if args.config is not None and not args.config.is_file():
        parser.error(f"--config {args.config}: not a file")
    path = args.config or PRESETS / f"{args.preset}.yaml"
    if not path.is_file():
        parser.error(f"--preset {args.preset!r} is not one of {', '.join(shipped('bench'))}")
    try:
        grid = load_grid(path, args.seeds, args.max_steps)
    except GridError as error:
        parser.error(str(error))
    out = args.out or Path("results") / grid.name
    try:
        chosen = select(grid.runs, args.only)
    except ValueError as error:
        parser.error(str(error))
    if args.plan:  # of the runs that --only names (all by default)
        from . import plan

        planned = replace(grid, runs=chosen)
        # The probes are named by the grid's own seeds whatever --only and --seeds chose (a probe is timed once),
        # and the probes' tables keep the rows of every probe of the grid, not only of those planned now.
        declared = load_grid(path, None, args.max_steps, check=False) if args.seeds is not None else grid
        probes = plan.probes_for(declared, chosen)
        for run_id in plan.forget_changed_probes(out / "plan", probes):
            print(f"probe {run_id}: its configuration has changed since it was timed; timing it again")
        if args.retime:
            for run_id in plan.forget_probes(out / "plan", probes.runs):
                print(f"probe {run_id}: timing it again (--retime)")
        timed_before = load_results(out / "plan" / "results.csv")
        to_time = [spec for spec in probes.runs if not is_finished(out / "plan", spec, probes, timed_before)]
        run_grid(probes, out / "plan", args.jobs, args.threads, skip_recorded=True, address=args.address,
                 table_runs=plan.probe_grid(declared).runs, show=False)  # the probes timed before are reused
        plan.record_fingerprints(out / "plan", to_time)
        recorded = load_results(out / "results.csv")  # the rows only: not the curves, which can be large
        finished = {spec.run_id for spec in planned.runs if is_finished(out, spec, grid, recorded)}
        table = plan.plan_table(planned, plan.read_probes(out / "plan", declared, probes),
                                plan.measured_hours(recorded, finished))
        print(plan.write_plan(table, out, args.threads, args.jobs, args.only))
        return
    declared = load_grid(path, None, args.max_steps, check=False).runs if args.seeds is not None else None
    results = run_grid(grid, out, args.jobs, args.threads, args.only, args.skip_recorded, table_runs=declared,
                       address=args.address)
    if not results.empty and args.report is not None:
        from . import report

        report.make_report(grids_beside(out), args.report)


def grids_beside(out: Path) -> list[Path]:
    """``out`` and every other grid's results folder beside it (a folder with a results.csv): the report
    that bench regenerates covers them all, so that one grid's run never drops another's numbers."""
    found = {d.resolve(): d for d in sorted(out.parent.iterdir()) if (d / "results.csv").is_file()} if out.parent.is_dir() else {}
    found.setdefault(out.resolve(), out)
    return list(found.values())


if __name__ == "__main__":
    main()
