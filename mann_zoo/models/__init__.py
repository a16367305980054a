"""Recurrent cores (NTM, DNC, LSTM, Stack-RNN, Tape-RNN), a Transformer encoder, and the short names that stand
for a class path (``ntm`` -> ``mann_zoo.models.NTM``)."""

from .dnc import DNC, DNCState
from .lstm import LSTMBaseline
from .ntm import NTM, NTMState
from .stack_rnn import StackRNN, StackRNNState
from .tape_rnn import TapeRNN, TapeRNNState
from .registry import (ENTRY_POINT_GROUP, CoreSpec, available_models, build, core_spec, num_parameters,
                       register, short_names)
from .state_size import state_size
from .transformer import TransformerEncoder

register("ntm", NTM)
register("dnc", DNC)
register("dnc_md", DNC, masking=True, deallocation=True, link_sharpness=True)  # Csordas & Schmidhuber 2019
register("dnc_sparse", DNC, sparse_k=8)  # sparse access, after Rae et al. 2016
register("lstm", LSTMBaseline)
register("stack_rnn", StackRNN)  # Joulin & Mikolov 2015, as in Deletang et al. 2023
register("tape_rnn", TapeRNN)  # Deletang et al. 2023
register("transformer", TransformerEncoder)  # Deletang et al. 2023's encoder

__all__ = ["DNC", "DNCState", "ENTRY_POINT_GROUP", "CoreSpec", "LSTMBaseline", "NTM", "NTMState", "StackRNN",
           "StackRNNState", "TapeRNN", "TapeRNNState", "TransformerEncoder", "available_models", "build", "core_spec",
           "num_parameters", "register", "short_names", "state_size"]
