"""Source URIs: scheme checks, path resolution and credential masking."""

from __future__ import annotations

import re
from pathlib import Path

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
SCHEMES = ("synthetic", "file", *NETWORK_SCHEMES)
_SECRET_QUERY_KEYS = {
    "password",
    "pass",
    "pwd",
    "passwd",
    "token",
    "key",
    "secret",
    "auth",
    "signature",
}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(uri: str) -> str:
    """The URI's scheme, or ``file`` for a plain path."""
    match = _SCHEME_RE.match(uri)
    return match.group(1).lower() if match else "file"


def check_scheme(uri: str) -> str:
    scheme = scheme_of(uri)
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme '{scheme}' (use one of: {', '.join(SCHEMES)})")
    return scheme


def file_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI or a plain path."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    return Path(uri)


def mask_uri(text: str) -> str:
    """``text`` with every URI password, bare-user token and secret query value replaced by ``***``.

    ``rtsp://admin:hunter2@cam/stream?token=x`` -> ``rtsp://admin:***@cam/stream?token=***``.
    Works on a single URI and on free text that quotes URIs (error messages from FFmpeg
    do), and errs on the side of hiding too much. Use it for everything a user may see:
    logs, status, metrics, errors.
    """
    text = _USERINFO_RE.sub(_mask_userinfo, text)
    return _SECRET_QUERY_RE.sub(r"\1***", text)


def _mask_userinfo(match: re.Match[str]) -> str:
    if match.group("password") is None:
        return f"{match.group('scheme')}***@"
    return f"{match.group('scheme')}{match.group('user')}:***@"


# user, then optionally ':' and a password running to the last '@' before a space or quote
_USERINFO_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:@/?#'\"]*)(?P<password>:[^\s'\"]*)?@"
)
_SECRET_QUERY_RE = re.compile(
    r"([?&](?:" + "|".join(sorted(_SECRET_QUERY_KEYS)) + r")=)[^&#\s'\"]*", re.IGNORECASE
)
