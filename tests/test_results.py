"""The results layer: the tables' schema and dtypes, reading and writing them, the summary per task and model,
metric names and sequences seen."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from mann_zoo.experiments.results import (
    CURVE_COLUMNS,
    RESULT_COLUMNS,
    is_metric_key,
    load_curves,
    load_results,
    metric_key,
    parse_metric_key,
    save_table,
    sequences_seen,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]


def results_frame(runs: list[dict], sets: list[dict]) -> pd.DataFrame:
    """A results table: every run (a dict of run columns) on every set (a dict of set columns, with
    per-run metrics as ``{run_id: value}``)."""
    rows = []
    for run in runs:
        for val_set in sets:
            rows.append({**run, **{k: v[run["run_id"]] if isinstance(v, dict) else v for k, v in val_set.items()}})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def run(task: str, model: str, seed: int, sequences: int, converged_at: int | None, step_ms: float) -> dict:
    return {"run_id": f"{task}-{model}-seed{seed}", "task": task, "model": model, "seed": seed, "steps": sequences // 32,
            "sequences": sequences, "converged": converged_at is not None, "sequences_to_convergence": converged_at,
            "wall_time_to_convergence_s": None if converged_at is None else converged_at / 64, "step_time_ms": step_ms,
            "num_parameters": 100, "batch_size": 32, "world_size": 1}


def test_load_types_every_column_and_a_missing_value_is_na(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(RESULT_COLUMNS) + "\n"
                    + "copy-ntm-seed0,copy,ntm,0,10,320,1.5,,False,,,2.5,9.0,100,32,1,v,h,finished,,len_5,11,3036,,3.25,1.0,0.5\n"
                    + "copy-ntm-seed1,copy,ntm,1,10,320,1.5,0.25,True,160,0.7,2.5,9.0,100,32,1,v,h,finished,,len_5,11,3036,,3.25,1.0,0.5\n")
    table = load_results(path)
    assert dict(table.dtypes.astype(str)) == {name: dtype for name, dtype in RESULT_COLUMNS.items()}
    assert table.converged.tolist() == [False, True]
    assert table.sequences_to_convergence.isna().tolist() == [True, False]
    assert table.sequences_to_convergence.iloc[1] == 160 and table.reference_bits.isna().all()


def test_a_missing_file_is_a_typed_table_without_rows(tmp_path):
    for load, columns in ((load_results, RESULT_COLUMNS), (load_curves, CURVE_COLUMNS)):
        table = load(tmp_path / "nothing.csv")
        assert table.empty and dict(table.dtypes.astype(str)) == columns


@pytest.mark.parametrize("column, bad", [("converged", "maybe"), ("sequences_to_convergence", "1.5"), ("seed", "x")])
def test_a_bad_cell_names_its_file_and_column(tmp_path, column, bad):
    path = tmp_path / "results.csv"
    row = {name: "1" for name in RESULT_COLUMNS} | {"converged": "True", column: bad}
    path.write_text(",".join(RESULT_COLUMNS) + "\n" + ",".join(row.values()) + "\n")
    with pytest.raises(ValueError, match=rf"results.csv: column '{column}': not ") as error:
        load_results(path)
    assert "\n" not in str(error.value)


def test_a_missing_column_is_named(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text("run_id,task,model,seed,step,sequences,value\n")
    with pytest.raises(ValueError, match="curves.csv: column 'metric': missing"):
        load_curves(path)


def test_save_and_load_round_trip(tmp_path):
    table = results_frame([run("copy", "ntm", 0, 640, 320, 2.0), run("copy", "ntm", 1, 640, None, 3.0)],
                          [{"val_set": "len_5", "val_steps": 11, "cost_bits": {"copy-ntm-seed0": 0.25, "copy-ntm-seed1": 7.5},
                            "bit_errors": 0.0, "seq_accuracy": 1.0}])
    shuffled = table[list(reversed(table.columns))].assign(extra="left out")
    written = save_table(shuffled, tmp_path / "results.csv")
    lines = (tmp_path / "results.csv").read_bytes().split(b"\r\n")
    assert lines[0].decode().split(",") == list(RESULT_COLUMNS)  # schema order, CRLF like the csv module
    loaded = load_results(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(loaded, written)
    assert loaded.sequences_to_convergence.isna().tolist() == [False, True]
    assert loaded.converged.tolist() == [True, False] and loaded.cost_bits.tolist() == [0.25, 7.5]


@pytest.mark.parametrize("name", ["results.csv", "curves.csv"])
def test_the_committed_tables_round_trip_byte_for_byte(tmp_path, name):
    committed = ROOT / "paper" / "results" / "default" / name
    load = load_results if name == "results.csv" else load_curves
    save_table(load(committed), tmp_path / name)
    assert (tmp_path / name).read_bytes() == committed.read_bytes()


def test_summarise_takes_medians_over_seeds():
    """Three seeds of the NTM (two converged), two of the LSTM (none); two sets, the second the longest."""
    ntm = [run("copy", "ntm", 0, 800, 320, 10.0), run("copy", "ntm", 1, 900, None, 30.0), run("copy", "ntm", 2, 700, 640, 20.0)]
    lstm = [run("copy", "lstm", 0, 1000, None, 4.0), run("copy", "lstm", 1, 2000, None, 6.0)]
    errors = {"copy-ntm-seed0": 0.0, "copy-ntm-seed1": 3.0, "copy-ntm-seed2": 1.0, "copy-lstm-seed0": 2.0,
              "copy-lstm-seed1": 5.0}
    sets = [{"val_set": "len_1-20", "val_steps": 41, "reference_bits": 1.5, "bit_errors": errors,
             "cost_bits": {k: 10 * v for k, v in errors.items()}},
            {"val_set": "len_120", "val_steps": 241, "bit_errors": {k: v + 100 for k, v in errors.items()}, "cost_bits": 0.0}]
    summary = summarise(results_frame(ntm + lstm, sets))
    assert list(zip(summary.task, summary.model)) == [("copy", "ntm"), ("copy", "lstm")]  # first seen first
    ntm_row, lstm_row = (row._asdict() for row in summary.itertuples(index=False))
    assert ntm_row == {  # sequences and wall time to convergence: over the two runs that converged
        "task": "copy", "model": "ntm", "runs": 3, "diverged": 0, "failed": 0, "converged": 2, "sequences": 800.0, "sequences_to_convergence": 480.0,
        "wall_time_to_convergence_s": 7.5, "cost": 10.0, "optimal_cost": 1.5, "first_set": "len_1-20",
        "longest_set": "len_120", "first_errors": 1.0, "longest_errors": 101.0, "step_ms": 20.0, "params": 100.0,
        "unfinished": 0, "unfinished_left_out": 0}
    assert lstm_row["runs"] == 2 and lstm_row["converged"] == 0 and pd.isna(lstm_row["sequences_to_convergence"])
    assert lstm_row["sequences"] == 1500.0 and lstm_row["first_errors"] == 3.5  # even count: mean of the middle two
    assert lstm_row["longest_errors"] == 103.5 and lstm_row["step_ms"] == 5.0


def test_summarise_without_rows(tmp_path):
    assert summarise(load_results(tmp_path / "nothing.csv")).empty


def test_metric_key_round_trip():
    assert metric_key("len_1-20", "bit_errors") == "val/len_1-20/bit_errors"
    assert parse_metric_key(metric_key("in_20_out_16", "cost_bits")) == ("in_20_out_16", "cost_bits")
    assert is_metric_key("val/len_5/seq_accuracy")
    assert not any(map(is_metric_key, ("train/cost_bits", "val/cost_bits", "val//cost_bits", "val/len_5/")))
    with pytest.raises(ValueError, match="metric key 'train/cost_bits'"):
        parse_metric_key("train/cost_bits")


def test_sequences_seen():
    assert sequences_seen(2500, 32, 1) == 80_000
    assert sequences_seen(10, 8, 4) == 320  # four processes, each its own batch
    assert sequences_seen(pd.Series([1, 2]), 32, 2).tolist() == [64, 128]


def test_no_experiments_module_imports_one_that_imports_it_back():
    """results is read by everything and reads nothing of experiments; report -> diagnosis -> results."""
    folder = ROOT / "mann_zoo" / "experiments"
    imports = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {alias.name if node.level and node.module is None else node.module.split(".")[0]
                              for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1
                              for alias in node.names}

    def reaches(start: str, seen: set[str]) -> set[str]:
        for module in imports.get(start, set()) - seen:
            seen.add(module)
            reaches(module, seen)
        return seen

    assert all(name not in reaches(name, set()) for name in imports), imports
    assert imports["results"] == set() and {"results", "diagnosis"} <= imports["report"]


def test_convergence_statistics_against_a_hand_worked_table():
    """Five NTM seeds: three converged (at 1000, 2000, 4000 sequences), one did not, one diverged; a
    failed run is left out, and so is one stopped part-way (unfinished, its seed marked *). Success 3/5,
    divergence 1/5, median 2000, quartiles 1500 and 3000 (linear interpolation over 1000, 2000, 4000), best
    run the one at 1000; the LSTM never converged; the DNC's only run is unfinished: no rate at all."""
    from mann_zoo.experiments.results import convergence_statistics, typed

    def one(run_id, seed, converged, to_conv, status="finished", model="ntm"):
        return {**dict.fromkeys(RESULT_COLUMNS), **run("copy", model, seed, 4000, to_conv if converged else None, 5.0),
                "run_id": run_id,
                "status": status, "val_set": "len_1-20", "val_steps": 41}

    rows = [one("a", 10, True, 2000), one("b", 11, True, 1000), one("c", 12, True, 4000), one("d", 13, False, None),
            one("e", 14, False, None, "diverged"), one("f", 15, False, None, "failed"),
            one("g", 10, False, None, model="lstm"), one("h", 16, False, None, "stopped"),
            one("i", 10, False, None, "stopped", model="dnc")]
    table = typed(pd.DataFrame(rows), RESULT_COLUMNS)
    stats = convergence_statistics(table).set_index("model")
    ntm, lstm, dnc = stats.loc["ntm"], stats.loc["lstm"], stats.loc["dnc"]
    assert (ntm["runs"], ntm["unfinished"], ntm["seeds"], ntm["success_rate"], ntm["divergence_rate"]) == (
        5, 1, "10 11 12 13 14 16*", 0.6, 0.2)
    assert (dnc["runs"], dnc["unfinished"], dnc["seeds"]) == (0, 1, "10*") and pd.isna(dnc["success_rate"])
    assert (ntm["sequences_median"], ntm["sequences_q25"], ntm["sequences_q75"]) == (2000, 1500, 3000)
    assert (ntm["best_run"], ntm["best_sequences"]) == ("b", 1000)
    assert ntm["wall_time_median_s"] == 2000 / 64  # run() gives wall time = sequences / 64
    assert lstm["success_rate"] == 0 and pd.isna(lstm["sequences_median"]) and pd.isna(lstm["best_run"])
