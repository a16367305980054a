"""The one place where a model core meets a task: training any registered model on any task.

``SequenceModel`` builds the core by name (``mann_zoo.models.build``), trains it with masked binary
cross-entropy on logits, and measures what the literature reports, per validation set:

- ``cost_bits``: cost in bits per sequence, the summed binary cross-entropy in bits over scored outputs;
- ``bit_errors``: bit errors per sequence, outputs thresholded at 0.5;
- ``seq_accuracy``: the share of sequences with no bit error.

Logged names are the same for every model, so runs compare without setup: ``train/cost_bits``,
``train/bit_errors``, ``train/sequences`` (sequences seen, all processes), ``perf/step_time_s``,
``perf/sequences_per_s``, ``val/<set>/cost_bits``, ``val/<set>/bit_errors``, ``val/<set>/seq_accuracy``,
where ``<set>`` is a task's validation-set name such as ``len_20``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F
from torchmetrics import MeanMetric

from .models import build

LN2 = math.log(2.0)
METRICS = ("cost_bits", "bit_errors", "seq_accuracy")


def sequence_scores(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sequence cost in bits, bit errors and correctness (1 if no bit error), each ``[B]``.

    Args:
        logits, targets: ``[B, T, O]``.  mask: ``[B, T]``, 1 at scored steps.
    """
    scored = mask.unsqueeze(-1).to(logits.dtype)
    nats = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    cost_bits = (nats * scored).sum(dim=(1, 2)) / LN2
    errors = (((logits > 0).to(targets.dtype) != targets).to(logits.dtype) * scored).sum(dim=(1, 2))
    return {"cost_bits": cost_bits, "bit_errors": errors, "seq_accuracy": (errors == 0).to(logits.dtype)}


def metric_set() -> torch.nn.ModuleDict:
    """One running mean per reported metric (torchmetrics: synchronised across processes)."""
    return torch.nn.ModuleDict({m: MeanMetric() for m in METRICS})


class SequenceModel(L.LightningModule):
    """Trains the core ``name`` on a sequence task.

    Args:
        name: a registered model (``ntm``, ``dnc``, ``lstm`` or a plugin's name).
        input_size, output_size: set from the task by the command line (``data.input_size``).
        controller ... link_sharpness: the core's hyperparameters; None keeps the core's own default.
        extra: further hyperparameters for a plugin model, passed to its constructor.
        lr: learning rate of the default optimiser (Adam, as Collier & Beel 2018); another optimiser is
            chosen on the command line with ``--optimizer`` (e.g. ``torch.optim.RMSprop``).
    """

    def __init__(
        self,
        name: str = "ntm",
        input_size: int = 9,
        output_size: int = 8,
        controller: str | None = None,
        controller_size: int | None = None,
        controller_layers: int | None = None,
        memory_slots: int | None = None,
        word_size: int | None = None,
        read_heads: int | None = None,
        write_heads: int | None = None,
        shift_range: int | None = None,
        memory_init: str | None = None,
        clip: float | None = None,
        masking: bool | None = None,
        deallocation: bool | None = None,
        link_sharpness: bool | None = None,
        compile: bool = False,
        extra: dict[str, Any] | None = None,
        lr: float = 1e-3,
    ):
        super().__init__()
        self.save_hyperparameters()
        given = dict(
            controller=controller, controller_size=controller_size, controller_layers=controller_layers,
            memory_slots=memory_slots, word_size=word_size, read_heads=read_heads, write_heads=write_heads,
            shift_range=shift_range, memory_init=memory_init, clip=clip, masking=masking,
            deallocation=deallocation, link_sharpness=link_sharpness,
        )
        self.core_hparams = {k: v for k, v in given.items() if v is not None}
        if compile:
            self.core_hparams["compile"] = True
        self.core_hparams.update(extra or {})
        self.core = build(name, input_size, output_size, **self.core_hparams)
        self.lr = lr
        self.train_metrics = metric_set()
        self.val_metrics = torch.nn.ModuleDict()  # per validation set, created in setup()
        self._step_start = 0.0

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.core.parameters())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.core(inputs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    # --- training -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        names = getattr(self.trainer.datamodule, "val_names", None) if self._trainer is not None else None
        for name in names or []:
            if name not in self.val_metrics:
                self.val_metrics[name] = metric_set()

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams({"num_parameters": self.num_parameters, "core_hparams": self.core_hparams})

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, targets, mask = batch
        logits = self(inputs)
        scores = sequence_scores(logits, targets, mask)
        # Loss: mean over sequences of the summed masked cross-entropy (in nats).
        loss = scores["cost_bits"].mean() * LN2
        batch_size = inputs.shape[0]
        for name, metric in self.train_metrics.items():
            metric(scores[name].detach())  # forward: this batch's mean, logged per step
            self.log(f"train/{name}", metric, on_step=True, on_epoch=False, batch_size=batch_size)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._step_start
        batch_size = batch[0].shape[0]
        sequences = (self.global_step) * batch_size * self.trainer.world_size
        self.log_dict({"perf/step_time_s": elapsed, "perf/sequences_per_s": batch_size * self.trainer.world_size / elapsed,
                       "train/sequences": float(sequences)}, on_step=True, on_epoch=False, batch_size=batch_size)

    # --- validation -----------------------------------------------------------------------------

    def _val_name(self, dataloader_idx: int) -> str:
        names = getattr(self.trainer.datamodule, "val_names", None)
        return names[dataloader_idx] if names else f"set_{dataloader_idx}"

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets, mask = batch
        scores = sequence_scores(self(inputs), targets, mask)
        name = self._val_name(dataloader_idx)
        if name not in self.val_metrics:
            self.val_metrics[name] = metric_set().to(self.device)
        for metric_name, metric in self.val_metrics[name].items():
            metric.update(scores[metric_name])
            self.log(f"val/{name}/{metric_name}", metric, on_step=False, on_epoch=True,
                     batch_size=inputs.shape[0], add_dataloader_idx=False)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)
