"""Source URIs: scheme checks, path resolution and credential masking."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
SCHEMES = ("synthetic", "file", *NETWORK_SCHEMES)

SECRET_QUERY_WORDS = (
    "token",
    "key",
    "secret",
    "pass",
    "pwd",
    "sig",
    "auth",
    "cred",
    "session",
    "jwt",
    "ticket",
    "otp",
)
"""A query parameter whose name (percent-decoded, lower-cased) contains one of these is secret."""

_MASK = "***"
_MAX_NESTING = 16  # URIs inside URIs (``?url=rtsp://...``) masked this many levels deep
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# a URI anywhere in free text: no look-behind, so ``1rtsp://`` still starts a URI at ``rtsp``
_URI_START_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# a URI ends at whitespace or at a character that is never legal in one (RFC 3986)
_URI_END_RE = re.compile(r"[\s\"<>`{}|\\^]")
_AUTHORITY_END_RE = re.compile(r"[/?#]")
_IPV6_HOST_RE = re.compile(r"\[[^\]]*\](?::\d*)?")
_PORT_RE = re.compile(r"\d+")
_PARAM_SEP_RE = re.compile(r"([&;])")
# a quote (or bracket) opened just before the URI, closed at its end: ``'rtsp://h/x':``
_CLOSERS = {"'": "'", "(": ")", "[": "]"}
_CLOSING_TAIL_RE = {
    opener: re.compile(re.escape(closer) + r"[.,;:!?)\]]*\Z") for opener, closer in _CLOSERS.items()
}


def scheme_of(uri: str) -> str:
    """The URI's scheme, or ``file`` for a plain path."""
    match = _SCHEME_RE.match(uri)
    return match.group(1).lower() if match else "file"


def check_scheme(uri: str) -> str:
    """The URI's scheme; ``ValueError`` when vsa cannot read it."""
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
    do). Use it for everything a user may see: logs, status, metrics, errors.

    The URIs are parsed, not pattern-matched, and the rules err on the side of hiding
    too much:

    - A URI starts at ``scheme://`` and runs to whitespace or to a character never legal
      in a URI (``"<>`{}|\\^``). When a quote or bracket opens just before it, a closing
      one at its very end (maybe followed by ``.,;:!?)]``) is left out of it.
    - Userinfo is everything up to the last ``@`` before the first ``/``, ``?`` or ``#``.
      If there is no such ``@`` but the text before that delimiter looks like
      ``user:pass`` (a ``:`` not followed by a mere port number) and an ``@`` comes later,
      everything up to the last ``@`` is userinfo (a raw ``/?#`` typed into a password).
      ``user:password@`` becomes ``user:***@`` whatever the password holds, and a userinfo
      without ``:`` becomes ``***@`` (it may be a token).
    - The query (after the first ``?`` after the authority, up to ``#``) and a fragment
      made of parameters (``#access_token=...``) are split on ``&`` and ``;``; a parameter
      whose name, percent-decoded and lower-cased, contains one of
      :data:`SECRET_QUERY_WORDS` (``token, key, secret, pass, pwd, sig, auth, cred,
      session, jwt, ticket, otp``) gets the value ``***``.
    - URIs nested in the kept parts (``?url=rtsp://u:p@cam``) are masked the same way.

    Everything else is kept byte for byte; text without a secret comes back unchanged.
    """
    return _mask_text(text, 0)


def mask_source_uri(uri: str) -> str:
    """:func:`mask_uri` for one known source URI: the whole string is the URI, so a space or a
    quote typed into a password (``${CAM_PASS}`` may expand to anything) does not end it."""
    match = _SCHEME_RE.match(uri)
    if match is None:
        return mask_uri(uri)
    return uri[: match.end()] + _mask_after_scheme(uri[match.end() :], "", 0)


def _mask_text(text: str, depth: int) -> str:
    """``mask_uri`` for a URI nested ``depth`` levels deep in another one."""
    if depth > _MAX_NESTING and _URI_START_RE.search(text):
        return _MASK  # absurdly deep nesting: hide it all rather than recurse on
    out: list[str] = []
    pos = 0
    while (match := _URI_START_RE.search(text, pos)) is not None:
        end_match = _URI_END_RE.search(text, match.end())
        end = end_match.start() if end_match else len(text)
        opener = text[match.start() - 1] if match.start() > 0 else ""
        out.append(text[pos : match.end()])
        out.append(_mask_after_scheme(text[match.end() : end], opener, depth))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _mask_after_scheme(body: str, opener: str, depth: int) -> str:
    """``body``, the part of a URI after ``scheme://``, masked."""
    userinfo_end = _userinfo_end(body)
    if userinfo_end is None:
        head, rest = "", body
    else:
        head, rest = _mask_userinfo(body[:userinfo_end]) + "@", body[userinfo_end + 1 :]
    tail = ""
    closing = _CLOSING_TAIL_RE.get(opener)
    if closing is not None and (found := closing.search(rest)) is not None:
        rest, tail = rest[: found.start()], rest[found.start() :]
    return head + _mask_rest(rest, depth) + tail


def _userinfo_end(body: str) -> int | None:
    """Index of the ``@`` that ends the userinfo of ``body``, or None when it has none."""
    delimiter = _AUTHORITY_END_RE.search(body)
    authority = body[: delimiter.start()] if delimiter else body
    at = authority.rfind("@")
    if at >= 0:
        return at
    # No '@' in the authority: a raw '/', '?' or '#' in a password ends it early. Treat
    # ``user:pass...`` as userinfo when an '@' comes later; ``host:port`` and ``[v6]`` are hosts.
    colon = authority.find(":")
    if colon < 0 or _IPV6_HOST_RE.fullmatch(authority):
        return None
    if _PORT_RE.fullmatch(authority[colon + 1 :]):
        return None
    at = body.rfind("@")
    return at if at >= 0 else None


def _mask_userinfo(userinfo: str) -> str:
    if not userinfo:
        return userinfo
    colon = userinfo.find(":")
    if colon < 0:
        return _MASK
    return f"{userinfo[:colon]}:{_MASK}"


def _mask_rest(rest: str, depth: int) -> str:
    """Host, path, query and fragment: secret parameter values masked, nested URIs too."""
    rest, hash_, fragment = rest.partition("#")
    location, question, query = rest.partition("?")
    masked = _mask_text(location, depth + 1)
    if question:
        masked += question + _mask_params(query, depth)
    if hash_:
        masked += hash_ + _mask_params(fragment, depth)
    return masked


def _mask_params(query: str, depth: int) -> str:
    parts = _PARAM_SEP_RE.split(query)
    for i in range(0, len(parts), 2):
        name, equals, value = parts[i].partition("=")
        if equals and _is_secret_name(name):
            parts[i] = f"{name}={_MASK}"
        else:
            parts[i] = _mask_text(parts[i], depth + 1)
    return "".join(parts)


def _is_secret_name(name: str) -> bool:
    decoded = unquote(name).lower()
    return any(word in decoded for word in SECRET_QUERY_WORDS)
