"""Settings for the whole suite.

``scripts/test.sh`` runs the suite on pytest-xdist, one worker process per core (``-n auto``); each worker
then keeps to one torch thread, so that the workers do not compete for the cores (the suite's tensors are
small: a second thread per process bought nothing but contention)."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def assert_examples_independent():
    """A check that the examples of a batch do not interact in a model's training pass (forward and backward):
    ``check(model, x)``, x ``[B >= 5, T, I]``, asserts that changing example 3's input leaves every other
    example's outputs unchanged, and that example 1's share of the batch's gradient (an upstream gradient on its
    outputs alone) equals the gradient of example 1 run alone, for x (``atol``) and every parameter (``rtol``,
    ``atol``)."""

    def run(model, x, upstream=None):
        x = x.detach().requires_grad_()
        logits = model(x)
        if upstream is None:
            upstream = torch.linspace(-1, 1, logits.numel(), dtype=x.dtype).view_as(logits)
        return logits, torch.autograd.grad(logits, [x, *model.parameters()], upstream)

    def check(model, x, rtol=1e-10, atol=1e-12):
        changed = x.clone()
        changed[3] = torch.rand_like(x[3])
        logits, _ = run(model, x)
        logits_changed, _ = run(model, changed)
        keep = [i for i in range(x.shape[0]) if i != 3]
        torch.testing.assert_close(logits_changed[keep], logits[keep], rtol=0, atol=0)
        _, alone = run(model, x[1:2])
        upstream = torch.zeros_like(logits)
        upstream[1] = torch.linspace(-1, 1, logits[1].numel(), dtype=x.dtype).view_as(logits[1])
        _, batch = run(model, x, upstream)
        torch.testing.assert_close(batch[0][1:2], alone[0], rtol=0, atol=atol)
        for grad, expected in zip(batch[1:], alone[1:]):
            torch.testing.assert_close(grad, expected, rtol=rtol, atol=atol)

    return check
