#!/usr/bin/env bash
# The one install recipe of vsa, shared by images/Dockerfile (x86_64), images/Dockerfile.jetson
# (arm64) and scripts/deploy.sh --wheel (hosts without Docker):
#
#   images/install.sh [--require-torch] [--dry-run] [--print-constraints] SOURCE
#
# SOURCE: the project directory or a vsa wheel. pip installs it with the dependencies that
# pyproject.toml declares ([project] dependencies is the single list), then, without their
# metadata's dependencies, the packages of images/no-deps.txt (the tracker library: why there).
# The torch already installed (the PyTorch base image's CUDA build, NVIDIA's Jetson build, a
# host's own) is kept: pip is constrained to its exact version, and to NumPy 1.x when torch
# came with NumPy 1.x (a build against the NumPy 1 ABI fails under NumPy 2). Without a torch,
# pip installs one from the index (a bare x86_64 host).
#   --require-torch      fail when there is no torch to keep (the images)
#   --dry-run            print the constraints and the pip command, install nothing
#   --print-constraints  print the constraints only
# PYTHON: the interpreter to install into (default python3).
set -euo pipefail

usage() {
  echo "usage: images/install.sh [--require-torch] [--dry-run] [--print-constraints] SOURCE" >&2
  echo "  SOURCE: the vsa project directory or a vsa wheel" >&2
  exit 2
}

require_torch=0
dry_run=0
print_only=0
source=""
while [ $# -gt 0 ]; do
  case "$1" in
    --require-torch) require_torch=1 ;;
    --dry-run) dry_run=1 ;;
    --print-constraints) print_only=1 ;;
    -h | --help) usage ;;
    -*)
      echo "install.sh: unknown option $1" >&2
      usage
      ;;
    *)
      [ -z "$source" ] || usage
      source=$1
      ;;
  esac
  shift
done
PYTHON=${PYTHON:-python3}

# What the interpreter already has that pip must not replace.
kept=$("$PYTHON" - <<'EOF'
import importlib.metadata as md


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


torch = version("torch")
if torch:
    print(f"torch=={torch}")
    numpy = version("numpy")
    if numpy and numpy.split(".")[0] == "1":
        print("numpy<2")
EOF
)

# The exact versions of everything else (images/constraints.txt: wheels for Python 3.10 on arm64
# and for x86_64, within pyproject.toml's ranges). Beside a torch built against NumPy 1, NumPy
# and OpenCV (whose 5.x wants NumPy 2) are left to pip within "numpy<2".
pins=$(dirname "${BASH_SOURCE[0]}")/constraints.txt
if [ -f "$pins" ]; then
  pinned=$(grep -Ev '^[[:space:]]*(#|$)' "$pins")
  if grep -q '^numpy<2$' <<<"$kept"; then
    pinned=$(grep -Ev '^(numpy|opencv-python-headless)==' <<<"$pinned")
  fi
  kept=$(printf '%s\n%s' "$kept" "$pinned" | sed '/^$/d')
fi

if [ "$print_only" = 1 ]; then
  [ -z "$kept" ] || printf '%s\n' "$kept"
  exit 0
fi
[ -n "$source" ] || usage
if [ "$require_torch" = 1 ] && ! grep -q '^torch==' <<<"$kept"; then
  echo "install.sh: no torch in $PYTHON; the images keep their base image's torch" >&2
  exit 1
fi
if [ "$dry_run" = 0 ] && [ ! -f "$source/pyproject.toml" ] && [[ "$source" != *.whl || ! -f "$source" ]]; then
  echo "install.sh: $source is neither the vsa project directory nor a wheel" >&2
  exit 1
fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
[ -z "$kept" ] || printf '%s\n' "$kept" >"$constraints"
install=("$PYTHON" -m pip install --no-cache-dir --constraint "$constraints" "$source")
# then the packages whose metadata must not be followed (each with why in images/no-deps.txt)
no_deps=$(dirname "${BASH_SOURCE[0]}")/no-deps.txt
extra=("$PYTHON" -m pip install --no-cache-dir --no-deps -r "$no_deps")

if [ -n "$kept" ]; then
  echo "install.sh: constraints ${kept//$'\n'/, }"
else
  echo "install.sh: no torch in $PYTHON: pip installs torch from the index"
fi
if [ "$dry_run" = 1 ]; then
  echo "${extra[*]}"
  echo "${install[*]}"
  exit 0
fi
"${install[@]}"
"${extra[@]}"

# What was installed: vsa's CLI builds, every requirement vsa declares (its installed metadata,
# i.e. pyproject.toml) is installed, torch is still the one kept. torch is not imported: on
# Jetson its CUDA libraries come from the container runtime, absent at build time.
"$PYTHON" - "$kept" <<'EOF'
import importlib.metadata as md
import re
import sys

import actors  # noqa: F401
import trackers  # noqa: F401 - images/no-deps.txt
from vsa.cli import build_parser

build_parser()
for requirement in md.requires("vsa") or []:
    if "extra ==" in requirement:
        continue
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    try:
        md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"install.sh: {requirement} (a vsa requirement) is not installed")
for line in sys.argv[1].splitlines():
    if line.startswith("torch==") and md.version("torch") != line[len("torch==") :]:
        sys.exit(f"install.sh: torch was replaced: {md.version('torch')}, not {line}")
print(
    "install.sh: installed vsa", md.version("vsa"), "with torch", md.version("torch"),
    "ray", md.version("ray"), "numpy", md.version("numpy"), "on python", sys.version.split()[0],
)
EOF
