"""Source URIs: scheme checks, path resolution and credential masking."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def mask_uri(uri: str) -> str:
    """The URI with passwords and secret query values replaced by ``***``.

    ``rtsp://admin:hunter2@cam/stream?token=x`` -> ``rtsp://admin:***@cam/stream?token=***``.
    Use it for everything a user may see: logs, status, metrics, errors.
    """
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
