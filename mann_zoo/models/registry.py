"""Cores by class path, and the short names that stand for one.

A core is any ``nn.Module`` class whose first two arguments are ``input_size`` and ``output_size``; it is
named by its import path (``mann_zoo.models.NTM``, ``my_pkg.MyCore``) and needs no registration. A short
name (``ntm``, ``dnc``, ``dnc_md``, ``lstm``, or one that another package declares in the entry-point group
``mann_zoo.models``) stands for a class path plus default arguments: a :class:`CoreSpec`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Callable, NamedTuple

from torch import nn

ENTRY_POINT_GROUP = "mann_zoo.models"


class CoreSpec(NamedTuple):
    """A core as data: the class's import path and its arguments other than ``input_size``/``output_size``.

    ``{"class_path": ..., "init_args": {...}}`` (:meth:`as_dict`) is the form the command line, the YAML
    configs and the checkpoints use.
    """

    class_path: str
    init_args: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        return {"class_path": self.class_path, "init_args": dict(self.init_args)}

    def load(self) -> Callable[..., nn.Module]:
        """The class (or factory) this spec names."""
        try:
            return import_object(self.class_path)
        except ValueError as error:
            raise ValueError(f"core {error}") from None

    def build(self, input_size: int, output_size: int, **overrides: Any) -> nn.Module:
        return self.load()(input_size, output_size, **{**self.init_args, **overrides})


_BUILTIN: dict[str, CoreSpec] = {}


def import_path(obj: Callable) -> str:
    """``module.QualifiedName`` of a class or function defined at a module's top level (a lambda or a
    nested function has no path a checkpoint could be rebuilt from: a one-line error)."""
    if "<" in obj.__qualname__:
        raise ValueError(f"core {obj.__qualname__!r} cannot be named by an import path; define it at a module's top level")
    return f"{obj.__module__}.{obj.__qualname__}"


def import_object(class_path: str) -> Callable[..., nn.Module]:
    """The object at ``package.module.Name`` (or ``package.module:Name``); a one-line error otherwise."""
    module_name, _, name = class_path.replace(":", ".").rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"class path {class_path!r} cannot be imported: {error}") from None


def register(name: str, core: Callable[..., nn.Module] | None = None, **init_args: Any):
    """Give ``core`` (a class, or a callable ``(input_size, output_size, **hparams) -> nn.Module``) the short
    name ``name``, with default ``init_args``; usable as a decorator. Not needed to train a class: its class
    path is enough. A package of its own declares short names in the entry-point group ``mann_zoo.models``."""
    def _add(c):
        _BUILTIN[name] = CoreSpec(import_path(c), dict(init_args))
        return c
    return _add(core) if core is not None else _add


def short_names() -> dict[str, CoreSpec]:
    """Every short name: built-ins first, then entry points (which may not shadow them)."""
    names = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, CoreSpec(ep.value.replace(":", ".")))
    return names


def available_models() -> dict[str, CoreSpec]:
    """The short names and what each stands for (kept under its old name)."""
    return short_names()


def core_spec(core: str | CoreSpec | dict | Callable) -> CoreSpec:
    """The :class:`CoreSpec` of a short name, a class path, a ``{class_path, init_args}`` mapping, a class,
    or a ``functools.partial`` of a class (what jsonargparse builds for ``--model.core``)."""
    if isinstance(core, CoreSpec):
        return core
    if isinstance(core, dict):
        if "class_path" not in core:
            raise ValueError(f"core must name a class_path, got {core!r}")
        return CoreSpec(core["class_path"], dict(core.get("init_args") or {}))
    if isinstance(core, str):
        names = short_names()
        if core in names:
            return names[core]
        if "." not in core and ":" not in core:
            raise ValueError(f"core must be a class path or one of {', '.join(sorted(names))}, got {core!r}")
        return CoreSpec(core.replace(":", "."))
    if isinstance(core, nn.Module):
        raise ValueError(f"core must be a class (or a short name or class path), not an instance of {type(core).__name__}")
    func = getattr(core, "func", None)  # functools.partial, possibly wrapping jsonargparse's instantiator
    if func is not None:
        classes = [a for a in core.args if isinstance(a, type)]
        if not classes and core.args:
            raise ValueError("core: a partial may fix keyword arguments only (input_size and output_size come first)")
        return CoreSpec(import_path(classes[-1] if classes else func), dict(core.keywords))
    if callable(core):
        return CoreSpec(import_path(core))
    raise ValueError(f"core must be a short name, a class path or a class, got {type(core).__name__}")


def build(name: str | CoreSpec | dict | Callable, input_size: int, output_size: int, **hparams) -> nn.Module:
    """Build a core for the given widths: ``name`` is a short name (``ntm``) or anything :func:`core_spec`
    takes; ``hparams`` override its arguments. Unknown names and hyperparameters are one-line errors."""
    spec = core_spec(name)
    try:
        return spec.build(input_size, output_size, **hparams)
    except TypeError as error:  # e.g. an unexpected keyword argument
        raise ValueError(f"core {spec.class_path}: {error}") from None


def num_parameters(model: nn.Module) -> int:
    """Number of trainable and non-trainable parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
