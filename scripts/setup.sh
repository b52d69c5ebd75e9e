#!/usr/bin/env bash
# Create .venv and install vsa with its dependencies (sourced by demo.sh and test.sh).
# Torch: an already-installed torch is kept; otherwise torch==2.13.0 is installed, which on
# the project's build hosts is the CPU wheel (no multi-GB CUDA download). On a GPU host,
# install the CUDA torch you want into .venv first (or set VSA_TORCH).
set -euo pipefail
VENV=${VSA_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "${VSA_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$PY" -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import vsa, actors, torch, av, cv2, ray" || { echo "setup: install failed" >&2; exit 1; }
export PATH="$PWD/$VENV/bin:$PATH"
