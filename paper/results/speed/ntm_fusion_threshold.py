"""Where should the compiled NTM call its C kernels? (``ntm_access.COMPILER_FUSES_BELOW``)

Times the NTM's training step at the reference configuration (copy length 20, LSTM 100, memory 128 x 20,
one read and one write head, one thread), compiled two ways in the same interleaved rounds: its access
step as the operator ``torch.ops.mann_zoo.ntm_access`` (the C kernels) at every batch size, and as the
traced primitives that inductor fuses into the step's own code. The two cores differ only in the function
their ``step`` calls for ``mem.address_read_write``.

    python paper/results/speed/ntm_fusion_threshold.py --batches 8 32 64 128 --repeats 20 \
        --out paper/results/speed/ntm_fusion_threshold.csv
"""

import argparse
import types

import pandas as pd
import torch

import mann_zoo.models.ntm as ntm_module
from mann_zoo.experiments.speed import copy_batch, time_steps, training_step_fn
from mann_zoo.memory import ntm_access
from mann_zoo.models import NTM


def ntm_class(access) -> type:
    """``NTM`` whose step calls ``access`` for ``mem.address_read_write`` (its code, other globals)."""
    mem = types.SimpleNamespace(**{k: getattr(ntm_module.mem, k) for k in dir(ntm_module.mem) if not k.startswith("__")})
    mem.address_read_write = access
    step = types.FunctionType(NTM.step.__code__, {**vars(ntm_module), "mem": mem}, "step")
    return type(f"NTM_{access.__name__}", (NTM,), {"step": step})


def kernels(*args):
    return ntm_access._ntm_access(*args)[:3]


def fused(*args):
    return ntm_access._composed(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    sizes = dict(input_size=9, output_size=8, controller_size=100, memory_slots=128, word_size=20)
    rows = []
    for batch in args.batches:
        data = copy_batch(batch, 20, 8, "cpu")
        steps = {access.__name__: training_step_fn(ntm_class(access)(**sizes, compile=True), data) for access in (kernels, fused)}
        for name, (seconds, first) in time_steps(steps, args.repeats).items():
            rows.append({"batch_size": batch, "memory_elements": batch * 128 * 20, "access": name,
                         "ms_per_step": 1e3 * seconds, "first_step_s": first})
        frame = pd.DataFrame(rows)
        print(frame[frame.batch_size == batch].to_string(index=False))
    frame = pd.DataFrame(rows)
    frame["fused_over_kernels"] = frame.groupby("batch_size").ms_per_step.transform(
        lambda ms: ms.iloc[1] / ms.iloc[0])  # > 1: the kernels are faster
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
