#!/usr/bin/env bash
# Create .venv (unless VENV is set) and install mann-zoo with its test extra.
# TORCH names the torch requirement installed first (default torch==2.13.0: on PyPI a CUDA build on
# Linux x86_64; on this project's CPU machines a local CPU build). Set TORCH="" to keep a torch you
# already installed in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH=${TORCH-torch==2.13.0}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -n "$TORCH" ] && ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q "$TORCH"
fi
"$VENV/bin/python" -m pip install -q -e ".[test]"
