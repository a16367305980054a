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
- **Progress**: the lines a run prints for each validation reach the driver through a small Ray actor,
  sent without waiting for an answer: a task that waits on Ray (``ray.get``, a ``ray.util.queue.Queue``
  put) hands its CPU back to the scheduler meanwhile, which then starts another run on it.
- **Stopping**: ``stop`` (SIGTERM or Ctrl-C in the driver) cancels the tasks. Each task passes SIGTERM
  to its training process, which writes its result with status ``stopped`` and keeps its checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

RETRIES = 3  # attempts after the first, for a run whose worker or training process was killed
STOP_GRACE_S = 120  # how long stopped runs get to write their results before Ray is shut down
PROGRESS_PREFIX = "mann-zoo progress: "  # the line RunSummary prints per validation; bench shows these lines
# (here, not beside RunSummary: a Ray worker reading the lines need not import Lightning, ~6 s)


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
    e.g. out of retries), when its last attempt started (epoch seconds) and its wall seconds; ``error``
    says why a task failed."""

    status: int | None
    seconds: float
    error: str | None = None
    started: float | None = None


class ProgressLines:
    """A Ray actor holding the progress lines of the running tasks until the driver takes them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def _dying_with(parent: int) -> Callable[[], None] | None:
    """What the child runs before exec to be killed when the process ``parent`` that started it dies
    (Linux ``PR_SET_PDEATHSIG``; libc is loaded here, in the parent: the child only calls into it). None
    elsewhere."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        if prctl(pr_set_pdeathsig, signal.SIGKILL) != 0 or os.getppid() != parent:  # parent gone before prctl
            os._exit(1)

    return die_with_parent


def end_orphans(pid_file: Path) -> None:
    """Kill the W&B service that a killed training process (its pid in ``pid_file``) left behind. The
    service (``wandb-core --pid <training pid>``, in a session of its own, so the training process's death
    does not reach it) goes on holding the W&B run, and a retry's ``wandb.init`` fails on it ('run ID ... is
    in use'). Linux (/proc); elsewhere nothing is done."""
    if not pid_file.is_file() or not Path("/proc").is_dir():
        return
    dead = pid_file.read_text().strip().encode()
    for process in Path("/proc").glob("[0-9]*"):
        try:
            args = (process / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--pid" in args and args[args.index(b"--pid") + 1:args.index(b"--pid") + 2] == [dead]:
            try:
                os.kill(int(process.name), signal.SIGKILL)
            except OSError:
                pass


def run_process(cmd: list[str], log_path: Path, env: dict[str, str], cwd: str,
                on_progress: Callable[[str], None], pid_file: Path | None = None) -> int:
    """Run one training command in ``cwd``, appending its output to ``log_path``; each line it prints with
    :data:`PROGRESS_PREFIX` (one per validation) also goes to ``on_progress``,
    without the prefix. Returns the exit status (negative: killed by that signal).

    The output is read by a thread, and this one waits in short sleeps, so that an interrupt (a cancelled
    task: ``KeyboardInterrupt``) lands at once, not at the next line the run prints (one per validation,
    minutes apart): the training process then gets SIGTERM and is waited for, and writes its result."""
    with log_path.open("a") as log:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   text=True, bufsize=1, preexec_fn=_dying_with(os.getpid()))
        if pid_file is not None:
            pid_file.write_text(f"{process.pid}\n")

        def copy_output() -> None:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if line.startswith(PROGRESS_PREFIX):
                    on_progress(line[len(PROGRESS_PREFIX):].strip())

        reader = threading.Thread(target=copy_output, daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait()
            reader.join()
        return process.returncode


def train(run: TrainingRun, env: dict[str, str], cwd: str, progress) -> Outcome:
    """The Ray task: train ``run`` in a child process (in ``cwd``, with the worker's environment plus
    ``env``: on a cluster node its own PATH and devices, not the driver's), sending its progress
    lines to the :class:`ProgressLines` actor ``progress`` (without waiting: see the module docstring).
    Raises :class:`RunKilled` if a signal killed the training process."""
    run.directory.mkdir(parents=True, exist_ok=True)
    (run.directory / "worker.pid").write_text(f"{os.getpid()}\n")  # which process to kill, for the tests
    end_orphans(run.directory / "training.pid")  # of an attempt that was killed
    start = time.time()
    # Not WANDB_SERVICE: a W&B service of a process above (pytest, a notebook) would hold a killed attempt's
    # W&B run; each training process starts its own, which end_orphans can end.
    inherited = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    status = run_process(run.command(), run.directory / "stdout.log", {**inherited, **env}, cwd,
                         lambda line: progress.add.remote(f"{run.run_id}: {line}"), run.directory / "training.pid")
    if status < 0 and -status not in (signal.SIGTERM, signal.SIGINT):
        raise RunKilled(f"{run.run_id}: training process killed by signal {-status}; retrying from its checkpoint")
    return Outcome(status, time.time() - start, started=start)


def _start_ray(cpus: int, address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), else start Ray embedded with
    ``cpus`` CPUs; False if Ray was already running in this process (the caller's, left running)."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    handler = signal.getsignal(signal.SIGTERM)  # ray.init sets its own: the caller's stays
    if address is None:
        # A local Ray guards its ports with a token, and says so at every start: said once here instead.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # Ray starts its workers at niceness 15; here the workers are the training, at the driver's priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # address "local": a new Ray of our own, even where `ray start` left one running on this machine
        ray.init(address="local", num_cpus=cpus, object_store_memory=80 * 2**20, **options)  # 80 MB: outcomes only
    else:
        ray.init(address=address, **options)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
    return True


def training_pid(run: TrainingRun) -> int | None:
    """The pid of the training process that ``run``'s task started (its ``training.pid``) while it still
    runs on this machine: a process with that pid with the run's id as one of its arguments (``--run_name
    <id>``; a whole argument, so that seed4's id does not match seed40's process). Linux (/proc); elsewhere,
    and for a run trained on another node, None."""
    try:
        pid = int((run.directory / "training.pid").read_text())
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if run.run_id.encode() in args.split(b"\0") else None


def training_alive(run: TrainingRun) -> bool:
    """Whether ``run``'s training process still runs on this machine (:func:`training_pid`)."""
    return training_pid(run) is not None


def stop_training(runs: Sequence[TrainingRun]) -> None:
    """SIGTERM to the training processes of ``runs`` that run on this machine (:func:`training_pid`): each
    writes its result and its last checkpoint stays, as when stopped by hand."""
    for run in runs:
        pid = training_pid(run)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:  # exited since
                pass


def cancel_unstarted(pending: dict, cancel: Callable) -> None:
    """On a stop, ``cancel`` (``ray.cancel``) the tasks of ``pending`` ({task: run}) whose run has no training
    process on this machine (:func:`training_alive`): the queued ones, before the running ones are stopped.
    A stopped run frees its CPUs, and Ray would otherwise start a queued run in them during the grace, only
    for it to be cancelled without writing its result. (On a cluster, where no run is alive here, every
    task is cancelled, as after the grace.)"""
    for task, run in pending.items():
        if not training_alive(run):
            cancel(task)


def wait_for_training(runs: Sequence[TrainingRun], deadline: float) -> None:
    """Wait until the training processes of ``runs`` have exited (:func:`training_alive`), at most until
    ``deadline`` (``time.monotonic()``)."""
    while any(training_alive(run) for run in runs) and time.monotonic() < deadline:
        time.sleep(0.2)


def _why(error: Exception) -> str:
    """One line saying why a Ray task failed: the task's own exception where there is one (not Ray's
    coloured 'ray::train() (pid=..., ip=...)' header), without terminal colour codes."""
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}".strip().splitlines()
    return re.sub(r"\x1b\[[0-9;]*m", "", text[0] if text else type(cause).__name__)[:300]


def execute(runs: Sequence[TrainingRun], env: dict[str, str], jobs: int, threads: int, address: str | None,
            on_progress: Callable[[str], None], on_done: Callable[[TrainingRun, Outcome], None]) -> None:
    """Train ``runs`` as Ray tasks of ``threads`` CPUs each (locally ``jobs`` at a time; ``env``: the
    variables to set for the training beside the worker's own, which locally are the driver's), calling
    ``on_progress`` with each progress line and ``on_done`` with each finished run, in the driver.

    Interrupted (SIGTERM, Ctrl-C), it cancels the runs, gives them :data:`STOP_GRACE_S` to write their
    results, and re-raises.
    """
    if not runs:
        return
    import ray

    started_here = _start_ray(jobs * threads, address)
    try:
        progress = ray.remote(num_cpus=0)(ProgressLines).remote()
        task = ray.remote(train).options(num_cpus=threads, max_retries=RETRIES, retry_exceptions=[RunKilled])
        cwd = os.getcwd()
        pending = {task.remote(run, env, cwd, progress): run for run in runs}

        def report_progress() -> None:
            for line in ray.get(progress.take.remote()):
                on_progress(line)

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                report_progress()
                for ref in done:
                    run = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:  # out of retries, or the task itself broke
                        outcome = Outcome(None, 0.0, _why(error))
                    on_done(run, outcome)
            report_progress()  # lines sent just before the last run ended
        finally:
            if pending:  # stopped from outside: let the runs write their results, then go
                deadline = time.monotonic() + STOP_GRACE_S
                # The training processes on this machine get SIGTERM from here and are waited for before
                # their tasks are cancelled: a cancelled task's worker may go (and its training process
                # with it, PR_SET_PDEATHSIG) before the process has written its result on SIGTERM, as the
                # stopped runs of a session lost their result.json. Elsewhere (a cluster) ray.cancel does it.
                runs_left = list(pending.values())
                # A run stops at its next training step or validation (a first compiled step, or a
                # validation at long lengths, can take a minute): say why the command has not ended yet.
                print(f"stopping: waiting up to {STOP_GRACE_S} s for {len(runs_left)} run(s) to write their "
                      "results; SIGTERM or Ctrl-C again stops at once (their last checkpoints stay)",
                      file=sys.stderr, flush=True)
                cancel_unstarted(pending, ray.cancel)
                stop_training(runs_left)
                wait_for_training(runs_left, deadline)
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(list(pending), num_returns=len(pending), timeout=max(0.0, deadline - time.monotonic()))
    finally:
        if started_here:
            ray.shutdown()
