"""The decoding benchmark runs and prints both ways for both outputs (a smoke run: its numbers
are for people, not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_decode_smoke_run():
    done = subprocess.run(
        [sys.executable, "scripts/bench_decode.py", "--batch", "2", "--classes", "3", "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("B = 2, 3 classes")
    for name in ("zeros (pass-through)", "300 above threshold"):
        (line,) = [line for line in lines if line.strip().startswith(name)]
        assert "selection: plain" in line and "engine" in line and "whole decode" in line
