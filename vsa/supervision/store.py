"""Where the controller keeps its run records: a tiny key-value interface, the disk store, and
a fake.

The controller keeps its runs in :class:`MirroredRunStore`: :class:`DiskRunStore` (one file per
run in the state directory: the truth, which outlives ``ray stop``, an upgrade and a reboot)
mirrored into Ray's GCS key-value store (``actors/store.py``: a copy for a controller that Ray
restarts on another node). Everything in ``vsa.supervision`` sees only :class:`RunStore`, so it
is tested with :class:`MemoryRunStore`. A record is the text
:meth:`vsa.supervision.runbook.RunRecord.to_json` writes; it carries its format version (``v``),
and a controller skips, with a log line, the records it cannot read.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

from vsa.fsutil import atomic_write, check_private_dir

_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
HEARTBEAT = "alive"
MAX_RECORD_BYTES = 16 * 1024 * 1024  # a record is a few KiB; a planted giant is not read


@runtime_checkable
class RunStore(Protocol):
    """Run records by run id. Any method may raise: the callers log and go on."""

    def put(self, run_id: str, text: str) -> None:
        """Save (or replace) the record of ``run_id``."""
        ...

    def get(self, run_id: str) -> str | None:
        """The record of ``run_id``; None when there is none."""
        ...

    def list(self) -> list[str]:
        """The ids of every saved record."""
        ...

    def delete(self, run_id: str) -> None:
        """Forget the record of ``run_id`` (nothing happens when there is none)."""
        ...


class MemoryRunStore:
    """A :class:`RunStore` in a dict, for tests. Set ``error`` to make every call raise it."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.error: Exception | None = None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, run_id: str, text: str) -> None:
        self._check()
        self.texts[run_id] = text

    def get(self, run_id: str) -> str | None:
        self._check()
        return self.texts.get(run_id)

    def list(self) -> list[str]:
        self._check()
        return list(self.texts)

    def delete(self, run_id: str) -> None:
        self._check()
        self.texts.pop(run_id, None)


class DiskRunStore:
    """Run records as files ``<directory>/<run id>.json``, each replaced atomically (written to
    a temporary file, flushed to disk, renamed over the old one, the directory flushed): a
    crash at any moment leaves the previous record or the new one, never a torn one.

    The directory and its parent (the state directory) are created 0700 and the files 0600
    (records hold sealed credentials and output paths); either directory that other users can
    write to (or that another user owns) is refused (:class:`vsa.fsutil.UnsafeDirectory`,
    naming the ``chmod`` to run) before anything is written. Records are written through a
    temporary file with a random name created new (:func:`vsa.fsutil.atomic_write`), and no
    file here is opened through a symbolic link. A run id that is not a plain file name is
    stored hex-encoded (``x-...``).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock_fd: int | None = None
        self._checked = False  # the directories were found private

    def lock(self) -> bool:
        """Own the directory (an exclusive ``flock`` on ``.lock``, held until this process
        ends or :meth:`unlock`); False when another process owns it: the controller of another
        cluster on this host (``vsa submit --local``, a script's private cluster), whose runs
        this one must neither resume nor overwrite."""
        import fcntl

        if self._lock_fd is not None:
            return True
        self._checked = False  # check again: the directories may have changed since
        self._ensure_dir()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.directory / ".lock", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _ensure_dir(self) -> None:
        """Create the directory and its parent (0700) and, once, refuse them when other users
        can write to them (UnsafeDirectory)."""
        if self._checked:
            return
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_private_dir(self.directory.parent, "the state directory")
        self.directory.mkdir(mode=0o700, exist_ok=True)
        check_private_dir(self.directory, "the state directory's runs/")
        self._checked = True

    def _path(self, run_id: str) -> Path:
        plain = _PLAIN_ID.fullmatch(run_id) and not run_id.startswith("x-")
        name = run_id if plain else "x-" + run_id.encode().hex()
        return self.directory / f"{name}.json"

    @staticmethod
    def _run_id(name: str) -> str:
        stem = name[: -len(".json")]
        return bytes.fromhex(stem[2:]).decode() if stem.startswith("x-") else stem

    def put(self, run_id: str, text: str) -> None:
        self._ensure_dir()
        atomic_write(self._path(run_id), text, 0o600)

    def get(self, run_id: str) -> str | None:
        """The record's text. A record is a plain file this store wrote: a symbolic link, a
        FIFO or a file larger than :data:`MAX_RECORD_BYTES` planted in the directory is an
        error (reported with the run), never followed or read."""
        path = self._path(run_id)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(f"{path} is a symbolic link: not followed") from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{path} is not a regular file")
            if info.st_size > MAX_RECORD_BYTES:
                raise OSError(f"{path} is {info.st_size} bytes, over {MAX_RECORD_BYTES}")
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(MAX_RECORD_BYTES + 1).decode("utf-8")
        finally:
            os.close(fd)

    def list(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        ids = []
        for name in sorted(names):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    ids.append(self._run_id(name))
                except ValueError:  # not a name this store wrote
                    continue
        return ids

    def delete(self, run_id: str) -> None:
        self._path(run_id).unlink(missing_ok=True)

    def beat(self) -> None:
        """Mark the controller alive now (the heartbeat file's modification time)."""
        self._ensure_dir()
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(self.directory / HEARTBEAT, flags, 0o600)  # never through a link
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PermissionError(f"{self.directory / HEARTBEAT} is not a regular file")
            os.utime(fd)
        finally:
            os.close(fd)

    def last_beat(self) -> float | None:
        """When a controller last marked itself alive (wall clock); None if never."""
        try:
            return os.stat(self.directory / HEARTBEAT, follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return None


class MirroredRunStore:
    """``truth`` (the disk) and a ``copy`` (Ray's GCS) of the same records.

    A record is written to the copy, then to the truth; an error of either is raised (after
    both were tried) so the caller logs it. Reads take the truth first and fall back to the
    copy: a controller that Ray restarts on another node, without this node's disk, still
    finds its runs. ``list`` is the union of both.
    """

    def __init__(self, truth: RunStore, copy: RunStore) -> None:
        self.truth, self.copy = truth, copy

    def put(self, run_id: str, text: str) -> None:
        error: Exception | None = None
        for store in (self.copy, self.truth):
            try:
                store.put(run_id, text)
            except Exception as exc:  # noqa: BLE001 - try the other, then raise
                error = error or exc
        if error is not None:
            raise error

    def get(self, run_id: str) -> str | None:
        error: Exception | None = None
        try:
            text = self.truth.get(run_id)
        except Exception as exc:  # noqa: BLE001 - an unreadable disk: the copy may have it
            text, error = None, exc
        if text is None:
            text = self.copy.get(run_id)
        if text is None and error is not None:
            raise error  # why the truth's record cannot be read, not "there is none"
        return text

    def list(self) -> list[str]:
        ids: list[str] = []
        errors = []
        for store in (self.truth, self.copy):
            try:
                ids += [i for i in store.list() if i not in ids]
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if len(errors) == 2:
            raise errors[0]
        return ids

    def delete(self, run_id: str) -> None:
        error: Exception | None = None
        for store in (self.copy, self.truth):
            try:
                store.delete(run_id)
            except Exception as exc:  # noqa: BLE001
                error = error or exc
        if error is not None:
            raise error
