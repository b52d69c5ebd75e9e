"""Per-frame results as JSON lines, flushed line by line.

Also the file handling every sink shares (``video.py`` uses it too): outputs are opened
without following a symlink at their own name (:func:`open_nofollow`), and a writer can
tell whether the file it writes is still the one at its path (:func:`file_identity`,
:func:`missing_reason`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FileId = tuple[int, int]  # (st_dev, st_ino)

# Every line the writer writes starts with ``"v": SCHEMA_VERSION``. A line without ``v`` is
# version 1 (written before the key existed: the same fields, no ``track_id`` or
# ``attributes`` on a detection). Readers look fields up by name and accept both, so a file
# begun by an older vsa is appended to, and resumed from, as it is.
VERSION_KEY = "v"
SCHEMA_VERSION = 2

# A missing O_NOFOLLOW/O_CLOEXEC (not on every platform) adds nothing to the flags.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def link_refused(path: str | Path) -> PermissionError:
    return PermissionError(
        f"{path} is a symbolic link; vsa does not write through links in its output directory"
    )


def open_nofollow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that fails, with :func:`link_refused`, when ``path`` itself is a symlink.

    Only the last component is checked: the output directory may well be reached through
    a link, but a link planted under an output's name is not written through (nor, dangling,
    used to create its target). Returns the descriptor.

    Nor is anything but a plain file with no other name: a FIFO (it would block the stream)
    or a hard link planted under an output's name (writing would change the other name's
    file) is refused before anything is truncated or written.
    """
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | _NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if os.path.islink(path):  # ELOOP on Linux, EMLINK on some BSDs
            raise link_refused(path) from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise PermissionError(
                f"{path} is not a regular file; vsa writes only plain files"
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{path} is not a regular file; vsa writes only plain files")
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if writing and st.st_nlink > 1:
            raise PermissionError(
                f"{path} has another name (a hard link); vsa does not write into a file that "
                "is shared with another path"
            )
        if truncate:
            os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_identity(fd: int) -> FileId:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def missing_reason(path: str | Path, identity: FileId) -> str | None:
    """Why ``path`` no longer names the file ``identity`` (deleted, replaced), or None."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return f"{path} was deleted"
    except OSError as exc:
        return f"{path} cannot be reached ({exc.strerror or type(exc).__name__})"
    if (st.st_dev, st.st_ino) != identity:
        return f"{path} was replaced by another file"
    return None


ROTATED = r"\.\d{8}T\d{6}Z(?:-\d+)?"  # what a rotated file adds before .jsonl


def rotated_name(path: Path, when: float) -> Path:
    """``<stem>.<UTC of when>.jsonl`` beside ``path`` (``cam.20261207T014800Z.jsonl``),
    ``-2``, ``-3``... after it when that name is taken: names sort by time."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    candidate = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    n = 2
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}")
        n += 1
    return candidate


def rotated_files(path: str | Path) -> list[Path]:
    """The files ``path`` was rotated into (oldest first), without ``path`` itself."""
    path = Path(path)
    pattern = re.compile(rf"^{re.escape(path.stem)}{ROTATED}{re.escape(path.suffix)}$")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in sorted(names, key=_rotation_key) if pattern.match(n)]


def _rotation_key(name: str) -> tuple[str, int]:
    m = re.search(r"\.(\d{8}T\d{6}Z)(?:-(\d+))?\.", name)
    return (m.group(1), int(m.group(2) or 1)) if m else (name, 0)


class JsonlWriter:
    """``append``: continue an existing file (a restarted source actor) instead of replacing it.

    Each record is written as one line that starts with ``"v": SCHEMA_VERSION``; a record that
    carries its own ``v`` keeps it.

    ``rotate_bytes``: once the file holds at least this many bytes (checked after a line), it
    is renamed to ``<stem>.<UTC now>.jsonl`` and a new file is begun at ``path``: the current
    file always has the same name, the rotated ones sort by time (``rotated_files``).
    ``lines_written`` counts every line written; ``lines_in_file`` those in the current file.
    """

    def __init__(
        self,
        path: str | Path,
        append: bool = False,
        rotate_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes, self._clock = rotate_bytes, clock
        self.lines_written = 0
        self.rotations = 0
        self._open(append)

    def _open(self, append: bool) -> None:
        if append:
            _drop_partial_last_line(self.path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = open_nofollow(self.path, flags)
        try:
            self.identity = file_identity(fd)
            self._file = os.fdopen(fd, "a" if append else "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise
        self.lines_in_file = 0

    def write(self, record: dict[str, Any]) -> None:
        line = {VERSION_KEY: SCHEMA_VERSION, **record}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()
        self.lines_written += 1
        self.lines_in_file += 1
        if self.rotate_bytes is not None and self._file.tell() >= self.rotate_bytes:
            self.rotate()

    def rotate(self) -> Path | None:
        """Close the current file under its rotated name and begin a new one; the rotated
        path (None when the current file is gone: ``missing`` says so at the next check)."""
        self._file.close()
        if self.missing() is not None:
            return None
        target = rotated_name(self.path, self._clock())
        os.rename(self.path, target)
        self.rotations += 1
        self._open(append=False)
        return target

    def missing(self) -> str | None:
        """Why the file written is no longer at ``path`` (deleted, replaced), or None.

        One ``stat``; still answers after :meth:`close`.
        """
        return missing_reason(self.path, self.identity)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _drop_partial_last_line(path: Path) -> None:
    """A process killed mid-write can leave half a line: cut it so the file stays JSONL.

    Reads backwards from the end only as far as the last newline.
    """
    try:
        fd = open_nofollow(path, os.O_RDWR)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return  # complete
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            pos = start
        if end:
            f.truncate(0)  # not one complete line


def _open_for_reading(path: Path) -> int | None:
    try:
        return open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def record_version(record: dict[str, Any]) -> int:
    """The schema version of a parsed line: its ``v``, or 1 for a line written without one."""
    version = record.get(VERSION_KEY, 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def last_record(path: str | Path, run_id: str) -> dict[str, Any] | None:
    """The last complete line of ``path`` when it belongs to ``run_id`` (else None); when
    ``path`` holds no line yet (it was just rotated), the last of its newest rotated file.

    Any schema version, with or without ``v``: only ``run`` and ``frame`` are read.
    """
    for candidate in (Path(path), *reversed(rotated_files(path))):
        found, record = _last_in(candidate, run_id)
        if found:
            return record
    return None


def _last_in(path: Path, run_id: str) -> tuple[bool, dict[str, Any] | None]:
    """(whether ``path`` has a line of ours, that line when it is ``run_id``'s)."""
    fd = _open_for_reading(path)
    if fd is None:
        return False, None
    with os.fdopen(fd, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (1 << 20)))
        lines = [x for x in f.read().split(b"\n") if x.strip()]
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("frame"), int):
            continue  # not one of ours (a damaged or foreign line)
        return True, record if record.get("run") == run_id else None
    return False, None


def count_all_lines(path: str | Path) -> int:
    """Complete lines in ``path`` and the files it was rotated into (those still there)."""
    return sum(count_lines(p) for p in (*rotated_files(path), Path(path)))


def count_lines(path: str | Path) -> int:
    """Complete lines in ``path`` (0 when it does not exist)."""
    fd = _open_for_reading(Path(path))
    if fd is None:
        return 0
    n = 0
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n
