"""The W&B side: what a run and the cost sweep log, and a dashboard whose every panel reads a logged key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mann_zoo.cli import main
from mann_zoo.experiments.dashboard import build_workspace, panel_keys
from mann_zoo.experiments.results import COST_PLOT, COST_TABLE, GENERALISATION_PLOT, GENERALISATION_TABLE



def wandb_log_bytes(folder: Path, wait_for: tuple[str, ...] = (), timeout: float = 60) -> bytes:
    """The offline W&B transaction logs under ``folder``, concatenated (logged keys appear in them verbatim);
    waiting up to ``timeout`` seconds for ``wait_for`` to appear (W&B's service writes them after the run)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        logged = b"".join(path.read_bytes() for path in folder.rglob("run-*.wandb"))
        if all(key.encode() in logged for key in wait_for) or time.monotonic() > deadline:
            return logged
        time.sleep(0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from test_cli import fit_args

    root = tmp_path_factory.mktemp("wandb_run")
    main(fit_args("copy", "lstm", root, "--data.val_lengths", "[5, 7]", "--trainer.log_every_n_steps", "1",
                  "--run_name", "run"))  # result.json: fit writes it
    return root / "run"


@pytest.fixture(scope="module")
def cost_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cost")
    main(["bench", "cost", "--slots", "8", "16", "--widths", "4", "--width", "4", "--dnc-max-slots", "8",
          "--repeats", "1", "--out", str(out)])
    return out


def test_a_run_logs_its_generalisation_as_a_table_and_a_plot(run):
    keys = (GENERALISATION_TABLE, GENERALISATION_PLOT, GENERALISATION_PLOT + "_table")
    logged = wandb_log_bytes(run, wait_for=keys)
    for key in keys:
        assert key.encode() in logged, key
    table = json.loads(next((run / "wandb").rglob("*.table.json")).read_text())
    assert table["columns"] == ["val_set", "steps", "bit_errors", "seq_accuracy", "cost_bits"]
    assert [row[0] for row in table["data"]] == ["len_1-3", "len_5", "len_7"]
    assert [row[1] for row in table["data"]][1:] == [11, 15]  # 2 L + 1 steps; the first set's longest drawn


def test_the_cost_sweep_logs_a_table_and_a_plot(cost_sweep):
    logged = wandb_log_bytes(cost_sweep, wait_for=(COST_TABLE, COST_PLOT))
    for key in (COST_TABLE, COST_PLOT):
        assert key.encode() in logged, key
    cost = pd.read_csv(cost_sweep / "cost.csv")
    assert set(cost.model) == {"controller", "ntm", "dnc", "dnc_sparse"}
    # --dnc-max-slots 8 stops the dense DNC (its N x N link), not the sparse one (N = 128: the W sweep)
    largest = cost.groupby("model").memory_slots.max()
    assert largest["dnc"] == 8 and largest["dnc_sparse"] == 128


def test_every_dashboard_panel_reads_a_key_that_is_logged(run, cost_sweep):
    from tasks import CopyTask

    task = CopyTask(max_length=3, val_lengths=[5, 7])
    workspace = build_workspace("an-entity", "a-project", {task.name: task.val_names})
    scalars = set(pd.read_csv(run / "metrics.csv").columns)  # the same self.log calls feed CSV and W&B
    summary = set(json.loads((run / "result.json").read_text())["summary"])  # RunSummary's W&B summary
    logged = (wandb_log_bytes(run, wait_for=(GENERALISATION_PLOT + "_table",))
              + wandb_log_bytes(cost_sweep, wait_for=(COST_TABLE,)))
    keys = panel_keys(workspace)
    assert {"train/sequences", "val/len_7/bit_errors", "step_time_ms", GENERALISATION_PLOT + "_table", COST_TABLE} <= keys
    missing = {key for key in keys if key not in scalars | summary and key.encode() not in logged}
    assert not missing, f"panels read keys no run logs: {sorted(missing)}"
    titles = [section.name for section in workspace.sections]
    assert titles[0] == "copy" and len(workspace.sections[0].panels) == 4  # training set: bit errors, cost; two more


def test_dashboard_dry_run_and_a_missing_entity(capsys):
    main(["dashboard", "--entity", "me", "--preset", "smoke", "--dry-run"])
    out = capsys.readouterr().out
    assert "copy:" in out and "bit errors per sequence on len_6" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--preset", "smoke"])
    assert exit_info.value.code == 2 and "entity" in capsys.readouterr().err
