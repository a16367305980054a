"""The benchmark (grid, results table, resume, atomic writes), the cost sweep's fit, and the report."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch

from mann_zoo.experiments import benchmark
from mann_zoo.experiments.benchmark import PRESETS, load_grid, run_grid
from mann_zoo.experiments.cost import activation_megabytes
from mann_zoo.experiments.cost_model import Sweep, fit_cost_model, formula, predict, sweep_of
from mann_zoo.experiments.report import make_report
from mann_zoo.experiments.results import CURVE_COLUMNS, RESULT_COLUMNS, RUN_COLUMNS, load_curves, load_results, save_table
from mann_zoo.experiments.runner import Outcome
from mann_zoo.training.atomic import atomic_write, atomic_write_text

SMOKE = PRESETS / "smoke.yaml"
ROOT_RESULTS = Path(__file__).resolve().parents[1] / "paper" / "results"


@pytest.fixture(scope="module")
def installed_bench(tmp_path_factory) -> dict:
    """``pip install .`` (not editable) into a folder of its own, then from an empty folder ``mann-zoo bench
    --preset smoke --jobs 1`` (the smoke grid, one run at a time), once for the tests of this module that
    read a grid's output. (Dependencies come from this environment.) Returns the folders, the finished
    process and ``git status`` of the source tree before and after."""
    import sys

    root = Path(__file__).resolve().parents[1]
    site, work = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("empty")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(root)], check=True, capture_output=True, timeout=300)
    status = lambda: subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=root,  # noqa: E731
                                    capture_output=True, text=True).stdout
    before = status()
    env = {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, "-m", "mann_zoo.cli", "bench", "--preset", "smoke", "--jobs", "1"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(site=site, work=work, result=result, before=before, after=status())


@pytest.fixture(scope="module")
def smoke_results(installed_bench):
    out = installed_bench["work"] / "results" / "smoke"
    return out, load_results(out / "results.csv")


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_presets_load():
    for preset in ("default", "paper", "smoke", "ntm_diagnosis", "mqar_small"):
        grid = load_grid(PRESETS / f"{preset}.yaml")
        assert grid.runs and len({r.run_id for r in grid.runs}) == len(grid.runs)
    paper = load_grid(PRESETS / "paper.yaml")
    assert {r.task for r in paper.runs} == {"copy", "repeat_copy", "associative_recall", "ngrams", "priority_sort"}
    assert {r.seed for r in paper.runs} == {0, 1, 2}
    assert {r.model for r in paper.runs if r.task in ("repeat_copy", "associative_recall")} == {"ntm", "dnc", "dnc_md", "lstm"}


def test_bad_grid_names_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: {copy: {config: configs/task/copy.yaml, models: [gru]}}\nmodels: {ntm: {config: x}}\n")
    with pytest.raises(ValueError, match="gru"):
        load_grid(bad)
    bad.write_text("tasks: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_grid(bad)


def test_results_table_schema(smoke_results):
    out, rows = smoke_results
    assert list(read(out / "results.csv")[0]) == list(RESULT_COLUMNS)
    assert set(rows.run_id) == {"copy-ntm-seed0", "copy-lstm-seed0"}
    for row in rows.itertuples():
        assert row.val_set in ("len_1-3", "len_6")
        assert math.isfinite(row.cost_bits) and 0 <= row.seq_accuracy <= 1
        assert row.steps == 4 and row.sequences == 16
        assert row.step_time_ms > 0 and row.peak_memory_mb > 0 and row.num_parameters > 0
        assert "torch" in row.versions and row.hardware
    curves = load_curves(out / "curves.csv")
    assert set(curves.metric) >= {"val/len_1-3/cost_bits", "val/len_6/bit_errors"}
    assert (curves.sequences == curves.step * 4).all()  # batch 4, one process; steps count from 1
    summary = json.loads((out / "runs/copy-ntm-seed0/result.json").read_text())["summary"]
    assert summary["run_id"] == "copy-ntm-seed0" and summary["model"] == "ntm"


def executed(monkeypatch, status: int) -> list[list[str]]:
    """Replace the Ray runner by one that records each run's command line and reports ``status`` as its
    exit status; returns the list it records into."""
    launched = []

    def execute(runs, env, jobs, threads, address, on_progress, on_done):
        for run in runs:
            launched.append(run.command())
            on_done(run, Outcome(status, 0.0))

    monkeypatch.setattr(benchmark, "execute", execute)
    return launched


def test_runs_side_by_side_share_the_kept_buffers_bound(tmp_path, monkeypatch):
    """Each run's process gets MANN_ZOO_POOL_BYTES: its share of the half of the memory that one process keeps
    alone (memory.pool), or the caller's setting."""
    from mann_zoo.memory import pool

    environments = []

    def execute(runs, env, jobs, threads, address, on_progress, on_done):
        environments.append(env)
        for run in runs:
            on_done(run, Outcome(1, 0.0))  # failed: nothing recorded, the next call launches them again

    monkeypatch.setattr(benchmark, "execute", execute)
    monkeypatch.delenv("MANN_ZOO_POOL_BYTES", raising=False)
    run_grid(load_grid(SMOKE), tmp_path, jobs=2, threads=1)
    assert environments[-1]["MANN_ZOO_POOL_BYTES"] == str(pool.half_of_memory() // 2)
    monkeypatch.setenv("MANN_ZOO_POOL_BYTES", "12345")
    run_grid(load_grid(SMOKE), tmp_path, jobs=2, threads=1)
    assert environments[-1]["MANN_ZOO_POOL_BYTES"] == "12345"


def test_rerun_skips_finished_runs(smoke_results, monkeypatch):
    out, _ = smoke_results
    launched = executed(monkeypatch, 0)
    run_grid(load_grid(SMOKE), out, jobs=2, threads=1)
    assert launched == []


def test_fresh_clone_keeps_the_committed_results(smoke_results, tmp_path, monkeypatch):
    """runs/ is not committed: the committed tables stand for the runs and a rerun neither redoes nor drops them."""
    out, _ = smoke_results
    clone = tmp_path / "smoke"
    clone.mkdir()
    for name in ("results.csv", "curves.csv"):
        (clone / name).write_text((out / name).read_text())

    launched = executed(monkeypatch, 1)  # every run dies before it writes a result
    rows = run_grid(load_grid(SMOKE), clone, jobs=2, threads=1, skip_recorded=True)
    assert launched == []
    for name in ("results.csv", "curves.csv"):  # rewritten byte for byte from the typed tables
        assert (clone / name).read_bytes() == (out / name).read_bytes()
    pd.testing.assert_frame_equal(rows, load_results(out / "results.csv"))
    recorded = benchmark.recorded_results(clone)[0]
    grid = load_grid(SMOKE, max_steps=6)  # a larger budget: the recorded runs are unfinished again
    assert not any(benchmark.is_finished(clone, spec, grid, recorded) for spec in grid.runs)
    # Without --skip-recorded the runs are trained again; when they crash the old rows stay, marked failed
    # with the log to read (and the next command retries them).
    rows = run_grid(load_grid(SMOKE), clone, jobs=2, threads=1)
    assert len(launched) == 2
    old = load_results(out / "results.csv")
    pd.testing.assert_frame_equal(rows.drop(columns=["status", "note"]), old.drop(columns=["status", "note"]))
    assert set(rows.status) == {"failed"} and rows.note.str.endswith("stdout.log").all()
    assert not any(benchmark.is_finished(clone, spec, load_grid(SMOKE)) for spec in load_grid(SMOKE).runs)


def test_a_retraining_stopped_early_keeps_the_committed_record(smoke_results, tmp_path, monkeypatch):
    """In a fresh clone without --skip-recorded a run is trained again; stopped before it comes as far as
    the committed record, the record (status, numbers, curve) stays and the next command goes on training."""
    out, _ = smoke_results
    clone = tmp_path / "smoke"
    clone.mkdir()
    for name in ("results.csv", "curves.csv"):
        (clone / name).write_text((out / name).read_text())

    def stopped_early(runs, env, jobs, threads, address, on_progress, on_done):
        for run in runs:  # each attempt validated once at step 2 of 4, then was stopped
            result = json.loads((out / "runs" / run.run_id / "result.json").read_text())
            result["summary"].update(steps=2, sequences=8, status="stopped")
            run.directory.mkdir(parents=True)
            (run.directory / "result.json").write_text(json.dumps(result))
            on_done(run, Outcome(0, 0.0))

    monkeypatch.setattr(benchmark, "execute", stopped_early)
    grid = load_grid(SMOKE)
    rows = run_grid(grid, clone, jobs=2, threads=1)
    pd.testing.assert_frame_equal(rows, load_results(out / "results.csv"))
    pd.testing.assert_frame_equal(load_curves(clone / "curves.csv"), load_curves(out / "curves.csv"))
    assert set(rows.status) == {"finished"}
    assert not any(benchmark.is_finished(clone, spec, grid) for spec in grid.runs)  # the retraining goes on


def test_what_is_carried_to_another_clone(smoke_results, tmp_path):
    """resume/<run id>/ gets a run killed before it wrote a result (checkpoint and curve), is restored from
    it in a fresh clone, loses it when the run finishes, and never gets a retraining that is behind the
    run's committed row."""
    out, _ = smoke_results
    grid = load_grid(SMOKE)
    spec = next(s for s in grid.runs if s.run_id == "copy-lstm-seed0")
    here = tmp_path / "here"
    folder = spec.folder(here)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 3}, folder / "checkpoints/last.ckpt")
    (folder / "metrics.csv").write_text("step,train/loss\n1,0.5\n")
    benchmark.carry_unfinished(here, grid.runs, grid)  # killed before its result.json: carried all the same
    kept = here / "resume" / spec.run_id
    assert sorted(p.name for p in kept.iterdir()) == ["last.ckpt", "metrics.csv"]

    clone = tmp_path / "clone"
    (clone / "resume").mkdir(parents=True)
    shutil.copytree(kept, clone / "resume" / spec.run_id)
    assert benchmark.restore_carried(clone, grid.runs) == [spec.run_id]
    assert (spec.folder(clone) / "metrics.csv").read_text() == "step,train/loss\n1,0.5\n"
    assert torch.load(spec.folder(clone) / "checkpoints/last.ckpt", weights_only=True) == {"global_step": 3}
    assert benchmark.restore_carried(clone, grid.runs) == []  # it has a checkpoint now: nothing to put back

    finished = json.loads((spec.folder(out) / "result.json").read_text())  # 4 steps of 4
    (folder / "result.json").write_text(json.dumps(finished))
    benchmark.carry_unfinished(here, grid.runs, grid)
    assert not kept.exists()  # finished: its copy goes

    behind = tmp_path / "behind"  # a fresh clone with the committed 4-step rows, retrained to step 2
    behind.mkdir()
    (behind / "results.csv").write_text((out / "results.csv").read_text())
    shutil.copytree(folder, spec.folder(behind))
    finished["summary"].update(steps=2, status="stopped")
    (spec.folder(behind) / "result.json").write_text(json.dumps(finished))
    benchmark.carry_unfinished(behind, grid.runs, grid)
    assert not (behind / "resume").exists()


def test_only_runs_a_subset_in_order_and_keeps_the_other_rows(smoke_results, tmp_path, monkeypatch):
    out, _ = smoke_results
    grid = load_grid(SMOKE)
    assert [s.run_id for s in benchmark.select(grid.runs, ["lstm", "copy"])] == ["copy-lstm-seed0", "copy-ntm-seed0"]
    assert [s.run_id for s in benchmark.select(grid.runs, "ntm")] == ["copy-ntm-seed0"]
    both = load_grid(SMOKE).runs + [replace(s, task="repeat_copy") for s in load_grid(SMOKE).runs]
    assert [s.run_id for s in benchmark.select(both, ["copy-ntm-seed0"])] == ["copy-ntm-seed0"]  # an id: that run
    assert [s.run_id for s in benchmark.select(both, ["copy-*"])] == ["copy-ntm-seed0", "copy-lstm-seed0"]  # a glob
    assert [s.run_id for s in benchmark.select(both, ["copy-lstm"])] == ["copy-lstm-seed0", "repeat_copy-lstm-seed0"]
    with pytest.raises(ValueError, match="'priority_sort-seed1' names no run of the grid .* e.g. copy-ntm-seed0"):
        benchmark.select(grid.runs, ["ntm", "priority_sort-seed1"])  # a mistyped id runs nothing: an error
    launched = executed(monkeypatch, 0)
    run_grid(grid, out, jobs=1, threads=1, only=["lstm"])
    assert launched == []
    assert set(load_results(out / "results.csv").run_id) == {"copy-ntm-seed0", "copy-lstm-seed0"}
    with pytest.raises(SystemExit) as stopped:  # bench says so in one line before it starts Ray
        benchmark.main(["--preset", "smoke", "--out", str(out), "--only", "copy-ntm-seed1"])
    assert stopped.value.code == 2 and launched == []


def test_a_task_can_give_one_model_its_own_budget(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("max_steps: 10\ntasks:\n  copy:\n    config: configs/task/copy.yaml\n    max_steps: 20\n"
                    "    model_max_steps: {lstm: 5}\nmodels:\n  ntm: {config: configs/model/ntm.yaml}\n"
                    "  lstm: {config: configs/model/lstm.yaml}\n")
    assert {s.model: s.max_steps for s in load_grid(spec).runs} == {"ntm": 20, "lstm": 5}
    assert {s.model: s.max_steps for s in load_grid(spec, max_steps=7).runs} == {"ntm": 7, "lstm": 7}


def test_a_grid_names_the_models_to_keep(tmp_path):
    """By default only the copy NTM and DNC are kept (the addressing figures); ``keep_models`` adds others."""
    spec = tmp_path / "grid.yaml"
    spec.write_text("tasks:\n  copy: {config: configs/task/copy.yaml}\n"
                    "  repeat_copy: {config: configs/task/repeat_copy.yaml, keep_models: [lstm]}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n  lstm: {config: configs/model/lstm.yaml}\n")
    kept = {s.run_id for s in load_grid(spec).runs if s.keep_model}
    assert kept == {"copy-ntm-seed0", "repeat_copy-lstm-seed0"}


def test_the_weights_of_every_converged_run_are_kept(tmp_path):
    """models/ gets the weights (only) of a converged run even when the grid does not name it; an
    unconverged run not named is not kept."""
    from mann_zoo.experiments.benchmark import RunSpec, keep_model

    for seed, converged in ((0, True), (1, False)):
        spec = RunSpec("copy", "lstm", seed)
        directory = spec.folder(tmp_path)
        (directory / "checkpoints").mkdir(parents=True)
        torch.save({"hyper_parameters": {"input_size": 9}, "state_dict": {"core.w": torch.ones(2)},
                    "optimizer_states": [{"state": torch.zeros(2)}]}, directory / "checkpoints/last.ckpt")
        (directory / "result.json").write_text(json.dumps({"summary": {"steps": 10, "converged": converged}, "sets": []}))
        kept = keep_model(tmp_path, spec)
        assert (kept is not None) == converged
    slim = torch.load(tmp_path / "models/copy-lstm-seed0.ckpt", weights_only=True)
    assert set(slim) == {"hyper_parameters", "state_dict"} and torch.equal(slim["state_dict"]["core.w"], torch.ones(2))
    assert not (tmp_path / "models/copy-lstm-seed1.ckpt").exists()


def test_tables_name_runs_by_the_grid_task_not_the_datamodule(tmp_path):
    """Two variants of one task (repeat_copy and repeat_copy_x both train tasks.RepeatCopyTask) stay apart."""
    from mann_zoo.experiments.benchmark import RunSpec, read_results

    spec = RunSpec("repeat_copy_x", "ntm_ff", 0)
    directory = tmp_path / "runs" / spec.run_id
    directory.mkdir(parents=True)
    summary = {"run_id": spec.run_id, "task": "repeat_copy", "model": "ntm", "seed": 0, "steps": 1, "sequences": 32,
               "converged": False, "batch_size": 32, "world_size": 1}
    (directory / "result.json").write_text(json.dumps({"summary": summary, "sets": [{"val_set": "a", "cost_bits": 1.0}]}))
    (directory / "metrics.csv").write_text("step,val/a/cost_bits\n0,1.0\n")
    rows, curves = read_results(tmp_path, [spec])
    assert set(zip(rows.task, rows.model)) | set(zip(curves.task, curves.model)) == {("repeat_copy_x", "ntm_ff")}
    assert rows.converged.dtype == "boolean" and rows.sequences_to_convergence.isna().all()
    assert curves[["step", "sequences"]].values.tolist() == [[1, 32]]


def test_a_run_stopped_before_its_first_step_has_no_row(tmp_path):
    """Stopped at step 0 (its sets named, no value), it is not a result: no row, also not from an older table."""
    from mann_zoo.experiments.benchmark import RunSpec, read_results
    from mann_zoo.experiments.results import RESULT_COLUMNS, save_table, typed

    started, stopped = RunSpec("copy", "ntm", 0), RunSpec("copy", "ntm", 1)
    for spec, steps in ((started, 5), (stopped, 0)):
        directory = spec.folder(tmp_path)
        directory.mkdir(parents=True)
        summary = {"run_id": spec.run_id, "task": "copy", "model": "ntm", "seed": spec.seed, "steps": steps,
                   "sequences": 32 * steps, "converged": False, "status": "stopped"}
        value = 1.0 if steps else None
        (directory / "result.json").write_text(json.dumps({"summary": summary,
                                                           "sets": [{"val_set": "a", "cost_bits": value}]}))
    rows, _ = read_results(tmp_path, [stopped, started])
    assert rows.run_id.tolist() == [started.run_id] and rows.index.tolist() == [0]
    old = typed(pd.DataFrame([{"run_id": stopped.run_id, "task": "copy", "model": "ntm", "seed": 1, "steps": 0,
                               "status": "stopped", "val_set": "a"}], columns=list(RESULT_COLUMNS)), RESULT_COLUMNS)
    save_table(old, tmp_path / "results.csv", RESULT_COLUMNS)
    (stopped.folder(tmp_path) / "result.json").unlink()
    rows, _ = read_results(tmp_path, [started, stopped])
    assert rows.run_id.tolist() == [started.run_id]


def test_a_task_can_have_its_own_seeds(tmp_path):
    """A one-seed hypothesis beside a three-seed comparison in one grid; --seeds still overrides both."""
    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [0, 1, 2]\ntasks:\n  copy: {config: configs/task/copy.yaml}\n"
                    "  ngrams: {config: configs/task/ngrams.yaml, seeds: [5]}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n")
    assert [s.run_id for s in load_grid(spec).runs] == ["copy-ntm-seed0", "copy-ntm-seed1", "copy-ntm-seed2",
                                                       "ngrams-ntm-seed5"]
    assert [s.seed for s in load_grid(spec, seeds=[7]).runs] == [7, 7]


@pytest.mark.parametrize("task_fields, field", [("seeds: 3", "seeds must be a non-empty list of integers >= 0"),
                                                ("seeds: [-1]", "seeds must be a non-empty list"),
                                                ("keep_models: [lstm]", "keep_models must name models of the task")])
def test_bad_task_fields_name_the_field(tmp_path, task_fields, field):
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"tasks:\n  copy: {{config: configs/task/copy.yaml, {task_fields}}}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n")
    with pytest.raises(ValueError, match=field):
        load_grid(spec)


@pytest.mark.parametrize("overrides, key", [
    ("{model.core.init_args.memory_slotz: 8}", "memory_slotz"),
    ("{model.core.init_args.memory_slots: many}", "memory_slots"),
    ("{data.max_lenght: 3}", "max_lenght"),
    ("{model.core.init_args.memory_init: zeros}", "memory_init"),   # the type allows it, the class does not
    ("{data.min_length: 30, data.max_length: 20}", "min_length"),
])
def test_a_wrong_override_fails_when_the_grid_is_read(tmp_path, overrides, key):
    """Before any run starts, naming the grid file, the run and the key."""
    spec = tmp_path / "grid.yaml"
    spec.write_text(f"tasks:\n  copy: {{config: configs/task/copy.yaml}}\n"
                    f"models:\n  ntm: {{config: configs/model/ntm.yaml, overrides: {overrides}}}\n")
    with pytest.raises(ValueError, match=rf"grid.yaml: run copy-ntm-seed0: .*{key}"):
        load_grid(spec)


def test_a_grid_with_command_line_lists_says_what_replaced_them(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text("tasks:\n  copy: {config: configs/task/copy.yaml}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml, args: [--model.compile, 'true']}\n")
    with pytest.raises(ValueError, match="unknown key 'args'.*overrides"):
        load_grid(spec)


def test_unfinished_run_resumes_from_its_checkpoint(smoke_results):
    out, _ = smoke_results
    grid = load_grid(SMOKE, max_steps=6)
    spec = grid.runs[0]
    assert not benchmark.is_finished(out, spec, grid)  # a larger budget: not finished any more
    cmd = benchmark.training_run(out, spec, grid).command()
    assert cmd[-2:] == ["--ckpt_path", "last"] and "6" in cmd


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "results.csv"
    atomic_write_text(path, "old\n")

    class Boom(Exception):
        pass

    def failing(f):
        f.write("half a new fi")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(path, failing)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the mode of any new file, not mkstemp's 0o600


def test_report_writes_every_figure(smoke_results, tmp_path):
    out, _ = smoke_results
    cost = tmp_path / "cost"
    cost.mkdir()
    rows = [{"model": "controller", "memory_slots": 0, "word_size": 20, "step_ms": 10}]
    rows += [{"model": m, "memory_slots": n, "word_size": 20, "step_ms": 10 + n * (2 if m == "dnc" else 1)}
             for m in ("ntm", "dnc") for n in (16, 32, 64)]
    rows += [{"model": m, "memory_slots": 128, "word_size": w, "step_ms": 50 + w} for m in ("ntm", "dnc") for w in (10, 40)]
    with (cost / "cost.csv").open("w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paper = tmp_path / "paper"
    written = {p.name for p in make_report([out], paper, cost)}
    grid = out.name
    assert {"sharpening.png", f"generalisation_{grid}_copy.png", f"learning_{grid}_copy.png", "addressing_ntm.png",
            "cost_per_step.png", f"results_{grid}.md", "literature.md"} <= written
    for name in ("sharpening.png", "cost_per_step.png", "addressing_ntm.png"):
        assert (paper / "figures" / name).stat().st_size > 1000
    assert any(p.name.startswith("learning_") for p in (paper / "figures").iterdir())
    assert any(p.name.startswith("generalisation_") for p in (paper / "figures").iterdir())
    assert "| copy | ntm |" in next((paper / "tables").glob("results_*.md")).read_text()


def test_report_redraws_addressing_from_the_kept_weights_in_a_fresh_clone(smoke_results, tmp_path):
    from mann_zoo import load_model

    out, _ = smoke_results
    kept = sorted(p.name for p in (out / "models").iterdir())
    assert kept == ["copy-ntm-seed0.ckpt"]  # the NTM and DNC on copy only: no LSTM weights
    core = load_model(out / "models" / kept[0])
    assert hasattr(core, "step")
    clone = tmp_path / "smoke"
    (clone / "models").mkdir(parents=True)
    for name in ("results.csv", "curves.csv", "models/copy-ntm-seed0.ckpt"):
        (clone / name).write_bytes((out / name).read_bytes())
    gpu = tmp_path / "paper/results/gpu"  # a GPU's files (scripts/gpu_check.sh), as committed from the H200
    gpu.mkdir(parents=True)
    for name in ("cost.csv", "cost_fit.csv", "reference.csv", "batches_copy.csv"):
        (gpu / name).write_bytes((ROOT_RESULTS / "gpu" / name).read_bytes())
    written = {p.name for p in make_report([clone], tmp_path / "paper")}
    assert "addressing_ntm.png" in written and "results_smoke.md" in written
    assert {"cost_per_step_gpu.png", "speed_reference_gpu.md", "speed_batches_copy_gpu.md", "cost_fit_gpu.md"} <= written


def test_report_embeds_the_tables_into_the_write_up(tmp_path):
    from mann_zoo.experiments.report import embed_tables

    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "results_x.md").write_text("# Results: x\n\n| a |\n|---|\n| 2 |\n")
    document = tmp_path / "paper.md"
    document.write_text("intro\n<!-- table: results_x.md -->\n| a |\n|---|\n| 1 |\n<!-- /table -->\n"
                        "<!-- table: missing.md -->\nkept\n<!-- /table -->\nend\n")
    assert embed_tables(document, tables)
    assert document.read_text() == ("intro\n<!-- table: results_x.md -->\n| a |\n|---|\n| 2 |\n<!-- /table -->\n"
                                    "<!-- table: missing.md -->\nkept\n<!-- /table -->\nend\n")
    assert not embed_tables(document, tables)  # unchanged the second time


def test_cost_fit_recovers_known_coefficients():
    """A DNC's terms (fixed, N, N W, N^2) come back from exact data, in microseconds, and so does an NTM's
    (no N^2 term: None in its row). T itself is fitted: the controller alone is recorded beside the fit,
    not subtracted (a sequence kernel's step can take less than it)."""
    rows = [{"model": "dnc", "memory_slots": n, "word_size": w, "step_ms": 3 + 5e-3 * n + 2e-3 * n * w + 1e-4 * n * n}
            for n in (16, 64, 256, 1024) for w in (10, 20, 40)]
    fit = fit_cost_model(rows, "dnc", base_ms=0.0)
    assert fit["fixed_us"] == pytest.approx(3e3, rel=1e-6) and fit["us_per_N"] == pytest.approx(5, rel=1e-6)
    assert fit["us_per_NW"] == pytest.approx(2, rel=1e-6) and fit["us_per_N2"] == pytest.approx(0.1, rel=1e-6)
    assert fit["r2"] == pytest.approx(1.0) and fit["max_relative_error"] < 1e-9 and fit["points"] == 12
    # The controller timed in each configuration's rounds: its median per W is its typical time, its ratio
    # to that median the machine's drift in those rounds (x1.2, x0.9), divided out before the fit.
    ntm = [{"model": "ntm", "memory_slots": n, "word_size": w, "controller_ms": 10 * drift,
            "step_ms": (10 + 1 + 1e-3 * n * w) * drift}
           for n, w, drift in ((16, 20, 1.0), (64, 20, 1.2), (256, 20, 0.9), (128, 40, 1.0))]
    fit = fit_cost_model(ntm, "ntm", base_ms=10.0)
    assert fit["us_per_N2"] is None and fit["us_per_NW"] == pytest.approx(1, rel=1e-6)
    assert fit["fixed_us"] == pytest.approx(11e3, rel=1e-6) and fit["us_per_N"] == pytest.approx(0, abs=1e-6)
    assert fit["controller_ms"] == 10.0 and fit["fit_of"] == "T"
    assert formula(fit).startswith("T = 11,000 us + ") and "1 us x N W" in formula(fit)
    # Steps cheaper than the controller alone (a sequence kernel's C controller) still fit, fixed term included.
    fast = [{**r, "step_ms": r["step_ms"] / 2} for r in ntm]
    fit = fit_cost_model(fast, "ntm", base_ms=10.0)
    assert fit["fixed_us"] == pytest.approx(5.5e3, rel=1e-6) and fit["us_per_NW"] == pytest.approx(0.5, rel=1e-6)


def test_cost_fit_of_the_sparse_dnc_has_an_n_log_n_term_and_no_n_squared():
    """The sparse DNC (dnc_sparse) keeps no N x N link: its terms are fixed, N, N W and N log2 N, and the
    sweep does not stop it at --dnc-max-slots as it does the dense DNCs."""
    from mann_zoo.experiments.cost_model import has_dense_link, model_terms

    assert model_terms("dnc_sparse") == ["fixed", "N", "NW", "NlogN"]
    assert has_dense_link("dnc") and has_dense_link("pypi dnc 1.1.0") and not has_dense_link("dnc_sparse")
    rows = [{"model": "dnc_sparse", "memory_slots": n, "word_size": w,
             "step_ms": 400 + 1e-4 * n * w + 2e-4 * n * math.log2(n)}
            for n in (16, 256, 4096, 16384) for w in (10, 20, 40)]
    fit = fit_cost_model(rows, "dnc_sparse", base_ms=0.0)
    assert fit["us_per_N2"] is None and fit["us_per_NlogN"] == pytest.approx(0.2, rel=1e-6)
    assert fit["us_per_NW"] == pytest.approx(0.1, rel=1e-6) and fit["fixed_us"] == pytest.approx(4e5, rel=1e-6)
    assert "0.2 us x N log2 N" in formula(fit)


def test_cost_fit_weighs_relative_error():
    """With a point that no model of the terms fits, the small memories keep a small relative error: the
    fit minimises relative, not absolute, error (a 10 % outlier at N = 4096 does not carry the fit)."""
    rows = [{"model": "ntm", "memory_slots": n, "word_size": 20, "step_ms": 10 + 1e-3 * n * 20 * (1.1 if n == 4096 else 1)}
            for n in (16, 32, 64, 128, 256, 512, 1024, 4096)]
    fit = fit_cost_model(rows, "ntm", base_ms=0.0)
    small = [predict(fit, n, 20) / (10 + 0.02 * n) - 1 for n in (16, 32, 64)]
    assert max(abs(e) for e in small) < 0.02 and fit["max_relative_error"] < 0.1


def test_activation_memory_grows_with_memory_size():
    from mann_zoo.models import build
    from mann_zoo.experiments.speed import copy_batch

    batch = copy_batch(4, 3, 8, "cpu")
    small, large = (activation_megabytes(build("dnc", 9, 8, controller_size=8, memory_slots=n, word_size=4), batch)
                    for n in (8, 64))
    assert large > 4 * small > 0


def test_run_summary_puts_the_results_table_into_the_wandb_summary(tmp_path):
    """What a W&B run's summary holds after a bench run: the same names and values as the results table."""
    import lightning as L
    from lightning.pytorch.loggers import Logger

    from mann_zoo.models import NTM
    from mann_zoo.training.callbacks import RunSummary
    from mann_zoo.training.lightning_module import SequenceModel
    from tasks import CopyTask

    class Experiment:
        def __init__(self):
            self.summary, self.logged = {}, {}

        def log(self, values):
            self.logged.update(values)

    class FakeWandb(Logger):  # the part of WandbLogger that RunSummary uses
        name, version = "fake", 0

        def __init__(self):
            super().__init__()
            self._experiment = Experiment()

        @property
        def experiment(self):
            return self._experiment

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    task = CopyTask(max_length=3, val_lengths=[5], batch_size=3, num_val_sequences=4)
    model = SequenceModel(partial(NTM, controller_size=8, memory_slots=8, word_size=4), task.input_size, task.output_size)
    logger = FakeWandb()
    trainer = L.Trainer(max_steps=2, val_check_interval=2, check_val_every_n_epoch=None, logger=logger,
                        callbacks=[RunSummary(str(tmp_path), run_id="copy-ntm-seed0")], enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(model, datamodule=task)
    result = json.loads((tmp_path / "result.json").read_text())
    summary = logger.experiment.summary
    for key, value in result["summary"].items():
        if value is not None:
            assert summary[key] == value, key
    for row in result["sets"]:
        assert summary[f"final/{row['val_set']}/bit_errors"] == row["bit_errors"]
    assert set(result["summary"]) == set(RUN_COLUMNS)
    # and the generalisation, as a table of the sets with a plot
    from mann_zoo.experiments.results import GENERALISATION_PLOT, GENERALISATION_TABLE

    table = logger.experiment.logged[GENERALISATION_TABLE]
    assert [row[0] for row in table.data] == [row["val_set"] for row in result["sets"]]
    assert GENERALISATION_PLOT in logger.experiment.logged


def test_cost_sweep_resumes_where_it_stopped(tmp_path, monkeypatch):
    """A rerun with the same settings measures only the configurations missing from cost.csv (here the
    one deleted); --fresh measures them all again."""
    from mann_zoo.experiments import cost

    monkeypatch.setattr(cost, "log_to_wandb", lambda rows, out: None)  # the W&B run is another test's subject
    args = ["--slots", "4", "8", "--widths", "4", "--width", "4", "--models", "ntm", "--repeats", "1",
            "--out", str(tmp_path)]
    measured = []
    real_measure = cost.measure
    monkeypatch.setattr(cost, "measure", lambda models, *a: measured.append(sorted(models)) or real_measure(models, *a))
    cleared = []  # the kept buffers are let go after each configuration, before the next is measured
    monkeypatch.setattr(cost.pool, "clear", lambda: cleared.append(len(measured)))
    cost.main(args)
    first = pd.read_csv(tmp_path / "cost.csv")
    assert measured == [["ntm"]] * 3 and sorted(first.model) == ["controller", "ntm", "ntm", "ntm"]  # N = 4, 8, 128
    assert cleared == [1, 2, 3]
    first[first.memory_slots != 8].to_csv(tmp_path / "cost.csv", index=False)  # as if stopped before N = 8
    measured.clear()
    cost.main(args)
    again = pd.read_csv(tmp_path / "cost.csv")
    assert measured == [["ntm"]]
    assert sorted(zip(again.model, again.memory_slots)) == [("controller", 0), ("ntm", 4), ("ntm", 8), ("ntm", 128)]
    assert again[again.memory_slots == 4].step_ms.tolist() == first[first.memory_slots == 4].step_ms.tolist()
    measured.clear()
    cost.main([*args, "--fresh"])
    assert measured == [["ntm"]] * 3
    # a sweep with other settings does not touch the file: one line, naming the difference
    before = (tmp_path / "cost.csv").read_bytes()
    with pytest.raises(SystemExit) as stopped:
        cost.main([*args, "--threads", "2"])
    assert stopped.value.code == 2 and (tmp_path / "cost.csv").read_bytes() == before


def test_cost_model_predicts_from_known_coefficients():
    """T = c + d N + a N W + b N^2, with every coefficient in us and T in ms (the controller time beside it
    is not part of the model)."""
    fit = {"fit_of": "T", "controller_ms": 10.0, "fixed_us": 3e3, "us_per_N": 5.0, "us_per_NW": 2.0, "us_per_N2": 0.1}
    assert predict(fit, 100, 20) == pytest.approx(3 + 5e-3 * 100 + 2e-3 * 100 * 20 + 1e-4 * 100 * 100)
    # a row of a fit of T - T_controller (before fit_of) would predict T_controller too low: refused, in one line
    for old in ({k: v for k, v in fit.items() if k != "fit_of"}, {**fit, "fit_of": float("nan")}):
        for use in (lambda row: predict(row, 100, 20), formula):
            with pytest.raises(ValueError, match=r"^cost fit of None: fit_of must be 'T' .*refits it from DIR/cost.csv$"):
                use(old)
    assert predict(pd.Series({**fit, "us_per_N2": float("nan")}), 100, 20) == pytest.approx(7.5)  # an NTM's row
    assert predict({**fit, "us_per_N2": None}, [16, 64], [20, 20]).tolist() == pytest.approx([3.72, 5.88])
    # The fit and the prediction share their terms: predicting the fitted points gives them back.
    rows = [{"model": "dnc", "memory_slots": n, "word_size": w, "step_ms": 5 + 3 + 2e-3 * n * w + 1e-4 * n * n}
            for n in (16, 64, 256) for w in (10, 20, 40)]
    fitted = fit_cost_model(rows, "dnc", base_ms=5.0)
    assert [predict(fitted, r["memory_slots"], r["word_size"]) for r in rows] == pytest.approx([r["step_ms"] for r in rows])


def test_cost_sweep_settings_come_from_the_sweep_file():
    committed = pd.read_csv(Path(__file__).resolve().parents[1] / "paper" / "results" / "cost" / "cost.csv")
    assert sweep_of(committed) == Sweep(batch_size=32, sequence_steps=41, n_sweep_word_size=20, w_sweep_memory_slots=128)
    recorded = committed.assign(batch_size=8, sequence_steps=21, n_sweep_word_size=40, w_sweep_memory_slots=64)
    assert sweep_of(recorded) == Sweep(8, 21, 40, 64)


def test_cost_fit_drops_a_negative_term():
    rows = [{"model": "dnc", "memory_slots": n, "word_size": w, "step_ms": 3 + 1e-4 * n * n - 1e-6 * n * w}
            for n in (16, 64, 256) for w in (10, 20, 40)]
    fit = fit_cost_model(rows, "dnc", base_ms=0.0)
    assert fit["us_per_NW"] == 0.0 and fit["us_per_N2"] > 0 and fit["fixed_us"] > 0  # the N W term is negative here


def test_pip_install_ships_the_configs_and_bench_writes_only_the_current_folder(installed_bench):
    """The installed package (not the source tree) has the configs; bench, run from an empty folder, wrote
    its results there and left the source tree as it was."""
    site, work = installed_bench["site"], installed_bench["work"]
    assert (site / "mann_zoo" / "configs" / "bench" / "smoke.yaml").is_file()
    assert (site / "mann_zoo" / "configs" / "task" / "copy.yaml").is_file()
    for kernel in ("link_kernel.c", "ntm_kernel.c", "sparse_kernel.c"):  # the C kernels (native.py)
        assert (site / "mann_zoo" / "memory" / kernel).is_file()
    assert {r["run_id"] for r in read(work / "results" / "smoke" / "results.csv")} == {"copy-ntm-seed0", "copy-lstm-seed0"}
    assert installed_bench["after"] == installed_bench["before"]


def test_one_job_trains_one_run_at_a_time_and_its_progress_reaches_the_driver(installed_bench):
    """--jobs 1: the second run's task starts after the first run has written its result, although a run
    reports its progress while it trains (a task that waited on Ray for that would hand its CPU to the next
    run); each run's line per validation reaches bench's output."""
    runs = installed_bench["work"] / "results" / "smoke" / "runs"
    started = {run: (runs / run / "worker.pid").stat().st_mtime for run in ("copy-ntm-seed0", "copy-lstm-seed0")}
    first, second = sorted(started, key=started.get)
    assert (runs / first / "result.json").stat().st_mtime <= started[second]
    printed = installed_bench["result"].stdout
    for run in started:
        assert f"{run}: step 2," in printed and f"{run}: step 4," in printed, printed[-2000:]


def test_printed_tables_fit_80_columns_and_cut_nothing():
    """bench's tables of the committed reproduction grid, at 80 columns: no line longer, no cell cut off."""
    from rich.console import Console

    from mann_zoo.experiments.benchmark import comparison_tables

    results = load_results(Path(__file__).resolve().parents[1] / "paper/results/paper/results.csv")
    console = Console(width=80, record=True, file=io.StringIO())
    for table in comparison_tables(results):
        console.print(table)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert "associative_recall" in text and "items_20" in text and "1.33M" in text  # a row, a set, a count


def test_speed_table_folds_a_long_model_name_instead_of_cutting_numbers(capsys):
    """A model config with a long name (dnc_sparse_n16384 compiled @e8dab13): at 80 columns the label
    folds onto a second line and every number is printed whole."""
    from mann_zoo.experiments.speed import print_table

    row = dict(model="dnc_sparse_n16384", compiled=True, version="e8dab13", batch_size=32, steps=41,
               ms_per_step=755.5, sequences_per_s_per_core=42.4, x_controller=40.31, x_before=1.0, activation_mb=1247.5)
    print_table(pd.DataFrame([row]), "copy")
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "755.5" in text and "1247.5" in text and "40.31" in text


def test_bench_report_covers_every_grid_beside_its_own(tmp_path, monkeypatch):
    """bench --report regenerates the report from every grid in the results folder, not only the one it ran."""
    from mann_zoo.experiments import report

    results = tmp_path / "results"
    for grid in ("paper", "default"):
        (results / grid).mkdir(parents=True)
        (results / grid / "results.csv").write_text("")
    (results / "not_a_grid").mkdir()
    seen = []
    monkeypatch.setattr(benchmark, "run_grid", lambda *args, **kwargs: load_results(ROOT_RESULTS / "default/results.csv"))
    monkeypatch.setattr(report, "make_report", lambda dirs, paper: seen.append(sorted(d.name for d in dirs)))
    benchmark.main(["--preset", "smoke", "--out", str(results / "smoke"), "--report", str(tmp_path / "paper")])
    assert seen == [["default", "paper", "smoke"]]


def test_speed_at_a_tasks_configuration(tmp_path, capsys):
    """mann-zoo speed --task --model: one row per model and batch size, after the controller alone (the
    yardstick of x_controller); sequences per second is the batch over the step time, per core divided by
    the threads; the table fits 80 columns."""
    from mann_zoo.cli import main

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "speed.csv"
    main(["speed", "--task", str(root / "configs/task/repeat_copy.yaml"), "--model", str(root / "configs/model/ntm.yaml"),
          str(root / "configs/model/lstm.yaml"), "--batches", "2", "4", "--repeats", "1", "--threads", "1",
          "--out", str(out)])
    rows = pd.read_csv(out)
    assert list(zip(rows.model, rows.batch_size)) == [("controller alone", 2), ("ntm", 2), ("lstm", 2),
                                                      ("controller alone", 4), ("ntm", 4), ("lstm", 4)]
    assert (rows.task == "repeat_copy").all() and (rows.activation_mb > 0).all() and (rows.threads == 1).all()
    # the task's full training distribution, not its curriculum's first stage (1 repeat: at most 22 steps)
    assert rows.steps.max() > 22
    assert ((rows.sequences_per_s * rows.ms_per_step / 1e3 - rows.batch_size).abs() < 1e-6).all()
    assert (rows.sequences_per_s_per_core == rows.sequences_per_s).all()  # one thread
    for _, group in rows.groupby("batch_size"):
        controller = group.ms_per_step[group.model == "controller alone"].item()
        assert ((group.x_controller - group.ms_per_step / controller).abs() < 1e-9).all()
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines() if not line.startswith("wrote ")) <= 80 and "seq/s/core" in printed


def test_speed_times_a_baseline_revision_in_the_same_rounds(tmp_path):
    """--baseline REF: the cores of that git revision (here HEAD, imported beside this checkout's as
    mann_zoo_<hash>) are timed beside this checkout's, eager and compiled; x_before is their step time over
    ours, for the same model and compilation, on this checkout's rows only."""
    import sys

    from mann_zoo.cli import main
    from mann_zoo.models import NTM

    root = Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "speed.csv"
    main(["speed", "--models", "ntm", "--slots", "8", "--width", "4", "--length", "2", "--batch", "2",
          "--repeats", "1", "--baseline", "HEAD", "--out", str(out)])
    rows = pd.read_csv(out)
    revision = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    assert list(zip(rows.model, rows.version)) == [("controller alone", "this checkout"), ("ntm", "this checkout"),
                                                   ("ntm", revision)]
    ours, before = rows.ms_per_step[1], rows.ms_per_step[2]
    assert rows.x_before[1] == pytest.approx(before / ours) and rows.x_before.isna()[[0, 2]].all()
    assert sys.modules[f"mann_zoo_{revision}"].models.NTM is not NTM  # the revision's own class
    # and its own custom operators, registered beside ours instead of replacing them
    from mann_zoo.memory import linkage

    theirs = sys.modules[f"mann_zoo_{revision}"].memory.linkage
    assert theirs.NAMESPACE == f"mann_zoo_{revision}" and linkage.NAMESPACE == "mann_zoo"
    assert theirs._link_and_reads is not linkage._link_and_reads


def test_speed_skips_a_model_the_baseline_revision_cannot_build(monkeypatch, capsys):
    """A config with an argument the --baseline revision does not have yet (here sparse_k) is timed at
    this checkout only, with a line saying why; the same argument at its default is left out for the
    revision, which then builds."""
    import sys
    import types

    from torch import nn

    from mann_zoo.experiments.speed import entries_for
    from mann_zoo.models.registry import CoreSpec

    class OldDNC(nn.Module):  # a revision's DNC, before sparse_k
        def __init__(self, input_size, output_size, memory_slots=128, word_size=20, controller_size=100):
            super().__init__()

    for name in ("mann_zoo_old", "mann_zoo_old.models", "mann_zoo_old.models.dnc"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["mann_zoo_old.models.dnc"].DNC = OldDNC
    package = sys.modules["mann_zoo_old"]
    package.revision = "old"
    args = {"memory_slots": 8, "word_size": 4, "controller_size": 8}
    specs = {"dnc_sparse": CoreSpec("mann_zoo.models.dnc.DNC", {**args, "sparse_k": 2}),
             # a config parsed today lists the new argument at its default: the revision is built without it
             "dnc": CoreSpec("mann_zoo.models.dnc.DNC", {**args, "sparse_k": None})}
    entries = entries_for(specs, 9, 8, False, package, None, 4)
    assert [(e.model, e.version) for e in entries] == [("controller alone", "this checkout"),
                                                       ("dnc_sparse", "this checkout"), ("dnc", "this checkout"),
                                                       ("dnc", "old")]
    assert "dnc_sparse: not timed at old" in capsys.readouterr().out


def test_speed_times_the_ntm_compiled_through_its_step_not_the_sequence_kernel_twice():
    """`speed --compile`: the NTM's and DNC's "compiled" rows are their compiled steps (sequence_kernel=False);
    the whole-sequence C kernels, which would take the training step whatever `compile` says, are the plain rows.
    A class without the option (the Stack-RNN) is built with compile=True alone."""
    from mann_zoo.experiments.speed import entries_for
    from mann_zoo.models.registry import CoreSpec

    args = {"memory_slots": 8, "word_size": 4, "controller_size": 8}
    specs = {"ntm": CoreSpec("mann_zoo.models.ntm.NTM", args), "dnc": CoreSpec("mann_zoo.models.dnc.DNC", args),
             "stack": CoreSpec("mann_zoo.models.stack_rnn.StackRNN", args)}
    entries = entries_for(specs, 9, 8, True, None, None, 4)
    kinds = {e.label: (e.core.compiled, getattr(e.core, "sequence_kernel", None)) for e in entries[1:]}
    assert kinds == {"ntm": (False, True), "ntm compiled": (True, False), "dnc": (False, True),
                     "dnc compiled": (True, False), "stack": (False, None), "stack compiled": (True, None)}


def test_the_compute_plan_is_the_budget_times_the_measured_speed(tmp_path):
    """bench --plan: one probe per configuration (a learning rate alone does not change the speed), with
    the whole training distribution and three validations; hours per run = steps x step time +
    validations x the probe's mean validation time."""
    from mann_zoo.experiments import plan

    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [3, 4]\nval_check_interval: 100\n"
                    "tasks:\n  copy: {config: configs/task/copy.yaml, max_steps: 1000}\n"
                    "  copy_fast: {config: configs/task/copy.yaml, max_steps: 1000, overrides: {model.lr: 0.01}, seeds: [3]}\n"
                    "  repeat_copy: {config: configs/task/repeat_copy.yaml, max_steps: 500, models: [ntm]}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n  lstm: {config: configs/model/lstm.yaml}\n")
    grid = load_grid(spec, check=False)
    probes = plan.probe_grid(grid, steps=7)
    assert [s.run_id for s in probes.runs] == ["copy-ntm-seed3", "copy-lstm-seed3", "repeat_copy-ntm-seed3"]
    assert all(s.max_steps == 21 for s in probes.runs)
    assert all(s.overrides["data.curriculum_max_length"] is None for s in probes.runs)  # copy and repeat copy have one
    assert probes.val_check_interval == 7 and not probes.stop_at_convergence
    for s in probes.runs:  # what the probe runs would have written
        (tmp_path / "out/runs" / s.run_id).mkdir(parents=True)
        summary = {"step_time_ms": {"ntm": 36.0, "lstm": 72.0}[s.model], "val_time_s": 54.0, "batch_size": 32}  # 3 x 18 s
        (tmp_path / "out/runs" / s.run_id / "result.json").write_text(json.dumps({"summary": summary, "sets": []}))
    table = plan.plan_table(grid, plan.read_probes(tmp_path / "out", grid, probes)).set_index(["task", "model"])
    # copy, ntm: 1000 x 0.036 s + 10 validations x 18 s = 216 s = 0.06 h per run, two seeds
    assert table.loc[("copy", "ntm"), "hours_per_run"] == pytest.approx(0.06)
    assert table.loc[("copy", "ntm"), "runs"] == 2 and table.loc[("copy", "ntm"), "hours"] == pytest.approx(0.12)
    assert table.loc[("copy_fast", "lstm"), "hours"] == pytest.approx((1000 * 0.072 + 180) / 3600)
    assert table.loc[("repeat_copy", "ntm"), "sequences"] == 500 * 32
    assert table.loc[("total", ""), "runs"] == 8
    assert table.loc[("total", ""), "hours"] == pytest.approx(table["hours"].iloc[:-1].sum())
    assert table.loc[("copy", "ntm"), "finished"] == 0 and pd.isna(table.loc[("copy", "ntm"), "measured_hours_per_run"])
    assert table.loc[("copy", "ntm"), "hours_left"] == pytest.approx(0.12)  # nothing finished: the upper bound
    text = plan.write_plan(table.reset_index(), tmp_path / "out", threads=1, jobs=2)
    assert "| copy | ntm | 2 | 1,000 / 32,000 | 36 | 18.0 | 0.06 | 0.1 | 0 | - | 0.1 |" in text
    # what is left: the unfinished runs at the median measured time of the finished ones of their (task, model)
    left = plan.plan_table(grid, plan.read_probes(tmp_path / "out", grid, probes),
                           {"copy-ntm-seed3": 0.02, "copy-lstm-seed3": 0.5, "copy-lstm-seed4": 0.3}).set_index(["task", "model"])
    assert left.loc[("copy", "ntm"), "finished"] == 1 and left.loc[("copy", "ntm"), "hours_left"] == pytest.approx(0.02)
    assert left.loc[("copy", "lstm"), "measured_hours_per_run"] == pytest.approx(0.4)
    assert left.loc[("copy", "lstm"), "hours_left"] == 0
    assert left.loc[("total", ""), "finished"] == 3
    assert left.loc[("total", ""), "hours_left"] == pytest.approx(left["hours_left"].iloc[:-1].sum())
    assert "Left: 5 runs" in plan.markdown(left.reset_index(), threads=1, jobs=2)
    # a finished run slower than the probe's upper bound (older code, a busier machine): the bound stands
    slow = plan.plan_table(grid, plan.read_probes(tmp_path / "out", grid, probes), {"copy-ntm-seed3": 0.5})
    slow = slow.set_index(["task", "model"])
    assert slow.loc[("copy", "ntm"), "measured_hours_per_run"] == pytest.approx(0.5)
    assert slow.loc[("copy", "ntm"), "hours_left"] == pytest.approx(0.06)
    assert (tmp_path / "out/plan.csv").is_file() and (tmp_path / "out/plan.md").read_text() == text
    # a fresh clone: no probe folders, their committed rows stand in
    recorded = pd.DataFrame([{"run_id": s.run_id, "step_time_ms": 36.0, "val_time_s": 54.0, "batch_size": 32}
                             for s in probes.runs]).reindex(columns=list(RESULT_COLUMNS))
    save_table(recorded, tmp_path / "clone/results.csv", RESULT_COLUMNS)
    again = plan.plan_table(grid, plan.read_probes(tmp_path / "clone", grid, probes)).set_index(["task", "model"])
    assert again.loc[("copy", "ntm"), "hours_per_run"] == pytest.approx(0.06)
    with pytest.raises(RuntimeError, match="probe copy-ntm-seed3: no timing"):
        plan.read_probes(tmp_path / "nowhere", grid, probes)
    spec.write_text("tasks:\n  ngrams: {config: configs/task/ngrams.yaml}\nmodels:\n  ntm: {config: configs/model/ntm.yaml}\n")
    [probe] = plan.probe_grid(load_grid(spec, check=False)).runs
    assert "data.curriculum_max_length" not in probe.overrides  # n-grams has no curriculum to switch off


def test_the_plan_of_bench_only_covers_the_runs_it_names(tmp_path, monkeypatch):
    """bench --plan --only: the probes and the plan are those of the named runs, not the whole grid's."""
    from mann_zoo.experiments import benchmark, plan

    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [0, 1]\ntasks:\n  copy: {config: configs/task/copy.yaml, max_steps: 100}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n  lstm: {config: configs/model/lstm.yaml}\n")
    probed = []
    monkeypatch.setattr(benchmark, "run_grid", lambda grid, *args, **kwargs: probed.append(grid))
    monkeypatch.setattr(plan, "read_probes", lambda out, grid, probes: {
        plan.timing_key(s): {"step_time_ms": 10.0, "val_time_s": 3.0, "batch_size": 32} for s in grid.runs})
    benchmark.main(["--config", str(spec), "--out", str(tmp_path / "out"), "--plan", "--only", "lstm"])
    [probes] = probed
    assert [s.run_id for s in probes.runs] == ["copy-lstm-seed0"]
    text = (tmp_path / "out/plan.md").read_text()
    assert "| copy | lstm | 2 |" in text and "| copy | ntm |" not in text
    assert "Only the runs that `--only lstm` names." in text  # a partial plan says so
    # a later seed, or other seeds, are timed by the grid's own probe (named by its first seed): timed once
    for args in (["--only", "copy-lstm-seed1"], ["--seeds", "5"]):
        probed.clear()
        benchmark.main(["--config", str(spec), "--out", str(tmp_path / "out"), "--plan", *args])
        assert {s.run_id for s in probed[0].runs} <= {"copy-ntm-seed0", "copy-lstm-seed0"}


def test_bench_plan_keeps_the_other_probes_rows_and_times_changed_probes_again(tmp_path, capsys):
    """bench --plan --only with every probe timed before: nothing trains, and the probes' table keeps the
    rows of the probes it did not name (a fresh clone has only those rows). A probe whose configuration has
    changed since it was timed goes, and is timed again; the probes timed in a call get their fingerprint."""
    from mann_zoo.experiments import plan

    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [0, 1]\ntasks:\n  copy: {config: configs/task/copy.yaml, max_steps: 100}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n  lstm: {config: configs/model/lstm.yaml}\n")
    probes = plan.probe_grid(load_grid(spec, check=False))
    rows = pd.DataFrame([{"run_id": s.run_id, "task": s.task, "model": s.model, "seed": s.seed, "steps": s.max_steps,
                          "step_time_ms": 10.0, "val_time_s": 3.0, "batch_size": 32, "status": "finished",
                          "val_set": "len_1-20"} for s in probes.runs]).reindex(columns=list(RESULT_COLUMNS))
    save_table(rows, tmp_path / "out/plan/results.csv", RESULT_COLUMNS)
    bench = ["--config", str(spec), "--out", str(tmp_path / "out"), "--plan"]
    benchmark.main([*bench, "--only", "lstm"])  # both probes are finished: run_grid trains nothing
    assert list(load_results(tmp_path / "out/plan/results.csv")["run_id"]) == ["copy-ntm-seed0", "copy-lstm-seed0"]
    assert not (tmp_path / "out/plan/probes.json").exists()  # reused, not timed: their configuration is not known
    (tmp_path / "out/plan/probes.json").write_text(json.dumps({"copy-ntm-seed0": "timed-another-config"}))
    (tmp_path / "out/plan/runs/copy-ntm-seed0").mkdir(parents=True)
    forgotten = []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(benchmark, "run_grid", lambda grid, out, *args, **kwargs: forgotten.append(
        (not (out / "runs/copy-ntm-seed0").exists(), list(load_results(out / "results.csv")["run_id"]))))
    monkeypatch.setattr(plan, "read_probes", lambda out, grid, probes: {
        plan.timing_key(s): {"step_time_ms": 10.0, "val_time_s": 3.0, "batch_size": 32} for s in grid.runs})
    try:
        benchmark.main(bench)
    finally:
        monkeypatch.undo()
    assert forgotten == [(True, ["copy-lstm-seed0"])]
    assert "probe copy-ntm-seed0: its configuration has changed since it was timed" in capsys.readouterr().out
    [ntm] = [s for s in probes.runs if s.model == "ntm"]
    assert json.loads((tmp_path / "out/plan/probes.json").read_text()) == {"copy-ntm-seed0": plan.probe_fingerprint(ntm)}


def test_bench_plan_retime_times_the_named_probes_again(tmp_path, capsys):
    """--plan --retime --only: the probes of the runs named go (folder, carried state, rows) and are timed again,
    the others are reused; --retime without --plan is a one-line error."""
    from mann_zoo.experiments import plan

    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [0]\ntasks:\n  copy: {config: configs/task/copy.yaml, max_steps: 100}\n"
                    "models:\n  ntm: {config: configs/model/ntm.yaml}\n  lstm: {config: configs/model/lstm.yaml}\n")
    out = tmp_path / "out"
    probes = plan.probe_grid(load_grid(spec, check=False))
    rows = pd.DataFrame([{"run_id": s.run_id, "task": s.task, "model": s.model, "seed": 0, "steps": s.max_steps,
                          "step_time_ms": 10.0, "val_time_s": 3.0, "batch_size": 32, "status": "finished",
                          "val_set": "len_1-20"} for s in probes.runs]).reindex(columns=list(RESULT_COLUMNS))
    save_table(rows, out / "plan/results.csv", RESULT_COLUMNS)
    for s in probes.runs:
        s.folder(out / "plan").mkdir(parents=True)
        (out / "plan/resume" / s.run_id).mkdir(parents=True)
    timed = []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(benchmark, "run_grid", lambda grid, out, *args, **kwargs: timed.append(
        sorted(set(s.run_id for s in grid.runs) - set(load_results(out / "results.csv")["run_id"]))))
    monkeypatch.setattr(plan, "read_probes", lambda out, grid, probes: {
        plan.timing_key(s): {"step_time_ms": 10.0, "val_time_s": 3.0, "batch_size": 32} for s in grid.runs})
    try:
        benchmark.main(["--config", str(spec), "--out", str(out), "--plan", "--retime", "--only", "copy-ntm-*"])
    finally:
        monkeypatch.undo()
    assert timed == [["copy-ntm-seed0"]]  # the one probe without its row: to be timed again
    assert not (out / "plan/runs/copy-ntm-seed0").exists() and not (out / "plan/resume/copy-ntm-seed0").exists()
    assert (out / "plan/runs/copy-lstm-seed0").is_dir() and (out / "plan/resume/copy-lstm-seed0").is_dir()
    assert "probe copy-ntm-seed0: timing it again (--retime)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        benchmark.main(["--config", str(spec), "--out", str(out), "--retime"])
    assert "--retime goes with --plan" in capsys.readouterr().err


def test_a_probe_whose_configuration_changed_is_timed_again(tmp_path):
    """A probe is reused only while its grid entry is the one it timed: after an override that changes the
    speed is added, or a value in a config file changed, the probe's folder, carried state and rows go, so
    that it runs again; the other probes, probes timed before fingerprints were kept, and edits that change
    nothing (a learning rate, a comment) leave it."""
    from mann_zoo.configs import CONFIGS
    from mann_zoo.experiments import plan

    model = tmp_path / "lstm.yaml"
    model.write_text((CONFIGS / "model/lstm.yaml").read_text())
    spec = tmp_path / "grid.yaml"
    spec.write_text("seeds: [0]\ntasks:\n  copy: {config: configs/task/copy.yaml, max_steps: 100}\n"
                    f"models:\n  ntm: {{config: configs/model/ntm.yaml}}\n  lstm: {{config: {model}}}\n")
    out = tmp_path / "plan"
    probes = plan.probe_grid(load_grid(spec, check=False))
    rows = pd.DataFrame([{"run_id": s.run_id, "task": s.task, "model": s.model, "seed": 0, "step_time_ms": 5.0}
                         for s in probes.runs]).reindex(columns=list(RESULT_COLUMNS))
    save_table(rows, out / "results.csv", RESULT_COLUMNS)
    curves = pd.DataFrame([{"run_id": s.run_id, "step": 1, "sequences": 32, "metric": "loss", "value": 1.0}
                           for s in probes.runs]).reindex(columns=list(CURVE_COLUMNS))
    save_table(curves, out / "curves.csv", CURVE_COLUMNS)
    for s in probes.runs:
        s.folder(out).mkdir(parents=True)
        (out / "resume" / s.run_id).mkdir(parents=True)
    assert plan.forget_changed_probes(out, probes) == []  # no fingerprints yet: the probes stay
    plan.record_fingerprints(out, probes.runs)
    assert plan.forget_changed_probes(out, probes) == []  # nothing changed
    # the NTM's entry gains an override that changes its speed
    spec.write_text(spec.read_text().replace("configs/model/ntm.yaml}", "configs/model/ntm.yaml, overrides: "
                                             "{model.core.init_args.compile_steps: 4}}"))
    changed = plan.probe_grid(load_grid(spec, check=False))
    assert plan.forget_changed_probes(out, changed) == ["copy-ntm-seed0"]
    assert not (out / "runs/copy-ntm-seed0").exists() and not (out / "resume/copy-ntm-seed0").exists()
    assert (out / "runs/copy-lstm-seed0").is_dir() and (out / "resume/copy-lstm-seed0").is_dir()
    assert list(load_results(out / "results.csv")["run_id"]) == ["copy-lstm-seed0"]
    assert list(load_curves(out / "curves.csv")["run_id"]) == ["copy-lstm-seed0"]
    plan.record_fingerprints(out, changed.runs[:1])  # as bench --plan does once the probe has been timed again
    model.write_text(model.read_text() + "\n# a comment\n")  # changes nothing that is timed
    assert plan.forget_changed_probes(out, changed) == []
    text = model.read_text()
    assert "controller_size: 256" in text
    model.write_text(text.replace("controller_size: 256", "controller_size: 128"))  # the LSTM's config file changed
    assert plan.forget_changed_probes(out, changed) == ["copy-lstm-seed0"]
    # a learning rate does not change the speed: the probe stays
    plan.record_fingerprints(out, changed.runs)
    spec.write_text(spec.read_text().replace("max_steps: 100}", "max_steps: 100, overrides: {model.lr: 0.01}}"))
    assert plan.forget_changed_probes(out, plan.probe_grid(load_grid(spec, check=False))) == []


def test_a_run_that_failed_before_its_first_result_still_lets_the_tables_be_written(tmp_path):
    """A run recorded as failed (exit status, no result of its own) beside a metrics.csv it had begun: the
    tables are written, with the failed row and no curve (it has no batch size to count sequences by)."""
    from mann_zoo.experiments.benchmark import RunSpec, record_failure, write_tables

    spec = RunSpec("copy", "ntm", 0)
    directory = spec.folder(tmp_path)
    directory.mkdir(parents=True)
    (directory / "metrics.csv").write_text("epoch,step,train/cost_bits\n0,9,3.5\n")
    record_failure(tmp_path, spec, "RunKilled: killed; see stdout.log")
    rows = write_tables(tmp_path, [spec])
    assert list(rows.status) == ["failed"] and rows.note.iloc[0].startswith("RunKilled")
    assert load_curves(tmp_path / "curves.csv").empty


def test_reference_step_builds_every_short_name_at_the_reference_memory():
    """mann-zoo speed --models takes every shipped short name: the memory cores at N x W = 64 x 12 (and
    the controller of 100) as far as they take them, the LSTM and Transformer at their own sizes."""
    from mann_zoo.experiments.speed import reference_specs
    from mann_zoo.models import available_models

    names = ["ntm", "dnc", "dnc_md", "dnc_sparse", "lstm", "stack_rnn", "tape_rnn", "transformer"]  # the shipped ones
    assert set(names) <= set(available_models())
    specs = reference_specs(names, 64, 12)
    assert {"transformer", "stack_rnn", "tape_rnn"} <= set(specs)
    for name, spec in specs.items():
        core = spec.build(9, 8)
        if name in ("lstm", "transformer"):
            assert "memory_slots" not in spec.init_args
        else:
            assert core.memory_slots == 64 and spec.init_args["word_size"] == 12, name


def test_results_name_the_git_revision_that_ran(tmp_path):
    """The results' ``versions`` field names the commit of the checkout the run's code came from, and says
    when its mann_zoo/ had changes not committed; outside a git checkout (an installed wheel) it names none."""
    from mann_zoo.experiments.baseline import checkout_revision

    assert checkout_revision.__wrapped__(tmp_path) is None  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    try:
        subprocess.run([*git, "init", "-q"], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git")
    (tmp_path / "mann_zoo").mkdir()
    (tmp_path / "mann_zoo" / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    revision = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert checkout_revision.__wrapped__(tmp_path) == revision
    (tmp_path / "mann_zoo" / "a.py").write_text("x = 2\n")
    assert checkout_revision.__wrapped__(tmp_path) == f"{revision} + local changes"
    (tmp_path / "notes.md").write_text("outside the package: not the code that ran\n")
    (tmp_path / "mann_zoo" / "a.py").write_text("x = 1\n")
    assert checkout_revision.__wrapped__(tmp_path) == revision
    # an installed copy inside the checkout (a virtual environment there) is not the checkout's code
    (tmp_path / ".venv" / "site-packages" / "mann_zoo").mkdir(parents=True)
    assert checkout_revision.__wrapped__(tmp_path / ".venv" / "site-packages") is None
