"""The hand derivations of the write-up, checked against autograd."""

import pytest
import torch

from mann_zoo.experiments.analysis import content_weights_key_jacobian, entropy_bits
from mann_zoo.memory import content_weights


@pytest.mark.parametrize("strength", [0.5, 3.0, 40.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_content_weighting_gradient_by_hand_matches_autograd(strength, seed):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(7, 5, generator=g, dtype=torch.float64)
    key = torch.randn(5, generator=g, dtype=torch.float64)
    beta = torch.tensor([[strength]], dtype=torch.float64)
    autograd = torch.autograd.functional.jacobian(lambda k: content_weights(memory[None], k[None, None], beta)[0, 0], key)
    torch.testing.assert_close(content_weights_key_jacobian(memory, key, strength), autograd, rtol=1e-10, atol=1e-12)


def test_gradient_at_a_zero_key_is_finite_and_matches():
    memory = torch.randn(4, 3, dtype=torch.float64)
    key = torch.zeros(3, dtype=torch.float64)
    beta = torch.tensor([[2.0]], dtype=torch.float64)
    autograd = torch.autograd.functional.jacobian(lambda k: content_weights(memory[None], k[None, None], beta)[0, 0], key)
    by_hand = content_weights_key_jacobian(memory, key, 2.0)
    assert torch.isfinite(by_hand).all()
    torch.testing.assert_close(by_hand, autograd)


def test_entropy_bits():
    assert entropy_bits(torch.full((8,), 1 / 8)).item() == pytest.approx(3.0)
    assert entropy_bits(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(0.0)
