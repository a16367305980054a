"""The ``mann-zoo`` command.

    mann-zoo fit --config configs/task/copy.yaml --config configs/model/ntm.yaml [--model.core.init_args.memory_slots 64]
    mann-zoo validate|test ...     (Lightning's other subcommands, same options)
    mann-zoo bench [--preset smoke|default|paper|ntm_diagnosis] [--out results/<grid>]
    mann-zoo bench cost            cost per step against memory size
    mann-zoo report                figures and tables of paper/ from its committed results
    mann-zoo speed                 training-step time of each core

``fit``, ``validate`` and ``test`` are :class:`mann_zoo.training.cli.MannZooCLI` (Lightning's CLI); the
others live in :mod:`mann_zoo.experiments`. Config paths that do not exist from the current folder are
looked up among the shipped configs (:mod:`mann_zoo.configs`).
"""

from __future__ import annotations

import os
import sys

from .configs import resolve_config_files
from .console import fail
from .settings import SettingError

COMMANDS = {
    "fit": "train a core on a task (Lightning CLI; see 'mann-zoo fit --help')",
    "validate": "evaluate a checkpoint on a task's validation sets",
    "test": "evaluate a checkpoint on a task's test sets",
    "bench": "NTM, DNC and LSTM head to head on a grid of tasks and seeds ('bench cost': cost per step)",
    "report": "regenerate the figures and tables of paper/ from benchmark results",
    "speed": "training-step time of each core at the reference configuration",
    "evaluate": "a checkpoint's bit errors per sequence on its task's sets, or on lengths/sizes given",
    "dashboard": "a saved W&B workspace comparing the models (learning curves, generalisation, cost)",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test")


def main(argv: list[str] | None = None) -> None:
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except SettingError as error:  # an environment setting (settings.py), read where the command first needs it
        fail(str(error))
    except BrokenPipeError:  # 'mann-zoo ... | head': the reader left; stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


def _main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mann-zoo COMMAND [options]\n\nNTM, DNC and LSTM head to head on algorithmic tasks.\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<9} {text}")
        print("\nexamples:\n  mann-zoo fit --config configs/task/copy.yaml --config configs/model/ntm.yaml "
              "--model.core.init_args.memory_slots 64 --trainer.max_steps 2000\n"
              "  mann-zoo bench --preset smoke      # writes results/smoke/ in the current folder\n\n"
              "'mann-zoo COMMAND --help' describes each command.")
        return
    command, rest = argv[0], argv[1:]
    if command == "speed":
        from .experiments.speed import main as speed

        speed(rest)
    elif command == "bench" and rest[:1] == ["cost"]:
        from .experiments.cost import main as cost

        cost(rest[1:])
    elif command == "bench":
        from .experiments.benchmark import main as bench

        bench(rest)
    elif command == "dashboard":
        from .experiments.dashboard import main as dashboard

        dashboard(rest)
    elif command == "evaluate":
        from .experiments.evaluate import main as evaluate

        evaluate(rest)
    elif command == "report":
        from .experiments.report import main as report

        report(rest)
    elif command in LIGHTNING_COMMANDS:
        rest = resolve_config_files(rest)
        from .training.cli import run_lightning

        run_lightning(command, rest)
    else:
        fail(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")


if __name__ == "__main__":
    main()
