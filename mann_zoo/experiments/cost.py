"""``mann-zoo bench cost``: cost per training step against memory size N and word size W, and the fit of
the cost model (``mann_zoo.experiments.cost_model``)

    T = T_controller + T_memory(N, W),    T_memory = c + a N W            (NTM: every op is O(N W))
                                           T_memory = c + a N W + b N^2    (DNC: the link matrix is N x N)

where c is the fixed cost of the memory operations (one call per operation per step, whatever N).

Time is the median training step (forward, masked BCE, backward, Adam) at batch 32 and copy length 20
(41 steps), measured in interleaved rounds (``mann_zoo.experiments.speed``); ``cost.csv`` records these
and the sweep's fixed W and N (``cost_model.SWEEP_COLUMNS``). Memory is the activation memory that
autograd saves for the backward pass (counted with ``torch.autograd.graph.saved_tensors_hooks``, each
storage once), which is what grows with N and W; on CUDA the peak allocated memory is reported too.
With ``--reference`` and the PyPI package ``dnc`` installed (``pip install mann-zoo[reference]``), that
package's DNC is measured at the same configurations.
"""

from __future__ import annotations

import csv
import io
import platform
from pathlib import Path

import torch
from torch.nn import functional as F

from ..console import CommandParser, device
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
    load_cost,
)
from .speed import ControllerAlone, activation_megabytes, copy_batch, time_steps, training_step_fn

COST_COLUMNS = ["model", "memory_slots", "word_size", "step_ms", "activation_mb", "cuda_peak_mb",
                "num_parameters", "device", "threads", "torch", *SWEEP_COLUMNS]


def measure(models: dict[str, torch.nn.Module], device: str, repeats: int) -> list[dict]:
    """One row per model: median step time, activation memory, CUDA peak."""
    batch = copy_batch(BATCH_SIZE, COPY_LENGTH, 8, device)
    models = {label: m.to(device) for label, m in models.items()}
    rows = []
    timing = time_steps({label: training_step_fn(m, batch) for label, m in models.items()}, repeats)
    for label, model in models.items():
        cuda_peak = None
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        activation = activation_megabytes(model, batch)
        if device.startswith("cuda"):
            cuda_peak = torch.cuda.max_memory_allocated() / 2**20
        rows.append({"label": label, "step_ms": 1e3 * timing[label][0], "activation_mb": activation,
                     "cuda_peak_mb": cuda_peak, "num_parameters": sum(p.numel() for p in model.parameters())})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo bench cost", __doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024],
                        help="memory sizes N to sweep at --width")
    parser.add_argument("--widths", type=int, nargs="+", default=[10, 20, 40, 80],
                        help=f"word sizes W to sweep at N={W_SWEEP_MEMORY_SLOTS}")
    parser.add_argument("--width", type=int, default=N_SWEEP_WORD_SIZE,
                        help="W of the N sweep")
    parser.add_argument("--dnc-max-slots", type=int, default=512,
                        help="largest N for the DNC (its link matrices take 4 N^2 bytes per step and example)")
    parser.add_argument("--models", nargs="+", default=["ntm", "dnc"], help="memory models to sweep")
    parser.add_argument("--reference", action="store_true", help="also time the PyPI package 'dnc', if installed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--refit", action="store_true", help="only refit the cost model to an existing cost.csv in --out")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results") / "cost",
                        help="results folder (default: results/cost here; the project's: paper/results/cost)")
    args = parser.parse_args(argv)
    for name in ("slots", "widths"):
        if any(v < 1 for v in getattr(args, name)):
            parser.error(f"--{name} must be >= 1")
    if args.refit:
        if not (args.out / "cost.csv").is_file():
            parser.error(f"--refit: no cost.csv in --out {args.out} (run the sweep first, or name its folder)")
        rows = load_cost(args.out / "cost.csv").to_dict("records")
        base_ms = next((r["step_ms"] for r in rows if r["model"] == "controller"), None)
        if base_ms is None:
            parser.error(f"--refit: {args.out / 'cost.csv'} has no 'controller' row (the controller-alone timing)")
        write_fits(rows, base_ms, args.out, args.device)
        return
    torch.manual_seed(0)
    configs = sorted({(n, args.width) for n in args.slots} | {(W_SWEEP_MEMORY_SLOTS, w) for w in args.widths})
    rows = []
    from rich.progress import track

    base = measure({"controller": ControllerAlone(9, 8, 100, args.width)}, args.device, args.repeats)[0]
    rows.append({"model": "controller", "memory_slots": 0, "word_size": args.width, **base})
    for n, w in track(configs, description="sweeping N x W"):
        models = {m: build(m, 9, 8, controller_size=100, memory_slots=n, word_size=w)
                  for m in args.models if not (m == "dnc" and n > args.dnc_max_slots)}
        if args.reference:
            models.update(_reference_models(n, w, args.dnc_max_slots))
        for row in measure(models, args.device, args.repeats):
            rows.append({"model": row["label"], "memory_slots": n, "word_size": w, **row})
    for row in rows:
        row.update(device=args.device if args.device == "cpu" else torch.cuda.get_device_name(),
                   threads=torch.get_num_threads(), torch=torch.__version__, batch_size=BATCH_SIZE,
                   sequence_steps=SEQUENCE_STEPS, n_sweep_word_size=args.width,
                   w_sweep_memory_slots=W_SWEEP_MEMORY_SLOTS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COST_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out / "cost.csv", buffer.getvalue())
    write_fits(rows, base["step_ms"], args.out, args.device)
    log_to_wandb(rows, args.out)
    print(f"written: {args.out / 'cost.csv'}")


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


def write_fits(rows: list[dict], base_ms: float, out: Path, device: str) -> None:
    fits = [f for f in (fit_cost_model(rows, m, base_ms) for m in dict.fromkeys(r["model"] for r in rows)) if f]
    atomic_write_text(out / "cost_fit.csv", _csv(fits))
    print(f"cost per step on {platform.machine()} ({device}, {torch.get_num_threads()} threads); "
          f"controller alone {base_ms:.1f} ms")
    for f in fits:
        extra = f" + {f['ns_per_N2']:.2f} ns x N^2" if f["ns_per_N2"] is not None else ""
        print(f"  {f['model']:<14} T - T_controller = {f['fixed_ms']:.1f} ms + {f['ns_per_NW']:.2f} ns x N*W{extra}"
              f"   (R^2 = {f['r2']:.3f}, {f['points']} points)")
    print(f"written: {out / 'cost_fit.csv'}")


def _csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _reference_models(slots: int, width: int, max_slots: int) -> dict[str, torch.nn.Module]:
    """The PyPI package ``dnc`` at the same configuration, wrapped to map [B, T, 9] to [B, T, 8]."""
    try:
        from dnc import DNC as ReferenceDNC  # the optional extra: pip install mann-zoo[reference]
    except ImportError:
        return {}
    if slots > max_slots:
        return {}

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.core = ReferenceDNC(input_size=9, hidden_size=100, rnn_type="lstm", num_layers=1, nr_cells=slots,
                                     cell_size=width, read_heads=1, batch_first=True, gpu_id=-1)
            self.readout = torch.nn.Linear(9, 8)

        def forward(self, x):
            out, _ = self.core(x, (None, None, None), reset_experience=True)
            return self.readout(out)

    return {"pypi dnc 1.1.0": Wrapped()}
