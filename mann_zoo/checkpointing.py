"""Checkpoints written atomically, and ``load_model`` for trained cores."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each checkpoint atomically."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_write(path, lambda f: torch.save(checkpoint, f), binary=True)


def load_model(checkpoint_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained core of a ``mann-zoo fit`` checkpoint, in eval mode.

    The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
    no arbitrary object is unpickled. The core is rebuilt by name from the saved hyperparameters.
    """
    from .lightning_module import SequenceModel

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path {str(path)!r} is not a file")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    accepted = inspect.signature(SequenceModel).parameters
    # Lightning's CLI adds bookkeeping keys (e.g. "_instantiator"): keep the module's own arguments.
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted}
    hparams["compile"] = False  # the weights are the same; compile again if wanted
    module = SequenceModel(**hparams)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return module.core.eval()
