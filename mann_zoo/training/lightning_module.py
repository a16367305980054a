"""The one place where a model core meets a task: training any core on any task.

``SequenceModel`` builds the core from its class (``--model.core mann_zoo.models.NTM``, or a short name such
as ``ntm``) with the task's input and output widths, trains it with masked binary
cross-entropy on logits (tasks with ``scoring = "classes"``: cross-entropy over the outputs, one class per
scored step), and measures what the literature reports, per validation set:

- ``cost_bits``: cost in bits per sequence, the summed (binary) cross-entropy in bits over scored outputs;
- ``bit_errors``: bit errors per sequence, outputs thresholded at 0.5 (classes: wrong tokens per sequence);
- ``seq_accuracy``: the share of sequences with no bit error (no wrong token);
- ``token_accuracy``: the share of scored steps that are right, a sequence's mean (the Chomsky-hierarchy
  suite's score).

Logged names are the same for every model, so runs compare without setup: ``train/cost_bits``,
``train/bit_errors``, ``train/sequences`` (sequences seen, all processes), ``perf/step_time_s``,
``perf/sequences_per_s``, ``val/<set>/cost_bits``, ``val/<set>/bit_errors``, ``val/<set>/seq_accuracy``, ``val/<set>/token_accuracy``,
where ``<set>`` is a task's validation-set name such as ``len_20``.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import time
from typing import Callable

import lightning as L
import torch
from torch.nn import functional as F
from torchmetrics import MeanMetric

from ..experiments.results import METRICS, metric_key, sequences_seen
from ..models import CoreSpec, core_spec, short_names

LN2 = math.log(2.0)


SCORINGS = ("bits", "classes")  # a task's ``scoring``: bit vectors, or one class per scored step


def bit_scores(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of bit-vector targets (independent sigmoid outputs), each ``[B]``: cost in bits per sequence
    (summed binary cross-entropy), bit errors (outputs thresholded at 0.5), token accuracy (the share of
    scored steps whose whole vector is right) and correctness (1 if no bit error).

    Args:
        logits, targets: ``[B, T, O]``, targets in {0, 1}.  mask: ``[B, T]``, 1 at scored steps.
    """
    scored = mask.unsqueeze(-1).to(logits.dtype)  # [B, T, 1]
    nats = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    cost_bits = (nats * scored).sum(dim=(1, 2)) / LN2
    wrong = ((logits > 0).to(targets.dtype) != targets).to(logits.dtype) * scored  # [B, T, O]
    errors = wrong.sum(dim=(1, 2))
    right_steps = ((wrong.sum(dim=-1) == 0).to(logits.dtype) * scored[..., 0]).sum(dim=1)
    return {"cost_bits": cost_bits, "bit_errors": errors, "seq_accuracy": (errors == 0).to(logits.dtype),
            "token_accuracy": right_steps / scored.sum(dim=(1, 2)).clamp(min=1)}


def class_scores(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of categorical targets (a softmax over the O outputs; the target class one-hot), each ``[B]``:
    cost in bits per sequence (summed cross-entropy), wrong tokens per sequence (reported as ``bit_errors``,
    so that the convergence rule and the tables apply unchanged), token accuracy (the share of scored steps
    whose arg-max is the target: the Chomsky-hierarchy suite's score) and correctness (1 if no wrong token).

    Args:
        logits, targets: ``[B, T, O]``, targets one-hot at scored steps.  mask: ``[B, T]``, 1 at scored steps.
    """
    scored = mask.to(logits.dtype)
    nats = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)  # [B, T]: -log p(target)
    cost_bits = (nats * scored).sum(dim=1) / LN2
    # Counts in float32 at least: a bfloat16 sum is exact only to 256 (a long answer has more tokens).
    counting = torch.promote_types(logits.dtype, torch.float32)
    scored = mask.to(counting)
    right = targets.gather(-1, logits.argmax(dim=-1, keepdim=True)).squeeze(-1).to(counting)  # [B, T]
    errors = ((1 - right) * scored).sum(dim=1)
    return {"cost_bits": cost_bits, "bit_errors": errors, "seq_accuracy": (errors == 0).to(counting),
            "token_accuracy": (right * scored).sum(dim=1) / scored.sum(dim=1).clamp(min=1)}


def sequence_scores(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    scoring: str = "bits") -> dict[str, torch.Tensor]:
    """Per-sequence scores (``METRICS``, each ``[B]``) of ``logits [B, T, O]`` against ``targets [B, T, O]`` at
    the steps ``mask [B, T]`` marks: :func:`bit_scores` or :func:`class_scores`, by the task's ``scoring``."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    return (class_scores if scoring == "classes" else bit_scores)(logits, targets, mask)


def core_logits(core: torch.nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``core(inputs)``; a core whose ``forward`` takes ``input_length`` (the Tape-RNN's jump length) is
    also given the steps before each sequence's first scored step, ``[B]``: the input the model reads
    before it answers (the string of a Chomsky-hierarchy task; copy's vectors and delimiter)."""
    if takes_input_length(type(core)):
        return core(inputs, input_length=mask.argmax(dim=1))  # the first scored step
    return core(inputs)


@functools.cache
def takes_input_length(core_class: type) -> bool:
    """Whether the cores of ``core_class`` take ``input_length`` in ``forward`` (looked up once per class)."""
    return "input_length" in inspect.signature(core_class.forward).parameters


def metric_set() -> torch.nn.ModuleDict:
    """One running mean per reported metric (torchmetrics: synchronised across processes)."""
    return torch.nn.ModuleDict({m: MeanMetric() for m in METRICS})


class SequenceModel(L.LightningModule):
    """Trains a recurrent core on a sequence task.

    Args:
        core: the core: a class whose first two arguments are ``input_size`` and ``output_size``, given on the
            command line by class path with its arguments (``--model.core mann_zoo.models.NTM
            --model.core.init_args.memory_slots 64``, help: ``--model.core.help mann_zoo.models.NTM``), or
            a short name (``ntm``, ``dnc``, ``dnc_md``, ``lstm``, a plugin's entry point) for its defaults.
        input_size: input width; set from the task by the command line (``data.input_size``).
        output_size: output width; set from the task by the command line (``data.output_size``).
        lr: learning rate of the default optimiser (Adam: our choice, Collier & Beel's code's default since
            2019; their 2018 paper used RMSProp); another optimiser is
            chosen on the command line with ``--optimizer`` (e.g. ``torch.optim.RMSprop``).
        scoring: ``bits`` (binary cross-entropy per output) or ``classes`` (cross-entropy over the outputs);
            set from the task by the command line (``data.scoring``).
    """

    def __init__(
        self,
        core: Callable[[int, int], torch.nn.Module] | str = "ntm",
        input_size: int = 9,
        output_size: int = 8,
        lr: float = 1e-3,
        scoring: str = "bits",
    ):
        super().__init__()
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        self.save_hyperparameters()
        # From the command line, Lightning saves the parsed config: the core as {class_path, init_args}.
        saved = self.hparams.get("core")
        spec: CoreSpec = core_spec(saved if isinstance(saved, dict) else core)
        # The checkpoint keeps the core as data, {class_path, init_args}: mann_zoo.load_model rebuilds it
        # without unpickling anything.
        self.hparams["core"] = spec.as_dict()
        self.core = spec.build(input_size, output_size)
        self.lr = lr
        self.scoring = scoring
        self.diverged_at: int | None = None  # the step of a non-finite loss, if one stopped training
        self.train_metrics = metric_set()
        self.val_metrics = torch.nn.ModuleDict()  # per validation set, created in setup()
        self._step_start = 0.0

    @property
    def core_name(self) -> str:
        """The most specific short name that describes the core (``dnc_md`` for a DNC with its three
        switches on, ``dnc`` otherwise), else its class name in lower case: for run folders and logs."""
        core_class, given = type(self.core), self.hparams["core"]["init_args"]
        matches = []
        for name, spec in short_names().items():
            try:
                same_class = spec.load() is core_class
            except ValueError:  # a plugin that does not import must not stop every run
                continue
            if same_class and all(given.get(key) == value for key, value in spec.init_args.items()):
                matches.append((len(spec.init_args), name))
        return max(matches)[1] if matches else core_class.__name__.lower()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.core.parameters())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.core(inputs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    # --- training -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        task_scoring = getattr(datamodule, "scoring", self.scoring)
        if task_scoring != self.scoring:  # set by the command line's link; in Python, by hand
            raise ValueError(f"scoring: the model scores {self.scoring!r} but the task {type(datamodule).__name__} "
                             f"has scoring {task_scoring!r}; build SequenceModel(..., scoring={task_scoring!r})")
        names = getattr(datamodule, "val_names", None)
        for name in names or []:
            if name not in self.val_metrics:
                self.val_metrics[name] = metric_set()

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams({"num_parameters": self.num_parameters, "core": self.hparams["core"]})

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, targets, mask = batch
        logits = core_logits(self.core, inputs, mask)
        scores = sequence_scores(logits, targets, mask, self.scoring)
        # Loss: mean over sequences of the summed masked cross-entropy (in nats).
        loss = scores["cost_bits"].mean() * LN2
        if not torch.isfinite(loss):
            return self._diverge(loss)
        batch_size = inputs.shape[0]
        for name, metric in self.train_metrics.items():
            metric(scores[name].detach())  # forward: this batch's mean, logged per step
            self.log(f"train/{name}", metric, on_step=True, on_epoch=False, batch_size=batch_size,
                     prog_bar=name in ("bit_errors", "cost_bits"))
        return loss

    def _diverge(self, loss: torch.Tensor) -> None:
        """A non-finite loss: no update (the parameters stay those of the last good step, and so does the
        checkpoint written at the end), training stops, and the run records where (``diverged_at``)."""
        self.diverged_at = self.global_step
        message = f"loss is {loss.item()} at step {self.global_step}: stopping; the parameters stay those before it"
        print(f"mann-zoo: {message}", file=sys.stderr)
        self.trainer.should_stop = True
        return None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if outputs is None:  # a skipped (diverged) step: nothing was trained
            return
        elapsed = time.perf_counter() - self._step_start
        batch_size = batch[0].shape[0]
        sequences = sequences_seen(self.global_step, batch_size, self.trainer.world_size)
        self.log_dict({"perf/step_time_s": elapsed, "perf/sequences_per_s": batch_size * self.trainer.world_size / elapsed,
                       "train/sequences": float(sequences)}, on_step=True, on_epoch=False, batch_size=batch_size)

    # --- validation -----------------------------------------------------------------------------

    def _val_name(self, dataloader_idx: int) -> str:
        names = getattr(self.trainer.datamodule, "val_names", None)
        return names[dataloader_idx] if names else f"set_{dataloader_idx}"

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets, mask = batch
        scores = sequence_scores(core_logits(self.core, inputs, mask), targets, mask, self.scoring)
        name = self._val_name(dataloader_idx)
        if name not in self.val_metrics:
            self.val_metrics[name] = metric_set().to(self.device)
        for metric_name, metric in self.val_metrics[name].items():
            metric.update(scores[metric_name])
            self.log(metric_key(name, metric_name), metric, on_step=False, on_epoch=True,
                     batch_size=inputs.shape[0], add_dataloader_idx=False)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_step(batch, batch_idx, dataloader_idx)
