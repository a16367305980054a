"""The configurations that ship with mann-zoo: ``task/`` (one per task), ``model/`` (one per core),
``paper/`` (the papers' optimiser settings) and ``bench/`` (benchmark grids).

In the source tree they are also reachable as ``configs/`` at the top (a link). A config is named on the
command line by its path; a path that does not exist from the current folder is looked up here, with or
without the leading ``configs/``: ``--config configs/task/copy.yaml`` and ``--config task/copy.yaml``
work from any folder once mann-zoo is installed.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent


def find_config(path: str | Path) -> Path:
    """``path`` if it is a file; else the shipped config it names (``configs/task/copy.yaml``,
    ``task/copy.yaml``, ``task/copy``); else ``path`` unchanged (the caller reports it missing)."""
    given = Path(path)
    if given.is_file():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    if parts:
        shipped = CONFIGS.joinpath(*parts)
        for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
            if candidate.is_file():
                return candidate
    return given


def shipped(kind: str) -> list[str]:
    """The names of the shipped configs of one kind (``task``, ``model``, ``paper``, ``bench``)."""
    return sorted(p.stem for p in (CONFIGS / kind).glob("*.yaml"))


def resolve_config_files(args: list[str]) -> list[str]:
    """Each ``--config`` path made absolute (a shipped config where the path does not exist here), and
    checked: a missing file or a file that is not valid YAML is a one-line error naming it."""
    import yaml

    from ..console import fail, map_option

    def resolve(path: str) -> str:
        found = find_config(path)
        try:
            with open(found) as f:
                yaml.safe_load(f)
        except OSError as error:
            fail(f"--config {path}: {error.strerror} (nor a shipped config: mann_zoo/configs/)")
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            fail(f"--config {path}: not valid YAML{where}: {problem}")
        return str(found.resolve())

    return map_option(args, ("--config", "-c"), resolve)
