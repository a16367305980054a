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
