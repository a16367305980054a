"""Tick labels as plain numbers (log axes; sequence counts), for the report's and the diagnosis' figures."""

from __future__ import annotations

import numpy as np
from matplotlib import ticker


class PlainLogFormatter(ticker.LogFormatter):
    """Log and symlog tick labels as plain numbers (20, 300, 16384, 0.1), not 2x10^1: legible where an
    axis spans a decade or two and minor ticks are labelled (``LogFormatter`` picks which ticks to label
    and formats each with ``_num_to_string``, which writes 1e+05 outside 1-10,000)."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def plain_log_ticks(axis) -> None:
    """Label ``axis`` (a log or symlog axis) with :class:`PlainLogFormatter`, major and minor ticks (a
    symlog axis gets the minor ticks it lacks: 20, 30, ... between 10 and 100)."""
    if axis.get_scale() == "symlog":
        axis.set_minor_locator(ticker.SymmetricalLogLocator(axis.get_transform(), subs=np.arange(2, 10)))
    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def plain_thousands(axis) -> None:
    """Tick labels of ``axis`` (a linear axis of counts: sequences seen) as 1,000,000, not 1 under an offset
    of 1e6."""
    axis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
