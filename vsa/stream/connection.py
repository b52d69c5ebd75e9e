"""What a stream does after a connection ended: retry later (how long) or give up.

Pure decisions on a :class:`vsa.reconnect.Backoff`; the waiting itself is the worker's (on its
stop event, so a stop ends the wait at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsa.constants import STOP_GRACE_S
from vsa.reconnect import Backoff
from vsa.sources.errors import NEVER_RETRIED, SourceError, describe


@dataclass(frozen=True)
class Retry:
    attempt: int  # the attempt this wait leads to (1 = the first reconnect)
    delay_s: float
    error: SourceError  # why the connection ended


@dataclass(frozen=True)
class GiveUp:
    error: SourceError  # what the source FAILS with


def after_error(
    error: SourceError, attempt: int, reconnects: bool, backoff: Backoff
) -> Retry | GiveUp:
    """The next step after a connection ended with ``error``, ``attempt`` reconnects tried so far.

    Only network sources (``reconnects``) come back: a file or a generator would fail the same
    way again. Output and secret errors are never retried, whatever the source. A permanent
    error (bad credentials, not found) waits the policy's longest delay.
    """
    if not reconnects or error.code in NEVER_RETRIED:
        return GiveUp(error)
    attempt += 1
    if backoff.exhausted(attempt):
        return GiveUp(
            SourceError(
                error.code, f"{error.message} (gave up after {attempt - 1} reconnect attempts)"
            )
        )
    return Retry(attempt, backoff.delay(attempt, error.permanent), error)


def stop_grace_s(spec: Any) -> float:
    """How long a stopping source may still take after the drain timeout: a decode thread
    blocked in an open or a read ends within the source's own timeouts."""
    read = min(spec.read_timeout_s, spec.stall_timeout_s)
    return max(STOP_GRACE_S, spec.open_timeout_s + 1, read + 1)


class SinkOpenFailed(Exception):
    """The stream's outputs could not be opened (a SINK_ERROR, whatever the source type)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def sink_error(exc: BaseException) -> SourceError:
    """The ``SINK_ERROR`` a stream fails with when an output cannot be opened or written."""
    return SourceError("SINK_ERROR", f"{describe(exc)} ({type(exc).__name__})")
