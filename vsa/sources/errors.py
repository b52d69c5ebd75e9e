"""Source errors classified into stable codes.

PyAV raises typed exceptions (``av.error.HTTPUnauthorizedError``, ``InvalidDataError``,
``FileNotFoundError``, ``ConnectionRefusedError``, ...) carrying FFmpeg's error code; the
engine turns each into one code from :data:`CODES`, which decides whether retrying can
help. Messages are masked: a URI with credentials never reaches a log or a status.

The codes, their classes and retry behaviour are one table in :mod:`vsa.errors`
(``SOURCE_ERRORS``); ``CODES``, ``NEVER_RETRIED`` and ``SourceError`` are re-exported here.
This module knows PyAV (imported lazily, in :func:`classify`).
"""

from __future__ import annotations

import errno
import re
import socket

from vsa.errors import CODES, NEVER_RETRIED, SourceError
from vsa.uri import mask_source_uri, mask_uri

_ERRNO_CODES = {
    errno.ECONNREFUSED: "UNREACHABLE",
    errno.EHOSTUNREACH: "UNREACHABLE",
    errno.ENETUNREACH: "UNREACHABLE",
    errno.EHOSTDOWN: "UNREACHABLE",
    errno.EADDRNOTAVAIL: "UNREACHABLE",
    errno.ETIMEDOUT: "TIMEOUT",
    errno.ECONNRESET: "DISCONNECTED",
    errno.EPIPE: "DISCONNECTED",
    errno.ECONNABORTED: "DISCONNECTED",
    errno.ENOENT: "NOT_FOUND",
    errno.EACCES: "AUTH_FAILED",
    errno.EPERM: "AUTH_FAILED",
    errno.EIO: "IO_ERROR",
}


# PyAV exception class name -> code, most specific first (the first match wins).
_AV_CODES: tuple[tuple[str, str], ...] = (
    ("HTTPUnauthorizedError", "AUTH_FAILED"),
    ("HTTPForbiddenError", "AUTH_FAILED"),
    ("HTTPNotFoundError", "NOT_FOUND"),
    ("HTTPServerError", "SERVER_ERROR"),
    ("HTTPTooManyRequestsError", "SERVER_ERROR"),
    ("HTTPBadRequestError", "REJECTED"),
    ("HTTPOtherClientError", "REJECTED"),
    ("HTTPClientError", "REJECTED"),
    ("DecoderNotFoundError", "UNSUPPORTED_CODEC"),
    ("DemuxerNotFoundError", "CORRUPT_DATA"),
    ("ProtocolNotFoundError", "UNSUPPORTED_CODEC"),
    ("PatchWelcomeError", "UNSUPPORTED_CODEC"),
    ("InvalidDataError", "CORRUPT_DATA"),
    ("EOFError", "ENDED"),
    ("ExitError", "TIMEOUT"),  # PyAV's timeout interrupts FFmpeg with AVERROR_EXIT
)


def _av_code(exc: BaseException) -> str | None:
    try:
        import av.error as averr
    except ImportError:  # pragma: no cover - PyAV is a core dependency
        return None
    for name, code in _AV_CODES:
        cls = getattr(averr, name, None)
        if cls is not None and isinstance(exc, cls):
            return code
    return None


def classify(exc: BaseException, uri: str = "") -> SourceError:
    """The :class:`SourceError` for any exception a source raised (already one: unchanged)."""
    if isinstance(exc, SourceError):
        return exc
    code = _av_code(exc)
    if code is None:
        if isinstance(exc, socket.gaierror):
            code = "UNREACHABLE"
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            code = "TIMEOUT"
        elif isinstance(exc, ConnectionRefusedError):
            code = "UNREACHABLE"
        elif isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            code = "DISCONNECTED"
        elif isinstance(exc, FileNotFoundError):
            code = "NOT_FOUND"
        elif isinstance(exc, PermissionError):
            code = "AUTH_FAILED"
        elif isinstance(exc, OSError) and exc.errno in _ERRNO_CODES:
            code = _ERRNO_CODES[exc.errno]
        elif isinstance(exc, OSError):
            code = "IO_ERROR"
        else:
            code = "ERROR"
    return SourceError(code, describe(exc, uri))


def describe(exc: BaseException, uri: str = "") -> str:
    """``exc`` as one masked line: PyAV's ``[Errno N] text: 'url'`` keeps the text and the URL."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__
    if uri:
        text = text.replace(uri, mask_source_uri(uri))
    return mask_uri(text)


__all__ = ["CODES", "NEVER_RETRIED", "SourceError", "classify", "describe"]
