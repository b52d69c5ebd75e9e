"""The exception hierarchy users of vsa see: every error vsa raises on purpose is a
:class:`VsaError`, and most are also the builtin exception that fits (``except ValueError``,
``except PermissionError`` ... keep working).

Source errors are generated from one table, :data:`SOURCE_ERRORS`, the way PyAV's
``av/error.pyx`` generates one class per FFmpeg error (``av.error.FileNotFoundError`` is an
``av.error.FFmpegError`` and a builtin ``FileNotFoundError``). A row says a failure's stable
``code`` (on the wire: a source's status, events, the JSONL, ``report.json``, metrics and the
docs), its class, how retrying treats it, the builtin it also derives from, and what it means::

    SourceError("TIMEOUT", "no answer")  # -> SourceTimeout, a SourceError and a TimeoutError
    except SourceError as err: err.code, err.message, err.permanent

Everything else is derived from the table, never written twice: :data:`CODES`
(``code -> (permanent, meaning)``), :data:`NEVER_RETRIED`, the classes themselves (module
attributes named by the table's second column) and the code table in
``docs/failure-policy.md``, which ``tests/unit/test_errors.py`` holds to it.

The other errors (:class:`ConfigError`, :class:`ClusterNotFound`, :class:`VersionMismatch`,
:class:`RunNotFound`, :class:`ModelError`, :class:`AuthenticationFailed`,
:class:`InvalidArgument`) stay explicit classes: they have no code on the wire, no retry policy
and each has its own constructor or ``__str__``, so a table row would add a column of names and
nothing a reader of the class does not already see.

No heavy imports here (PyAV, torch, Ray, OpenCV): every tier imports this module. Mapping a
PyAV or OS exception to a code lives in :mod:`vsa.sources.errors` (``classify``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, NamedTuple


class VsaError(Exception):
    """Base class: every error vsa raises on purpose derives from it."""


# --- errors without a code ------------------------------------------------------------------


class ConfigError(VsaError, ValueError):
    """A run file is invalid. ``problems`` holds one ``field: message`` line per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:  # survive pickling through Ray with its fields
        return (type(self), (self.problems, self.source))


class ClusterNotFound(VsaError, ConnectionError):
    """No Ray cluster to connect to."""


class VersionMismatch(VsaError):
    """The running controller executes different code than this client."""


class StatusFormatError(VsaError, ValueError):
    """The engine answered a status this client cannot read (a newer status version, or a
    malformed one); the message names the run and the key."""


class RunNotFound(VsaError, KeyError):
    """No run with that id or name."""

    def __str__(self) -> str:  # KeyError quotes its message; we don't want that
        return str(self.args[0]) if self.args else "run not found"


class ModelError(VsaError, ValueError):
    """A model cannot be loaded or does not match its configuration."""


class AuthenticationFailed(VsaError, PermissionError):
    """The Ray cluster uses token authentication and refused this client's token (or its lack
    of one)."""


class InvalidArgument(VsaError, ValueError):
    """An argument to a ``Client`` method is out of range."""


# --- source errors: one table ---------------------------------------------------------------


class Retry(str, Enum):
    """How the engine retries a source that failed with a code."""

    TRANSIENT = "transient"
    """Retried by the source's ``reconnect`` policy (network sources; files are never retried)."""
    PERMANENT = "permanent"
    """Retrying soon cannot help: network sources wait the policy's longest delay (the camera is
    not hammered), files are never retried."""
    NEVER = "never"
    """Never retried, whatever the source (permanent too)."""


class SourceErrorSpec(NamedTuple):
    """One row of :data:`SOURCE_ERRORS`."""

    code: str
    name: str
    retry: Retry
    builtin: type[Exception] | None
    meaning: str

    @property
    def permanent(self) -> bool:
        return self.retry is not Retry.TRANSIENT

    @property
    def never_retried(self) -> bool:
        return self.retry is Retry.NEVER


_T, _P, _N = Retry.TRANSIENT, Retry.PERMANENT, Retry.NEVER
_Row = SourceErrorSpec

# The builtin base is what Python or PyAV raise for the same failure, so ``except
# TimeoutError`` or ``except PermissionError`` catches vsa's error too; None where no builtin
# means the same thing (an HTTP status is not an OS error). Codes, their retry behaviour and
# meanings are on the wire: never change one, only add.
# fmt: off
SOURCE_ERRORS: tuple[SourceErrorSpec, ...] = (
    #    code                  class                      retry  builtin base
    _Row("AUTH_FAILED",        "SourceAuthFailed",        _P,    PermissionError,  # EACCES/EPERM, 401/403
         "the server refused the credentials (401/403)"),
    _Row("NOT_FOUND",          "SourceNotFound",          _P,    FileNotFoundError,  # ENOENT, 404
         "no such file, stream or path on the server (404)"),
    _Row("UNREACHABLE",        "SourceUnreachable",       _T,    ConnectionError,  # refused, no route, unknown host
         "the host refused or could not be reached"),
    _Row("TIMEOUT",            "SourceTimeout",           _T,    TimeoutError,
         "no answer within open_timeout_s/read_timeout_s"),
    _Row("STALLED",            "SourceStalled",           _T,    TimeoutError,  # a read timed out while connected
         "connected, but no frame for stall_timeout_s"),
    _Row("DISCONNECTED",       "SourceDisconnected",      _T,    ConnectionError,  # reset, broken pipe, aborted
         "the connection was closed or reset"),
    _Row("ENDED",              "SourceEnded",             _T,    EOFError,  # PyAV's EOFError
         "a live stream ended (the server closed it)"),
    _Row("SERVER_ERROR",       "SourceServerError",       _T,    None,  # an HTTP status, not an OS error
         "the server answered with an error (5xx)"),
    _Row("REJECTED",           "SourceRejected",          _P,    None,  # an HTTP status, not an OS error
         "the server rejected the request (4xx other than 401/403/404)"),
    _Row("UNSUPPORTED_CODEC",  "UnsupportedCodec",        _P,    NotImplementedError,  # this build cannot decode it
         "no decoder for the stream's codec"),
    _Row("NO_VIDEO",           "NoVideoStream",           _P,    ValueError,  # the input is not what a source needs
         "the input has no video stream"),
    _Row("CORRUPT_DATA",       "CorruptData",             _P,    ValueError,  # PyAV's InvalidDataError is one
         "the input is not a valid media stream"),
    _Row("FRAME_TOO_LARGE",    "FrameTooLarge",           _P,    ValueError,  # a frame beyond a configured limit
         "frame bigger than max_frame_pixels"),
    _Row("IO_ERROR",           "SourceIOError",           _T,    OSError,
         "an input/output error"),
    _Row("SINK_ERROR",         "SinkError",               _N,    OSError,  # read-only, disk full, file replaced
         "an output (video, JSONL) could not be written, or it vanished"),
    _Row("SECRET_UNAVAILABLE", "SecretUnavailable",       _N,    None,  # not the camera refusing: no PermissionError
         "the source's sealed credentials cannot be opened (the engine's key file is missing "
         "or was replaced)"),
    _Row("SOURCE_CHANGED",     "SourceChanged",           _P,    None,  # a resumed input file is another one
         "a resumed input file is not the one the run read before the engine restart, a pause "
         "or a change"),
    _Row("ERROR",              "UnexpectedSourceError",   _T,    RuntimeError,  # "any other category"
         "an unexpected error"),
)
# fmt: on
del _T, _P, _N, _Row

SPECS: dict[str, SourceErrorSpec] = {row.code: row for row in SOURCE_ERRORS}
"""``code -> row`` of :data:`SOURCE_ERRORS`."""

CODES: dict[str, tuple[bool, str]] = {
    row.code: (row.permanent, row.meaning) for row in SOURCE_ERRORS
}
"""``code -> (permanent, meaning)``. Permanent errors are retried at the policy's longest delay
(network sources) instead of hammering the camera; files are never retried."""

NEVER_RETRIED: frozenset[str] = frozenset(row.code for row in SOURCE_ERRORS if row.never_retried)
"""Never retried, whatever the source: retrying cannot help and would hammer the camera."""


class SourceError(VsaError):
    """A source failure with a stable ``code``; ``permanent`` ones are not worth a quick retry.

    ``SourceError(code, message)`` returns the code's class (``SourceError("TIMEOUT", m)`` is a
    :class:`SourceTimeout`); a code's class also takes the message alone
    (``SourceTimeout(m)``). An unknown code raises ``ValueError``.
    """

    code: ClassVar[str]
    permanent: ClassVar[bool]
    never_retried: ClassVar[bool]
    meaning: ClassVar[str]
    message: str

    def __new__(cls, *args: Any, **kwargs: Any) -> SourceError:
        if cls is SourceError:  # dispatch on the code
            if len(args) != 2 or kwargs:
                raise TypeError("SourceError(code, message)")
            cls = source_error_class(args[0])
        # Arguments are parsed by __init__; classes that extend one of ours (Ray's
        # RayTaskError(cause) dual class) construct it with their own arguments.
        return super().__new__(cls)

    def __init__(self, *args: str) -> None:
        if len(args) == 2:
            code, message = args
            if code != self.code:
                raise ValueError(f"{type(self).__name__} has code {self.code}, not {code!r}")
        elif len(args) == 1:
            (message,) = args
        else:
            raise TypeError(f"{type(self).__name__}(message) or SourceError(code, message)")
        super().__init__(message)
        self.args = (message,)  # OSError bases ignore __init__'s arguments; be explicit
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep the class, code and message across Ray
        return (type(self), (self.code, self.message))


def _make(row: SourceErrorSpec) -> type[SourceError]:
    bases: tuple[type, ...] = (SourceError,) if row.builtin is None else (SourceError, row.builtin)
    doc = f"``{row.code}``: {row.meaning}."
    namespace = {
        "__module__": __name__,
        "__qualname__": row.name,
        "__doc__": doc,
        "code": row.code,
        "permanent": row.permanent,
        "never_retried": row.never_retried,
        "meaning": row.meaning,
    }
    return type(row.name, bases, namespace)


SOURCE_ERROR_CLASSES: dict[str, type[SourceError]] = {row.code: _make(row) for row in SOURCE_ERRORS}
"""``code -> class``, one per row of :data:`SOURCE_ERRORS`."""

# Module attributes, so pickle (and Ray) find each class by its qualified name.
globals().update({cls.__name__: cls for cls in SOURCE_ERROR_CLASSES.values()})


def source_error_class(code: str) -> type[SourceError]:
    """The class of source error ``code``; ``ValueError`` for an unknown code."""
    try:
        return SOURCE_ERROR_CLASSES[code]
    except (KeyError, TypeError):
        raise ValueError(f"unknown source error code {code!r}") from None


__all__ = [
    "CODES",
    "NEVER_RETRIED",
    "SOURCE_ERRORS",
    "SOURCE_ERROR_CLASSES",
    "SPECS",
    "AuthenticationFailed",
    "ClusterNotFound",
    "ConfigError",
    "InvalidArgument",
    "ModelError",
    "Retry",
    "RunNotFound",
    "StatusFormatError",
    "SourceError",
    "SourceErrorSpec",
    "VersionMismatch",
    "VsaError",
    "source_error_class",
]
__all__ += [row.name for row in SOURCE_ERRORS]
