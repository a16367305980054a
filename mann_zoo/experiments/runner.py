"""A grid's training runs as Ray tasks: the executor of ``mann-zoo bench``.

Each run is one Ray task that trains in a child process (``mann-zoo fit``'s command line). The command
is built inside the task, so a retried task resumes from the checkpoint its first attempt left.

- **Locally** (the default) Ray starts embedded: ``jobs x threads`` CPUs, no server to start, stopped
  when the grid ends.
- **On a cluster** (``address``, from ``--address`` or ``RAY_ADDRESS``) the same tasks go to a running
  Ray cluster. Its nodes must see the results folder and the configs at the same paths (a shared file
  system) and have mann-zoo installed.
- **Retries**: a task whose worker dies, or whose training process is killed by a signal, is retried by
  Ray (:data:`RETRIES` times) and resumes from its last checkpoint. The training process dies with its
  worker (``PR_SET_PDEATHSIG`` on Linux), so a retry never trains beside an orphan.
- **Tables**: the tasks write only into their run folders; the driver alone writes the results tables.
- **Progress**: the lines a run prints for each validation reach the driver through a Ray queue.
- **Stopping**: ``stop`` (SIGTERM or Ctrl-C in the driver) cancels the tasks. Each task passes SIGTERM
  to its training process, which writes its result with status ``stopped`` and keeps its checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

RETRIES = 3  # attempts after the first, for a run whose worker or training process was killed
STOP_GRACE_S = 120  # how long stopped runs get to write their results before Ray is shut down


class RunKilled(RuntimeError):
    """The training process died of a signal it was not sent by the runner (OOM killer, ``kill -9``):
    Ray retries the task, which resumes from the last checkpoint."""


@dataclass(frozen=True)
class TrainingRun:
    """One training run of a grid: its id, its folder and its ``mann-zoo fit`` arguments."""

    run_id: str
    directory: Path
    fit_args: tuple[str, ...]

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoints" / "last.ckpt"

    def command(self) -> list[str]:
        """The command line that trains this run, resuming from its last checkpoint if it has one."""
        resume = ["--ckpt_path", "last"] if self.checkpoint.is_file() else []
        return [sys.executable, "-m", "mann_zoo.cli", "fit", *self.fit_args, *resume]


@dataclass(frozen=True)
class Outcome:
    """How a run's task ended: the training process's exit status (None when the task itself failed,
    e.g. out of retries) and wall seconds of the last attempt; ``error`` says why a task failed."""

    status: int | None
    seconds: float
    error: str | None = None


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the worker that started it dies (Linux)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def run_process(cmd: list[str], log_path: Path, env: dict[str, str], cwd: str,
                on_progress: Callable[[str], None]) -> int:
    """Run one training command in ``cwd``, appending its output to ``log_path``; each line it prints with
    :data:`~mann_zoo.training.callbacks.PROGRESS_PREFIX` (one per validation) also goes to ``on_progress``,
    without the prefix. Returns the exit status (negative: killed by that signal). If interrupted (a
    cancelled task), the training process gets SIGTERM and is waited for: it writes its result first."""
    from ..training.callbacks import PROGRESS_PREFIX

    with log_path.open("a") as log:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   text=True, bufsize=1, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if line.startswith(PROGRESS_PREFIX):
                    on_progress(line[len(PROGRESS_PREFIX):].strip())
            return process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()


def train(run: TrainingRun, env: dict[str, str], cwd: str, progress) -> Outcome:
    """The Ray task: train ``run`` in a child process (in ``cwd``, with ``env``), sending its progress
    lines to the queue ``progress``. Raises :class:`RunKilled` if a signal killed the training process."""
    run.directory.mkdir(parents=True, exist_ok=True)
    (run.directory / "worker.pid").write_text(f"{os.getpid()}\n")  # which process to kill, for the tests
    start = time.time()
    status = run_process(run.command(), run.directory / "stdout.log", env, cwd,
                         lambda line: progress.put(f"{run.run_id}: {line}"))
    if status < 0 and -status not in (signal.SIGTERM, signal.SIGINT):
        raise RunKilled(f"{run.run_id}: training process killed by signal {-status}; retrying from its checkpoint")
    return Outcome(status, time.time() - start)


def _start_ray(cpus: int, address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), else start Ray embedded with
    ``cpus`` CPUs; False if Ray was already running in this process (the caller's, left running)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    if address is None:
        # A local Ray guards its ports with a token, and says so at every start: said once here instead.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # Ray starts its workers at niceness 15; here the workers are the training, at the driver's priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=cpus, object_store_memory=80 * 2**20, **options)  # 80 MB: only outcomes travel
    else:
        ray.init(address=address, **options)
    return True


def execute(runs: Sequence[TrainingRun], env: dict[str, str], jobs: int, threads: int, address: str | None,
            on_progress: Callable[[str], None], on_done: Callable[[TrainingRun, Outcome], None]) -> None:
    """Train ``runs`` as Ray tasks of ``threads`` CPUs each (locally ``jobs`` at a time), calling
    ``on_progress`` with each progress line and ``on_done`` with each finished run, in the driver.

    Interrupted (SIGTERM, Ctrl-C), it cancels the runs, gives them :data:`STOP_GRACE_S` to write their
    results, and re-raises.
    """
    if not runs:
        return
    import ray
    from ray.util.queue import Empty, Queue

    started_here = _start_ray(jobs * threads, address)
    try:
        progress = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(train).options(num_cpus=threads, max_retries=RETRIES, retry_exceptions=[RunKilled])
        cwd = os.getcwd()
        pending = {task.remote(run, env, cwd, progress): run for run in runs}

        def report_progress() -> None:
            while True:
                try:
                    on_progress(progress.get_nowait())
                except Empty:
                    return

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                report_progress()
                for ref in done:
                    run = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:  # out of retries, or the task itself broke
                        outcome = Outcome(None, 0.0, str(error).strip().splitlines()[0][:300])
                    on_done(run, outcome)
        finally:
            if pending:  # stopped from outside: let the runs write their results, then go
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_S)
    finally:
        if started_here:
            ray.shutdown()
