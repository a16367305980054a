"""One colour and one marker per model (and the line styles in turn) in every figure of ``mann-zoo report`` (learning curves,
generalisation, cost, the Chomsky and MQAR figures): a module of its own so that report and suites both
import it without importing each other."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import cycle
from typing import NamedTuple

COLOURS = {"ntm": "tab:blue", "dnc": "tab:orange", "dnc_md": "tab:red", "dnc_mds": "tab:pink",
           "dnc_sparse": "tab:purple", "lstm": "tab:green", "transformer": "tab:brown", "stack_rnn": "tab:cyan",
           "tape_rnn": "tab:olive",
           # the paper track's two NTMs drawn together, and the matched track's small LSTM beside the large
           "ntm_rmsprop": "navy", "ntm_adam": "deepskyblue", "lstm_small": "yellowgreen"}
SPARE_COLOURS = ("tab:gray", "gold", "teal", "maroon", "darkgoldenrod", "indigo", "olivedrab", "crimson",
                 "steelblue", "chocolate", "darkslategray", "orchid")  # other models, in turn (then again)
LINE_STYLES = ("-", "--", "-.", ":")  # in turn: a line under another shows through its gaps
MARKERS = ("s", "^", "D", "v", "P", "X", "h", "<", ">", "*")  # one per model, in turn: lines on top of each other
# stay visible ("o" is left for the marks the figures make themselves: a seed's convergence)


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """A colour per model: ``COLOURS`` for the known ones, the next of ``SPARE_COLOURS`` for the others
    (the batch-size grid's ``ntm_b32``, ...), so that every line, band and marker of a model matches. Pass a
    grid's models in one fixed order (its results table's) to every figure of the grid, so that a model
    keeps its colour from one figure to the next."""
    spare = cycle(SPARE_COLOURS)
    return {model: COLOURS.get(model) or next(spare) for model in models}


def model_markers(models: Iterable[str]) -> dict[str, str]:
    """A marker per model, ``MARKERS`` in turn, in the order given (as :func:`model_colours`)."""
    return dict(zip(models, cycle(MARKERS)))


class ModelStyle(NamedTuple):
    """How one model is drawn: its colour and its line's marker."""

    colour: str
    marker: str


def model_styles(models: Iterable[str]) -> dict[str, ModelStyle]:
    """A :class:`ModelStyle` per model: its colour (:func:`model_colours`) and ``MARKERS`` in turn, both in the
    order given. Pass a grid's models in one fixed order (its results table's) and hand the result to every
    figure of the grid: a model then keeps its colour and its marker whichever models a figure has."""
    models = list(dict.fromkeys(models))
    markers = model_markers(models)
    return {model: ModelStyle(colour, markers[model]) for model, colour in model_colours(models).items()}
