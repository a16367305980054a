"""Training-step time of each core at the reference configuration, and its ratio to the controller alone;
or, with ``--task``, training sequences per second of each model at a task's configuration.

Reference (literature.md, "Measured here"): batch 32, copy length 20 (41 steps, 9 input and 8 output
channels), controller LSTM 100, memory 128 x 20, one read head, one write head; one step is forward,
masked binary cross-entropy, backward and an Adam update.

    mann-zoo speed                                   # or: python -m mann_zoo.experiments.speed
    mann-zoo speed --models ntm dnc --compile --reference --baseline e8dab13
    mann-zoo speed --task configs/task/copy.yaml configs/task/ngrams.yaml \
        --model configs/model/ntm.yaml configs/model/dnc.yaml --batches 32 128 512 --out speed.csv

Every row is timed in the same interleaved rounds (``time_steps``), so ratios between rows of one run
hold on a noisy machine where absolute times do not: ``x ctrl`` (over the controller alone) and
``x before`` (the ``--baseline`` revision's step time over this checkout's, same model and compilation).
A "compiled" row is the core's compiled step; for the NTM and the DNC that is ``sequence_kernel=False``, since
their whole-sequence C kernels (the plain row, where they apply) train without the step ``compile`` acts on.
"""

from __future__ import annotations

import argparse
import inspect
import random
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..console import CommandParser, device
from ..models.base import MemoryCore
from ..models.controller import LSTMController
from ..models.registry import CoreSpec
from .baseline import load_revision, spec_at_revision
from .peer import PEER_NAME, PeerDNC, peer_available
from .speed_report import CONTROLLER_ALONE, THIS_CHECKOUT


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


def copy_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The masked BCE of ``model`` on a copy ``batch`` (x, target, mask), summed per sequence, averaged over them."""
    x, target, mask = batch
    return (F.binary_cross_entropy_with_logits(model(x), target, reduction="none") * mask).sum() / x.shape[0]


def training_step_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]):
    """A closure running one training step (forward, masked BCE, backward, Adam) of ``model``."""
    x = batch[0]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = copy_loss(model, batch)
        loss.backward()
        optimiser.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def time_steps(steps: dict[str, callable], repeats: int = 10, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """Median seconds per step of each closure, and the time of its first call (compilation included).

    The closures are timed in interleaved rounds, so that a change in the machine's load over the run
    touches every model alike and the ratios stay meaningful on a shared, noisy machine. Each round runs
    them in a new order (shuffled, seeded): a step that follows one that frees much memory pays for the
    memory handed back to the system, and a fixed order would charge that to the same closure every round."""
    first = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        first[name] = time.perf_counter() - start
        for _ in range(warmup - 1):
            step()
    times = {name: [] for name in steps}
    order, shuffle = list(steps.items()), random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name, step in order:
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


class Entry(NamedTuple):
    """One timed row: a core, which model it is, whether its step is compiled, and which code it runs."""

    model: str
    core: nn.Module
    compiled: bool = False
    version: str = THIS_CHECKOUT

    @property
    def label(self) -> str:
        return self.model + (" compiled" if self.compiled else "") + ("" if self.version == THIS_CHECKOUT
                                                                      else f" @{self.version}")


def time_entries(entries: list[Entry], batch: tuple[torch.Tensor, ...], repeats: int) -> list[dict]:
    """One row per entry at one batch, timed in interleaved rounds: ms per step, sequences per second
    (and per core: divided by the threads the process uses), activation megabytes; ``x_controller`` and
    ``x_before`` (the baseline revision's time over this checkout's, same model and compilation) when those
    entries are present."""
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two models are named {next(x for x in labels if labels.count(x) > 1)!r}; rename a config")
    timed = time_steps({e.label: training_step_fn(e.core, batch) for e in entries}, repeats)
    threads = torch.get_num_threads()
    rows = [{"model": e.model, "compiled": e.compiled, "version": e.version, "batch_size": batch[0].shape[0],
             "steps": batch[0].shape[1], "ms_per_step": 1e3 * timed[e.label][0],
             "sequences_per_s": batch[0].shape[0] / timed[e.label][0],
             "sequences_per_s_per_core": batch[0].shape[0] / timed[e.label][0] / threads,
             "first_step_s": timed[e.label][1], "activation_mb": activation_megabytes(e.core, batch),
             "num_parameters": sum(p.numel() for p in e.core.parameters()), "threads": threads}
            for e in entries]
    controller = next((r["ms_per_step"] for r in rows if r["model"] == CONTROLLER_ALONE), None)
    by_key = {(r["model"], r["compiled"], r["version"]): r["ms_per_step"] for r in rows}
    for row in rows:
        row["x_controller"] = row["ms_per_step"] / controller if controller else None
        before = [ms for (m, c, v), ms in by_key.items() if (m, c) == (row["model"], row["compiled"]) and v != THIS_CHECKOUT]
        row["x_before"] = before[0] / row["ms_per_step"] if before and row["version"] == THIS_CHECKOUT else None
    return rows


def entries_for(specs: dict[str, CoreSpec], input_size: int, output_size: int, compile: bool, baseline,
                peer_sizes: dict | None, read_width: int) -> list[Entry]:
    """The controller alone, each spec (as configured, and with ``compile`` through its compiled step when
    it is a memory core: :func:`compiled_step`), the same at the baseline revision, and the PyPI peer at
    ``peer_sizes``."""
    entries = [Entry(CONTROLLER_ALONE, ControllerAlone(input_size, output_size, 100, read_width))]
    versions = [(THIS_CHECKOUT, None)] + ([(baseline.revision, baseline)] if baseline is not None else [])
    for name, spec in specs.items():
        for version, package in versions:
            at = spec if package is None else spec_at_revision(spec, package)
            try:
                core = at.build(input_size, output_size)
            except TypeError as error:  # an argument the revision does not have yet (e.g. a new option)
                if package is None:
                    raise
                print(f"{name}: not timed at {version} ({error})")
                continue
            entries.append(Entry(name, core, False, version))
            if compile and any(c.__name__ == MemoryCore.__name__ for c in type(core).__mro__):  # any revision's
                entries.append(Entry(name, at.build(input_size, output_size, **compiled_step(at)), True, version))
    if peer_sizes is not None:
        entries.append(Entry(PEER_NAME, PeerDNC(input_size, output_size, **peer_sizes)))
    return entries


def compiled_step(spec: CoreSpec) -> dict:
    """The arguments that make ``spec``'s core train through its compiled step: ``compile=True``, and
    ``sequence_kernel=False`` where the class has that option (the NTM's and DNC's whole-sequence C kernels would
    otherwise take the training step whatever ``compile`` says, and the "compiled" row would time it again)."""
    return {"compile": True} | ({"sequence_kernel": False}
                               if "sequence_kernel" in inspect.signature(spec.load()).parameters else {})


def _peer_sizes(specs: dict[str, CoreSpec], device: str) -> dict:
    """The peer at the first DNC's controller, memory and read heads (the reference ones without a DNC)."""
    from ..models import DNC

    args = next((s.init_args for s in specs.values() if s.load() is DNC), REFERENCE)
    return {key: args.get(key, REFERENCE[key]) for key in ("controller_size", "memory_slots", "word_size", "read_heads")
            } | {"device": device}


def print_table(frame, title: str) -> None:
    """An 80-column table of the rows in ``frame``: T is the sequence length in steps, MB the activations
    saved for the backward pass."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", overflow="fold")  # a long label folds onto a second line: numbers never cut
    for column in ("batch", "T", "ms/step", "seq/s/core", "x ctrl", "x before", "MB"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in frame.itertuples():
        label = Entry(row.model, None, row.compiled, row.version).label
        table.add_row(label, str(row.batch_size), str(row.steps), f"{row.ms_per_step:.1f}",
                      f"{row.sequences_per_s_per_core:,.0f}", _ratio(row.x_controller), _ratio(row.x_before),
                      f"{row.activation_mb:.1f}")
    Console(width=80).print(table)


def _ratio(value) -> str:
    return "" if value is None or value != value else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo speed", __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ntm", "dnc", "lstm"],
                        help="models to time at the reference step (short names)")
    parser.add_argument("--compile", action="store_true", help="also time the memory cores with compile=True")
    parser.add_argument("--baseline", metavar="REF",
                        help="also time the cores of this git revision (e.g. main, e8dab13), in the same rounds; "
                             "'x before' is its step time over this checkout's")
    parser.add_argument("--reference", action="store_true",
                        help="also time the PyPI package 'dnc' 1.1.0 (pip install mann-zoo[reference])")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=20, help="copy length L (the sequence has 2L+1 steps)")
    parser.add_argument("--slots", type=int, default=128, help="memory slots N")
    parser.add_argument("--width", type=int, default=20, help="word size W")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: sequences per second per core, as the grids run)")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=True,
                        help="flush denormal floats to zero on the CPU (see README)")
    parser.add_argument("--task", nargs="+", metavar="CONFIG",
                        help="task configs: time the --model configs at each task's training batches")
    parser.add_argument("--model", nargs="+", metavar="CONFIG", help="model configs (with --task)")
    parser.add_argument("--batches", type=int, nargs="+",
                        help="batch sizes (with --task; default: each task config's own batch size)")
    parser.add_argument("--out", help="also write the table as CSV here")
    args = parser.parse_args(argv)
    for name in ("batch", "length", "slots", "width", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.task is not None and not args.model:
        parser.error("--model: give one or more model configs with --task")
    if args.batches is not None and min(args.batches) < 1:
        parser.error(f"--batches must be >= 1, got {args.batches}")
    if args.reference and not peer_available():
        parser.error("--reference: the PyPI package 'dnc' is not installed (pip install mann-zoo[reference])")
    baseline = None
    if args.baseline is not None:
        try:
            baseline = load_revision(args.baseline)
        except ValueError as error:
            parser.error(str(error))
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(bool(args.flush_denormal))
    header = (f"{args.threads} thread(s), torch {torch.__version__}, {args.device}; training step = forward, masked "
              f"BCE, backward, Adam")
    if args.task is None:
        frame = reference_speed(args, baseline)
        title = (f"batch {args.batch}, copy length {args.length} ({2 * args.length + 1} steps), memory {args.slots} x "
                 f"{args.width}, 1 read + 1 write head, LSTM 100; {header}")
        print_table(frame, title)
    else:
        frame = task_speed(args, baseline, header)
    if args.out:
        from ..training.atomic import atomic_write_text

        frame = frame.assign(device=args.device, torch=torch.__version__)
        atomic_write_text(args.out, frame.to_csv(index=False))
        print(f"wrote {args.out}")


def accepted(core_class, hparams: dict) -> dict:
    """The entries of ``hparams`` that ``core_class`` takes as keyword arguments (the Stack-RNN and Tape-RNN
    take the reference memory and controller sizes, not its heads)."""
    parameters = inspect.signature(core_class).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return dict(hparams)
    return {key: value for key, value in hparams.items() if key in parameters}


def reference_specs(models: list[str], slots: int, width: int) -> dict[str, CoreSpec]:
    """The cores of the reference step by short name: a memory core at the reference controller, heads and
    memory (N = ``slots``, W = ``width``), as far as it takes them; the LSTM and Transformer at their own sizes."""
    from ..models import core_spec

    hparams = dict(REFERENCE, memory_slots=slots, word_size=width)
    specs = {}
    for name in models:
        spec = core_spec(name)
        core = spec.load()  # a class, or a registered factory function (timed at its own sizes)
        reference = accepted(core, hparams) if isinstance(core, type) and issubclass(core, MemoryCore) else {}
        specs[name] = CoreSpec(spec.class_path, {**spec.init_args, **reference})
    return specs


def reference_speed(args, baseline):
    """The reference step (a copy batch) for each of ``--models`` (short names)."""
    import pandas as pd

    bits = 8
    specs = reference_specs(args.models, args.slots, args.width)
    peer = dict(controller_size=100, memory_slots=args.slots, word_size=args.width, read_heads=1,
                device=args.device) if args.reference else None
    entries = entries_for(specs, bits + 1, bits, args.compile, baseline, peer, args.width)
    entries = [e._replace(core=e.core.to(args.device)) for e in entries]
    return pd.DataFrame(time_entries(entries, copy_batch(args.batch, args.length, bits, args.device), args.repeats))


def task_speed(args, baseline, header: str):
    """Training sequences per second per core of each model config at each task's training batches, for
    each batch size: an 80-column table per task; the rows of every task are returned."""
    import pandas as pd

    from ..configs import resolve_config_files
    from ..console import fail
    from ..training.arguments import explain
    from ..training.cli import parse_fit, task_and_core_spec

    frames = []
    for task_config in args.task:
        specs = {}
        for config in args.model:
            argv = resolve_config_files(["--config", task_config, "--config", config])
            try:
                task, spec = task_and_core_spec(parse_fit(argv))
                spec.build(task.input_size, task.output_size)  # a value the class refuses fails here
            except Exception as error:  # noqa: BLE001 - a config that does not parse: one line, naming it
                fail(f"--model {config}: {explain(argv, error)}")
            if Path(config).stem in specs:
                fail(f"--model {config}: another config is also named {Path(config).stem!r}; rename one")
            specs[Path(config).stem] = spec
        try:
            peer = _peer_sizes(specs, args.device) if args.reference else None
            entries = entries_for(specs, task.input_size, task.output_size, args.compile, baseline, peer,
                                  REFERENCE["word_size"])
        except ValueError as error:
            fail(str(error))
        entries = [e._replace(core=e.core.to(args.device)) for e in entries]
        task.set_curriculum_max_length(None)  # the full training distribution, not a curriculum's first stage
        rows = []
        for batch_size in args.batches or [task.batch_size]:
            sample = task.generate(torch.Generator().manual_seed(0), batch_size, **task.train_spec())
            batch = tuple(t.to(args.device) for t in (sample.inputs, sample.targets, sample.mask.unsqueeze(-1)))
            rows += [{"task": task.name, **row} for row in time_entries(entries, batch, args.repeats)]
        frame = pd.DataFrame(rows)
        print_table(frame, f"{task.name}: training sequences per second per core; {header}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    main()
