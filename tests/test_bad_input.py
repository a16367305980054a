"""Bad input, across every command and the Python API: exit status 2 (or a ValueError), one line naming the
field, and an existing run folder left byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import mann_zoo
from mann_zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
TASK, NTM = str(ROOT / "configs/task/copy.yaml"), str(ROOT / "configs/model/ntm.yaml")
TINY = ["--model.core.init_args.controller_size", "8", "--model.core.init_args.memory_slots", "8",
        "--model.core.init_args.word_size", "4", "--data.max_length", "3", "--data.val_lengths", "[5]",
        "--data.batch_size", "2", "--data.num_val_sequences", "4", "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained run folder (``<root>/copy-ntm/seed0``) that no bad command may touch, and bad files."""
    root = tmp_path_factory.mktemp("runs")
    main(["fit", "--config", TASK, "--config", NTM, *TINY, "--trainer.default_root_dir", str(root)])
    import wandb

    wandb.teardown()  # W&B's service writes the run's offline files after the run: let it finish first
    (root / "garbage.ckpt").write_bytes(b"not a checkpoint")
    (root / "empty.ckpt").write_bytes(b"")
    (root / "bad.yaml").write_text("model:\n  core: ntm\n   memory_slots: [1, 2\n")
    (root / "grid.yaml").write_text((ROOT / "configs/bench/smoke.yaml").read_text().replace(
        "data.max_length: 3", "data.max_lenght: 3"))
    (root / "empty").mkdir()
    return root


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def fit(*extra: str) -> list[str]:
    return ["fit", "--config", TASK, "--config", NTM, *TINY, *extra]


# (command line with {root} for the run's root folder, a text the error line must contain)
CASES = [
    # fit: the argument named, from the classes' signatures or our own checks
    (fit("--model.core.init_args.memory_slotz", "8"), "memory_slotz"),
    (fit("--model.core.init_args.memory_slots", "abc"), "--model.core.init_args.memory_slots: expected int"),
    (fit("--model.core.init_args.memory_slots", "0"), "memory_slots must be"),
    (fit("--model.core.init_args.shift_range", "2"), "shift_range"),
    (fit("--model.core.init_args.word_size", "-3"), "word_size"),
    (fit("--trainer.max_stepz", "3"), "--trainer.max_stepz"),
    (fit("--trainer.max_steps", "abc"), "--trainer.max_steps: expected int"),
    (fit("--modle.lr", "3"), "--modle.lr: unknown option"),
    (fit("--model.lr", "abc"), "--model.lr: expected float"),
    (fit("--data", "tasks.SortingTask"), "--data: class path 'tasks.SortingTask'"),
    (fit("--data.init_args.bits", "-1"), "bits must be >= 1"),
    (fit("--data.min_length", "30", "--data.max_length", "20"), "min_length"),
    (fit("--data.val_lengths", "[0]"), "val_lengths"),
    (fit("--data.batch_size", "0"), "batch_size"),
    (fit("--data.curriculum_max_length", "99"), "curriculum_max_length"),
    (fit("--optimizer", "torch.optim.Nope"), "--optimizer: class path 'torch.optim.Nope'"),
    (fit("--optimizer", "torch.optim.RMSprop", "--optimizer.init_args.momentm", "0.9"), "momentm"),
    (fit("--optimizer.init_args.lr", "3e-5", "--optimizer", "torch.optim.RMSprop"), "--optimizer.init_args.lr"),
    (fit("--model.core", "gru"), "core"),
    (fit("--model.core", "my_pkg.MissingCore"), "my_pkg.MissingCore"),
    (fit("--model.core", "lstm", "--model.core.init_args.memory_slots", "4"), "--model.core.init_args.memory_slots"),
    (["fit", "--config", "/nonexistent/task.yaml"], "--config /nonexistent/task.yaml"),
    (["fit", "--config", "{root}/bad.yaml"], "bad.yaml: not valid YAML"),
    (fit("--ckpt_path", "{root}/garbage.ckpt"), "--ckpt_path {root}/garbage.ckpt"),
    (fit("--ckpt_path", "{root}/empty.ckpt"), "--ckpt_path {root}/empty.ckpt"),
    (fit("--trainer.accelerator", "gpu"), "--trainer.accelerator gpu"),
    (fit("--trainer.callbacks+=mann_zoo.training.callbacks.Curriculum", "--trainer.callbacks.threshold", "0"), "threshold"),
    # validate
    (["validate", "--config", TASK, "--config", NTM, *TINY, "--ckpt_path", "{root}/garbage.ckpt"], "--ckpt_path"),
    (["validate", "--config", TASK, "--config", NTM, *TINY, "--model.core.init_args.memory_slotz", "8"], "memory_slotz"),
    # bench
    (["bench", "--jobs", "x"], "--jobs: expected int"),
    (["bench", "--jobs", "0"], "--jobs"),
    (["bench", "--preset", "nope"], "--preset 'nope'"),
    (["bench", "--bogus", "1"], "--bogus: unknown option"),
    (["bench", "--config", "/nonexistent/grid.yaml"], "/nonexistent/grid.yaml"),
    (["bench", "--config", "{root}/grid.yaml"], "max_lenght"),
    (["bench", "--seeds"], "--seeds: needs a value"),
    (["bench", "--seeds", "1", "x"], "--seeds: expected int"),
    # bench cost
    (["bench", "cost", "--slots", "x"], "--slots: expected int"),
    (["bench", "cost", "--refit", "--out", "{root}/empty"], "--refit"),
    (["bench", "cost", "--device", "tpu9"], "--device"),
    # report
    (["report", "--paper", "/nonexistent/paper"], "--paper"),
    (["report", "--colour", "red"], "--colour: unknown option"),
    # speed
    (["speed", "--batch", "x"], "--batch: expected int"),
    (["speed", "--tsk", "copy"], "--tsk: unknown option"),
    (["speed", "--device", "nope"], "--device"),
    (["speed", "--task", TASK], "--model"),
    (["speed", "--threads", "0"], "--threads"),
    (["speed", "--baseline", "no-such-revision"], "--baseline"),
    (["speed", "--task", TASK, "--model", "/nonexistent/model.yaml"], "/nonexistent/model.yaml"),
    # evaluate
    (["evaluate", "{root}/missing.ckpt"], "CHECKPOINT"),
    (["evaluate", "{root}/garbage.ckpt", "--task", TASK], "CHECKPOINT"),
    (["evaluate", "{root}/copy-ntm/seed0/checkpoints/last.ckpt", "--sizes", "[0]"], "--sizes"),
    (["evaluate", "{root}/copy-ntm/seed0/checkpoints/last.ckpt", "--sizes", "[1, 2"], "--sizes"),
    (["evaluate", "{root}/copy-ntm/seed0/checkpoints/last.ckpt", "--task", str(ROOT / "configs/task/repeat_copy.yaml")],
     "--task"),
    (["evaluate", "{root}/copy-ntm/seed0/checkpoints/last.ckpt", "--sequences", "0"], "--sequences"),
    # the dispatcher
    (["nope"], "unknown command 'nope'"),
]


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(a[:1] + a[-2:])[:60] for a, _ in CASES])
def test_bad_input_is_one_line_naming_the_field_and_loses_nothing(argv, expected, run, capsys, monkeypatch):
    monkeypatch.chdir(run / "empty")  # outputs that a command might write land here, not in the source tree
    before = snapshot(run / "copy-ntm")
    argv = [a.replace("{root}", str(run)) for a in argv]
    if argv[0] in ("fit", "validate"):
        argv += ["--trainer.default_root_dir", str(run)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mann-zoo: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert expected.replace("{root}", str(run)) in errors[0], errors[0]
    assert snapshot(run / "copy-ntm") == before
    assert list((run / "empty").iterdir()) == []


def test_a_bad_environment_setting_is_one_line_naming_it(tmp_path):
    """MANN_ZOO_POOL_BYTES is read when the memory package is first imported (here by `speed`), in a fresh process."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-c", "from mann_zoo.cli import main; main()", "speed", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "MANN_ZOO_POOL_BYTES": "lots"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == ["mann-zoo: error: MANN_ZOO_POOL_BYTES must be a whole number of bytes >= 0, "
                                        "got 'lots'"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call, expected", [
    (lambda root: mann_zoo.load_model(root / "garbage.ckpt"), "checkpoint_path"),
    (lambda root: mann_zoo.load_model(root / "missing.ckpt"), "checkpoint_path"),
    (lambda root: __import__("tasks").CopyTask(bits=0), "bits"),
    (lambda root: __import__("tasks").RepeatCopyTask(repeat_encoding="log"), "repeat_encoding"),
    (lambda root: mann_zoo.models.NTM(9, 8, memory_slots=0), "memory_slots"),
    (lambda root: mann_zoo.models.DNC(9, 8, read_heads=0), "read_heads"),
    (lambda root: __import__("mann_zoo.training.callbacks", fromlist=["Curriculum"]).Curriculum(smoothing=2), "smoothing"),
])
def test_the_python_api_raises_one_line_naming_the_field(call, expected, run):
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        call(run)
    assert "\n" not in str(error.value) and expected in str(error.value)
