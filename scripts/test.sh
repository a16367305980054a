#!/usr/bin/env bash
# Install what the tests need (scripts/install.sh) and run the test suite, one pytest-xdist worker per core
# (--dist loadscope: a module's tests, and so its module-scoped fixtures such as the Ray smoke bench, stay on
# one worker). Extra arguments go to pytest (-n 0: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export WANDB_MODE=offline WANDB_SILENT=true
exec "${VENV:-.venv}/bin/python" -m pytest -n auto --dist loadscope "$@"
