"""``mann-zoo evaluate`` and ``load_model`` on checkpoints good and bad."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch

import mann_zoo
from mann_zoo.cli import main



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from test_cli import fit_args

    root = tmp_path_factory.mktemp("runs")
    main(fit_args("copy", "ntm", root))
    return root / "copy-ntm/seed0/checkpoints/last.ckpt"


def test_evaluate_scores_the_runs_task_and_given_lengths(checkpoint, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    main(["evaluate", str(checkpoint), "--sizes", "[4, 6]", "--sequences", "6", "--out", str(out)])
    scores = pd.read_csv(out)
    assert list(scores.val_set) == ["len_1-3", "len_4", "len_6"]  # the run's task, its lengths replaced
    assert list(scores.steps) == [7, 9, 13] and (scores.sequences == 6).all()
    assert scores.bit_errors.between(0, 8 * 6).all() and scores.seq_accuracy.between(0, 1).all()
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines() if not line.startswith("wrote ")) <= 80 and "len_6" in printed
    # The same numbers as scoring the loaded core directly on that task's sets.
    from mann_zoo.experiments.evaluate import score_sets
    from tasks import CopyTask

    direct = score_sets(mann_zoo.load_model(checkpoint), CopyTask(max_length=3, val_lengths=[4, 6], num_val_sequences=6))
    pd.testing.assert_series_equal(direct.bit_errors, scores.bit_errors, check_exact=False, rtol=1e-6)


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "_pickle_ran",))


@pytest.mark.parametrize("content, reason", [(b"garbage", "UnpicklingError"), (b"", "EOFError"),
                                             (pickle.dumps(_RunsCode(), protocol=2), "UnpicklingError")])
def test_a_file_that_is_not_a_checkpoint_is_a_one_line_error_and_runs_no_code(content, reason, tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=f"not a checkpoint of tensors.*{reason}"):
        mann_zoo.load_model(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(bad), "--task", "task/copy.yaml"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mann-zoo: error: CHECKPOINT") and reason in err
    assert not (Path(__file__).parent / "_pickle_ran").exists()


def test_load_model_names_missing_and_unexpected_weights(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    weights = state["state_dict"]
    first = next(iter(weights))
    weights["core.extra_weight"] = weights.pop(first)
    torch.save(state, tmp_path / "changed.ckpt")
    with pytest.raises(ValueError, match=rf"missing: {first.removeprefix('core.')}; unexpected: extra_weight"):
        mann_zoo.load_model(tmp_path / "changed.ckpt")


def test_evaluate_several_checkpoints_into_one_table(checkpoint, tmp_path, capsys):
    import shutil

    other = tmp_path / "other.ckpt"
    shutil.copy(checkpoint, other)
    out = tmp_path / "both.csv"
    main(["evaluate", str(checkpoint), str(other), "--task", "task/copy.yaml", "--sizes", "[4]",
          "--sequences", "4", "--out", str(out)])
    scores = pd.read_csv(out)
    assert list(scores.checkpoint.unique()) == ["last", "other"] and len(scores) == 4  # 2 checkpoints x (training set, length 4)
    printed = capsys.readouterr().out
    assert "other" in printed and max(len(line) for line in printed.splitlines() if not line.startswith("wrote ")) <= 80
