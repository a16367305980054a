"""The peer: the PyPI package ``dnc`` 1.1.0 (``pip install mann-zoo[reference]``), timed in the same process
and run as our cores, never quoted."""

from __future__ import annotations

import torch
from torch import nn

PEER_NAME = "pypi dnc 1.1.0"


class PeerDNC(nn.Module):
    """The package's DNC (LSTM controller, one layer, one write head) mapped from ``[B, T, input_size]`` to
    ``[B, T, output_size]`` by a linear read-out (its own output is ``input_size`` wide); memory reset
    for every sequence, as our cores do."""

    def __init__(self, input_size: int, output_size: int, controller_size: int = 100, memory_slots: int = 128,
                 word_size: int = 20, read_heads: int = 1, device: str = "cpu"):
        from dnc import DNC  # the optional extra

        super().__init__()
        gpu_id = torch.device(device).index or 0 if str(device).startswith("cuda") else -1
        self.core = DNC(input_size=input_size, hidden_size=controller_size, rnn_type="lstm", num_layers=1,
                        nr_cells=memory_slots, cell_size=word_size, read_heads=read_heads, batch_first=True,
                        gpu_id=gpu_id)
        self.readout = nn.Linear(input_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.core(x, (None, None, None), reset_experience=True)
        return self.readout(out)


def peer_available() -> bool:
    try:
        import dnc  # noqa: F401
    except ImportError:
        return False
    return True
