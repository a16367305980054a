"""Recurrent cores (NTM, DNC, LSTM), and the short names that stand for a class path (``ntm`` ->
``mann_zoo.models.NTM``)."""

from .dnc import DNC, DNCState
from .lstm import LSTMBaseline
from .ntm import NTM, NTMState
from .registry import (ENTRY_POINT_GROUP, CoreSpec, available_models, build, core_spec, num_parameters,
                       register, short_names)

register("ntm", NTM)
register("dnc", DNC)
register("dnc_md", DNC, masking=True, deallocation=True, link_sharpness=True)  # Csordas & Schmidhuber 2019
register("dnc_sparse", DNC, sparse_k=8)  # sparse access, after Rae et al. 2016
register("lstm", LSTMBaseline)

__all__ = ["DNC", "DNCState", "ENTRY_POINT_GROUP", "CoreSpec", "LSTMBaseline", "NTM", "NTMState",
           "available_models", "build", "core_spec", "num_parameters", "register", "short_names"]
