"""Settings for the whole suite.

``scripts/test.sh`` runs the suite on pytest-xdist, one worker process per core (``-n auto``); each worker
then keeps to one torch thread, so that the workers do not compete for the cores (the suite's tensors are
small: a second thread per process bought nothing but contention)."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
