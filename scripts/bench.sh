#!/usr/bin/env bash
# Install what the main job needs (scripts/install.sh) and run it on the CPU. Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export WANDB_MODE=${WANDB_MODE:-offline}
exec "${VENV:-.venv}/bin/mann-zoo" bench "$@"
