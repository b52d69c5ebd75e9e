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
LOG="$VENV/install.log"
pip_install() {
  if ! "$PY" -m pip install -q "$@" >>"$LOG" 2>&1; then
    echo "setup: pip install $* failed; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}
: >"$LOG"
echo "setup: installing into $VENV (log: $LOG)"
pip_install --upgrade pip
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  pip_install "${VSA_TORCH:-torch==2.13.0}"
fi
pip_install -e ".[test]"
# installed without their metadata's dependencies: why, in images/no-deps.txt
pip_install --no-deps -r images/no-deps.txt
"$PY" -c "import vsa, actors, torch, av, cv2, ray, trackers" || { echo "setup: install failed" >&2; exit 1; }
export PATH="$PWD/$VENV/bin:$PATH"
