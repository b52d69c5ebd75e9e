"""The GPU check (model, preprocessing, batching) runs with only torch, numpy and OpenCV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BLOCK = "import sys\nfor m in ('pydantic', 'yaml', 'ray', 'av'): sys.modules[m] = None\n"


def test_gpu_check_runs_without_ray_pyav_pydantic_yaml():
    code = BLOCK + (
        "import runpy\n"
        "sys.argv = ['gpu_check.py', '--seconds', '0.02', '--classes', '3']\n"
        "runpy.run_path('scripts/gpu_check.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("builtin ") for line in lines) and any(
        line.startswith("yolo ") for line in lines
    )


def test_batching_and_models_import_alone():
    code = (
        BLOCK
        + "import vsa.batching, vsa.models.builtin, vsa.models.yolo, vsa.models.base; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
