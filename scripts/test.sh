#!/usr/bin/env bash
# Install everything (venv, Python packages, ffmpeg for ffprobe) and run lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if ! command -v ffprobe >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
fi
ruff check .
ruff format --check .
VSA_REQUIRE_FFPROBE=1 python -m pytest -q -p no:cacheprovider tests "$@"
