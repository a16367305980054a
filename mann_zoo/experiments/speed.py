"""Training-step time of each core at the reference configuration, and its ratio to the controller alone.

Reference (literature.md, "Measured here"): batch 32, copy length 20 (41 steps, 9 input and 8 output
channels), controller LSTM 100, memory 128 x 20, one read head, one write head; one step is forward,
masked binary cross-entropy, backward and an Adam update.

    python -m mann_zoo.experiments.speed            # or: mann-zoo speed
    python -m mann_zoo.experiments.speed --models ntm dnc --compile
"""

from __future__ import annotations

import argparse
import statistics
import time

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


REFERENCE = dict(controller_size=100, memory_slots=128, word_size=20, read_heads=1, write_heads=1)


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser("mann-zoo speed", __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ntm", "dnc", "lstm"], help="models to time")
    parser.add_argument("--compile", action="store_true", help="also time the memory cores with compile=True")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=20, help="copy length L (the sequence has 2L+1 steps)")
    parser.add_argument("--slots", type=int, default=128, help="memory slots N")
    parser.add_argument("--width", type=int, default=20, help="word size W")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=True,
                        help="flush denormal floats to zero on the CPU (see README)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
