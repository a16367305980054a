"""``mann-zoo bench cost``: cost per training step against memory size N and word size W, and the fit of
the cost model (``mann_zoo.experiments.cost_model``: a fixed cost, N, N W and, for a dense DNC, N^2, each
coefficient in microseconds).

Time is the median training step (forward, masked BCE, backward, Adam) at batch 32 and copy length 20
(41 steps), eager, on one thread by default, measured in interleaved rounds
(``mann_zoo.experiments.speed``) with the controller alone timed in every round as the yardstick;
``cost.csv`` records these and the sweep's fixed W and N (``cost_model.SWEEP_COLUMNS``). Memory is the
activation memory that autograd saves for the backward pass (counted with
``torch.autograd.graph.saved_tensors_hooks``, each storage once), which is what grows with N and W; on CUDA
the peak allocated memory is reported too. With ``--reference`` the PyPI package ``dnc`` (``pip install
mann-zoo[reference]``) is measured in the same rounds at the same configurations.

The sweep resumes: each configuration's rows are written to ``cost.csv`` as soon as they are measured, and
a rerun with the same settings measures only the configurations not there yet (``--fresh`` starts over).
"""

from __future__ import annotations

import csv
import io
import platform
from pathlib import Path

import pandas as pd
import torch

from ..console import CommandParser, device, fail
from ..memory import pool
from ..models import build
from ..training.atomic import atomic_write_text
from .results import COST_PLOT, COST_TABLE
from .cost_model import (
    BATCH_SIZE,
    COPY_LENGTH,
    N_SWEEP_WORD_SIZE,
    SEQUENCE_STEPS,
    SWEEP_COLUMNS,
    W_SWEEP_MEMORY_SLOTS,
    fit_cost_model,
    formula,
    has_dense_link,
    load_cost,
)
from .peer import PEER_NAME, PeerDNC, peer_available
from .speed import ControllerAlone, activation_megabytes, copy_batch, time_steps, training_step_fn

COST_COLUMNS = ["model", "memory_slots", "word_size", "step_ms", "controller_ms", "activation_mb", "cuda_peak_mb",
                "num_parameters", "device", "threads", "torch", *SWEEP_COLUMNS]
CONTROLLER = "controller"


def measure(models: dict[str, torch.nn.Module], device: str, repeats: int, width: int) -> list[dict]:
    """One row per model: median step time, activation memory, CUDA peak; the controller alone (read
    vectors of ``width``) is timed in the same rounds and its median recorded beside each row."""
    batch = copy_batch(BATCH_SIZE, COPY_LENGTH, 8, device)
    models = {CONTROLLER: ControllerAlone(9, 8, 100, width), **models}
    models = {label: m.to(device) for label, m in models.items()}
    timing = time_steps({label: training_step_fn(m, batch) for label, m in models.items()}, repeats)
    rows = []
    for label, model in models.items():
        cuda_peak = None
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        activation = activation_megabytes(model, batch)
        if device.startswith("cuda"):
            cuda_peak = torch.cuda.max_memory_allocated() / 2**20
        rows.append({"label": label, "step_ms": 1e3 * timing[label][0], "controller_ms": 1e3 * timing[CONTROLLER][0],
                     "activation_mb": activation, "cuda_peak_mb": cuda_peak,
                     "num_parameters": sum(p.numel() for p in model.parameters())})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo bench cost", __doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                        help="memory sizes N to sweep at --width")
    parser.add_argument("--widths", type=int, nargs="+", default=[10, 20, 40, 80],
                        help=f"word sizes W to sweep at N={W_SWEEP_MEMORY_SLOTS}")
    parser.add_argument("--width", type=int, default=N_SWEEP_WORD_SIZE,
                        help="W of the N sweep")
    parser.add_argument("--dnc-max-slots", type=int, default=1024,
                        help="largest N for the dense DNCs (a link matrix takes 4 N^2 bytes per step and example, "
                             "kept for every step: 5.5 GB at N=1024)")
    parser.add_argument("--models", nargs="+", default=["ntm", "dnc", "dnc_sparse"],
                        help="memory models to sweep (short names)")
    parser.add_argument("--reference", action="store_true", help="also time the PyPI package 'dnc' 1.1.0")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the grids run)")
    parser.add_argument("--refit", action="store_true", help="only refit the cost model to an existing cost.csv in --out")
    parser.add_argument("--fresh", action="store_true", help="measure every configuration again (default: resume)")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results") / "cost",
                        help="results folder (default: results/cost here; the project's: paper/results/cost)")
    args = parser.parse_args(argv)
    for name in ("slots", "widths"):
        if any(v < 1 for v in getattr(args, name)):
            parser.error(f"--{name} must be >= 1")
    for name in ("width", "repeats", "threads", "dnc_max_slots"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.reference and not peer_available():
        parser.error("--reference: the PyPI package 'dnc' is not installed (pip install mann-zoo[reference])")
    if args.refit:
        if not (args.out / "cost.csv").is_file():
            parser.error(f"--refit: no cost.csv in --out {args.out} (run the sweep first, or name its folder)")
        write_fits(load_cost(args.out / "cost.csv").to_dict("records"), args.out, args.device)
        return
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    sweep = dict(batch_size=BATCH_SIZE, sequence_steps=SEQUENCE_STEPS, n_sweep_word_size=args.width,
                 w_sweep_memory_slots=W_SWEEP_MEMORY_SLOTS)
    settings = dict(device=args.device if args.device == "cpu" else torch.cuda.get_device_name(),
                    threads=torch.get_num_threads(), torch=str(torch.__version__), **sweep)
    rows = [] if args.fresh else _resumable_rows(args.out / "cost.csv", settings)
    done = {(r["model"], r["memory_slots"], r["word_size"]) for r in rows}
    configs = sorted({(n, args.width) for n in args.slots} | {(W_SWEEP_MEMORY_SLOTS, w) for w in args.widths})
    from rich.progress import track

    for n, w in track(configs, description="sweeping N x W"):
        wanted = [m for m in args.models if not (has_dense_link(m) and n > args.dnc_max_slots)]
        if args.reference and n <= args.dnc_max_slots:
            wanted.append(PEER_NAME)
        wanted = [m for m in wanted if (m, n, w) not in done]
        if not wanted:
            continue
        models = {m: (PeerDNC(9, 8, controller_size=100, memory_slots=n, word_size=w, read_heads=1, device=args.device)
                      if m == PEER_NAME
                      else build(m, 9, 8, controller_size=100, memory_slots=n, word_size=w)) for m in wanted}
        for row in measure(models, args.device, args.repeats, w):
            if row["label"] != CONTROLLER or (CONTROLLER, 0, w) not in done:
                rows.append({"model": row["label"], "memory_slots": 0 if row["label"] == CONTROLLER else n,
                             "word_size": w, **row, **settings})
                done.add((rows[-1]["model"], rows[-1]["memory_slots"], w))
        # after every configuration: a stopped sweep keeps what it measured
        atomic_write_text(args.out / "cost.csv", _csv(rows, COST_COLUMNS))
        del models
        pool.clear()  # the configuration's kept buffers (5.6 GB for the dense DNC at N = 1,024) are not the next one's
    write_fits(rows, args.out, args.device)
    log_to_wandb(rows, args.out)
    print(f"written: {args.out / 'cost.csv'}")


def _resumable_rows(path: Path, settings: dict) -> list[dict]:
    """The rows of an earlier sweep into ``path``, to resume it; none if there is no file. A file measured
    with other ``settings`` (device, threads, torch, batch, steps, swept W and N) is not touched: a
    one-line error names the first difference (``--fresh`` replaces it, another ``--out`` keeps it)."""
    earlier = load_cost(path)
    if earlier.empty:
        return []
    for name, value in settings.items():
        recorded = earlier[name].dropna().astype(str).unique() if name in earlier.columns else []
        if list(recorded) != [str(value)]:
            fail(f"--out {path.parent}: its cost.csv was measured with {name} = {', '.join(recorded) or 'unknown'}, "
                 f"this sweep has {value}; --fresh to replace it, or another --out")
    print(f"{path}: resuming, {len(earlier)} rows measured already (--fresh to start over)")
    return earlier.to_dict("records")


def log_to_wandb(rows: list[dict], out: Path) -> None:
    """The sweep as a W&B run of its own (offline unless WANDB_MODE=online; job type ``cost``): the rows
    as a table and ms per step against memory slots N, one line per model (at the N sweep's word size)."""
    import os

    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    columns = [c for c in COST_COLUMNS if any(c in row for row in rows)]
    table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
    n_sweep = [row for row in rows if row["word_size"] == row.get("n_sweep_word_size") and row["memory_slots"] > 0]
    models = sorted({row["model"] for row in n_sweep})
    lines = {m: sorted((row["memory_slots"], row["step_ms"]) for row in n_sweep if row["model"] == m) for m in models}
    plot = wandb.plot.line_series(xs=[[n for n, _ in lines[m]] for m in models],
                                  ys=[[ms for _, ms in lines[m]] for m in models], keys=models,
                                  title="ms per training step against memory slots N", xname="memory slots N")
    with wandb.init(project=os.environ.get("WANDB_PROJECT", "mann-zoo"), job_type="cost", name="cost-per-step",
                    dir=str(out)) as run:
        run.log({COST_TABLE: table, COST_PLOT: plot})


def write_fits(rows: list[dict], out: Path, device: str) -> None:
    """Fit each model's cost and write ``cost_fit.csv``; print each fitted formula with its R^2 and largest
    relative error. T_controller, recorded beside each fit for reference, is the median of the controller
    times at the N sweep's W (the controller timed in every configuration's rounds); each point's own
    controller time gives its drift (``cost_model.fit_cost_model``)."""
    import statistics

    controller = [r["step_ms"] for r in rows if r["model"] == CONTROLLER]
    if not controller:
        raise SystemExit(f"{out / 'cost.csv'}: no 'controller' row (the controller-alone timing)")
    # T_controller: the controller at the N sweep's W, median over every configuration's rounds.
    n_sweep = [r["controller_ms"] for r in rows if pd.notna(r.get("controller_ms"))
               and r["word_size"] == r.get("n_sweep_word_size", N_SWEEP_WORD_SIZE)]
    base_ms = statistics.median(n_sweep or controller)
    threads = next((int(r["threads"]) for r in rows if pd.notna(r.get("threads"))), torch.get_num_threads())
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if m != CONTROLLER]
    fits = [f for f in (fit_cost_model(rows, m, base_ms) for m in models) if f]
    atomic_write_text(out / "cost_fit.csv", _csv(fits))
    print(f"cost per step on {platform.machine()} ({device}, {threads} thread(s)); controller alone {base_ms:.1f} ms "
          f"(median over the sweep's rounds)")
    for f in fits:
        print(f"  {f['model']:<15} {formula(f)}   (R^2 = {f['r2']:.3f}, largest error "
              f"{100 * f['max_relative_error']:.0f} %, {f['points']} points)")
    print(f"written: {out / 'cost_fit.csv'}")


def _csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """``rows`` as CSV text: ``columns`` (other keys left out), or every key in order of appearance."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
