"""The cores, the speed command and the cost sweep on a CUDA device; skipped where there is none (CI, this
project's machines), run where one is lent (see README, "GPU")."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from test_models import MODELS, make

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("key", MODELS)
def test_a_core_on_cuda_computes_what_it_computes_on_the_cpu(key):
    """Same weights, same batch of 3: logits and parameter gradients agree with the CPU's (float32)."""
    cpu = make(key)
    gpu = make(key).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(3, 6, 4)
    grads = []
    for model, inputs in ((cpu, x), (gpu, x.cuda())):
        logits = model(inputs)
        assert logits.device == inputs.device
        grads.append([g.cpu() for g in torch.autograd.grad(logits.square().sum(), list(model.parameters()))])
        if model is cpu:
            expected = logits
        else:
            torch.testing.assert_close(logits.cpu(), expected, rtol=1e-4, atol=1e-5)
    for g_cpu, g_gpu in zip(*grads):
        torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-3, atol=1e-5)


def test_speed_and_cost_run_on_cuda(tmp_path):
    from mann_zoo.cli import main

    main(["speed", "--models", "ntm", "dnc", "--slots", "16", "--width", "8", "--length", "3", "--batch", "4",
          "--repeats", "1", "--device", "cuda", "--out", str(tmp_path / "speed.csv")])
    rows = pd.read_csv(tmp_path / "speed.csv")
    assert (rows.device == "cuda").all() and (rows.ms_per_step > 0).all()
    main(["bench", "cost", "--slots", "8", "16", "--widths", "4", "--width", "4", "--repeats", "1", "--device", "cuda",
          "--out", str(tmp_path / "cost")])
    cost = pd.read_csv(tmp_path / "cost" / "cost.csv")
    assert (cost.cuda_peak_mb.dropna() > 0).all() and len(cost.cuda_peak_mb.dropna()) >= 4
