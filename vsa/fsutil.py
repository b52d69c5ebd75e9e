"""Files the engine writes, written so that another user on the host cannot redirect them.

The engine often runs as root or as a service user, in directories other users may reach;
two helpers keep its writes its own:

- :func:`atomic_write` replaces a file all or nothing, through a temporary file with a
  random name created new (``O_EXCL|O_NOFOLLOW``): a symbolic link planted at a predictable
  name (``.<name>.<pid>.tmp``) can no longer make the engine overwrite the link's target;
- :func:`check_private_dir` refuses a directory other users can write to (or that another
  user owns), naming the path and the ``chmod`` or ``chown`` that fixes it: in such a
  directory they could plant links, or replace what the engine wrote.

Standard library only (no torch, Ray, PyAV): every tier imports it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from vsa.errors import VsaError

# Not every platform has them; a missing flag adds nothing.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
"""``os.open`` flags for a file that must not exist yet, never reached through a link."""


class UnsafeDirectory(VsaError, PermissionError):
    """A directory the engine keeps its state in can be written by other users (or belongs to
    one); the message names the path and the command that makes it private."""


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8), all or nothing.

    ``data`` goes to ``.<name>.<random hex>.tmp`` in the same directory, created with
    ``O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`` and ``mode`` (less the umask): never an
    existing file, nor a link's target. It is fsync'ed, renamed over ``path`` (a link planted
    under ``path`` itself is replaced, not written through) and the directory is fsync'ed. On
    any error the temporary file is removed, ``path`` keeps its old content and the error is
    raised again.

    Usage: ``atomic_write(endpoint_file, json.dumps(info))``, ``atomic_write(p, b"...", 0o644)``.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    atomic_write_with(path, lambda f: f.write(raw), mode)


def atomic_write_with(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], mode: int = 0o600
) -> None:
    """:func:`atomic_write` of what ``write`` puts in a binary file (a figure, a stream)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, CREATE_NEW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable; best effort (not every platform can open a
    directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _trusted(uid: int) -> bool:
    """An owner the engine may trust: itself, or root (who can do anything anyway)."""
    return uid in (os.geteuid(), 0)


def check_private_dir(path: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`UnsafeDirectory` unless only this user (or root) can change ``path``.

    ``what`` names the directory in the message (``"the state directory"``). Refused: a
    directory group or others can write to (``mode & 0o022``; a sticky ``/tmp`` too), one
    another user owns, and a symbolic link (the final component, ``lstat``) another user
    owns. A link of this user's to a private directory is fine. A missing ``path`` raises
    ``FileNotFoundError``; the parents are not checked.
    """
    path = Path(path)
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:  # no POSIX owners (Windows): nothing to check
        return
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and not _trusted(link.st_uid):
        raise UnsafeDirectory(
            f"{what} {path} is a symbolic link owned by another user (uid {link.st_uid}, vsa "
            f"runs as uid {geteuid()}), who can point it anywhere: replace it with a directory "
            f"of your own ('rm {path} && mkdir -m 700 {path}')"
        )
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory")
    if not _trusted(st.st_uid):
        raise UnsafeDirectory(
            f"{what} {path} belongs to another user (uid {st.st_uid}, vsa runs as uid "
            f"{geteuid()}), who could replace the files vsa writes there: run "
            f"'chown {geteuid()} {path}' or choose a directory of your own"
        )
    if st.st_mode & 0o022:
        raise UnsafeDirectory(
            f"{what} {path} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}), who could plant links there and make vsa "
            f"overwrite other files: run 'chmod go-w {path}'"
        )


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """``path`` as a directory of mode 0700, and each missing directory above it made 0700
    too (``Path.mkdir(parents=True)`` makes the parents under the umask: 0775 under umask
    002, which :func:`check_private_dir` then refuses for the state directory ``~/.vsa``).
    Directories that exist above ``path`` are left as they are."""
    path = Path(path)
    missing = []
    for level in (path, *path.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: left as it is
        os.chmod(level, 0o700)  # whatever the umask
    os.chmod(path, 0o700)
