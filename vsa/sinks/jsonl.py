"""Per-frame results as JSON lines, flushed line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlWriter:
    """``append``: continue an existing file (a restarted source actor) instead of replacing it."""

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append and self.path.exists():
            _drop_partial_last_line(self.path)
        mode = "a" if append else "w"
        self._file = open(self.path, mode, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.lines_written = 0

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.lines_written += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _drop_partial_last_line(path: Path) -> None:
    """A process killed mid-write can leave half a line: cut it so the file stays JSONL."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def last_record(path: str | Path, run_id: str) -> dict[str, Any] | None:
    """The last complete line of ``path`` when it belongs to ``run_id`` (else None)."""
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - (1 << 20)))
        lines = [x for x in f.read().split(b"\n") if x.strip()]
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        return record if record.get("run") == run_id else None
    return None


def count_lines(path: str | Path) -> int:
    """Complete lines in ``path`` (0 when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n
