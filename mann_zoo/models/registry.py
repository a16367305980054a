"""Build any model by name: the built-in cores plus third-party models from the entry-point group
``mann_zoo.models`` (an entry point names a callable ``(input_size, output_size, **hparams) -> nn.Module``)."""

from __future__ import annotations

import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Callable

from torch import nn

ENTRY_POINT_GROUP = "mann_zoo.models"

_BUILTIN: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register ``factory`` under ``name`` (usable as a decorator). A new architecture in its own package
    should rather declare an entry point in the group ``mann_zoo.models``."""
    def _add(f):
        _BUILTIN[name] = f
        return f
    return _add(factory) if factory is not None else _add


def available_models() -> dict[str, Callable[..., nn.Module]]:
    """Every model that ``build`` knows: built-ins first, then entry points (which may not shadow them)."""
    models = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        models.setdefault(ep.name, ep)
    return models


def build(name: str, input_size: int, output_size: int, **hparams) -> nn.Module:
    """Build model ``name`` for the given widths; unknown names and hyperparameters are one-line errors."""
    models = available_models()
    if name not in models:
        raise ValueError(f"model must be one of {', '.join(sorted(models))}, got {name!r}")
    factory = models[name]
    if isinstance(factory, EntryPoint):
        factory = factory.load()
    accepted = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(hparams) - set(accepted))
        if unknown:
            raise ValueError(f"model {name!r} has no hyperparameter {unknown[0]!r}; accepted: "
                             f"{', '.join(k for k in accepted if k not in ('input_size', 'output_size'))}")
    return factory(input_size=input_size, output_size=output_size, **hparams)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable and non-trainable parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
