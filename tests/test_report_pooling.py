"""The literature table: a line per grid that ran the model on the task (grids are other configurations, so
their runs are not pooled), and a run that two grids recorded (same task, model and seed, one trajectory)
counts once (issue 12: the default benchmark's NTM on copy is the paper grid's seed 0, and had been counted
as a run of its own)."""

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
    base = dict(run_id=run_id, grid=run_id.split("/")[0], task="copy", model="ntm", seed=seed, steps=50, sequences=1600, train_time_s=1.0,
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
    return (typed(pd.DataFrame([row for rows in runs for row in rows]), {**RESULT_COLUMNS, "grid": "string"}),
            typed(pd.DataFrame([row for rows in curves for row in rows]), CURVE_COLUMNS))


def _row(table: str, quantity: str, grid: str, model: str = "ntm") -> list[str]:
    """The cells ours and runs (seeds) of the line of ``model`` on copy in ``grid``."""
    line = next(line for line in table.splitlines() if line.startswith(f"| copy | {model} | {grid} |") and quantity in line)
    return [cell.strip() for cell in line.strip("|").split("|")][6:8]


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
    # a line per grid: b's three runs (length-120 errors 1, 5, 9), c's and d's one each; a's run is b's seed 0
    assert _row(table, "length 120", "b") == ["5.00 [1.00-9.00]", "3 (0 1 2)"]
    assert _row(table, "length 120", "c") == ["7.00", "1 (1)"] and _row(table, "length 120", "d") == ["9.00", "1 (2)"]
    assert "| copy | ntm | a |" not in table and "a/copy-ntm-seed0 as b/copy-ntm-seed0" in table
    # without curves nothing can be shown to be one run: a keeps its line
    assert _row(literature_table(results), "length 120", "a") == ["1.00", "1 (0)"]
    # a model no grid ran has one line saying so; a failed run is left out
    results.loc[results["run_id"] == "d/copy-ntm-seed2", "status"] = "failed"
    table = literature_table(results, curves)
    assert "| copy | ntm | d |" not in table
    assert "| priority_sort | ntm / ntm_rmsprop / ntm_adam | - | cost, bits/seq |" in table


def test_a_run_stopped_part_way_is_pooled_only_where_no_run_has_finished():
    """b/seed1 was stopped part-way (to be resumed, not converged): beside b's finished seed 0 it is left
    out of the pooled numbers; e's only run is stopped part-way: shown where it stands, its seed marked *."""
    stopped = lambda rows: [dict(row, status="stopped", converged=False, sequences_to_convergence=None)  # noqa: E731
                            for row in rows]
    rows = _run("b/copy-ntm-seed0", 0, 1.0) + stopped(_run("b/copy-ntm-seed1", 1, 50.0)) + stopped(_run("e/copy-ntm-seed3", 3, 70.0))
    results = typed(pd.DataFrame(rows), {**RESULT_COLUMNS, "grid": "string"})
    table = literature_table(results)
    assert _row(table, "length 120", "b") == ["1.00", "1 (0)"]
    assert _row(table, "length 120", "e") == ["70.00", "1 (3*)"]


def test_the_default_benchmark_is_the_paper_grids_seed_0(tmp_path, monkeypatch):
    """On the committed results the default benchmark's three runs on copy are the paper grid's seed-0 runs
    (bit-identical training curves), so the literature table's NTM on copy has three runs, all the paper
    grid's: median 56,000 sequences to convergence and 3.12 bit errors per sequence at length 120 (seeds 0-2:
    0.06, 3.12, 7.50), where counting the default run again gave four runs, 68,000 and 1.59."""
    results = tmp_path / "results"
    for grid in ("default", "paper"):
        (results / grid).mkdir(parents=True)
        for name in ("results.csv", "curves.csv"):
            shutil.copy(ROOT_RESULTS / grid / name, results / grid / name)
    monkeypatch.setattr(report, "save", lambda fig, path: report.plt.close(fig))  # the figures are not the point
    report.make_report([results / "default", results / "paper"], tmp_path / "paper", tmp_path / "no_cost")
    table = (tmp_path / "paper" / "tables" / "literature.md").read_text()
    assert _row(table, "sequences to ~0 cost", "paper") == ["56,000 [48,000-68,000] (3/3 converged)", "3 (0 1 2)"]
    assert _row(table, "length 120", "paper") == ["3.12 [0.06-7.50]", "3 (0 1 2)"]
    assert "| copy | ntm | default |" not in table
    for model in ("ntm", "lstm", "dnc"):
        assert f"default/copy-{model}-seed0 as paper/copy-{model}-seed0" in table


def test_the_statistics_table_gives_rates_medians_and_quartiles_per_model():
    """tables/statistics_<grid>.md: converged and diverged counts over the seeds, median [IQR] over the
    converged runs, the best run; a model that never converged shows dashes; an unfinished run counts in
    neither count."""
    from mann_zoo.experiments.report import statistics_table

    runs = [_run("copy-ntm-seed10", 10, 1.0), _run("copy-ntm-seed11", 11, 2.0), _run("copy-ntm-seed12", 12, 3.0)]
    rows = [dict(row, sequences_to_convergence=to_conv) for rows_, to_conv in zip(runs, (1600, 3200, 6400)) for row in rows_]
    lstm = [dict(row, run_id="copy-lstm-seed10", model="lstm", converged=False, sequences_to_convergence=None,
                 wall_time_to_convergence_s=None) for row in _run("x", 10, 9.0)]
    unfinished = [dict(row, run_id="copy-lstm-seed11", seed=11, status="stopped") for row in lstm]
    table = typed(pd.DataFrame(rows + lstm + unfinished), RESULT_COLUMNS)
    text = statistics_table(table, "matched")
    assert "| copy | ntm | 10 11 12 | 3/3 | 0/3 | 3,200 [2,400-4,800] | 1 [1-1] | copy-ntm-seed10 (1,600) |" in text
    # a run stopped part-way (to be resumed) is in neither count: its seed is marked
    assert "| copy | lstm | 10 11* | 0/1 | 0/1 | - | - | - |" in text


def test_a_failed_run_shows_as_failed_in_the_results_table():
    """A run recorded as failed counts in neither converged nor the medians: its line says so instead of
    '<NA>/1' with the failed attempt's errors."""
    from mann_zoo.experiments.report import results_table

    failed = [dict(row, run_id="copy-lstm-seed10", model="lstm", status="failed", converged=None)
              for row in _run("x", 10, 9.0)]
    table = results_table(typed(pd.DataFrame(_run("copy-ntm-seed10", 10, 1.0) + failed), RESULT_COLUMNS), "matched")
    assert "<NA>" not in table
    assert "| copy | lstm | 1 | 0/1 (1 failed) | - | - | - | - | - | - |" in table
    assert "| copy | lstm | 1 | 0/1 (1 failed) | - | - | - | - | - |" in table
    assert "| copy | ntm | 1 | 1/1 | 1,600 | 1,600 | 1.0 | 0.05 (len_1-20) | 1.00 (len_120) | 50 |" in table


def test_a_run_stopped_part_way_is_left_out_of_the_results_table_beside_a_finished_one():
    """The LSTM's seed 11 was stopped part-way (bit errors 50 at length 120): beside the finished seed 10 it
    is in neither count nor median, and the line says so; the DNC's only run, stopped part-way, is shown where
    it stands."""
    from mann_zoo.experiments.report import results_table

    def lstm(run_id, seed, errors, **changes):
        return [dict(row, run_id=run_id, seed=seed, model="lstm", converged=False, sequences_to_convergence=None,
                     wall_time_to_convergence_s=None, **changes) for row in _run("x", seed, errors)]

    rows = lstm("copy-lstm-seed10", 10, 9.0) + lstm("copy-lstm-seed11", 11, 50.0, status="stopped") + [
        dict(row, model="dnc") for row in lstm("copy-dnc-seed10", 10, 70.0, status="stopped")]
    table = results_table(typed(pd.DataFrame(rows), RESULT_COLUMNS), "matched")
    assert "| copy | lstm | 1 | 0/1 (+1 unfinished) | 1,600 | - | 1.0 | 0.05 (len_1-20) | 9.00 (len_120) | 50 |" in table
    assert "| copy | dnc | 1 | 0/1 (1 unfinished) | 1,600 | - | 1.0 | 0.05 (len_1-20) | 70.00 (len_120) | 50 |" in table
