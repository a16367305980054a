"""Checkpoints written atomically, and ``load_model`` for trained cores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..models import CoreSpec, core_spec
from .atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each checkpoint atomically."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_write(path, lambda f: torch.save(checkpoint, f), binary=True)


class CheckpointOnStop(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that also writes the last checkpoint when SIGTERM stops training
    (``mann-zoo bench`` passes its stop on as SIGTERM): the same command then resumes at the step where the
    run stopped, not at its last validation. Lightning raises the stop between two training steps, so the
    checkpoint is a whole step's state.

    Not written (the last checkpoint stays, as without this class): when the stop lands in a validation
    (Lightning then stops the validation; the resumed run loses the steps since the checkpoint before
    it), right after a validation that wrote one at this step (Lightning counts a checkpoint written
    during a validation differently), on Ctrl-C (which can land inside a step), with several processes
    (the others stop a step later) and with gradient accumulation (a stop mid-cycle would drop the
    gradients accumulated so far)."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)  # Lightning's save_on_exception, if set
        if not (isinstance(exception, SIGTERMException) and trainer.training):
            return
        if trainer.world_size != 1 or trainer.accumulate_grad_batches != 1:
            return
        if self._last_global_step_saved == trainer.global_step:  # a validation wrote it at this step
            return
        # ModelCheckpoint's own last-checkpoint writer: its file name, last_model_path and step bookkeeping
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


# Before cores were given by class path, the module took a short name and the cores' arguments itself.
LEGACY_CORE_ARGS = ("controller", "controller_size", "controller_layers", "memory_slots", "word_size", "read_heads",
                    "write_heads", "shift_range", "memory_init", "clip", "masking", "deallocation", "link_sharpness")


def checkpoint_core(hparams: dict) -> CoreSpec:
    """The core a checkpoint's hyperparameters describe: ``core`` ({class_path, init_args}), or, in a
    checkpoint from before cores had class paths, the short ``name`` plus the arguments given beside it."""
    if "core" in hparams:
        return core_spec(hparams["core"])
    named = core_spec(hparams.get("name", "ntm"))
    given = {k: hparams[k] for k in LEGACY_CORE_ARGS if hparams.get(k) is not None}
    return CoreSpec(named.class_path, {**named.init_args, **given, **(hparams.get("extra") or {})})


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, no code is run; a file
    that is not such a checkpoint (garbage, empty, a pickle that carries code) is a one-line ValueError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the unpickler refuses
        raise ValueError(f"checkpoint_path {str(path)!r}: not a checkpoint of tensors that torch can read "
                         f"safely ({type(error).__name__})") from None


def load_model(checkpoint_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained core of a ``mann-zoo fit`` checkpoint, in eval mode, every weight present (strict).

    The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
    no arbitrary object is unpickled. The core is rebuilt from its class path and arguments in the saved
    hyperparameters, uncompiled (the weights are the same; compile again if wanted).
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint_path {str(path)!r} is not a file")
    checkpoint = read_checkpoint(path, map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ValueError(f"checkpoint_path {str(path)!r}: not a mann-zoo checkpoint (needs 'state_dict' and "
                         "'hyper_parameters', as 'mann-zoo fit' writes)")
    hparams = checkpoint["hyper_parameters"]
    spec = checkpoint_core(hparams)
    init_args = {**spec.init_args, **({"compile": False} if "compile" in spec.init_args else {})}
    core = CoreSpec(spec.class_path, init_args).build(hparams["input_size"], hparams["output_size"])
    prefix = "core."
    weights = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    expected = set(core.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        listed = "; ".join(f"{what}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
        raise ValueError(f"checkpoint_path {str(path)!r}: its weights do not fit {type(core).__name__} ({listed})")
    try:
        core.load_state_dict(weights)
    except RuntimeError as error:  # a shape that does not fit
        raise ValueError(f"checkpoint_path {str(path)!r}: its weights do not fit {type(core).__name__} "
                         f"({str(error).strip().splitlines()[-1].strip()[:160]})") from None
    return core.to(map_location).eval()
