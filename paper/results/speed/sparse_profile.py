"""Where the sparse DNC's training step spends its time, at the reference step (batch 32, copy length 20 =
41 steps, LSTM 100, W = 20, one read and one write head, K = 8, one thread), at N = 128 and 16,384, beside
the dense DNC at N = 128 (its sequence kernel) and the controller alone, timed in the same rounds. The sparse DNC
runs its torch step (``sequence_kernel=False``): since 2026-12-03 training takes its C access or whole-sequence
kernel instead, timed by ``mann-zoo speed`` (sparse_access.csv, sparse_sequence.csv).

Three views of one step:
- forward (the model and the loss), backward, and the optimiser's update, timed apart (median of
  ``--repeats``);
- the forward's memory operations, each function of ``memory.sparse`` and ``memory.sparse_link`` that
  ``sparse_dnc.sparse_step`` calls timed around its call (wall time, its own operations included; the
  ``merge`` that ``precedence`` calls is counted in both);
- the number of torch operators per time step, forward and backward (``torch.profiler``: every operator
  call, nested ones included), which is what the step's time follows at these sizes.

    python paper/results/speed/sparse_profile.py --out paper/results/speed/sparse_profile.csv
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import defaultdict

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

import mann_zoo.models.dnc as dnc
import mann_zoo.models.sparse_dnc as sparse_dnc
from mann_zoo.experiments.speed import (REFERENCE, ControllerAlone, copy_batch, copy_loss, reference_specs, time_steps,
                                        training_step_fn)

BITS = 8
SPARSE_CALLS = ("usage", "retain", "content_candidates", "content_weights", "allocation_weights", "merge", "write",
                "precedence", "requery", "read")
LINK_CALLS = ("update", "directional_read_weights")


class Phases:
    """One training step split into forward (model and loss), backward and the optimiser's update."""

    def __init__(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]):
        self.model, self.batch = model, batch
        self.optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)  # as training_step_fn's

    def forward(self) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        return copy_loss(self.model, self.batch)

    def timed(self) -> dict[str, float]:
        start = time.perf_counter()
        loss = self.forward()
        forwarded = time.perf_counter()
        loss.backward()
        backwarded = time.perf_counter()
        self.optimiser.step()
        return {"forward": forwarded - start, "backward": backwarded - forwarded, "optimiser": time.perf_counter() - backwarded}


def region_times(phases: Phases, repeats: int) -> dict[str, float]:
    """Median seconds per step of each memory function the sparse step calls (its forward)."""
    totals: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)
    originals = []

    def wrap(module, name: str, label: str) -> None:
        function = getattr(module, name)
        originals.append((module, name, function))

        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                current[label] += time.perf_counter() - start
        setattr(module, name, timed)

    for name in SPARSE_CALLS:
        wrap(sparse_dnc.sp, name, f"sparse.{name}")
    for name in LINK_CALLS:
        wrap(sparse_dnc.sparse_link, name, f"sparse_link.{name}")
    wrap(dnc, "sparse_step", "sparse_step (all)")  # as DNC.step calls it
    try:
        for _ in range(repeats):
            current.clear()
            phases.forward().backward()
            for label, seconds in current.items():
                totals[label].append(seconds)
    finally:
        for module, name, function in originals:
            setattr(module, name, function)
    return {label: statistics.median(values) for label, values in totals.items()}


def operator_counts(phases: Phases) -> dict[str, int]:
    """Torch operator calls in one step's forward and in its backward."""
    counts = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss = phases.forward()
    counts["forward"] = sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss.backward()
    counts["backward"] = sum(event.count for event in prof.key_averages() if event.key.startswith("aten::"))
    phases.optimiser.step()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = copy_batch(32, 20, BITS, "cpu")
    steps_per_sequence = batch[0].shape[1]
    width = REFERENCE["word_size"]
    models = {"controller alone": ControllerAlone(BITS + 1, BITS, REFERENCE["controller_size"], width),
              "dnc N=128": reference_specs(["dnc"], 128, width)["dnc"].build(BITS + 1, BITS)}
    for slots in (128, 16384):
        sparse = reference_specs(["dnc_sparse"], slots, width)["dnc_sparse"].build(BITS + 1, BITS)
        sparse.sequence_kernel = False  # the torch step this script profiles (its C paths: sparse_sequence.csv)
        models[f"dnc_sparse N={slots}"] = sparse
    step_ms = {name: 1e3 * seconds for name, (seconds, _) in
               time_steps({name: training_step_fn(model, batch) for name, model in models.items()},
                          repeats=args.repeats, warmup=2).items()}
    rows = [{"model": name, "part": "step", "ms_per_step": ms, "share_of_step": 1.0, "operators_per_time_step": None}
            for name, ms in step_ms.items()]
    for name, model in models.items():
        if not name.startswith("dnc_sparse"):
            continue
        phases = Phases(model, batch)
        phases.timed()
        split = pd.DataFrame([phases.timed() for _ in range(args.repeats)]).median()
        operators = operator_counts(phases)
        for part, seconds in split.items():
            rows.append({"model": name, "part": part, "ms_per_step": 1e3 * seconds,
                         "share_of_step": 1e3 * seconds / step_ms[name],
                         "operators_per_time_step": operators.get(part, 0) / steps_per_sequence if part in operators else None})
        for label, seconds in sorted(region_times(phases, args.repeats).items(), key=lambda item: -item[1]):
            rows.append({"model": name, "part": f"forward: {label}", "ms_per_step": 1e3 * seconds,
                         "share_of_step": 1e3 * seconds / step_ms[name], "operators_per_time_step": None})
    table = pd.DataFrame(rows)
    table["threads"], table["torch"] = torch.get_num_threads(), torch.__version__
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
