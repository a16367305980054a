"""A benchmark grid as data: tasks x models x seeds, each run a list of config files plus a mapping of
overrides, checked against ``mann-zoo fit``'s parser when the grid is read.

The YAML format (``mann_zoo/configs/bench/*.yaml``)::

    name: default                      # the results folder's name
    seeds: [0, 1, 2]
    max_steps: 3000                    # training budget per run (steps); a task may set its own
    val_check_interval: 500
    threshold: 0.1                     # converged: fewer bit errors per sequence on the training distribution
    patience: 3                        # ... at this many validations in a row (default 1)
    stop_at_convergence: true
    overrides: {data.num_val_sequences: 320}            # every run
    tasks:
      copy:
        config: configs/task/copy.yaml
        overrides: {data.max_length: 10}                 # every run of this task
        models: [ntm, lstm]                              # default: every model
        seeds: [0]                                       # default: the grid's
        max_steps: 2000
        model_max_steps: {lstm: 4000}
        model_overrides: {ntm: {model.core.init_args.controller_size: 64}}
        keep_models: [ntm]                               # keep these trained weights in models/
    models:
      ntm: {config: configs/model/ntm.yaml, overrides: {model.core.init_args.compile: true}}

Override keys are ``mann-zoo fit`` options without the dashes; later mappings win (grid, task, model,
the task's per-model mapping). A wrong key or value fails when the grid is read, naming the grid file, the
run and the key, before any run starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..configs import find_config
from .results import ADDRESSING_MODELS
GRID_KEYS = {"name", "description", "seeds", "max_steps", "val_check_interval", "threshold", "patience", "stop_at_convergence",
             "overrides", "tasks", "models"}
TASK_KEYS = {"config", "overrides", "models", "seeds", "max_steps", "model_max_steps", "model_overrides", "keep_models"}
MODEL_KEYS = {"config", "overrides"}


@dataclass(frozen=True)
class RunSpec:
    """One run of a grid: the config files and overrides that make its ``mann-zoo fit`` command."""

    task: str
    model: str
    seed: int
    configs: tuple[Path, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 2000
    keep_model: bool = False  # keep the trained weights in models/ (committed) for the report's figures

    @property
    def run_id(self) -> str:
        return f"{self.task}-{self.model}-seed{self.seed}"

    def folder(self, out: Path) -> Path:
        """The run's folder in the grid's results folder ``out``: ``out/runs/<run id>``."""
        return out / "runs" / self.run_id

    @property
    def args(self) -> list[str]:
        """The ``mann-zoo fit`` arguments of the configs and overrides (without seed, budget or outputs)."""
        return [*(a for path in self.configs for a in ("--config", str(path))),
                *(f"--{key}={_command_line(value)}" for key, value in self.overrides.items())]


def _command_line(value: Any) -> str:
    """A YAML value as the command line takes it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Grid:
    name: str
    runs: list[RunSpec]
    val_check_interval: int = 250
    threshold: float = 0.1
    patience: int = 1  # validations in a row below threshold that make convergence
    stop_at_convergence: bool = True
    description: str = ""
    path: Path | None = None


class GridError(ValueError):
    """A grid file that cannot be run; the message is one line naming the file and what is wrong."""


def load_grid(path: Path, seeds: list[int] | None = None, max_steps: int | None = None, check: bool = True) -> Grid:
    """Read a grid file; with ``check``, parse every run's arguments with ``mann-zoo fit``'s parser.

    ``seeds`` and ``max_steps`` override the grid's (and its tasks') own.
    """
    where = f"--config {path}"
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise GridError(f"{where}: {error}".splitlines()[0]) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), dict) or not isinstance(spec.get("models"), dict):
        raise GridError(f"{where}: needs 'tasks' and 'models' mappings")
    _check_keys(where, spec, GRID_KEYS)
    if max_steps is not None and max_steps < 1:
        raise GridError(f"max_steps must be >= 1, got {max_steps}")
    grid_seeds = _seeds(where, spec.get("seeds", [0]))
    default_steps = _positive(where, "max_steps", spec.get("max_steps", 2000))
    grid_overrides = _mapping(where, "overrides", spec.get("overrides"))
    for model, model_spec in spec["models"].items():
        _check_keys(f"{where}: model {model!r}", model_spec, MODEL_KEYS)
    runs = []
    for task, task_spec in spec["tasks"].items():
        at = f"{where}: task {task!r}"
        _check_keys(at, task_spec, TASK_KEYS)
        task_models = task_spec.get("models", list(spec["models"]))
        for model in task_models:
            if model not in spec["models"]:
                raise GridError(f"{at} names model {model!r}, not in models ({', '.join(spec['models'])})")
        # Which trained models to keep: the task's ``keep_models``, else the copy NTM and DNC.
        kept = task_spec.get("keep_models", [m for m in ADDRESSING_MODELS if m in task_models] if task == "copy" else [])
        if not isinstance(kept, list) or not set(kept) <= set(task_models):
            raise GridError(f"{at}: keep_models must name models of the task ({', '.join(task_models)}), got {kept!r}")
        task_seeds = _seeds("--seeds", seeds) if seeds is not None else _seeds(at, task_spec.get("seeds", grid_seeds))
        model_steps = _mapping(at, "model_max_steps", task_spec.get("model_max_steps"))
        model_overrides = _mapping(at, "model_overrides", task_spec.get("model_overrides"))
        for model in task_models:
            model_spec = spec["models"][model]
            configs = (_config(at, task_spec, path), _config(f"{where}: model {model!r}", model_spec, path))
            overrides = {**grid_overrides, **_mapping(at, "overrides", task_spec.get("overrides")),
                         **_mapping(f"{where}: model {model!r}", "overrides", model_spec.get("overrides")),
                         **_mapping(at, f"model_overrides.{model}", model_overrides.get(model))}
            steps = max_steps or _positive(at, "max_steps", model_steps.get(model, task_spec.get("max_steps", default_steps)))
            for seed in task_seeds:
                runs.append(RunSpec(task, model, seed, configs, overrides, steps, keep_model=model in kept))
    grid = Grid(name=str(spec.get("name", Path(path).stem)), runs=runs,
                val_check_interval=_positive(where, "val_check_interval", spec.get("val_check_interval", 250)),
                threshold=float(spec.get("threshold", 0.1)),
                patience=_positive(where, "patience", spec.get("patience", 1)),
                stop_at_convergence=bool(spec.get("stop_at_convergence", True)),
                description=str(spec.get("description", "")), path=Path(path))
    if check:
        check_grid(grid)
    return grid


def check_grid(grid: Grid) -> None:
    """Parse each distinct run's arguments with ``mann-zoo fit``'s parser and build its task and core (not
    the trainer): a wrong key or value is a :class:`GridError` naming the grid file, the run and the key."""
    from ..training.arguments import explain
    from ..training.cli import parse_fit_args

    distinct: dict[tuple[str, ...], RunSpec] = {}  # the seeds of a run share its arguments
    for run in grid.runs:
        distinct.setdefault(tuple(run.args), run)
    for (args, run), error in zip(distinct.items(), parse_fit_args([list(args) for args in distinct])):
        if error is not None:
            raise GridError(f"--config {grid.path}: run {run.run_id}: {explain(list(args), error)}")


def _config(where: str, spec: dict, grid_path: Path) -> Path:
    """The config file a task or model names: beside the grid file, else from here, else a shipped one."""
    if "config" not in spec:
        raise GridError(f"{where}: needs a config file")
    beside = Path(grid_path).parent / str(spec["config"])
    found = beside if beside.is_file() else find_config(spec["config"])
    if not found.is_file():
        raise GridError(f"{where}: config {spec['config']!r} is not a file here nor a shipped config")
    return found.resolve()


def _check_keys(where: str, spec: Any, accepted: set[str]) -> None:
    if not isinstance(spec, dict):
        raise GridError(f"{where}: must be a mapping, got {spec!r}")
    unknown = sorted(set(spec) - accepted)
    if unknown:
        hint = " (command-line lists became 'overrides' mappings)" if {"args", "model_args"} & set(unknown) else ""
        raise GridError(f"{where}: unknown key {unknown[0]!r}{hint}; accepted: {', '.join(sorted(accepted))}")


def _mapping(where: str, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{where}: {key} must be a mapping, got {value!r}")
    return dict(value)


def _seeds(where: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                          for v in value):
        raise GridError(f"{where}: seeds must be a non-empty list of integers >= 0, got {value!r}")
    return list(value)


def _positive(where: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GridError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value
