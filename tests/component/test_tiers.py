"""The unit tier's rules are enforced by its conftest, not by convention."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "body, refused",
    [
        ("import av", "does not import 'av'"),
        ("import torch", "does not import 'torch'"),
        ("import ray", "does not import 'ray'"),
        ("import time\n    time.sleep(0.01)", "use the fake clock"),
        ("import subprocess\n    subprocess.run(['true'])", "started a subprocess"),
    ],
)
def test_the_unit_tier_refuses_heavy_imports_sleep_and_subprocesses(
    tmp_path: Path, body: str, refused: str
):
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "conftest.py").write_text((REPO / "tests/unit/conftest.py").read_text())
    (unit / "test_x.py").write_text(textwrap.dedent(f"def test_x():\n    {body}\n"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(unit)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert refused in proc.stdout, proc.stdout


def test_a_session_over_several_tiers_may_load_the_heavy_modules(tmp_path: Path):
    """``pytest tests`` runs every tier in one process: the unit conftest must not refuse the
    imports the other tiers need."""
    unit, component = tmp_path / "unit", tmp_path / "component"
    for d in (unit, component):
        d.mkdir()
    (unit / "conftest.py").write_text((REPO / "tests/unit/conftest.py").read_text())
    (unit / "test_u.py").write_text("def test_u():\n    pass\n")
    (component / "test_c.py").write_text("import av\n\n\ndef test_c():\n    assert av\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(unit), str(component)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
