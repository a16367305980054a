"""Training-step time of each core at the reference configuration, and its ratio to the controller alone;
or, with ``--task``, training sequences per second of each model at a task's configuration.

Reference (literature.md, "Measured here"): batch 32, copy length 20 (41 steps, 9 input and 8 output
channels), controller LSTM 100, memory 128 x 20, one read head, one write head; one step is forward,
masked binary cross-entropy, backward and an Adam update.

    python -m mann_zoo.experiments.speed            # or: mann-zoo speed
    python -m mann_zoo.experiments.speed --models ntm dnc --compile
    mann-zoo speed --task configs/task/copy.yaml --model configs/model/ntm.yaml configs/model/dnc.yaml \
        --batches 32 128 512 --out speed.csv
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..console import CommandParser, device
from ..models import build
from ..models.controller import LSTMController


class ControllerAlone(nn.Module):
    """The NTM's controller with nothing else: an LSTM cell looped over time, fed the input plus
    zero read vectors, and the same read-out. The yardstick the cores' cost is divided by."""

    def __init__(self, input_size: int, output_size: int, controller_size: int = 100, read_width: int = 20):
        super().__init__()
        self.read_width = read_width
        self.controller = LSTMController(input_size + read_width, controller_size)
        self.readout = nn.Linear(controller_size + read_width, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reads = x.new_zeros(x.shape[0], self.read_width)
        state = self.controller.initial_state(x.shape[0])
        outs = []
        for t in range(x.shape[1]):
            out, state = self.controller(torch.cat([x[:, t], reads], dim=-1), state)
            outs.append(torch.cat([out, reads], dim=-1))
        return self.readout(torch.stack(outs, dim=1))


def copy_batch(batch: int, length: int, bits: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random copy batch in design.md's format: inputs, targets and a mask of the scored steps."""
    steps = 2 * length + 1
    x = torch.zeros(batch, steps, bits + 1, device=device)
    x[:, :length, :bits] = torch.randint(0, 2, (batch, length, bits), device=device).float()
    x[:, length, bits] = 1
    target = torch.zeros(batch, steps, bits, device=device)
    target[:, length + 1 :] = x[:, :length, :bits]
    mask = torch.zeros(batch, steps, 1, device=device)
    mask[:, length + 1 :] = 1
    return x, target, mask


def training_step_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]):
    """A closure running one training step (forward, masked BCE, backward, Adam) of ``model``."""
    x, target, mask = batch
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = (F.binary_cross_entropy_with_logits(model(x), target, reduction="none") * mask).sum() / x.shape[0]
        loss.backward()
        optimiser.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def time_steps(steps: dict[str, callable], repeats: int = 10, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """Median seconds per step of each closure, and the time of its first call (compilation included).

    The closures are timed in interleaved rounds, so that a change in the machine's load over the run
    touches every model alike and the ratios stay meaningful on a shared, noisy machine."""
    first = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        first[name] = time.perf_counter() - start
        for _ in range(warmup - 1):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), first[name]) for name in steps}


def activation_megabytes(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> float:
    """Megabytes of tensors saved for backward by one forward pass (each storage counted once)."""
    x, target, mask = batch
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = (F.binary_cross_entropy_with_logits(model(x), target, reduction="none") * mask).sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values()) / 2**20



REFERENCE = dict(controller_size=100, memory_slots=128, word_size=20, read_heads=1, write_heads=1)


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo speed", __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ntm", "dnc", "lstm"], help="models to time")
    parser.add_argument("--compile", action="store_true",
                        help="also time the memory cores with compile=True (with --task: compile every model)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=20, help="copy length L (the sequence has 2L+1 steps)")
    parser.add_argument("--slots", type=int, default=128, help="memory slots N")
    parser.add_argument("--width", type=int, default=20, help="word size W")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=True,
                        help="flush denormal floats to zero on the CPU (see README)")
    parser.add_argument("--task", help="a task config: time the --model configs at this task's training batches")
    parser.add_argument("--model", nargs="+", metavar="CONFIG", help="model configs (with --task)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256, 512],
                        help="batch sizes (with --task)")
    parser.add_argument("--out", help="with --task: also write the table as CSV here")
    args = parser.parse_args(argv)
    if args.task is not None:
        if not args.model:
            parser.error("--model: give one or more model configs with --task")
        if min(args.batches) < 1 or args.repeats < 1:
            parser.error(f"--batches and --repeats must be >= 1, got {args.batches} and {args.repeats}")
        return task_speed(args)
    for name in ("batch", "length", "slots", "width", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

    torch.manual_seed(0)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    bits = 8
    hparams = dict(REFERENCE, memory_slots=args.slots, word_size=args.width)
    rows = [("controller alone", ControllerAlone(bits + 1, bits, 100, args.width))]
    for name in args.models:
        if name == "lstm":
            rows.append(("lstm (3x256, fused)", build("lstm", bits + 1, bits)))
            continue
        rows.append((f"{name}", build(name, bits + 1, bits, **hparams)))
        if args.compile:
            rows.append((f"{name} compile=True", build(name, bits + 1, bits, **hparams, compile=True)))

    print(f"training step (forward + backward + Adam), batch {args.batch}, {2 * args.length + 1} steps, "
          f"memory {args.slots} x {args.width}, 1 read + 1 write head, controller LSTM 100, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.device}")
    print(f"{'model':<22}{'params':>10}{'ms/step':>10}{'x controller':>14}{'first step s':>14}")
    batch = copy_batch(args.batch, args.length, bits, args.device)
    models = {label: model.to(args.device) for label, model in rows}
    results = time_steps({label: training_step_fn(model, batch) for label, model in models.items()}, args.repeats)
    base = results["controller alone"][0]
    for label, model in models.items():
        seconds, first = results[label]
        params = sum(p.numel() for p in model.parameters())
        print(f"{label:<22}{params:>10,}{seconds * 1e3:>10.1f}{seconds / base:>14.2f}{first:>14.1f}", flush=True)


def task_speed(args) -> None:
    """Sequences per second per training process (one process: ``torch.get_num_threads()`` threads) of
    each model config at the task's training batches, for each batch size: ms per step, sequences per
    second, activation memory; an 80-column table, and a CSV with ``--out``."""
    import pandas as pd
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..configs import resolve_config_files
    from ..console import fail
    from ..training.arguments import explain
    from ..training.cli import build_task_and_core, parse_fit

    torch.manual_seed(0)
    torch.set_flush_denormal(bool(args.flush_denormal))
    models = {}
    for config in args.model:
        argv = resolve_config_files(["--config", args.task, "--config", config])
        if args.compile:  # every shipped core takes compile=
            argv.append("--model.core.init_args.compile=true")
        try:
            task, core = build_task_and_core(parse_fit(argv))
        except Exception as error:  # noqa: BLE001 - a config that does not parse: one line, naming it
            fail(f"--model {config}: {explain(argv, error)}")
        models[Path(config).stem + (" compiled" if args.compile else "")] = core.to(args.device)
    task.set_curriculum_max_length(None)  # the full training distribution, not a curriculum's first stage
    rows = []
    for batch_size in args.batches:
        sample = task.generate(torch.Generator().manual_seed(0), batch_size, **task.train_spec())
        batch = tuple(t.to(args.device) for t in (sample.inputs, sample.targets, sample.mask.unsqueeze(-1)))
        timed = time_steps({name: training_step_fn(core, batch) for name, core in models.items()}, args.repeats)
        for name, core in models.items():
            seconds = timed[name][0]
            rows.append({"task": task.name, "model": name, "batch_size": batch_size, "steps": batch[0].shape[1],
                         "ms_per_step": 1e3 * seconds, "sequences_per_s": batch_size / seconds,
                         "activation_mb": activation_megabytes(core, batch),
                         "threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__})
    frame = pd.DataFrame(rows)
    table = Table(title=f"{task.name}: training sequences per second ({torch.get_num_threads()} threads, {args.device})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("model", "batch", "steps", "ms/step", "sequences/s", "activations MB"):
        table.add_column(column, justify="left" if column == "model" else "right", no_wrap=True)
    for row in frame.itertuples():
        table.add_row(row.model, str(row.batch_size), str(row.steps), f"{row.ms_per_step:.1f}",
                      f"{row.sequences_per_s:,.0f}", f"{row.activation_mb:.1f}")
    Console().print(table)
    if args.out:
        from ..training.atomic import atomic_write_text

        atomic_write_text(args.out, frame.to_csv(index=False))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
