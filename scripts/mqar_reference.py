"""A pipeline check for MQAR (issue 13): a standard PyTorch Transformer encoder, written independently of
``mann_zoo.models``, trained on the project's own MQAR batches (``tasks.MQARTask``) with the project's own
loss (``class_scores``: cross-entropy summed over the query steps). If it learns the recall, the batches
carry what the recall needs and the loss rewards it; if it stays at the context-guessing level (100 / P %
of the queries right) as our models do, the setting needs more budget than the grid has.

The reference (our choice): ``nn.Embedding`` tokens and learned ``nn.Embedding`` positions (N(0, 1)), width
64, ``nn.TransformerEncoder`` of 2 post-norm layers, 8 heads, feed-forward 256, no dropout, non-causal, a
linear read-out; Adam 1e-3, gradient norm clipped to 1. Fresh batches every step (never repeated), so the
training-batch accuracy is a held-out accuracy.

    python scripts/mqar_reference.py --vocabulary 32 --length 16 --pairs 2 --steps 2000 \
        --out paper/results/mqar_reference/v32_t16_p2.csv

Writes one row per ``--every`` steps: step, sequences, the cost (bits per sequence) and the accuracy at the
queries, each the mean over the batches since the row before.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mann_zoo.training.lightning_module import LN2, class_scores
from tasks.mqar import MQARTask


class ReferenceEncoder(nn.Module):
    """Tokens [B, T] -> logits [B, T, V]: token + learned position embeddings, nn.TransformerEncoder."""

    def __init__(self, vocabulary: int, length: int, width: int = 64, layers: int = 2, heads: int = 8):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocabulary, width), nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.readout = nn.Linear(width, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        return self.readout(self.encoder(self.tokens(tokens) + self.positions(steps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary", type=int, default=32)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task = MQARTask(vocabulary=args.vocabulary, sequence_length=args.length, pairs=args.pairs,
                    val_settings=[(2 * args.length, args.pairs)])
    generator = torch.Generator().manual_seed(args.seed)
    model = ReferenceEncoder(args.vocabulary, args.length)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    rows, costs, accuracies, start = [], [], [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = task.generate(generator, args.batch_size, args.length, args.pairs)
        scores = class_scores(model(batch.inputs.argmax(dim=-1)), batch.targets, batch.mask)
        loss = scores["cost_bits"].mean() * LN2  # nats, as the trainer's loss
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        costs.append(scores["cost_bits"].mean().item())
        accuracies.append(scores["token_accuracy"].mean().item())
        if step % args.every == 0:
            rows.append({"step": step, "sequences": step * args.batch_size, "cost_bits": sum(costs) / len(costs),
                         "token_accuracy": sum(accuracies) / len(accuracies),
                         "seconds": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
            costs, accuracies = [], []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).assign(vocabulary=args.vocabulary, length=args.length, pairs=args.pairs,
                              batch_size=args.batch_size, lr=args.lr, seed=args.seed).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
