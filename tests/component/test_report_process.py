"""Reports under real kernel write errors, in a child process."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.test_report import leftovers

REPO = Path(__file__).resolve().parents[2]


def test_file_size_limit_keeps_the_previous_report_json(tmp_path: Path):
    """A real write error from the kernel (EFBIG past RLIMIT_FSIZE), in a child process."""
    (tmp_path / "report.json").write_text('{"old": true}')
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.unit.test_report import small_report
        from vsa.report import write_report
        report = small_report()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            write_report({str(tmp_path)!r}, report)
        except OSError as exc:
            print("errno", exc.errno)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.stdout.strip() == f"errno {errno.EFBIG}", proc.stderr
    assert (tmp_path / "report.json").read_text() == '{"old": true}'
    assert leftovers(tmp_path) == []
