"""One colour per model in every figure of ``mann-zoo report`` (learning curves, generalisation, cost, the
Chomsky and MQAR figures): a module of its own so that report and suites both import it without importing
each other."""

from __future__ import annotations

from collections.abc import Iterable

COLOURS = {"ntm": "tab:blue", "dnc": "tab:orange", "dnc_md": "tab:red", "dnc_mds": "tab:pink",
           "dnc_sparse": "tab:purple", "lstm": "tab:green", "transformer": "tab:brown", "stack_rnn": "tab:cyan",
           "tape_rnn": "tab:olive"}  # a colour each: the paper track draws DNC, DNC-MD and DNC-MDS together
SPARE_COLOURS = ("tab:gray", "gold", "navy", "teal", "lime", "black")  # other models, in turn


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """A colour per model: ``COLOURS`` for the known ones, the next of ``SPARE_COLOURS`` for the others
    (the batch-size grid's ``ntm_b32``, ...), so that every line, band and marker of a model matches."""
    spare = iter(SPARE_COLOURS)
    return {model: COLOURS.get(model) or next(spare, "black") for model in models}
