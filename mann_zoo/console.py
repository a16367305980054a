"""What every ``mann-zoo`` command shares: one parser family (jsonargparse's, as Lightning's CLI uses) and
errors on one line, ``mann-zoo: error: <field>: <reason>``, exit status 2."""

from __future__ import annotations

import argparse
import difflib
import itertools
import sys
import typing
from typing import Any

from jsonargparse import ArgumentParser, DefaultHelpFormatter


def map_option(args: list[str], names: tuple[str, ...], change) -> list[str]:
    """``args`` with the value of every option in ``names`` replaced by ``change(value)``, in both forms the
    command line takes: ``--name value`` and ``--name=value``."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in names and i + 1 < len(out):
            out[i + 1] = change(out[i + 1])
        elif "=" in arg and arg.split("=", 1)[0] in names:
            name, value = arg.split("=", 1)
            out[i] = f"{name}={change(value)}"
    return out


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, stripped ('' if none): what a one-line error keeps of a
    multi-line report it passes on."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def fail(message: str) -> None:
    """Print ``mann-zoo: error: <message>`` on one line and exit with status 2."""
    print(f"mann-zoo: error: {message}", file=sys.stderr)
    sys.exit(2)


def accepts(annotation: Any, value: Any) -> bool:
    """Whether jsonargparse would take ``value`` (a command-line string or a YAML value) for an argument of
    type ``annotation``: a parser of that one argument tries it; only success or failure is read."""
    parser = ArgumentParser(exit_on_error=False, env_prefix=False, default_env=False)
    try:
        parser.add_argument("--value", type=annotation)
    except Exception:  # noqa: BLE001 - a type jsonargparse cannot take as an option: not checkable here
        return True
    try:
        if isinstance(value, str):
            parser.parse_args(["--value", value])
        else:
            parser.parse_object({"value": value})
    except Exception:  # noqa: BLE001 - any refusal is the answer
        return False
    return True


def device(name: str) -> str:
    """A torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``): the type of ``--device``."""
    import torch

    try:
        parsed = torch.device(name)
    except RuntimeError:  # a malformed name
        raise ValueError(name) from None
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise ValueError(name)
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(name)
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(name)
    return name


device.expected = "a device this machine has (cpu, or cuda[:N] / mps where present)"


def type_name(annotation: Any) -> str:
    """``int``, ``Path``, ``int | None``: a type as a user reads it."""
    if hasattr(annotation, "expected"):
        return annotation.expected
    name = getattr(annotation, "__name__", None)
    return name if name and not typing.get_args(annotation) else str(annotation).replace("typing.", "")


def unknown_option(name: str, accepted: list[str]) -> str:
    accepted = [option for option in accepted if option != "--print_shtab"]
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.7)
    return f"{name}: unknown option" + (f" (did you mean {close[0]}?)" if close else f"; accepted: {', '.join(accepted)}")


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help (types and defaults beside each option), examples kept as written; a validating
    function's type reads as what it accepts (its ``expected``), not as the function's repr."""

    def _get_type_str(self, action: argparse.Action) -> str | None:
        expected = getattr(action.type, "expected", None)
        return expected if isinstance(expected, str) else super()._get_type_str(action)


class CommandParser(ArgumentParser):
    """The argument parser of ``mann-zoo bench|report|speed|bench cost``: jsonargparse's (the family of
    ``mann-zoo fit``), no environment variables, errors on one line."""

    def __init__(self, prog: str, description: str, epilog: str | None = None):
        self._types: dict[str, Any] = {}  # option string -> the type it was declared with
        self._given: list[str] = []
        super().__init__(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormatter,
                         env_prefix=False, default_env=False)


    def add_argument(self, *names, **kwargs):
        self._types.update(dict.fromkeys(names, kwargs.get("type")))
        return super().add_argument(*names, **kwargs)

    def add_mutually_exclusive_group(self, **kwargs):
        group = super().add_mutually_exclusive_group(**kwargs)
        add = group.add_argument

        def add_recorded(*names, **options):
            self._types.update(dict.fromkeys(names, options.get("type")))
            return add(*names, **options)

        group.add_argument = add_recorded
        return group

    def parse_args(self, args=None, *rest, **kwargs):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> None:  # noqa: ARG002 - jsonargparse's signature
        fail(self.explain(message))

    def explain(self, message: str) -> str:
        """Which of the given options is wrong and why, from the declared options and types (not from the
        wording of ``message``, whose first line is the fallback)."""
        actions = {name: action for action in self._actions for name in action.option_strings}
        given = self._given
        for i, token in enumerate(given):
            if not token.startswith("--"):
                continue
            name, has_value, value = token.partition("=")
            if name not in actions:
                return unknown_option(name, [n for n in actions if n.startswith("--")])
            action = actions[name]
            values = [value] if has_value else list(itertools.takewhile(lambda t: not t.startswith("--"), given[i + 1:]))
            if action.nargs != 0 and not values:
                return f"{name}: needs a value"
            if action.choices is not None and any(v not in action.choices for v in values):
                return f"{name}: expected one of {', '.join(map(str, action.choices))}; got {' '.join(values)}"
            declared = self._types.get(name)
            if declared is not None and not all(accepts(declared, v) for v in values):
                return f"{name}: expected {type_name(declared)}{' values' if action.nargs in ('+', '*') else ''}; got {' '.join(values)}"
        return first_line(message) or message
