"""Where the compiled NTM's and DNC's training step spends its time, at the reference step (batch 32, copy
length 20, LSTM 100, memory 128 x 20, one read and one write head, one thread).

Times every model's step unprofiled in interleaved rounds (``mann_zoo.experiments.speed.time_steps``), then
profiles ``--profiled`` steps of each memory core with ``torch.profiler`` and sums the operators' self CPU
time by kind: the memory's C kernels (``mann_zoo::`` operators), the compiled graphs' own code, matrix
products, and everything else (autograd, dynamo's guards, allocation, the optimiser). The profiler adds its
own cost per operator, so read the shares, not the profiled milliseconds.

    python paper/results/speed/step_profile.py --out paper/results/speed/step_profile.csv
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from mann_zoo.experiments.speed import (REFERENCE, ControllerAlone, compiled_step, copy_batch, reference_specs,
                                        time_steps, training_step_fn)

BITS = 8  # the reference copy task's bits per vector (9 input and 8 output channels)


def kind(name: str) -> str:
    if name.startswith("mann_zoo::"):
        return "memory C kernels"
    if "CompiledFxGraph" in name:
        return "compiled graph code"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"):
        return "matrix products"
    return "other (autograd, guards, allocation, optimiser)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--profiled", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = copy_batch(32, 20, BITS, "cpu")
    specs = reference_specs(["ntm", "dnc"], REFERENCE["memory_slots"], REFERENCE["word_size"])
    models = {"controller alone": ControllerAlone(BITS + 1, BITS, REFERENCE["controller_size"], REFERENCE["word_size"]),
              **{f"{name} compiled": spec.build(BITS + 1, BITS, **compiled_step(spec)) for name, spec in specs.items()}}
    steps = {name: training_step_fn(model, batch) for name, model in models.items()}
    timed = time_steps(steps, repeats=args.repeats, warmup=3)
    controller_ms = 1e3 * timed["controller alone"][0]
    rows = []
    for name in ("ntm compiled", "dnc compiled"):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profiled):
                steps[name]()
        self_us = pd.Series({event.key: event.self_cpu_time_total for event in prof.key_averages()})
        by_kind = self_us.groupby(kind).sum()
        step_ms = 1e3 * timed[name][0]
        for part, total in by_kind.items():
            share = total / by_kind.sum()
            rows.append({"model": name, "kind": part, "share_of_profiled_step": share,
                         "ms_per_step_at_share": share * step_ms, "step_ms": step_ms,
                         "controller_alone_ms": controller_ms, "x_controller": step_ms / controller_ms,
                         "x_controller_without_this_kind": (1 - share) * step_ms / controller_ms})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
