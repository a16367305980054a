"""The Ray runner of ``mann-zoo bench``: a grid's runs as Ray tasks on an embedded Ray; a run whose
worker is killed is retried by Ray and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from mann_zoo.experiments.runner import TrainingRun

ROOT = Path(__file__).resolve().parents[1]

# Two tiny NTM runs, long enough (100 steps, a validation and a checkpoint every 20) to be killed mid-way:
# "twin" is the same model under another name, the same run uninterrupted beside the killed one.
GRID = """name: kill
seeds: [0]
max_steps: 100
val_check_interval: 20
overrides: {data.batch_size: 4, data.num_val_sequences: 8}
tasks:
  copy:
    config: configs/task/copy.yaml
    overrides: {data.max_length: 3, data.val_lengths: []}
    models: [ntm, twin]
models:
  ntm: {config: configs/model/ntm.yaml, overrides: {model.core.init_args.controller_size: 8,
        model.core.init_args.memory_slots: 8, model.core.init_args.word_size: 4}}
  twin: {config: configs/model/ntm.yaml, overrides: {model.core.init_args.controller_size: 8,
         model.core.init_args.memory_slots: 8, model.core.init_args.word_size: 4}}
"""


def test_a_run_whose_worker_is_killed_is_retried_and_ends_as_an_uninterrupted_run(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("configs/", f"{ROOT}/configs/"))
    killed_out = tmp_path / "killed"
    env = {**os.environ, "WANDB_MODE": "offline"}
    bench = subprocess.Popen([sys.executable, "-m", "mann_zoo.cli", "bench", "--config", str(grid), "--out", str(killed_out),
                              "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    killed_run = killed_out / "runs/copy-ntm-seed0"
    printed, worker = [], None
    for line in bench.stdout:
        printed.append(line)
        if worker is None and "copy-ntm-seed0: step 40," in line:  # after its checkpoint at step 20 (or 40)
            worker = int((killed_run / "worker.pid").read_text())
            os.kill(worker, signal.SIGKILL)  # the Ray worker process; its training process dies with it
    bench.wait(timeout=60)
    output = "".join(printed)
    failures = [line for line in printed if line.startswith("failed")]
    assert not failures and bench.returncode == 0, "".join(failures) + output[-3000:]
    assert worker is not None, output[-3000:]
    assert int((killed_run / "worker.pid").read_text()) != worker  # a new worker took the task over
    log = (killed_run / "stdout.log").read_text()
    assert "Restoring states from the checkpoint" in log  # the retry resumed, it did not start over
    summary = json.loads((killed_run / "result.json").read_text())["summary"]
    assert summary["status"] == "finished" and summary["steps"] == 100
    results = pd.read_csv(killed_out / "results.csv")
    assert set(results.run_id) == {"copy-ntm-seed0", "copy-twin-seed0"} and set(results.status) == {"finished"}

    # The same run, uninterrupted (its twin): the same parameters to the bit, and the same logged curve.
    ckpt = lambda run: torch.load(killed_out / f"runs/{run}/checkpoints/last.ckpt", weights_only=True)  # noqa: E731
    killed, once = ckpt("copy-ntm-seed0"), ckpt("copy-twin-seed0")
    assert killed["global_step"] == once["global_step"] == 100
    for key, value in once["state_dict"].items():
        torch.testing.assert_close(killed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    logged = lambda run: pd.read_csv(killed_out / f"runs/{run}/metrics.csv").step.dropna().tolist()  # noqa: E731
    assert logged("copy-ntm-seed0") == logged("copy-twin-seed0") and 99 in logged("copy-ntm-seed0")


def test_a_training_run_resumes_from_its_checkpoint_when_it_has_one(tmp_path):
    run = TrainingRun("copy-ntm-seed0", tmp_path / "run", ("--config", "x.yaml"))
    assert run.command()[1:] == ["-m", "mann_zoo.cli", "fit", "--config", "x.yaml"]
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"")
    assert run.command()[-2:] == ["--ckpt_path", "last"]


def test_the_ray_task_reads_progress_lines_without_importing_lightning(tmp_path):
    """The task that trains a run (:func:`train`, :func:`run_process`) imports neither torch nor Lightning: a
    Ray worker that did spent ~6 s before starting each run's training process."""
    code = ("import sys\n"
            "from mann_zoo.experiments.runner import PROGRESS_PREFIX, run_process, train\n"
            "lines = []\n"
            f"run_process([sys.executable, '-c', 'print({{!r}})'.format(PROGRESS_PREFIX + 'step 2')], "
            f"__import__('pathlib').Path({str(tmp_path / 'log')!r}), {{}}, '.', lines.append)\n"
            "assert lines == ['step 2'], lines\n"
            "heavy = sorted({'torch', 'lightning'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


# A child that waits for a signal sleeps in short steps: a signal that lands after its last bytecode and before
# one long time.sleep starts (the parent sends it as soon as the child prints) runs its Python handler only when
# that sleep ends. A fresh-clone CI run under load once lost a SIGTERM that way (the child slept its 60 s out).
_WAIT_FOR_SIGNALS = "for _ in range(1200):\n    time.sleep(0.05)\n"


def test_a_cancelled_task_stops_its_training_at_once_not_at_its_next_line(tmp_path):
    """ray.cancel interrupts the task's main thread; a run that prints nothing for minutes (between two
    validations) still gets SIGTERM at once, writes what it writes on SIGTERM, and is gone."""
    import _thread
    import threading
    import time

    import pytest

    from mann_zoo.experiments.runner import run_process

    child = ("import signal, sys, time\n"
             f"def stop(*_):\n    open({str(tmp_path / 'stopped')!r}, 'w').write('stopped')\n    sys.exit(0)\n"
             "signal.signal(signal.SIGTERM, stop)\nprint('training', flush=True)\n" + _WAIT_FOR_SIGNALS)
    # interrupt_main raises KeyboardInterrupt only under Python's own SIGINT handler; an earlier test of the
    # suite can leave another (the full suite's fresh-clone run once did), so it is put back for this one.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        def interrupt_once_training() -> None:  # as ray.cancel does, once the child's handler is in place
            log, deadline = tmp_path / "log", time.monotonic() + 60
            while time.monotonic() < deadline and not (log.is_file() and "training" in log.read_text()):
                time.sleep(0.05)
            _thread.interrupt_main()

        threading.Thread(target=interrupt_once_training, daemon=True).start()
        start = time.time()
        with pytest.raises(KeyboardInterrupt):
            run_process([sys.executable, "-c", child], tmp_path / "log", dict(os.environ), str(tmp_path),
                        lambda line: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.time() - start < 30
    assert (tmp_path / "stopped").read_text() == "stopped" and "training" in (tmp_path / "log").read_text()


def test_a_stop_waits_for_the_training_processes_to_write_their_results(tmp_path):
    """A cancelled task's result is ready before its training process has exited, and shutting Ray down
    then would kill that process mid-write: the driver waits for each run's training process (its
    training.pid, a process whose command line names the run), until it exits or the grace ends."""
    import time

    from mann_zoo.experiments.runner import training_alive, wait_for_training

    run = TrainingRun("copy-ntm-seed3", tmp_path / "copy-ntm-seed3", ())
    run.directory.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time, sys; print('ready', flush=True); time.sleep(1.5)",
                              "--run_name", run.run_id], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"  # running its own command line, not the fork's
    (run.directory / "training.pid").write_text(f"{child.pid}\n")
    assert training_alive(run)
    start = time.monotonic()
    wait_for_training([run], deadline=start + 30)
    assert child.poll() is not None and time.monotonic() - start < 10  # returned when the process ended
    child.wait()
    # not the run's process: another run's (seed30's id begins with seed3's)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--run_name", "copy-ntm-seed30"])
    (run.directory / "training.pid").write_text(f"{other.pid}\n")
    try:
        assert not training_alive(run)
        start = time.monotonic()
        wait_for_training([run], deadline=start + 30)
        assert time.monotonic() - start < 1
    finally:
        other.kill()
        other.wait()


def test_a_stop_sends_sigterm_to_the_runs_training_processes_and_waits_for_their_results(tmp_path):
    """On a stop the driver itself sends SIGTERM to each run's training process on this machine and waits
    for it: a process that takes a while to write its result on SIGTERM gets to write it."""
    import time

    from mann_zoo.experiments.runner import stop_training, wait_for_training

    run = TrainingRun("copy-ntm-seed4", tmp_path / "copy-ntm-seed4", ())
    run.directory.mkdir()
    result = run.directory / "result.json"
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "def stop(*_):\n    time.sleep(1.0)\n    open(sys.argv[1], 'w').write('stopped')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\nprint('ready', flush=True)\n" + _WAIT_FOR_SIGNALS),
        str(result), "--run_name", run.run_id], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    (run.directory / "training.pid").write_text(f"{child.pid}\n")
    try:
        stop_training([run])
        wait_for_training([run], deadline=time.monotonic() + 30)
        assert child.wait(timeout=5) == 0 and result.read_text() == "stopped"
    finally:
        child.kill()  # (a no-op once it has exited)
        child.wait()


def test_a_stop_cancels_the_queued_runs_before_stopping_the_running_ones(tmp_path):
    """A run that ends on the stop frees its CPUs: the queued runs (no training process here) are cancelled
    first, or Ray starts one of them during the grace only to cancel it; the running one is left to SIGTERM."""
    from mann_zoo.experiments.runner import cancel_unstarted

    running, queued = (TrainingRun(f"copy-ntm-seed{seed}", tmp_path / f"copy-ntm-seed{seed}", ()) for seed in (5, 6))
    running.directory.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)",
                              "--run_name", running.run_id], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        (running.directory / "training.pid").write_text(f"{child.pid}\n")
        cancelled = []
        cancel_unstarted({"task-5": running, "task-6": queued}, cancelled.append)
        assert cancelled == ["task-6"]
    finally:
        child.kill()
        child.wait()
