"""Transformer encoder (Vaswani et al. 2017), as Deletang et al. 2023 ("Neural Networks and the Chomsky
Hierarchy", ICLR 2023) evaluate it, with the positional encodings compared there and by Ruoss et al. 2023
("Randomized Positional Encodings Boost Length Generalization of Transformers", ACL 2023).

Not autoregressive: attention is non-causal, over the whole input, and the input already holds the blank
steps where the outputs are read (Deletang et al. append |y| blank tokens, google-deepmind/
neural_networks_chomsky_hierarchy ``experiments/utils.py: make_model_with_empty_targets``; this project's
tasks already carry them, e.g. the copy task's L blank recall steps). The logits of every step come out;
the task's mask picks the scored ones.

Padding: a batch is padded at the end with zero steps (``tasks/base.py``), and the encoder has no lengths,
so it attends over the padding too; an example's outputs can therefore change with the padded length of its
batch (the padding steps are indistinguishable from blank steps: zero inputs, told apart only by position).
Examples never see each other.

One layer (post-layer-norm, as in Vaswani et al. and both DeepMind codes)::

    a = Dropout(MultiHeadAttention(h))             # q, k, v and output projections without bias
    h = LayerNorm(h + a)
    f = Dropout(W2 relu(W1 h + b1) + b2)           # width widening_factor x embedding_size
    h = LayerNorm(h + f)

Sources of the defaults (google-deepmind/neural_networks_chomsky_hierarchy ``models/transformer.py``:
``TransformerConfig`` and ``make_transformer_encoder``; the same in google-deepmind/
randomized_positional_encodings ``models/transformer.py`` and its ``experiments/example.py``):
embedding 64, 5 layers, 8 heads (8 units each), feed-forward widening factor 4, dropout 0.1 (after the
input encoding, the attention output and the feed-forward output), input embedding a bias-free linear map
initialised N(0, 0.02^2) truncated at 2 sigma and scaled by sqrt(embedding_size), other weights Haiku's
default (truncated normal, std 1/sqrt(fan_in)), zero biases, a linear read-out at every step. Training in
their code: Adam 1e-3, gradient norm clipped to 1, batch 128 (``experiments/training.py``, ``example.py``).

Positional encodings (``positional``):

- ``"sinusoidal"`` (Vaswani et al. 2017; the default of Deletang et al.'s code):
  PE(p, 2i) = sin(p / 10000^(2i/E)), PE(p, 2i+1) = cos(p / 10000^(2i/E)), added to the embedding, p = 0, 1, ...
  Both DeepMind codes put the sines in the first half and the cosines in the second (the same up to a fixed
  permutation of the embedding units); Deletang et al.'s code also numbers the steps backwards, T .. 1 (its
  ``sinusoid_position_encoding`` is the Transformer-XL helper, called with ``causal=True``); Ruoss et al.'s
  code numbers them 0 .. T-1. Ours: the paper's formula, interleaved, from 0 (our choice).
- ``"rotary"`` (RoPE, Su et al. 2021, a relative encoding): each head's query and key at position p are
  rotated pairwise, (x_2i, x_2i+1) by the angle p * 10000^(-2i/d), d the head width, in every layer; then
  q_m . k_n depends on m - n only. Nothing is added to the embedding. Same frequencies and pairing as both
  codes' ``apply_rotary_encoding``.
- ``"randomised"`` / ``"randomised_rotary"`` (Ruoss et al. 2023): the sinusoidal / rotary encoding at
  positions drawn as a sorted random subset of T distinct integers from [0, max_positions), max_positions
  2048 (their ``example.py``: ``noise_max_length``). In training mode the draw uses torch's global RNG (so
  ``torch.manual_seed`` / ``seed_everything`` fix it). Ruoss et al. randomise at test time too (their
  ``range_evaluation.py`` passes a fresh key to every evaluation batch; the maintainers confirm it in
  google-deepmind/randomized_positional_encodings issue #1); in eval mode we draw the same way but from a
  generator seeded with ``EVAL_SEED`` at every call (our choice), so evaluation is a deterministic function
  of the batch and leaves the global RNG (training's stream) alone. One draw per example, not one per batch
  as in their code (our choice: the paper's figure 1 gives each training example its own positions, and a
  batch then averages over many draws); the examples stay independent. One draw per forward pass, shared by
  all layers (their rotary and relative variants draw again in every layer: an artefact of calling
  ``hk.next_rng_key()`` inside each attention module, we think; their sinusoidal variant draws once).
- ``"learned"``: one learned vector per position 0 .. max_positions-1, added to the embedding (Vaswani et
  al. 2017, section 3.5, found learned and sinusoidal encodings "nearly identical"); initialised N(0, 1)
  (our choice, torch's ``nn.Embedding`` default, about the sinusoids' scale). A position never seen in
  training keeps its random initial vector, so no length generalisation is expected. Not in Deletang et
  al.'s comparison; here because on MQAR the sinusoidal encoder stays on the guessing plateau far longer
  (paper section 11.2).
- ``"none"``: no positional information (the encoder is then permutation-equivariant).

Also our choices: dropout is off in eval mode (both DeepMind codes apply it at evaluation as well, having no
training flag); dropout follows the input encoding for every ``positional`` (their code: only for sin/cos).
Not implemented: their Transformer-XL relative encoding and ALiBi.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import check_positive

POSITIONALS = ("none", "sinusoidal", "rotary", "randomised", "randomised_rotary", "learned")
BASE = 10_000.0  # the longest wavelength / 2 pi of the sinusoids (Vaswani et al.; ``max_time`` in both codes)
EVAL_SEED = 0  # the generator of the randomised positions in eval mode is seeded with it at every call
EMBEDDING_INIT_STD = 0.02  # ``emb_init_scale`` in both codes


def sinusoidal_encoding(positions: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """PE(p, 2i) = sin(p w_i), PE(p, 2i+1) = cos(p w_i), w_i = BASE^(-2i/size): ``[...] -> [..., size]``."""
    frequencies = BASE ** -(torch.arange(0, size, 2, device=positions.device, dtype=dtype) / size)  # w_i
    angles = positions.to(dtype)[..., None] * frequencies  # p w_i
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # interleaved sin, cos


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoPE: rotate the pairs (x_2i, x_2i+1) of ``x[B, H, T, d]`` by the angle p theta_i, theta_i =
    BASE^(-2i/d), p = ``positions[B, T]``."""
    d = x.shape[-1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    theta = BASE ** -(torch.arange(0, d, 2, device=x.device, dtype=dtype) / d)  # theta_i
    angles = positions.to(dtype)[:, None, :, None] * theta  # [B, 1, T, d/2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def check_fits(steps: int, max_positions: int) -> None:
    """The one-line error of a sequence longer than the positions an encoding has (randomised, learned)."""
    if steps > max_positions:
        raise ValueError(f"max_positions must be >= the sequence length {steps}, got {max_positions}")


def random_positions(batch: int, steps: int, max_positions: int, device: torch.device,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per example, ``steps`` distinct integers drawn uniformly from [0, max_positions), sorted: ``[B, T]``.

    The indices of the ``steps`` largest of ``max_positions`` i.i.d. uniforms are a uniform random subset.
    ``generator`` (a CPU generator) or, if None, torch's global RNG on ``device``.
    """
    check_fits(steps, max_positions)
    noise = torch.rand(batch, max_positions, generator=generator,
                       device="cpu" if generator is not None else device)
    return noise.topk(steps, dim=-1).indices.sort(dim=-1).values.to(device)


class SelfAttention(nn.Module):
    """Non-causal multi-head self-attention, softmax(q k^T / sqrt(d)) v per head."""

    def __init__(self, embedding_size: int, heads: int, rotary: bool):
        super().__init__()
        self.heads, self.rotary = heads, rotary
        self.qkv = nn.Linear(embedding_size, 3 * embedding_size, bias=False)  # W_q, W_k, W_v
        self.out = nn.Linear(embedding_size, embedding_size, bias=False)  # W_o

    def forward(self, h: torch.Tensor, positions: torch.Tensor, record: bool):
        B, T, E = h.shape
        q, k, v = (t.view(B, T, self.heads, E // self.heads).transpose(1, 2)  # [B, H, T, d]
                   for t in self.qkv(h).split(E, dim=-1))
        if self.rotary:
            q, k = rotate(q, positions), rotate(k, positions)
        if record:  # the weights themselves: the fused kernel does not return them
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # [B, H, T, T]
            attended = weights @ v
        else:
            weights = None
            attended = F.scaled_dot_product_attention(q, k, v)  # no mask: every step sees every step
        return self.out(attended.transpose(1, 2).reshape(B, T, E)), weights


class EncoderLayer(nn.Module):
    """Post-layer-norm encoder layer: h = LN(h + Drop(Attn(h))); h = LN(h + Drop(FFN(h)))."""

    def __init__(self, embedding_size: int, heads: int, widening_factor: int, dropout: float, rotary: bool):
        super().__init__()
        self.attention = SelfAttention(embedding_size, heads, rotary)
        self.norm1 = nn.LayerNorm(embedding_size)
        self.feedforward = nn.Sequential(
            nn.Linear(embedding_size, widening_factor * embedding_size),  # W1 h + b1
            nn.ReLU(),
            nn.Linear(widening_factor * embedding_size, embedding_size),  # W2 . + b2
        )
        self.norm2 = nn.LayerNorm(embedding_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, positions: torch.Tensor, record: bool):
        attended, weights = self.attention(h, positions, record)
        h = self.norm1(h + self.dropout(attended))
        h = self.norm2(h + self.dropout(self.feedforward(h)))
        return h, weights


class TransformerEncoder(nn.Module):
    """``model(x[B, T, input_size]) -> logits[B, T, output_size]``: non-causal, logits at every step.

    ``model(x, record=True)`` returns ``(logits, records)``: ``attention [B, T, layers, heads, T]`` (the
    weights of query step t over the key steps, per layer and head) and ``positions [B, T]`` (the positions
    the encoding used; 0 .. T-1 unless randomised).

    Args:
        input_size: width of the input.
        output_size: width of the logits.
        embedding_size: E, the width of the embedding and of every layer (64).
        layers: number of encoder layers (5).
        heads: attention heads per layer (8); must divide ``embedding_size``.
        widening_factor: the feed-forward hidden width is ``widening_factor * embedding_size`` (4).
        dropout: dropout probability, in [0, 1) (0.1); active in training mode only.
        positional: ``"sinusoidal"``, ``"rotary"``, ``"randomised"`` (sinusoidal at random sorted positions),
            ``"randomised_rotary"``, ``"learned"`` or ``"none"``; see the module's docstring.
        max_positions: the randomised encodings draw positions from [0, max_positions) and the learned one
            has a vector for each (2048); sequences may be at most this long.
        compile: accepted for a uniform interface; attention already runs as one fused kernel
            (``scaled_dot_product_attention``).
    """

    def __init__(self, input_size: int, output_size: int, embedding_size: int = 64, layers: int = 5,
                 heads: int = 8, widening_factor: int = 4, dropout: float = 0.1, positional: str = "sinusoidal",
                 max_positions: int = 2048, compile: bool = False):
        check_positive(input_size=input_size, output_size=output_size, embedding_size=embedding_size,
                       layers=layers, heads=heads, widening_factor=widening_factor, max_positions=max_positions)
        if positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {', '.join(POSITIONALS)}, got {positional!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if embedding_size % heads:
            raise ValueError(f"heads must divide embedding_size ({embedding_size}), got {heads}")
        rotary = positional in ("rotary", "randomised_rotary")
        if rotary and (embedding_size // heads) % 2:
            raise ValueError(f"embedding_size / heads must be even for rotary encodings (pairs of units are "
                             f"rotated), got {embedding_size} / {heads}")
        if positional in ("sinusoidal", "randomised") and embedding_size % 2:
            raise ValueError(f"embedding_size must be even for sinusoidal encodings, got {embedding_size}")
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.embedding_size, self.positional, self.max_positions = embedding_size, positional, max_positions
        self.embedding = nn.Linear(input_size, embedding_size, bias=False)
        if positional == "learned":
            self.position_embedding = nn.Embedding(max_positions, embedding_size)  # one vector per position
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(embedding_size, heads, widening_factor, dropout, rotary) for _ in range(layers))
        self.readout = nn.Linear(embedding_size, output_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Haiku's defaults, as in both DeepMind codes: every linear weight truncated normal (at 2 sigma)
        with std 1/sqrt(fan_in), biases 0, layer norms 1 and 0; the input embedding std 0.02."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = EMBEDDING_INIT_STD if module is self.embedding else 1 / math.sqrt(module.in_features)
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.Embedding)):
                module.reset_parameters()  # layer norms 1 and 0; learned positions N(0, 1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def state_size(self, length: int) -> int:
        """What attention keeps per example (``models.state_size``): the keys and values of every layer at
        every one of ``length`` positions, as a causal decoder's cache would (2 x layers x length x width)."""
        return 2 * len(self.layers) * length * self.embedding_size

    def positions(self, batch: int, steps: int, device: torch.device) -> torch.Tensor:
        """The positions ``[B, T]`` of the steps: 0 .. T-1, or a sorted random draw (randomised encodings)."""
        if not self.positional.startswith("randomised"):
            if self.positional == "learned":
                check_fits(steps, self.max_positions)  # a row of the table per position
            return torch.arange(steps, device=device).expand(batch, steps)
        generator = None if self.training else torch.Generator().manual_seed(EVAL_SEED)
        return random_positions(batch, steps, self.max_positions, device, generator)

    def forward(self, x: torch.Tensor, record: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.input_size or x.shape[1] < 1:
            raise ValueError(f"x must have shape [B, T >= 1, {self.input_size}], got {list(x.shape)}")
        B, T, _ = x.shape
        positions = self.positions(B, T, x.device)  # [B, T]
        h = self.embedding(x) * math.sqrt(self.embedding_size)  # [B, T, E]
        if self.positional in ("sinusoidal", "randomised"):
            dtype = torch.promote_types(h.dtype, torch.float32)
            h = h + sinusoidal_encoding(positions, self.embedding_size, dtype).to(h.dtype)
        elif self.positional == "learned":
            h = h + self.position_embedding(positions)
        h = self.dropout(h)
        weights = []
        for layer in self.layers:
            h, w = layer(h, positions, record)
            weights.append(w)
        logits = self.readout(h)
        if not record:
            return logits
        return logits, {"attention": torch.stack(weights, dim=1).permute(0, 3, 1, 2, 4),  # [B, T, L, H, T]
                        "positions": positions}
