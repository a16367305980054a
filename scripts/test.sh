#!/usr/bin/env bash
# Install what the tests need (scripts/install.sh) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export WANDB_MODE=offline WANDB_SILENT=true
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
