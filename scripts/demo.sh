#!/usr/bin/env bash
# Install vsa, start Ray if none is running, and run the demo: 4 synthetic cameras + 1 clip
# through the built-in model. Outputs: out/demo/<source>.mp4 and .jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
python -m vsa.tools.make_clip out/clips/demo_clip.mp4
auth_mode=disabled; [ -f "$HOME/.ray/auth_token" ] && auth_mode=token
if ! RAY_AUTH_MODE=$auth_mode ray status >/dev/null 2>&1; then
  echo "starting Ray: ray start --head"
  ray start --head --disable-usage-stats >/dev/null
fi
python -m vsa.submit configs/demo.yaml --follow --overwrite  # replaces the last demo's files
echo "outputs:"; ls -l out/demo
