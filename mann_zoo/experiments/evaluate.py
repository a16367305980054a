"""``mann-zoo evaluate CKPT``: a trained core's bit errors, sequence accuracy and cost per sequence on its
task's validation sets (the training distribution, then the generalisation sets), or on sizes given.

    mann-zoo evaluate runs/copy-ntm/seed0/checkpoints/last.ckpt                       # the run's task
    mann-zoo evaluate model.ckpt --task configs/task/copy.yaml --sizes "[20, 50, 100]"
    mann-zoo evaluate model.ckpt --task configs/task/repeat_copy.yaml --sizes "[[10, 15], [30, 10]]"

The task comes from ``--task`` (a task config, or a shipped one by name) or else from the run folder the
checkpoint sits in (``<run>/config.yaml``, as ``mann-zoo fit`` writes it). ``--sizes`` replaces the task's
list of generalisation sets (``val_lengths`` of copy, ``val_lengths_repeats`` of repeat copy, ``val_items``
of associative recall, ``val_sizes`` of priority sort). Prints a table and writes it as CSV (``--out``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
import yaml

from ..console import CommandParser, device, fail, first_line

SCORE_COLUMNS = ["val_set", "steps", "sequences", "bit_errors", "seq_accuracy", "token_accuracy", "cost_bits"]


def score_sets(core: torch.nn.Module, task) -> pd.DataFrame:
    """Mean bit errors, sequence and token accuracy and cost (bits) per sequence of ``core`` on each of ``task``'s
    validation sets (``SCORE_COLUMNS``; ``steps``: the set's longest sequence)."""
    from ..training.lightning_module import core_logits, sequence_scores

    device = next(core.parameters()).device
    rows = []
    for val_set in task.val_sets:
        totals = {"cost_bits": 0.0, "bit_errors": 0.0, "seq_accuracy": 0.0, "token_accuracy": 0.0}
        with torch.no_grad():
            for batch in val_set.batches:
                inputs, targets, mask = (tensor.to(device) for tensor in batch)
                scores = sequence_scores(core_logits(core, inputs, mask), targets, mask, task.scoring)
                for name in totals:
                    totals[name] += float(scores[name].sum())
        count = val_set.num_sequences
        rows.append({"val_set": val_set.name, "steps": val_set.steps,
                     "sequences": count, **{name: value / count for name, value in totals.items()}})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def task_config(checkpoint: Path, task: str | None) -> dict:
    """The ``data`` section ({class_path, init_args}) of ``--task`` or of the checkpoint's run folder."""
    from ..configs import find_config

    if task is not None:
        path = find_config(task)
        if not path.is_file():
            fail(f"--task {task}: not a file here nor a shipped config")
    else:
        path = next((folder / "config.yaml" for folder in checkpoint.resolve().parents[:3]
                     if (folder / "config.yaml").is_file()), None)
        if path is None:
            fail(f"--task: {checkpoint} is not inside a run folder with a config.yaml; name the task config "
                 "(e.g. --task configs/task/copy.yaml)")
    data = (yaml.safe_load(path.read_text()) or {}).get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        fail(f"--task {path}: has no 'data' section with a class_path")
    return data


def build_task(data: dict, sizes: str | None, sequences: int, seed: int):
    """The task of ``data`` with ``sequences`` per validation set and, if given, ``sizes`` (YAML) as its
    generalisation sets; a value the task refuses is a one-line error."""
    from ..models.registry import import_object

    task_class = import_object(data["class_path"])
    init_args = {**(data.get("init_args") or {}), "num_val_sequences": sequences, "seed": seed}
    if sizes is not None:
        if task_class.generalisation_arg is None:
            fail(f"--sizes: {task_class.__name__} has no generalisation sets to replace")
        try:
            init_args[task_class.generalisation_arg] = yaml.safe_load(sizes)
        except yaml.YAMLError:
            fail(f"--sizes {sizes!r}: not a YAML list")
    try:
        return task_class(**init_args)
    except (TypeError, ValueError) as error:
        fail(f"{'--sizes' if sizes is not None else '--task'}: {error}")


def scores_table(scores: pd.DataFrame, title: str):
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("validation set", "steps", "bit errors/seq", "seq. accuracy", "token acc.", "cost (bits)"):
        table.add_column(name, justify="left" if name == "validation set" else "right", no_wrap=True)
    for row in scores.itertuples():
        table.add_row(row.val_set, str(row.steps), f"{row.bit_errors:.2f}", f"{100 * row.seq_accuracy:.1f} %",
                      f"{100 * row.token_accuracy:.1f} %", f"{row.cost_bits:.2f}")
    return table


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console

    from .. import load_model
    from ..training.atomic import atomic_write_text

    parser = CommandParser("mann-zoo evaluate", __doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("checkpoint", type=Path, nargs="+",
                        help="checkpoints written by 'mann-zoo fit' (or bench's models/); several: one table")
    parser.add_argument("--task", help="a task config (default: the config.yaml of each checkpoint's run folder)")
    parser.add_argument("--sizes", help="YAML list replacing the task's generalisation sets, e.g. '[20, 50]'")
    parser.add_argument("--sequences", type=int, default=320, help="sequences per validation set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation sets")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--out", type=Path, help="CSV file (default: evaluation-<checkpoint name>.csv here)")
    args = parser.parse_args(argv)
    if args.sequences < 1:
        fail(f"--sequences must be >= 1, got {args.sequences}")
    frames = []
    tasks: dict[str, object] = {}  # one task (and its validation sets, drawn once) per distinct task config
    for checkpoint in args.checkpoint:
        try:
            core = load_model(checkpoint, map_location=args.device)
        except (FileNotFoundError, ValueError) as error:
            fail(str(error).replace("checkpoint_path", "CHECKPOINT", 1))
        except RuntimeError as error:  # a device torch does not have
            fail(f"--device {args.device}: {first_line(str(error))}")
        data = task_config(checkpoint, args.task)
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in tasks:
            tasks[key] = build_task(data, args.sizes, args.sequences, args.seed)
        task = tasks[key]
        width = getattr(core, "input_size", task.input_size)
        if task.input_size != width:
            fail(f"--task: {task.name} has inputs of width {task.input_size}; the checkpoint's core takes {width}")
        frames.append(score_sets(core, task).assign(checkpoint=checkpoint.stem))
    console = Console()
    if len(frames) == 1:
        scores = frames[0].drop(columns="checkpoint")
        console.print(scores_table(scores, f"{args.checkpoint[0].name} on {task.name} ({args.sequences} sequences per set)"))
    else:
        scores = pd.concat(frames, ignore_index=True)[["checkpoint", *SCORE_COLUMNS]]
        console.print(errors_table(scores, f"bit errors per sequence ({args.sequences} sequences per set)"))
    out = args.out or Path(f"evaluation-{args.checkpoint[0].stem}.csv")
    atomic_write_text(out, scores.to_csv(index=False))
    print(f"wrote {out}")


def errors_table(scores: pd.DataFrame, title: str):
    """Checkpoints in rows, validation sets in columns, bit errors per sequence in the cells."""
    from rich import box
    from rich.table import Table

    sets = list(dict.fromkeys(scores["val_set"]))
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("checkpoint", no_wrap=True)
    for name in sets:
        table.add_column(name.removeprefix("len_"), justify="right", no_wrap=True)
    for checkpoint, rows in scores.groupby("checkpoint", sort=False):
        errors = dict(zip(rows["val_set"], rows["bit_errors"]))
        table.add_row(checkpoint, *(f"{errors[name]:.2f}" if name in errors else "-" for name in sets))
    return table


if __name__ == "__main__":
    main()
