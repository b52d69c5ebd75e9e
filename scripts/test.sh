#!/usr/bin/env bash
# Install everything (venv, Python packages, ffmpeg for ffprobe) and run lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Debian packages: ffprobe (checks our MP4s), GStreamer's RTSP server (the live-source tests
# run a real one under the system python3, which has the gi bindings) and Prometheus (the
# metrics test scrapes Ray's endpoint with it; the test starts its own on 127.0.0.1), the MQTT
# broker mosquitto (the mqtt sink's tests start their own on 127.0.0.1), and the linter for
# shell scripts, shellcheck (the image and deploy scripts are checked with it), and Chromium (the
# live page is tested in it, headless).
DEB=(ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
     gstreamer1.0-plugins-ugly gstreamer1.0-rtsp prometheus mosquitto shellcheck chromium)
missing=()
for pkg in "${DEB[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
ruff check .
ruff format --check .
if [ $# -gt 0 ]; then  # a selection: run just that
  exec env VSA_REQUIRE_FFPROBE=1 VSA_REQUIRE_RTSP=1 VSA_REQUIRE_PROMETHEUS=1 VSA_REQUIRE_MQTT=1 VSA_REQUIRE_CHROMIUM=1 \
    python -m pytest -q -p no:cacheprovider "$@"
fi
# The unit tier on its own: there its conftest refuses torch, PyAV, Ray, subprocesses and sleeping.
python -m pytest -q -p no:cacheprovider tests/unit
# The same tier under Python 3.10 (Jetson's JetPack 6): it needs no torch, PyAV or Ray, so a
# small venv of the pure-Python dependencies is enough.
PY310=""
for candidate in python3.10 "$HOME"/.pyenv/versions/3.10.*/bin/python /usr/bin/python3.10; do
  if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 10)" >/dev/null 2>&1; then
    PY310=$candidate; break
  fi
done
if [ -n "$PY310" ]; then
  [ -x .venv310/bin/python ] || "$PY310" -m venv .venv310
  { .venv310/bin/python -m pip install -q numpy opencv-python-headless pyyaml pydantic matplotlib \
      cryptography psutil supervision scipy rich pytest pytest-timeout hypothesis \
      && .venv310/bin/python -m pip install -q --no-deps -r images/no-deps.txt; } \
    >.venv310/install.log 2>&1 || { tail -n 30 .venv310/install.log; exit 1; }
  .venv310/bin/python -m pytest -q -p no:cacheprovider tests/unit
else
  echo "Python 3.10 not found: the unit tier ran under $(python --version) only" >&2
fi
# Then the component tier (real PyAV, models, x264; no Ray) and the integration tier (real Ray).
VSA_REQUIRE_FFPROBE=1 VSA_REQUIRE_RTSP=1 VSA_REQUIRE_PROMETHEUS=1 VSA_REQUIRE_MQTT=1 VSA_REQUIRE_CHROMIUM=1 \
  python -m pytest -q -p no:cacheprovider tests/component tests/integration
# Last, alone: a two-node Ray cluster simulated on this host (one cluster per driver, and a
# second cluster on the host would be the one `address="auto"` finds).
python -m pytest -q -p no:cacheprovider tests/cluster
# And the engine's own restarts: whole Ray heads started, drained, stopped and SIGKILLed
# (each isolated by its own RAY_TMPDIR and port), the run resumed from the state directory.
python -m pytest -q -p no:cacheprovider tests/restart
