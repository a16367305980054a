"""mann-zoo: memory-augmented neural networks (NTM, DNC, LSTM) head to head on algorithmic tasks."""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(checkpoint_path, map_location="cpu"):
    """The trained core from a training checkpoint, in eval mode, loaded with ``weights_only=True``."""
    from .training.checkpointing import load_model as _load_model

    return _load_model(checkpoint_path, map_location)


__all__ = ["load_model", "__version__"]
