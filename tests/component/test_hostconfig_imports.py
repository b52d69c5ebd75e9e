"""Reading the host file loads no pydantic: it is read by the CLI, the controller and every
actor, and its loader (vsa.yamlsafe) is the run file's without the run file's schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reading_the_host_file_loads_no_pydantic(tmp_path: Path):
    host = tmp_path / "vsa.yaml"
    host.write_text("max_sources: 9\nreconnect: {max_s: 60}\n")
    code = (
        "import sys\n"
        "from vsa import hostconfig\n"
        f"data = hostconfig.read_host_file({str(host)!r}, explicit=True)\n"
        "assert data['max_sources'] == 9, data\n"
        "print(sorted(m for m in ('pydantic', 'torch', 'av', 'cv2', 'ray') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
