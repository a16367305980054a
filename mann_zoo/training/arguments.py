"""Which argument of a ``mann-zoo fit|validate|test`` command line is wrong, and why, in one line.

jsonargparse reports a failed parse as nested prose; the one-line error is built here from data instead:
the user's own ``--key value`` tokens and config files, the signatures of the classes they configure
(``SequenceModel``, ``lightning.Trainer``, and whatever ``data``, ``model.core``, ``optimizer`` and
``lr_scheduler`` name by class path), and, for a check inside one of this project's classes, that
exception itself (its message names the field and the accepted range) and the class that raised it.

    explain(args, error)  ->  "--model.core.init_args.memory_slotz: NTM has no argument 'memory_slotz'
                               (did you mean 'memory_slots'?)"
"""

from __future__ import annotations

import difflib
import inspect
import json
import typing
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..console import accepts, first_line, type_name
from ..models.registry import import_object, short_names

# Sections whose class is given by a class path, longest first (``model.core`` before ``model``).
SUBCLASS_SECTIONS = ("model.core", "data", "optimizer", "lr_scheduler")
# Top-level options that are not a class's arguments.
PLAIN_OPTIONS = ("config", "seed_everything", "ckpt_path", "run_name", "print_config", "help")
_OUR_PACKAGES = (str(Path(__file__).parents[1]), str(Path(__file__).parents[2] / "tasks"))  # mann_zoo/, tasks/


class Setting(NamedTuple):
    """One ``key: value`` the user gave, and where: a command-line token (``where=None``) or a config file."""

    key: str
    value: Any
    where: Path | None = None

    @property
    def label(self) -> str:
        return f"--{self.key}" if self.where is None else f"--config {self.where}: {self.key}"

    @property
    def section(self) -> str | None:
        """The class-path section the key configures (``model.core``, ``data``, ...), or None."""
        return next((s for s in SUBCLASS_SECTIONS if self.key == s or self.key.startswith(s + ".")), None)

    @property
    def names_class(self) -> bool:
        """Whether the setting chooses its section's class (``--data X``, ``data.class_path: X``)."""
        return self.section is not None and self.key in (self.section, f"{self.section}.class_path")


def settings(args: list[str]) -> list[Setting]:
    """Every ``--key value`` / ``--key=value`` of ``args``, the ``--config`` files' keys flattened in their
    place (config files first, in order, then the tokens: a token overrides a file)."""
    files: list[Setting] = []
    tokens: list[Setting] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            i += 1
            continue
        key, has_value, value = arg[2:].partition("=")
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
            i += 1
        i += 1
        if key in ("config", "c") and value is not None:
            files.extend(Setting(k, v, Path(value)) for k, v in flatten(_load_yaml(value)).items())
        else:
            tokens.append(Setting(key, value))
    return files + tokens


def class_paths(given: list[Setting]) -> dict[str, str]:
    """The class path each subclass section ends up with (the last setting wins), e.g.
    ``{"data": "tasks.CopyTask", "model.core": "mann_zoo.models.NTM"}``."""
    found: dict[str, str] = {}
    for setting in given:
        if not setting.names_class or setting.value is None:
            continue
        value = setting.value
        if isinstance(value, str) and value.lstrip().startswith("{"):
            value = json.loads(value)
        found[setting.section] = value["class_path"] if isinstance(value, dict) else str(value)
    names = short_names()
    if found.get("model.core") in names:  # --model.core ntm: the class path the name stands for
        found["model.core"] = names[found["model.core"]].class_path
    return found


def problem(setting: Setting, paths: dict[str, str]) -> str | None:
    """What is wrong with one setting, from the signature of the class it configures; ``None`` when
    nothing is, or when it cannot be told from the signature (a nested callback argument)."""
    from lightning import Trainer

    from .lightning_module import SequenceModel

    key = setting.key.removesuffix("+")
    parts = key.split(".")
    if parts[0] in PLAIN_OPTIONS:
        return None
    section = setting.section
    if section is None:
        fixed = {"model": SequenceModel, "trainer": Trainer}
        if parts[0] not in fixed or len(parts) < 2:
            accepted = ", ".join([*(f"--{name}.*" for name in ("model", "data", "trainer", "optimizer", "lr_scheduler")),
                                  *(f"--{name}" for name in PLAIN_OPTIONS[1:4])])
            return f"{setting.label}: unknown option; accepted: {accepted}"
        owner, names = fixed[parts[0]], parts[1:]
    else:
        names = key[len(section) + 1:].split(".") if key != section else []
        if names[:1] == ["class_path"]:
            names = []
        elif names[:1] in (["init_args"], ["dict_kwargs"]):
            names = names[1:]
        if section not in paths:
            return None  # the section's class is not set yet; the parser says so itself
        try:
            owner = import_object(paths[section])
        except ValueError:
            return f"{setting.label}: class path {paths[section]!r} cannot be imported"
        if not names:
            return None
    if names[0] == "callbacks" and owner.__name__ == "Trainer":
        return None  # --trainer.callbacks.<arg> refers to the last callback added
    return _argument_problem(setting, owner, names[0], len(names) > 1)


def init_parameters(owner) -> dict[str, tuple[inspect.Parameter, object]] | None:
    """The named arguments of ``owner`` (a class or a callable), each with the function that declares it:
    a class's ``__init__`` and, where it passes ``**kwargs`` on to its base (as the Chomsky-hierarchy tasks
    do), the bases' up the MRO, as jsonargparse resolves them. None where ``**kwargs`` stays open (then any
    name may be accepted)."""
    functions = [cls.__init__ for cls in owner.__mro__ if "__init__" in vars(cls)] if isinstance(owner, type) else [owner]
    found: dict[str, tuple[inspect.Parameter, object]] = {}
    for function in functions:
        parameters = inspect.signature(function).parameters
        for name, parameter in parameters.items():
            if parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                found.setdefault(name, (parameter, function))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return found
    return None


def _argument_problem(setting: Setting, owner: type, name: str, nested: bool) -> str | None:
    parameters = init_parameters(owner)
    if parameters is None:
        return None
    if name not in parameters:
        accepted = [p for p in parameters if p not in ("self", "input_size", "output_size", "scoring")]  # linked from data
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; its arguments: {', '.join(accepted)}"
        return f"{setting.label}: {owner.__name__} has no argument {name!r}{hint}"
    if nested or setting.value is None:
        return None
    parameter, function = parameters[name]
    try:
        annotation = typing.get_type_hints(function).get(name)
    except Exception:  # noqa: BLE001 - a hint that does not resolve: nothing to check against
        return None
    if annotation is None or accepts(annotation, setting.value):
        return None
    default = parameter.default
    shown = "" if default is inspect.Parameter.empty else f", default {default!r}"
    return f"{setting.label}: expected {type_name(annotation)}{shown}; got {setting.value!r}"


def raised_by_us(error: BaseException) -> tuple[BaseException, str | None] | None:
    """The innermost cause of ``error`` when one of this project's own checks raised it, with the class
    whose ``__init__`` raised it (``(ValueError('bits must be >= 1, got -1'), 'CopyTask')``); else None."""
    root = error
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    frames = list(_frames(root.__traceback__))
    if not frames or not frames[-1].f_code.co_filename.startswith(_OUR_PACKAGES):
        return None
    from lightning.pytorch.cli import LightningCLI

    owner = next((type(f.f_locals["self"]).__name__ for f in reversed(frames)  # the class being built, not the CLI
                  if f.f_code.co_name == "__init__" and not isinstance(f.f_locals.get("self"), (LightningCLI, type(None)))),
                 None)
    return root, owner


def explain(args: list[str], error: BaseException) -> str:
    """One line saying which argument of ``args`` is wrong and why (see the module docstring)."""
    ours = raised_by_us(error)
    if ours is not None:
        root, owner = ours
        return f"{owner}: {root}" if owner else str(root)
    given = settings(args)
    chosen: set[str] = set()  # the sections whose class is set by now
    for setting in given:
        if setting.names_class:
            chosen.add(setting.section)
        elif setting.section is not None and setting.section not in chosen:
            return f"{setting.label}: given before --{setting.section} names its class; name the class first"
    given = _effective(given)
    paths = class_paths(given)
    for section in SUBCLASS_SECTIONS:
        if section in paths:
            try:
                import_object(paths[section])
            except ValueError:
                return f"--{section}: class path {paths[section]!r} cannot be imported" + _accepted(section)
    for setting in given:
        found = problem(setting, paths)
        if found:
            return found
    reason = first_line(str(error))
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def _effective(given: list[Setting]) -> list[Setting]:
    """``given`` without the settings of a section made before that section's class was set again (the
    parser keeps an earlier ``init_args`` only where the new class takes it; the new class is what counts)."""
    kept: list[Setting] = []
    for setting in given:
        if setting.names_class:
            kept = [k for k in kept if not k.key.startswith(setting.section + ".")]
        kept.append(setting)
    return kept


def _accepted(section: str) -> str:
    if section == "data":
        from tasks import TASKS

        return "; accepted: " + ", ".join(f"tasks.{cls.__name__}" for cls in TASKS.values())
    if section == "model.core":
        return "; short names: " + ", ".join(short_names())
    return ""


def _frames(traceback):
    while traceback is not None:
        yield traceback.tb_frame
        traceback = traceback.tb_next


def _load_yaml(path: str) -> dict:
    with open(path) as f:
        loaded = yaml.safe_load(f)
    return loaded if isinstance(loaded, dict) else {}


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"core": {"class_path": ..., "init_args": {...}}}}`` -> ``{"model.core.class_path": ...,
    "model.core.init_args.x": ...}``: nested mappings become dotted keys; other values (lists too) stay whole."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
