"""The CLI as a process: what a shell pipeline sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_cli_args import RUN_FILE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(RUN_FILE)
    return path


def test_cli_into_a_closed_pipe_prints_no_traceback(run_file):
    """`vsa submit --check run.yaml | head -0`: the reader is gone before the CLI writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the child starts: its first write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "vsa.cli", "submit", "--check", str(run_file)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, proc.stderr
