"""Settings read from the environment, checked in one place (no torch import: the command line catches
:class:`SettingError` and prints it on one line)."""

from __future__ import annotations

import os

POOL_BYTES = "MANN_ZOO_POOL_BYTES"  # bytes of buffers one process keeps between sequences (memory/pool.py)


class SettingError(ValueError):
    """An environment setting outside its accepted range; the message names it and the range."""


def pool_bytes() -> int | None:
    """``MANN_ZOO_POOL_BYTES`` as a number of bytes, None where it is not set."""
    setting = os.environ.get(POOL_BYTES)
    if setting is None:
        return None
    if not setting.strip().isdigit():
        raise SettingError(f"{POOL_BYTES} must be a whole number of bytes >= 0, got {setting!r}")
    return int(setting)
