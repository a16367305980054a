"""``mann-zoo fit|validate|test``: Lightning's CLI over a core and a task.

    mann-zoo fit --config configs/task/copy.yaml --config configs/model/ntm.yaml \
        [--model.core.init_args.memory_slots 64 ...] [--model.core my_pkg.MyCore ...]

Every argument of the model (``--model.*``, the core's under ``--model.core.init_args.*``), the task
(``--data.*``), the optimiser (``--optimizer``) and the trainer (``--trainer.*``) can be set in YAML or on
the command line. Runs go to ``runs/<task>-<core>/seed<seed>/`` (CSV metrics, config, checkpoints,
W&B offline run); ``--ckpt_path last`` resumes the latest checkpoint there, data stream included.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from tasks import SequenceTask

from ..console import fail, first_line, map_option
from .arguments import explain, flatten, settings
from ..models import CoreSpec, core_spec, short_names
from ..models.registry import import_object
from .callbacks import RunSummary, StepProgressBar
from .atomic import atomic_write_text
from .checkpointing import AtomicCheckpointIO, CheckpointOnStop, checkpoint_core, read_checkpoint
from .lightning_module import SequenceModel
from .loggers import QuietWandbLogger, ResumableCSVLogger

EXECUTION_ARGS = ("compile", "compile_steps", "sequence_kernel")  # a core's arguments that change its speed, not its function


def _core_given(value) -> CoreSpec | None:
    """The command's ``model.core`` (a short name, or a class path with its arguments, as jsonargparse's
    Namespace) as a ``CoreSpec`` (:func:`core_spec`); None where it names no core."""
    try:
        return core_spec(value.as_dict() if hasattr(value, "as_dict") else value)
    except ValueError:
        return None


def _same_class(a: CoreSpec, b: CoreSpec) -> bool:
    """Whether two specs name the same class (``mann_zoo.models.NTM`` and ``mann_zoo.models.ntm.NTM`` do)."""
    try:
        return a.load() is b.load()
    except ValueError:
        return False


class _NoAdvertisement(logging.Filter):
    """Drops Lightning's tip to install its cloud logger (an info line on every run, no category to filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def _quiet() -> None:
    """Keep the console for what a researcher needs: no advice meant for other set-ups."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _NoAdvertisement) for f in log.filters):
            log.addFilter(_NoAdvertisement())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    # Lightning's advice for set-ups unlike ours (data generated in the process, no workers; a logging
    # interval longer than a validation set) comes as PossibleUserWarning: silenced by category.
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    # jsonargparse's deprecation notices are about how Lightning calls it, not about anything here.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    for pattern in (  # the rest have no category of their own
        ".*configure_optimizers` will be overridden.*",
        ".*GPU available but not used.*",
        ".*is an invalid version and will not be supported.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*`training_step` returned `None`.*",
        ".*LightningCLI's args parameter is intended to run from within Python.*",
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
        "(?s).*Unable to serialize instance.*",  # jsonargparse, before the one-line error on a bad core
        # validate/test from a fit checkpoint: its RunSummary state is of no use to them
        ".*callbacks used to create the checkpoint need to be provided.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


class MannZooCLI(LightningCLI):
    """``mann-zoo fit|validate|test``: Lightning's CLI over :class:`SequenceModel` and any
    :class:`tasks.SequenceTask`, with the core's widths linked from the task, one run folder per run
    (CSV and offline W&B logs, config, checkpoints) and atomic checkpoints."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.input_size", "model.input_size", apply_on="instantiate")
        parser.link_arguments("data.output_size", "model.output_size", apply_on="instantiate")
        parser.link_arguments("data.scoring", "model.scoring", apply_on="instantiate")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="folder of this run under trainer.default_root_dir (default: <task>-<core>/seed<seed>)")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, expand_short_names(args) if isinstance(args, list) else args)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a checkpoint file's hyperparameters into the config; ours are ``core``, the widths
        and ``lr``, and a checkpoint from before cores had class paths (``name`` plus the core's arguments)
        is translated first (:func:`checkpoint_core`). The core's ``EXECUTION_ARGS`` (how its step runs, not
        what it computes) stay as this command gives them, defaults included, when it names the same class:
        a run resumes compiled, or eager, as asked. (``--ckpt_path last`` never gets here: Lightning resolves
        it later, and the command's config stands whole.) Overrides Lightning's private hook of that name."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        try:
            checkpoint = read_checkpoint(Path(ckpt_path))
        except ValueError as error:
            raise ValueError(f"--ckpt_path {ckpt_path}: {str(error).split(': ', 1)[1]}") from None
        hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        if not hparams:
            return
        core = checkpoint_core(hparams)
        given = _core_given(self.config[self.config.subcommand].get("model", {}).get("core"))
        if given is not None and _same_class(given, core):  # how to run it: as this command says
            core = core._replace(init_args={**core.init_args, **{key: given.init_args[key] for key in EXECUTION_ARGS
                                                                 if key in given.init_args}})
        model = {"core": core.as_dict(), **{key: hparams[key] for key in ("input_size", "output_size", "lr") if key in hparams}}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": model}}, self.config)

    def instantiate_trainer(self, **kwargs):
        config = self.config[self.subcommand]
        trainer_config = self._get(self.config_init, "trainer", default={})
        root = Path(trainer_config.get("default_root_dir") or "runs")
        task = self.datamodule.name
        model = self.model.core_name
        run = config.get("run_name") or f"{task}-{model}/seed{self.datamodule.seed}"
        # Absolute: a W&B service already running (started by another run in the same session) resolves a
        # relative save_dir against its own working folder, not this process's.
        run_dir = (root / run).absolute()
        self.run_dir = run_dir
        if trainer_config.get("logger") in (None, True):
            offline = os.environ.get("WANDB_MODE", "offline") != "online"
            fitting = self.subcommand in (None, "fit")
            # fit appends to the run's metrics.csv (across resumes) and resumes its W&B run (one id per run
            # folder); validate and test, whose steps count from 0, write metrics.csv in a folder of their
            # own inside the run, and a W&B run of their own named after them.
            csv_logger = (ResumableCSVLogger(save_dir=str(run_dir.parent), name="", version=run_dir.name)
                          if fitting else CSVLogger(save_dir=str(run_dir), name="", version=self.subcommand))
            name = f"{model}-{task}-{run_dir.name}" + ("" if fitting else f"-{self.subcommand}")
            kwargs["logger"] = [
                csv_logger,
                QuietWandbLogger(project=os.environ.get("WANDB_PROJECT", "mann-zoo"), save_dir=str(run_dir),
                                 group=task, job_type=model if fitting else f"{model}-{self.subcommand}",
                                 name=name, id=wandb_run_id(run_dir) if fitting else None, offline=offline),
            ]
        callbacks = list(trainer_config.get("callbacks") or [])
        if self.subcommand in (None, "fit") and not any(isinstance(c, RunSummary) for c in callbacks):
            # result.json in every run folder: what 'mann-zoo report --results <runs>' tabulates
            callbacks.append(RunSummary(dirpath=str(run_dir), run_id=run))
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            # No version counter: a run resumed from a checkpoint written elsewhere (a grid's carried state in
            # a fresh clone, another path) overwrites last.ckpt instead of writing last-v1.ckpt beside it.
            # Written at every validation and when SIGTERM stops the run.
            callbacks.append(CheckpointOnStop(dirpath=str(run_dir / "checkpoints"), save_last=True,
                                              enable_version_counter=False))
        if trainer_config.get("enable_progress_bar") is not False and not any(
                isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar(leave=True))
        kwargs["callbacks"] = callbacks
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        kwargs.setdefault("default_root_dir", str(run_dir))
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        # validate/test: our table of the scores (below) instead of Lightning's, which is wider than a terminal.
        if self.subcommand in ("validate", "test") and "verbose" in self.config[self.subcommand]:
            self.config[self.subcommand]["verbose"] = False

    def after_validate(self) -> None:
        self._print_scores("validate")

    def after_test(self) -> None:
        self._print_scores("test")

    def _print_scores(self, subcommand: str) -> None:
        """Bit errors, sequence and token accuracy and cost per sequence on each set, in 80 columns."""
        if not self.trainer.is_global_zero:
            return
        import pandas as pd
        from rich.console import Console

        from ..experiments.evaluate import SCORE_COLUMNS, scores_table
        from ..experiments.results import METRICS, metric_key

        metrics = self.trainer.callback_metrics
        rows = [{"val_set": s.name, "steps": s.steps, "sequences": s.num_sequences,
                 **{m: float(metrics.get(metric_key(s.name, m), float("nan"))) for m in METRICS}}
                for s in self.datamodule.val_sets]
        Console().print(scores_table(pd.DataFrame(rows, columns=SCORE_COLUMNS), f"{subcommand}: {self.run_dir}"))

    def after_fit(self) -> None:
        # A fit resumed from a checkpoint at its budget trains nothing and Lightning calls no train hook:
        # the result a kill kept the first attempt from writing is written now, from a fresh validation.
        for summary in (c for c in self.trainer.callbacks if isinstance(c, RunSummary) and not c.written):
            self.trainer.validate(self.model, datamodule=self.datamodule, verbose=False)
            summary.write(self.trainer, self.model)
        if self.trainer.is_global_zero:
            print(f"run saved in {self.run_dir}", file=sys.stderr)

    def before_fit(self) -> None:
        warn_if_memory_too_small(self.datamodule, self.model.core)
        config = self.config[self.subcommand].clone()
        for key in ("config", "ckpt_path"):
            config.pop(key, None)
        flat = {"task": self.datamodule.name, "num_parameters": self.model.num_parameters,
                **{k: v for k, v in flatten(config.as_dict()).items() if not k.startswith("trainer.callbacks")}}
        for logger in self.trainer.loggers:
            logger.log_hyperparams(flat)


def warn_if_memory_too_small(task: SequenceTask, core: torch.nn.Module) -> None:
    """A warning (not an error: a model may compress) when ``task`` asks to hold more vectors than ``core``
    has memory slots."""
    slots, needed = getattr(core, "memory_slots", None), task.vectors_to_hold()
    if slots is not None and needed is not None and needed > slots:
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            print(f"mann-zoo: warning: {task.name}: examples of up to {needed} vectors (training and validation) "
                  f"but {type(core).__name__} has {slots} memory slots (model.core.init_args.memory_slots); expect "
                  "errors on the longer ones", file=sys.stderr)


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of the training run in ``run_dir``: made on its first fit and kept in the folder
    (``wandb_id``), so that a resumed fit continues the same W&B run instead of starting another."""
    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    import uuid

    run_id = uuid.uuid4().hex[:12]
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, run_id)
    return run_id


def expand_short_names(args: list[str]) -> list[str]:
    """``--model.core ntm`` -> ``--model.core '{"class_path": "mann_zoo.models.NTM", "init_args": {}}'``: a
    short name stands for its class path and defaults, and later ``--model.core.init_args.*`` refine it."""
    names = short_names()
    return map_option(args, ("--model.core",),
                      lambda value: json.dumps(names[value].as_dict()) if value in names else value)


class _Parsed(Exception):
    """Raised by :class:`_ParseOnly` once the arguments are parsed, carrying the CLI."""


class _ParseOnly(MannZooCLI):
    def _set_seed(self) -> None:  # nothing runs: no seed to set
        pass

    def before_instantiate_classes(self) -> None:
        raise _Parsed(self)


def build_task_and_core(config) -> tuple[SequenceTask, torch.nn.Module]:
    """The task and the core a parsed ``fit`` config describes, built (cheap: no data is drawn, nothing
    is compiled until it runs), so that a value the type allows but the class refuses fails here too."""
    task, spec = task_and_core_spec(config)
    return task, spec.build(task.input_size, task.output_size)


def task_and_core_spec(config) -> tuple[SequenceTask, CoreSpec]:
    """The task a parsed ``fit`` config describes (built) and its core as a :class:`CoreSpec` (not built)."""
    task_class = import_object(config.data.class_path)
    task = task_class(**config.data.init_args.as_dict())
    core = config.model.core
    return task, core_spec(core if isinstance(core, str) else core.as_dict())


_FIT_PARSER = None  # built once per process by parse_fit: building it is the slow part


def parse_fit(args: list[str]):
    """``args`` parsed as ``mann-zoo fit`` would (not run); one parser per process, built on the first call."""
    global _FIT_PARSER
    _quiet()
    args = expand_short_names(args)
    if _FIT_PARSER is None:
        try:
            build_cli(args, run=False, cli_class=_ParseOnly)
        except _Parsed as parsed:
            _FIT_PARSER = parsed.args[0].parser
            return parsed.args[0].config
    return _FIT_PARSER.parse_args(args)


def parse_fit_args(arg_lists: list[list[str]]) -> list[BaseException | None]:
    """Parse each argument list as ``mann-zoo fit`` would and build its task and core (not the trainer: no
    run starts): ``None`` where that works, else the error. One parser, built on the first call, serves
    every list of every call (building it is the slow part)."""
    errors: list[BaseException | None] = []
    for args in arg_lists:
        try:
            build_task_and_core(parse_fit(args))
            errors.append(None)
        except Exception as error:  # noqa: BLE001 - any failure to parse is reported with its run
            errors.append(error)
    return errors


def build_cli(args: list[str], run: bool = True, cli_class: type[MannZooCLI] = MannZooCLI) -> MannZooCLI:
    """Build (and by default run) the Lightning CLI for ``args``; the grid check passes a class that stops
    after parsing, so that it parses exactly as ``mann-zoo fit`` does."""
    return cli_class(
        SequenceModel,
        SequenceTask,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults={
            "max_steps": 20000,
            "val_check_interval": 1000,
            "check_val_every_n_epoch": None,
            "log_every_n_steps": 10,
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "mann-zoo", "exit_on_error": False},
        args=args,
        run=run,
    )


def _finish_wandb() -> None:
    """Close this process's W&B run, so that the next run in the same process (a benchmark grid, the
    tests) gets a run of its own instead of Lightning reusing the open one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_lightning(command: str, args: list[str]) -> None:
    """``mann-zoo fit|validate|test ARGS``; a bad argument is a one-line error naming the field."""
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    _quiet()
    try:
        build_cli([command, *args])
    except MisconfigurationException as error:  # Lightning refuses the trainer's settings (no GPU, ...)
        given = [s for s in settings(args) if s.key.split(".")[:2] in (["trainer", "accelerator"], ["trainer", "devices"],
                                                                       ["trainer", "strategy"], ["trainer", "precision"])]
        where = ", ".join(f"--{s.key} {s.value}" for s in given) or "--trainer"
        fail(f"{where}: {first_line(str(error))}")
    except (ArgumentError, ValueError, TypeError, FileNotFoundError) as error:
        fail(explain(args, error))
    finally:
        _finish_wandb()

