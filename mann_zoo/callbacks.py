"""Lightning callbacks of mann-zoo."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch


class ParameterDigest(L.Callback):
    """At the end of training every process writes a digest of its parameters to
    ``<dirpath>/parameter_digest_rank<r>.json``: data-parallel processes must agree exactly."""

    def __init__(self, dirpath: str = "."):
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            flat = torch.cat([p.detach().double().flatten().cpu() for p in pl_module.parameters()])
        digest = {"rank": trainer.global_rank, "world_size": trainer.world_size, "step": trainer.global_step,
                  "sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(), "first": flat[:8].tolist(),
                  "batches_consumed": getattr(trainer.datamodule, "next_batch", None)}
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / f"parameter_digest_rank{trainer.global_rank}.json").write_text(json.dumps(digest))
