"""Source errors classified into stable codes.

PyAV raises typed exceptions (``av.error.HTTPUnauthorizedError``, ``InvalidDataError``,
``FileNotFoundError``, ``ConnectionRefusedError``, ...) carrying FFmpeg's error code; the
engine turns each into one code from :data:`CODES`, which decides whether retrying can
help. Messages are masked: a URI with credentials never reaches a log or a status.
"""

from __future__ import annotations

import errno
import re
import socket

from vsa.uri import mask_source_uri, mask_uri

# code -> (permanent, what it means). Permanent errors are retried at the policy's longest
# delay (network sources) instead of hammering the camera; files are never retried.
CODES: dict[str, tuple[bool, str]] = {
    "AUTH_FAILED": (True, "the server refused the credentials (401/403)"),
    "NOT_FOUND": (True, "no such file, stream or path on the server (404)"),
    "UNREACHABLE": (False, "the host refused or could not be reached"),
    "TIMEOUT": (False, "no answer within open_timeout_s/read_timeout_s"),
    "STALLED": (False, "connected, but no frame for stall_timeout_s"),
    "DISCONNECTED": (False, "the connection was closed or reset"),
    "ENDED": (False, "a live stream ended (the server closed it)"),
    "SERVER_ERROR": (False, "the server answered with an error (5xx)"),
    "REJECTED": (True, "the server rejected the request (4xx other than 401/403/404)"),
    "UNSUPPORTED_CODEC": (True, "no decoder for the stream's codec"),
    "NO_VIDEO": (True, "the input has no video stream"),
    "CORRUPT_DATA": (True, "the input is not a valid media stream"),
    "FRAME_TOO_LARGE": (True, "frame bigger than max_frame_pixels"),
    "IO_ERROR": (False, "an input/output error"),
    "SINK_ERROR": (True, "an output (video, JSONL) could not be written, or it vanished"),
    "SECRET_UNAVAILABLE": (
        True,
        "the source's sealed credentials cannot be opened (the engine's key file is missing "
        "or was replaced)",
    ),
    "ERROR": (False, "an unexpected error"),
}


# Never retried, whatever the source: retrying cannot help and would hammer the camera.
NEVER_RETRIED = frozenset({"SINK_ERROR", "SECRET_UNAVAILABLE"})


class SourceError(Exception):
    """A source failure with a stable ``code``; ``permanent`` ones are not worth a quick retry."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown source error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return CODES[self.code][0]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):  # noqa: ANN204 - keep code and message across Ray/pickle
        return (SourceError, (self.code, self.message))


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


def _av_code(exc: BaseException) -> str | None:
    try:
        import av.error as averr
    except ImportError:  # pragma: no cover - PyAV is a core dependency
        return None
    table: list[tuple[str, str]] = [
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
    ]
    for name, code in table:
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
