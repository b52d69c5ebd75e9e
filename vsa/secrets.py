"""Sealing source credentials for durable records.

A run's record keeps its source URI masked (:func:`vsa.uri.mask_uri`) plus a sealed copy
of the clear one that only this host can open: Fernet (AES-128-CBC + HMAC-SHA256) with a
key in a file readable by its owner alone. The source actor unseals it when it starts.

The key file is :func:`key_path`; :func:`seal` creates it on first use (mode 0600, in a
0700 directory when it makes one). Losing or replacing it makes every sealed value
unreadable: the runs that hold one must be submitted again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vsa.errors import VsaError
from vsa.uri import mask_source_uri

SEALED_PREFIX = "vsa-sealed:v1:"
_MAX_KEY_BYTES = 4096


def key_path() -> Path:
    """The key file: ``$VSA_SECRET_KEY_FILE``, else ``$VSA_STATE_DIR/secret.key``, else
    ``~/.vsa/secret.key``."""
    from vsa.hostconfig import environ

    env = environ()
    explicit = env.get("VSA_SECRET_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    state_dir = env.get("VSA_STATE_DIR")
    if state_dir:
        return Path(state_dir).expanduser() / "secret.key"
    return Path.home() / ".vsa" / "secret.key"


def seal(text: str) -> str:
    """``text`` encrypted with this host's key, as ``vsa-sealed:v1:<token>``.

    Creates the key file on first use. Raises :class:`VsaError` when the key file is
    unsafe (readable by others, owned by someone else) or cannot be created.
    """
    token = Fernet(_load_key(create=True)).encrypt(text.encode("utf-8"))
    return SEALED_PREFIX + token.decode("ascii")


def unseal(sealed: str) -> str:
    """The text :func:`seal` sealed. Raises :class:`VsaError` when it cannot be opened.

    The error never holds the secret nor the sealed token.
    """
    if not is_sealed(sealed):
        raise VsaError(f"the stored credentials are not sealed (no '{SEALED_PREFIX}' prefix)")
    key = _load_key(create=False)
    try:
        clear = Fernet(key).decrypt(sealed[len(SEALED_PREFIX) :].encode("ascii"))
        return clear.decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise VsaError(_cannot_open(key_path())) from None


def is_sealed(text: str) -> bool:
    """Whether ``text`` is a value :func:`seal` made."""
    return text.startswith(SEALED_PREFIX)


def needs_sealing(uri: str) -> bool:
    """Whether ``uri`` holds something secret (a password, a token, a secret query value)."""
    return mask_source_uri(uri) != uri


def _cannot_open(path: Path) -> str:
    return (
        f"cannot open the sealed source credentials: the key file {path} is missing or "
        "was replaced; submit the run again"
    )


def _load_key(create: bool) -> bytes:
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            raise VsaError(_cannot_open(path)) from None
    return _create_key(path)


def _read_key(path: Path) -> bytes:
    """The key in ``path``, once it is known to be a private file of this user."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VsaError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(fd))
        key = os.read(fd, _MAX_KEY_BYTES).strip()
    finally:
        os.close(fd)
    try:
        Fernet(key)
    except ValueError:
        raise VsaError(
            f"the key file {path} does not hold a vsa key; move it away so that a new one "
            "is made (runs sealed with the old one must be submitted again)"
        ) from None
    return key


def _check_private(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise VsaError(f"the key file {path} is not a regular file")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        raise VsaError(
            f"the key file {path} belongs to another user (uid {st.st_uid}, you are "
            f"{getuid()}); it guards camera passwords, so vsa refuses it: use your own key "
            "file (VSA_SECRET_KEY_FILE) or run vsa as its owner"
        )
    if st.st_mode & 0o077:
        raise VsaError(
            f"the key file {path} can be read or written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it guards camera passwords, so vsa refuses "
            f"it: run 'chmod 600 {path}'"
        )


def _create_key(path: Path) -> bytes:
    """Write a new key to ``path`` atomically; when another process won the race, use its key."""
    parent = path.parent
    try:
        try:
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)  # mkdir's mode is subject to the umask
        except FileExistsError:
            pass
        tmp = parent / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        # created new, with a random name: never an existing file, nor through a planted link
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            try:
                os.write(fd, Fernet.generate_key() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic, and never replaces a key another process made
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise VsaError(f"cannot create the key file {path}: {exc.strerror}") from None
    return _read_key(path)
