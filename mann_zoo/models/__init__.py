"""Recurrent cores (NTM, DNC, LSTM) and the registry that builds them by name."""

from .dnc import DNC, DNCState
from .lstm import LSTMBaseline
from .ntm import NTM, NTMState
from .registry import ENTRY_POINT_GROUP, available_models, build, num_parameters, register

register("ntm", NTM)
register("dnc", DNC)
register("lstm", LSTMBaseline)

__all__ = ["DNC", "DNCState", "ENTRY_POINT_GROUP", "LSTMBaseline", "NTM", "NTMState",
           "available_models", "build", "num_parameters", "register"]
