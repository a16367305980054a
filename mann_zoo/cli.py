"""The ``mann-zoo`` command line.

    mann-zoo fit --config configs/task/copy.yaml --config configs/model/ntm.yaml [--model.memory_slots 64 ...]
    mann-zoo validate|test ...     (Lightning's other subcommands, same options)
    mann-zoo speed [--compile]     training-step time of each core

``fit`` is Lightning's ``LightningCLI``: every argument of the model (``--model.*``), the task
(``--data.*``), the optimiser (``--optimizer``) and the trainer (``--trainer.*``) can be set in YAML or on
the command line. Runs go to ``runs/<task>-<model>/seed<seed>/`` (CSV metrics, config, checkpoints,
W&B offline run); ``--ckpt_path last`` resumes the latest checkpoint there, data stream included.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

COMMANDS = {
    "fit": "train a model on a task (Lightning CLI; see 'mann-zoo fit --help')",
    "validate": "evaluate a checkpoint on a task's validation sets",
    "test": "evaluate a checkpoint on a task's test sets",
    "bench": "NTM, DNC and LSTM head to head on a grid of tasks and seeds ('bench cost': cost per step)",
    "report": "regenerate the figures and tables of paper/ from benchmark results",
    "speed": "training-step time of each core at the reference configuration",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test")


def _quiet() -> None:
    """Keep the console for what a researcher needs: no advice meant for other set-ups."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    for pattern in (
        ".*does not have many workers.*",
        ".*configure_optimizers` will be overridden.*",
        ".*GPU available but not used.*",
        ".*is an invalid version and will not be supported.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*Experiment logs directory .* exists and is not empty.*",
        ".*`training_step` returned `None`.*",
        ".*The number of training batches .* is smaller than the logging interval.*",
        ".*LightningCLI's args parameter is intended to run from within Python.*",
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def build_cli(args: list[str], run: bool = True):
    """Build (and by default run) the Lightning CLI for ``args``."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from tasks import SequenceTask

    from .callbacks import StepProgressBar
    from .checkpointing import AtomicCheckpointIO
    from .lightning_module import SequenceModel

    class MannZooCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.input_size", "model.input_size", apply_on="instantiate")
            parser.link_arguments("data.output_size", "model.output_size", apply_on="instantiate")
            parser.add_argument("--run_name", type=str | None, default=None,
                                help="folder of this run under trainer.default_root_dir (default: <task>-<model>/seed<seed>)")

        def instantiate_trainer(self, **kwargs):
            config = self.config[self.subcommand]
            trainer_config = self._get(self.config_init, "trainer", default={})
            root = Path(trainer_config.get("default_root_dir") or "runs")
            task = self.datamodule.name
            model = config.model.name
            run = config.get("run_name") or f"{task}-{model}/seed{self.datamodule.seed}"
            run_dir = root / run
            if trainer_config.get("logger") in (None, True):
                offline = os.environ.get("WANDB_MODE", "offline") != "online"
                kwargs["logger"] = [
                    CSVLogger(save_dir=str(run_dir.parent), name="", version=run_dir.name),
                    WandbLogger(project=os.environ.get("WANDB_PROJECT", "mann-zoo"), save_dir=str(run_dir),
                                group=task, job_type=model, name=f"{model}-{task}-{run_dir.name}",
                                offline=offline),
                ]
            callbacks = list(trainer_config.get("callbacks") or [])
            if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
                callbacks.append(ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), save_last=True))
            if trainer_config.get("enable_progress_bar") is not False and not any(
                    isinstance(c, ProgressBar) for c in callbacks):
                callbacks.append(StepProgressBar(leave=True))
            kwargs["callbacks"] = callbacks
            if not trainer_config.get("plugins"):
                kwargs["plugins"] = [AtomicCheckpointIO()]
            kwargs.setdefault("default_root_dir", str(run_dir))
            return super().instantiate_trainer(**kwargs)

        def before_fit(self) -> None:
            config = self.config[self.subcommand].clone()
            for key in ("config", "ckpt_path"):
                config.pop(key, None)
            flat = {"task": self.datamodule.name, "num_parameters": self.model.num_parameters,
                    **{k: v for k, v in _flatten(config.as_dict()).items() if not k.startswith("trainer.callbacks")}}
            for logger in self.trainer.loggers:
                logger.log_hyperparams(flat)

    return MannZooCLI(
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


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_STRUCTURE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value",
              "Expected a <class 'NoneType'>", "Expected a path")


def _one_line(error: BaseException) -> str:
    """One line from an error: jsonargparse nests the causes of a failed field in an indented report;
    keep the field's dotted name and the innermost reasons."""
    text = str(error).strip()
    fields = list(dict.fromkeys(re.findall(r'Parser key "([^"]+)"', text)))
    reasons = [line.strip().lstrip("- ").strip() for line in text.splitlines()]
    reasons = [r for r in reasons if r and not r.startswith(_STRUCTURE)]
    if len(fields) > 1:  # the class was found, a field of it failed: the class line is noise
        reasons = [r for r in reasons if not r.startswith("Problem with given class_path")]
    message = " ".join(reasons[:2]) or type(error).__name__
    if fields:
        message = f"{'.'.join(fields)}: {message}"
    if fields == ["data"] and "class_path" in message:
        from tasks import TASKS

        message += f"; accepted: {', '.join(f'tasks.{cls.__name__}' for cls in TASKS.values())}"
    return message


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mann-zoo COMMAND [options]\n\nNTM, DNC and LSTM head to head on algorithmic tasks.\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<9} {text}")
        print("\nexample:\n  mann-zoo fit --config configs/task/copy.yaml --config configs/model/ntm.yaml "
              "--model.memory_slots 64 --trainer.max_steps 2000\n\n'mann-zoo COMMAND --help' describes each command.")
        return
    command, rest = argv[0], argv[1:]
    if command == "speed":
        from .speed import main as speed

        speed(rest)
        return
    if command == "bench":
        if rest[:1] == ["cost"]:
            from .cost import main as cost

            cost(rest[1:])
        else:
            from .benchmark import main as bench

            bench(rest)
        return
    if command == "report":
        from .report import main as report

        report(rest)
        return
    if command not in LIGHTNING_COMMANDS:
        _fail(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")
    _check_config_files(rest)
    _quiet()
    from jsonargparse import ArgumentError

    try:
        build_cli([command, *rest])
    except ArgumentError as error:
        _fail(_one_line(error))
    except (ValueError, TypeError, FileNotFoundError) as error:
        _fail(_one_line(error))
    finally:
        _finish_wandb()


def _finish_wandb() -> None:
    """Close this process's W&B run, so that the next run in the same process (a benchmark grid, the
    tests) gets a run of its own instead of Lightning reusing the open one."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _check_config_files(args: list[str]) -> None:
    """Name the file when a ``--config`` file is missing or is not valid YAML."""
    import yaml

    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in paths:
        try:
            with open(path) as f:
                yaml.safe_load(f)
        except OSError as error:
            _fail(f"--config {path}: {error.strerror}")
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            _fail(f"--config {path}: not valid YAML{where}: {problem}")


def _fail(message: str) -> None:
    print(f"mann-zoo: error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
