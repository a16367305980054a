"""What every ``mann-zoo`` command shares: one parser family (jsonargparse's, as Lightning's CLI uses) and
errors on one line, ``mann-zoo: error: <field>: <reason>``, exit status 2."""

from __future__ import annotations

import argparse
import re
import sys

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


def fail(message: str) -> None:
    """Print ``mann-zoo: error: <message>`` on one line and exit with status 2."""
    print(f"mann-zoo: error: {message}", file=sys.stderr)
    sys.exit(2)


_STRUCTURE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value",
              "Expected a <class 'NoneType'>", "Expected a path")


def one_line(error: BaseException | str) -> str:
    """One line from an error: jsonargparse nests the causes of a failed field in an indented report;
    keep the field's dotted name and the innermost reasons."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    fields = list(dict.fromkeys(re.findall(r'Parser key "([^"]+)"', text)))
    reasons = [re.sub(r"^- ", "", line.strip()).strip() for line in text.splitlines()]  # drop list bullets
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


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help (types and defaults beside each option), examples kept as written."""


class CommandParser(ArgumentParser):
    """The argument parser of ``mann-zoo bench|report|speed|bench cost``: jsonargparse's (the family of
    ``mann-zoo fit``), no environment variables, errors on one line."""

    def __init__(self, prog: str, description: str, epilog: str | None = None):
        super().__init__(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormatter,
                         env_prefix=False, default_env=False)

    def error(self, message: str, ex: Exception | None = None) -> None:  # noqa: ARG002 - jsonargparse's signature
        fail(one_line(message))
