"""The Transformer encoder: shapes, finiteness, batch independence, non-causality, the positional encodings
against independently written references (sinusoids and rotations with explicit loops, RoPE's relative
property, the randomised draw), gradients, records and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from mann_zoo.models import TransformerEncoder, build
from mann_zoo.models.registry import CoreSpec
from mann_zoo.models.transformer import BASE, POSITIONALS, random_positions, rotate, sinusoidal_encoding

SMALL = dict(embedding_size=16, layers=2, heads=4, widening_factor=2)


def make(positional: str = "sinusoidal", input_size: int = 4, output_size: int = 3, **extra):
    torch.manual_seed(0)
    return build("transformer", input_size, output_size, **{**SMALL, "positional": positional, **extra})


@pytest.mark.parametrize("positional", POSITIONALS)
def test_shape_and_finite_for_zero_random_and_huge_inputs(positional):
    model = make(positional)
    for x in (torch.zeros(3, 7, 4), torch.rand(3, 7, 4), torch.randn(3, 7, 4) * 1e4):
        logits = model(x)
        assert logits.shape == (3, 7, 3)
        assert torch.isfinite(logits).all()
        logits.square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        model.zero_grad()


@pytest.mark.parametrize("positional", POSITIONALS)
def test_examples_in_a_batch_do_not_interact(positional):
    """Eval mode for every encoding; training mode (dropout and, randomised, the per-example positions
    drawn from the same seed) as well: changing example 0 leaves the others' logits unchanged."""
    model = make(positional)
    x = torch.rand(3, 6, 4)
    x2 = x.clone()
    x2[0] = torch.rand(6, 4) * 5
    for training in (False, True):
        model.train(training)
        torch.manual_seed(1)
        y = model(x)
        torch.manual_seed(1)
        y2 = model(x2)
        assert not torch.allclose(y[0], y2[0])
        torch.testing.assert_close(y[1:], y2[1:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("positional", POSITIONALS)
def test_non_causal_a_later_input_changes_an_earlier_output(positional):
    model = make(positional).eval()
    x = torch.rand(2, 6, 4)
    x2 = x.clone()
    x2[:, -1] += 1
    y, y2 = model(x), model(x2)
    assert (y[:, 0] - y2[:, 0]).abs().max() > 1e-4


def test_gradients_reach_every_parameter():
    for positional in ("sinusoidal", "randomised_rotary"):
        model = make(positional)
        model(torch.rand(2, 5, 4)).square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_learned_positions_add_one_trained_vector_per_position():
    """The learned encoding adds row p of its table at step p (compared with the encoder's own layers fed
    the sum by hand); its gradient reaches the rows of the steps seen and no other; too long a sequence
    names max_positions."""
    model = make("learned", max_positions=8).double().eval()
    x = torch.rand(2, 5, 4, dtype=torch.float64)
    h = model.embedding(x) * math.sqrt(model.embedding_size) + model.position_embedding.weight[:5]
    for layer in model.layers:
        h, _ = layer(h, model.positions(2, 5, x.device), False)
    torch.testing.assert_close(model(x), model.readout(h), rtol=0, atol=1e-12)
    model(x).square().sum().backward()
    row_grads = model.position_embedding.weight.grad.abs().sum(dim=1)
    assert (row_grads[:5] > 0).all() and (row_grads[5:] == 0).all()
    with pytest.raises(ValueError, match="max_positions must be >= the sequence length 9, got 8"):
        model(torch.rand(2, 9, 4, dtype=torch.float64))


def test_sinusoidal_encoding_is_the_formula():
    """PE(p, 2i) = sin(p / 10000^(2i/E)), PE(p, 2i+1) = cos(p / 10000^(2i/E)), written out with loops."""
    E = 6
    positions = torch.tensor([[0, 1, 5], [7, 100, 2047]])
    encoding = sinusoidal_encoding(positions, E, torch.float64)
    assert encoding.shape == (2, 3, E)
    for b in range(2):
        for t in range(3):
            p = positions[b, t].item()
            for i in range(E // 2):
                assert encoding[b, t, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / E)), abs=1e-12)
                assert encoding[b, t, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / E)), abs=1e-12)


def rotate_reference(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoFormer's rotation, pair by pair: (x_2i, x_2i+1) -> R(p theta_i) (x_2i, x_2i+1), theta_i = 10000^(-2i/d)."""
    B, H, T, d = x.shape
    out = torch.empty_like(x)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                p = positions[b, t].item()
                for i in range(d // 2):
                    c, s = math.cos(p * BASE ** (-2 * i / d)), math.sin(p * BASE ** (-2 * i / d))
                    u, v = x[b, h, t, 2 * i].item(), x[b, h, t, 2 * i + 1].item()
                    out[b, h, t, 2 * i], out[b, h, t, 2 * i + 1] = u * c - v * s, u * s + v * c
    return out


def test_rotary_matches_the_rotation_written_out_and_is_relative():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 3, 6, dtype=torch.float64)
    positions = torch.tensor([[0, 3, 9], [11, 500, 2000]])
    torch.testing.assert_close(rotate(x, positions), rotate_reference(x, positions), rtol=0, atol=1e-12)
    # a rotation keeps norms, and q_m . k_n depends on m - n only: shifting both positions changes nothing
    torch.testing.assert_close(rotate(x, positions).norm(dim=-1), x.norm(dim=-1))
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    scores = [(rotate(q, torch.tensor([[m]])) * rotate(k, torch.tensor([[n]]))).sum().item()
              for m, n in ((3, 1), (10, 8), (1002, 1000))]
    assert scores[0] == pytest.approx(scores[1], abs=1e-9) and scores[0] == pytest.approx(scores[2], abs=1e-9)
    assert scores[0] != pytest.approx((rotate(q, torch.tensor([[4]])) * rotate(k, torch.tensor([[1]]))).sum().item())


@pytest.mark.parametrize("positional, invariant", [("rotary", True), ("sinusoidal", False)])
def test_rotary_model_sees_relative_positions_only(positional, invariant, monkeypatch):
    """Shifting every position by 7: the rotary encoder's logits do not move, the sinusoidal one's do."""
    model = make(positional).double().eval()
    x = torch.rand(2, 5, 4, dtype=torch.float64)
    before = model(x)
    shifted = model.positions(2, 5, x.device) + 7
    monkeypatch.setattr(model, "positions", lambda batch, steps, device: shifted)
    after = model(x)
    assert torch.allclose(before, after, rtol=0, atol=1e-9) == invariant


def test_random_positions_are_sorted_distinct_in_range_and_seeded():
    torch.manual_seed(3)
    first = random_positions(64, 10, 50, torch.device("cpu"))
    assert first.shape == (64, 10) and first.dtype == torch.int64
    assert (first[:, 1:] > first[:, :-1]).all()  # sorted and distinct
    assert first.min() >= 0 and first.max() < 50
    assert len({tuple(row) for row in first.tolist()}) > 1  # every example its own draw
    assert first.float().mean().item() == pytest.approx(24.5, abs=2)  # uniform over [0, 50): mean 24.5
    torch.manual_seed(3)
    torch.testing.assert_close(random_positions(64, 10, 50, torch.device("cpu")), first)
    assert random_positions(2, 4, 4, torch.device("cpu")).tolist() == [[0, 1, 2, 3]] * 2  # only one subset


def test_randomised_positions_random_in_training_fixed_in_eval():
    """Training: a fresh draw from the global RNG at each call (seeded by torch.manual_seed). Eval: a draw
    from a private generator reseeded at every call, so the same batch gives the same logits and the
    global RNG is left alone."""
    model = make("randomised", dropout=0.0)
    x = torch.rand(2, 6, 4)
    torch.manual_seed(5)
    y1, r1 = model(x, record=True)
    y2, r2 = model(x, record=True)
    assert not torch.equal(r1["positions"], r2["positions"]) and not torch.allclose(y1, y2)
    torch.manual_seed(5)
    torch.testing.assert_close(model(x), y1)
    model.eval()
    state = torch.get_rng_state()
    e1, s1 = model(x, record=True)
    e2, s2 = model(x, record=True)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(e1, e2)
    assert torch.equal(s1["positions"], s2["positions"]) and s1["positions"].max() >= 6  # not 0 .. T-1
    with pytest.raises(ValueError, match="max_positions must be >= the sequence length 9, got 8"):
        make("randomised", max_positions=8)(torch.rand(1, 9, 4))


def test_record_attention_and_positions_without_changing_outputs():
    model = make("rotary").eval()
    x = torch.rand(2, 5, 4)
    logits, records = model(x, record=True)
    torch.testing.assert_close(logits, model(x))
    attention = records["attention"]
    assert attention.shape == (2, 5, 2, 4, 5)  # [B, T query, layers, heads, T key]
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 5, 2, 4))
    assert records["positions"].tolist() == [list(range(5))] * 2


def test_float64_dtype_follows_input_and_dropout_only_in_training():
    model = make("randomised_rotary").double()
    x = torch.rand(2, 4, 4, dtype=torch.float64)
    assert model(x).dtype == torch.float64
    torch.manual_seed(0)
    train = model(x)
    model.eval()
    assert not torch.allclose(train, model(x))
    torch.testing.assert_close(model(x), model(x))


def test_defaults_and_shipped_config():
    """The defaults are Deletang et al.'s code's; configs/model/transformer.yaml builds the same model."""
    model = TransformerEncoder(5, 4)
    assert (model.embedding_size, len(model.layers), model.layers[0].attention.heads) == (64, 5, 8)
    assert model.layers[0].feedforward[0].out_features == 256 and model.positional == "sinusoidal"
    assert model.layers[0].dropout.p == 0.1 and model.max_positions == 2048
    from mann_zoo.configs import CONFIGS

    core = yaml.safe_load((CONFIGS / "model/transformer.yaml").read_text())["model"]["core"]
    built = CoreSpec(core["class_path"], core["init_args"]).build(5, 4)
    assert isinstance(built, TransformerEncoder) and built.num_parameters() == model.num_parameters()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(positional="rope"),
         "positional must be one of none, sinusoidal, rotary, randomised, randomised_rotary, learned, got 'rope'"),
        (dict(heads=3), r"heads must divide embedding_size \(16\), got 3"),
        (dict(heads=16, positional="rotary"), "embedding_size / heads must be even for rotary"),
        (dict(embedding_size=15, heads=5), "embedding_size must be even for sinusoidal"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(layers=0), "layers must be an integer >= 1, got 0"),
        (dict(max_positions=0), "max_positions must be an integer >= 1"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        make(**kwargs)
    assert "\n" not in str(error.value)


def test_mismatched_input_names_x():
    for x in (torch.rand(2, 5, 7), torch.rand(2, 0, 4), torch.rand(5, 4)):
        with pytest.raises(ValueError, match="x must have shape"):
            make()(x)
