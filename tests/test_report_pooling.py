"""The literature table pools the runs of every grid: a run that two grids recorded (same task, model and
seed, one trajectory) counts once there (issue 12: the default benchmark's NTM on copy is the paper grid's
seed 0, and had been counted as a run of its own)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from mann_zoo.experiments import report
from mann_zoo.experiments.report import identical_runs, literature_table
from mann_zoo.experiments.results import CURVE_COLUMNS, RESULT_COLUMNS, typed

ROOT_RESULTS = Path(__file__).resolve().parents[1] / "paper" / "results"


def _run(run_id: str, seed: int, errors_120: float) -> list[dict]:
    """Results rows of one converged NTM run on copy: the training set and length 120."""
    base = dict(run_id=run_id, task="copy", model="ntm", seed=seed, steps=50, sequences=1600, train_time_s=1.0,
                converged=True, sequences_to_convergence=1600, wall_time_to_convergence_s=1.0, step_time_ms=50.0,
                peak_memory_mb=1.0, num_parameters=63136, batch_size=32, world_size=1, versions="v", hardware="h",
                status="finished", reference_bits=None, cost_bits=1.0, seq_accuracy=0.9)
    return [{**base, "val_set": "len_1-20", "val_steps": 41, "bit_errors": 0.05},
            {**base, "val_set": "len_120", "val_steps": 241, "bit_errors": errors_120}]


def _curve(run_id: str, seed: int, values: list[float], validations: list[int]) -> list[dict]:
    """Curve rows: train/cost_bits every 10 steps, and a validation at each of ``validations``."""
    rows = [dict(run_id=run_id, task="copy", model="ntm", seed=seed, step=10 * (i + 1), sequences=320 * (i + 1),
                 metric="train/cost_bits", value=v) for i, v in enumerate(values)]
    return rows + [dict(run_id=run_id, task="copy", model="ntm", seed=seed, step=s, sequences=32 * s,
                        metric="val/len_1-20/bit_errors", value=0.05) for s in validations]


def _tables(runs: list[list[dict]], curves: list[list[dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (typed(pd.DataFrame([row for rows in runs for row in rows]), RESULT_COLUMNS),
            typed(pd.DataFrame([row for rows in curves for row in rows]), CURVE_COLUMNS))


def _row(table: str, quantity: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith("| copy | ntm |") and quantity in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_run_recorded_by_two_grids_counts_once():
    """a/seed0 is b/seed0 stopped earlier (its training curve is the start of b's): one run, kept as b's,
    which was validated more often. c/seed1 has b/seed1's task, model and seed but another curve (another
    configuration): a run of its own. d/seed2 has no curve: never taken for another run."""
    curve = [60.0, 40.0, 20.0, 10.0, 5.0]
    results, curves = _tables(
        [_run("a/copy-ntm-seed0", 0, 1.0), _run("b/copy-ntm-seed0", 0, 1.0), _run("b/copy-ntm-seed1", 1, 5.0),
         _run("b/copy-ntm-seed2", 2, 9.0), _run("c/copy-ntm-seed1", 1, 7.0), _run("d/copy-ntm-seed2", 2, 9.0)],
        [_curve("a/copy-ntm-seed0", 0, curve[:4], [40]), _curve("b/copy-ntm-seed0", 0, curve, [20, 40, 50]),
         _curve("b/copy-ntm-seed1", 1, [61.0, 30.0], [20]), _curve("b/copy-ntm-seed2", 2, [62.0, 31.0], [20]),
         _curve("c/copy-ntm-seed1", 1, [61.0, 35.0], [20])])
    assert identical_runs(results, curves) == {"a/copy-ntm-seed0": "b/copy-ntm-seed0"}
    table = literature_table(results, curves)
    # five distinct runs: length-120 errors 1, 5, 9, 7, 9 (median 7), not six with run 0 twice (median 6)
    row = _row(table, "length 120")
    assert row[5] == "7.00" and row[6] == "5"
    assert "a/copy-ntm-seed0 as b/copy-ntm-seed0" in table
    # without curves nothing can be shown to be one run: every row counts, as before
    row = _row(literature_table(results), "length 120")
    assert row[5] == "6.00" and row[6] == "6"


def test_the_default_benchmark_is_the_paper_grids_seed_0(tmp_path, monkeypatch):
    """On the committed results the default benchmark's three runs on copy are the paper grid's seed-0 runs
    (bit-identical training curves), so the literature table's NTM on copy has three runs: median 56,000
    sequences to convergence and 3.12 bit errors per sequence at length 120 (seeds 0-2: 0.06, 3.12, 7.50),
    where counting the default run again gave four runs, 68,000 and 1.59."""
    results = tmp_path / "results"
    for grid in ("default", "paper"):
        (results / grid).mkdir(parents=True)
        for name in ("results.csv", "curves.csv"):
            shutil.copy(ROOT_RESULTS / grid / name, results / grid / name)
    monkeypatch.setattr(report, "save", lambda fig, path: report.plt.close(fig))  # the figures are not the point
    report.make_report([results / "default", results / "paper"], tmp_path / "paper", tmp_path / "no_cost")
    table = (tmp_path / "paper" / "tables" / "literature.md").read_text()
    assert _row(table, "sequences to ~0 cost")[5:7] == ["56,000 (3/3 converged)", "3"]
    assert _row(table, "length 120")[5:7] == ["3.12", "3"]
    for model in ("ntm", "lstm", "dnc"):
        assert f"default/copy-{model}-seed0 as paper/copy-{model}-seed0" in table


def test_the_statistics_table_gives_rates_medians_and_quartiles_per_model():
    """tables/statistics_<grid>.md: converged and diverged counts over the seeds, median [IQR] over the
    converged runs, the best run; a model that never converged shows dashes."""
    from mann_zoo.experiments.report import statistics_table

    runs = [_run("copy-ntm-seed10", 10, 1.0), _run("copy-ntm-seed11", 11, 2.0), _run("copy-ntm-seed12", 12, 3.0)]
    rows = [dict(row, sequences_to_convergence=to_conv) for rows_, to_conv in zip(runs, (1600, 3200, 6400)) for row in rows_]
    lstm = [dict(row, run_id="copy-lstm-seed10", model="lstm", converged=False, sequences_to_convergence=None,
                 wall_time_to_convergence_s=None) for row in _run("x", 10, 9.0)]
    table = typed(pd.DataFrame(rows + lstm), RESULT_COLUMNS)
    text = statistics_table(table, "matched")
    assert "| copy | ntm | 10 11 12 | 3/3 | 0/3 | 3,200 [2,400-4,800] | 1 [1-1] | copy-ntm-seed10 (1,600) |" in text
    assert "| copy | lstm | 10 | 0/1 | 0/1 | - | - | - |" in text
