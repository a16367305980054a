"""Records that lose nothing: a diverging run stops with its last good parameters and says so, a run that
crashes inside a grid is recorded as failed while the grid goes on, and the summaries count both."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mann_zoo.cli import main
from mann_zoo.experiments.benchmark import run_grid
from mann_zoo.experiments.grid import load_grid
from mann_zoo.experiments.results import RESULT_COLUMNS, load_results, summarise, typed

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "bench" / "smoke.yaml"

BREAKING_CORE = """
import torch


class BreakingCore(torch.nn.Module):
    \"\"\"A linear core that, in training, returns NaN logits from its ``nan_at``-th call on, or raises on its
    ``raise_at``-th call (0: never).\"\"\"

    def __init__(self, input_size: int, output_size: int, nan_at: int = 0, raise_at: int = 0):
        super().__init__()
        self.net = torch.nn.Linear(input_size, output_size)
        self.nan_at, self.raise_at, self.calls = nan_at, raise_at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.raise_at:
                raise RuntimeError("broken on purpose")
        y = self.net(x)
        return y * float("nan") if self.training and 0 < self.nan_at <= self.calls else y
"""


def _breaking_core(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "breaking.py").write_text(BREAKING_CORE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_a_non_finite_loss_stops_the_run_with_the_last_good_parameters(tmp_path, monkeypatch):
    _breaking_core(tmp_path, monkeypatch)
    def fit(name: str, nan_at: int, steps: int) -> dict:
        main(["fit", "--config", str(ROOT / "configs/task/copy.yaml"), "--model.core", "breaking.BreakingCore",
              "--model.core.init_args.nan_at", str(nan_at), "--data.max_length", "3", "--data.val_lengths", "[4]",
              "--data.batch_size", "2", "--data.num_val_sequences", "4", "--trainer.max_steps", str(steps),
              "--trainer.val_check_interval", str(steps), "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path / "runs"), "--run_name", name,
              "--trainer.callbacks+=mann_zoo.training.callbacks.RunSummary",
              "--trainer.callbacks.dirpath", str(tmp_path / name)])
        return json.loads((tmp_path / name / "result.json").read_text())["summary"]

    # Calls 1 and 2 train (steps 0 and 1); the third call's loss is NaN: no update, training stops.
    summary = fit("nan", nan_at=3, steps=10)
    assert summary["status"] == "diverged" and summary["note"] == "non-finite loss at step 2"
    assert fit("two_steps", nan_at=0, steps=2)["status"] == "finished"
    diverged, good = (torch.load(tmp_path / f"runs/{name}/checkpoints/last.ckpt", weights_only=True)["state_dict"]
                      for name in ("nan", "two_steps"))
    for key, value in good.items():  # the parameters of the last good step, finite
        torch.testing.assert_close(diverged[key], value, rtol=0, atol=0, msg=key)


def test_a_run_that_crashes_in_a_grid_is_recorded_as_failed_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    """Two cores from outside mann-zoo, each named by class path in its own model config: one trains and lands
    in the results table, the other crashes, is recorded as failed, and the grid goes on."""
    from test_cli import OUTSIDE_CORE

    _breaking_core(tmp_path, monkeypatch)
    (tmp_path / "my_cores.py").write_text(OUTSIDE_CORE)
    (tmp_path / "echo.yaml").write_text("model:\n  core:\n    class_path: my_cores.EchoCore\n    init_args: {width: 6}\n")
    (tmp_path / "breaks.yaml").write_text(
        "model:\n  core:\n    class_path: breaking.BreakingCore\n    init_args: {raise_at: 2}\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text(SMOKE.read_text().replace("models: [ntm, lstm]", "models: [echo, breaks]")
                    + f"  echo: {{config: {tmp_path / 'echo.yaml'}}}\n  breaks: {{config: {tmp_path / 'breaks.yaml'}}}\n")
    rows = run_grid(load_grid(grid), tmp_path / "out", jobs=2, threads=1)
    pd.testing.assert_frame_equal(rows, load_results(tmp_path / "out" / "results.csv"))  # the table as written
    assert set(rows.run_id) == {"copy-echo-seed0", "copy-breaks-seed0"}
    broken = rows[rows.model == "breaks"]
    assert list(broken.status) == ["failed"]
    assert str(tmp_path / "out" / "runs" / "copy-breaks-seed0" / "stdout.log") in broken.note.iloc[0]
    assert "broken on purpose" in (tmp_path / "out/runs/copy-breaks-seed0/stdout.log").read_text()
    echo = rows[rows.model == "echo"]
    assert set(echo.status) == {"finished"} and set(echo.num_parameters) == {9 * 6 + 6 + 6 * 8 + 8}
    summary = summarise(rows).set_index("model")
    assert summary.loc["breaks", "failed"] == 1 and summary.loc["echo", "failed"] == 0
    # One line per validation of each run, as it happens (smoke: 4 steps, validation every 2).
    printed = capsys.readouterr().out
    assert "copy-echo-seed0: step 2," in printed and "copy-echo-seed0: step 4," in printed


def test_stopping_bench_stops_its_runs_and_the_same_command_resumes_them(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(SMOKE.read_text().replace("max_steps: 4", "max_steps: 100000").replace("models: [ntm, lstm]", "models: [lstm]"))
    out = tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "offline"}
    bench = subprocess.Popen([sys.executable, "-m", "mann_zoo.cli", "bench", "--config", str(grid), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    for line in bench.stdout:
        if "copy-lstm-seed0: step 4," in line:
            break
    bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=120)
    assert bench.returncode != 0
    assert "stopping: waiting up to" in output  # says why it has not ended at once
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    assert left == "", f"training processes left running: {left}"
    summary = json.loads((out / "runs/copy-lstm-seed0/result.json").read_text())["summary"]
    assert summary["status"] == "stopped" and 4 <= summary["steps"] < 100000
    # What the stopped run needs to go on is carried in resume/ (committed), byte for byte what its run folder
    # holds: a fresh clone, which has the committed files and no runs/, goes on from it as `out` would.
    carried = out / "resume/copy-lstm-seed0"
    assert sorted(path.name for path in carried.iterdir()) == ["last.ckpt", "metrics.csv", "result.json"]
    run = out / "runs/copy-lstm-seed0"
    for name, source in {"last.ckpt": "checkpoints/last.ckpt", "metrics.csv": "metrics.csv", "result.json": "result.json"}.items():
        assert (carried / name).read_bytes() == (run / source).read_bytes(), name  # what `out` itself resumes from
    clone = tmp_path / "clone"
    shutil.copytree(out, clone, ignore=shutil.ignore_patterns("runs"))
    # The same command (here with a budget it can finish) resumes from the checkpoint, keeping the curve.
    budget = summary["steps"] + 4
    rows = run_grid(load_grid(grid, max_steps=budget), clone, jobs=1, threads=1)
    assert list(rows.status.unique()) == ["finished"] and rows.steps.iloc[0] == budget
    metrics = pd.read_csv(clone / "runs/copy-lstm-seed0/metrics.csv")
    logged = metrics.loc[metrics["val/len_1-3/cost_bits"].notna(), "step"]
    assert list(logged) == list(range(1, budget, 2))  # every validation (each 2 steps), before the stop and after, once
    assert "Restoring states from the checkpoint" in (clone / "runs/copy-lstm-seed0/stdout.log").read_text()
    assert not (clone / "resume/copy-lstm-seed0").exists()  # finished: nothing left to carry


def test_summary_against_a_hand_written_table():
    """Medians over seeds, convergence counts, the first and the longest set, and the status counts (a
    failed run counts as a run and is left out of the medians)."""
    def run(run_id, seed, converged, to_conv, status, first, longest):
        base = dict(run_id=run_id, task="copy", model="ntm", seed=seed, steps=100, sequences=3200,
                    train_time_s=10.0, converged=converged, sequences_to_convergence=to_conv,
                    wall_time_to_convergence_s=None, step_time_ms=5.0 + seed, peak_memory_mb=1.0,
                    num_parameters=7, batch_size=32, world_size=1, versions="v", hardware="h", status=status,
                    note=None, reference_bits=None, seq_accuracy=1.0)
        return [{**base, "val_set": "len_1-20", "val_steps": 41, "cost_bits": first, "bit_errors": first},
                {**base, "val_set": "len_120", "val_steps": 241, "cost_bits": longest, "bit_errors": longest}]

    rows = (run("a", 0, True, 1000, "finished", 0.0, 4.0) + run("b", 1, True, 3000, "finished", 0.2, 8.0)
            + run("c", 2, False, None, "diverged", 9.0, 60.0) + run("d", 3, False, None, "failed", 99.0, 99.0))
    table = typed(pd.DataFrame(rows), RESULT_COLUMNS)
    [s] = summarise(table).to_dict("records")
    assert (s["runs"], s["diverged"], s["failed"], s["converged"]) == (4, 1, 1, 2)
    assert s["sequences_to_convergence"] == 2000  # median of the converged runs a and b
    assert s["first_set"] == "len_1-20" and s["longest_set"] == "len_120"
    assert s["first_errors"] == 0.2 and s["longest_errors"] == 8.0  # medians of a, b, c; d left out
    assert s["step_ms"] == 6.0


def test_tables_written_before_the_status_column_read_as_finished(tmp_path):
    from mann_zoo.experiments.results import load_results

    rows = typed(pd.DataFrame([{k: None for k in RESULT_COLUMNS} | {"run_id": "x", "task": "copy", "model": "ntm"}]),
                 RESULT_COLUMNS)
    rows.drop(columns=["status", "note"]).to_csv(tmp_path / "results.csv", index=False)
    assert list(load_results(tmp_path / "results.csv").status) == ["finished"]


def test_report_reads_the_users_own_run_folders_and_leaves_them_as_they_were(tmp_path):
    """Every fit writes result.json; 'mann-zoo report --results <runs>' tabulates those runs as a grid named
    after the folder, writing nothing into it."""
    import hashlib

    runs = tmp_path / "my_runs"
    for model, extra in (("lstm", ["--model.core.init_args.controller_layers", "1"]),
                         ("ntm", ["--model.core.init_args.memory_slots", "8", "--model.core.init_args.word_size", "4"])):
        main(["fit", "--config", str(ROOT / "configs/task/copy.yaml"), "--config", str(ROOT / f"configs/model/{model}.yaml"),
              "--model.core.init_args.controller_size", "8", *extra, "--data.max_length", "3", "--data.val_lengths", "[5]",
              "--data.batch_size", "2", "--data.num_val_sequences", "4", "--trainer.max_steps", "2",
              "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(runs)])
    assert (runs / "copy-ntm/seed0/result.json").is_file()
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in runs.rglob("*") if p.is_file() and "wandb" not in p.parts}
    paper = tmp_path / "paper"
    paper.mkdir()
    main(["report", "--results", str(runs), "--paper", str(paper)])
    table = (paper / "tables" / "results_my_runs.md").read_text()
    assert "| copy | lstm | 1 |" in table and "| copy | ntm | 1 |" in table
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in runs.rglob("*") if p.is_file() and "wandb" not in p.parts}
    assert after == before


def test_convergence_needs_patience_validations_in_a_row_and_survives_a_resume():
    """Converged: below the threshold at ``patience`` validations in a row, counted from the first of them;
    one validation above it starts the count again; a resumed run keeps its count."""
    from types import SimpleNamespace

    from mann_zoo.training.callbacks import RunSummary, StopAtConvergence

    errors = [0.05, 0.3, 0.05, 0.02, 0.01, 0.0]  # validations at steps 10, 20, ..., 60

    def validate(callbacks, trainer, step, value):
        trainer.global_step, trainer.callback_metrics = step, {"val/len_1-20/bit_errors": torch.tensor(value)}
        for callback in callbacks:
            callback.on_validation_start(trainer, None)
            callback.on_validation_end(trainer, None)

    def trainer():
        return SimpleNamespace(sanity_checking=False, is_global_zero=False, should_stop=False, world_size=1,
                               datamodule=SimpleNamespace(val_names=["len_1-20"], batch_size=4))

    for patience, stop_step, converged_step in ((1, 10, 10), (3, 50, 30)):
        summary, stop, t = RunSummary(threshold=0.1, patience=patience), StopAtConvergence(0.1, patience), trainer()
        for index, value in enumerate(errors):
            validate([summary, stop], t, 10 * (index + 1), value)
            if t.should_stop:
                break
        assert t.global_step == stop_step and summary.converged_at["step"] == converged_step
        assert summary.converged_at["sequences"] == 4 * converged_step

    # Stopped after step 40 (two below in a row), resumed from a checkpoint: converged at 30 after step 50.
    summary, stop, t = RunSummary(threshold=0.1, patience=3), StopAtConvergence(0.1, 3), trainer()
    for index, value in enumerate(errors[:4]):
        validate([summary, stop], t, 10 * (index + 1), value)
    resumed_summary, resumed_stop, t = RunSummary(threshold=0.1, patience=3), StopAtConvergence(0.1, 3), trainer()
    resumed_summary.load_state_dict(summary.state_dict())
    resumed_stop.load_state_dict(stop.state_dict())
    assert not t.should_stop and resumed_summary.converged_at is None
    validate([resumed_summary, resumed_stop], t, 50, errors[4])
    assert t.should_stop and resumed_summary.converged_at["step"] == 30
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        StopAtConvergence(0.1, 0)


def test_a_run_resumed_at_its_budget_writes_the_result_its_killed_attempt_did_not(tmp_path, monkeypatch):
    """Killed between its last checkpoint and its result.json, a run resumes at its budget: Lightning trains
    nothing and calls no train hook; the result is written all the same, from a fresh validation."""
    monkeypatch.setenv("WANDB_MODE", "offline")

    def fit(*extra):
        main(["fit", "--config", str(ROOT / "configs/task/copy.yaml"), "--config", str(ROOT / "configs/model/lstm.yaml"),
              "--model.core.init_args.controller_size", "8", "--model.core.init_args.controller_layers", "1",
              "--data.max_length", "3", "--data.val_lengths", "[4]", "--data.batch_size", "2",
              "--data.num_val_sequences", "4", "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
              "--run_name", "r", "--trainer.callbacks+=mann_zoo.training.callbacks.RunSummary",
              "--trainer.callbacks.dirpath", str(tmp_path / "r"), *extra])
        return json.loads((tmp_path / "r" / "result.json").read_text())

    first = fit()
    (tmp_path / "r" / "result.json").unlink()  # as if killed before writing it
    again = fit("--ckpt_path", "last")
    assert again["summary"]["status"] == "finished" and again["summary"]["steps"] == 4
    assert [s["bit_errors"] for s in again["sets"]] == [s["bit_errors"] for s in first["sets"]]


def test_a_log_cut_short_by_a_kill_loses_only_its_broken_line_on_resume(tmp_path):
    """metrics.csv of a run killed while writing it: the last line has too few cells. On resume from step 4
    the rows from step 4 on go (as always), and so does the broken line; the file is whole again."""
    from mann_zoo.training.loggers import _KeepingWriter

    (tmp_path / "metrics.csv").write_text("epoch,step,train/cost_bits\n0,1,3.5\n0,3,3.0\n0,5,2.5\n0,7")
    writer = _KeepingWriter(str(tmp_path))
    writer._drop_from(4)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,step,train/cost_bits", "0,1,3.5", "0,3,3.0"]
    (tmp_path / "metrics.csv").write_text("epoch,step,train/cost_bits\n0,1,3.5\n0,x3,2.0\n")
    _KeepingWriter(str(tmp_path))._drop_from(4)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,step,train/cost_bits", "0,1,3.5"]


def test_a_resumed_run_waits_for_the_wandb_run_its_killed_attempt_held(tmp_path, monkeypatch):
    """wandb.init refuses a run id whose service is still alive ('run ID ... is in use'), as it is for a few
    seconds after a killed attempt: the logger tries again (here twice) instead of failing the run."""
    from lightning.pytorch.loggers import WandbLogger

    from mann_zoo.training import loggers

    calls = []

    def init(self):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("run ID b44e75d32e54 is in use")
        return "run"

    monkeypatch.setattr(WandbLogger, "experiment", property(init))
    monkeypatch.setattr(loggers.time, "sleep", lambda seconds: None)
    assert loggers.QuietWandbLogger(save_dir=str(tmp_path), offline=True).experiment == "run" and len(calls) == 3
    monkeypatch.setattr(WandbLogger, "experiment", property(lambda self: (_ for _ in ()).throw(RuntimeError("other"))))
    with pytest.raises(RuntimeError, match="other"):
        loggers.QuietWandbLogger(save_dir=str(tmp_path), offline=True).experiment
