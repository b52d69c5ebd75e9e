"""The states and the drop causes that go on the wire, in files and in status, in one place.

Pure Python (no torch, av, cv2 or Ray): the client, the CLI, the controller and the stream
all spell states and causes through these enums. Each member's value is the exact string
written to status, JSONL, reports and metrics; the enums subclass ``str`` so that a member
compares equal to its string (``SourceState.FAILED == "FAILED"``).

The source state machine (docs/states.md)::

    CONNECTING -> STREAMING -> FINISHED            (a file or finite source reached its end)
        |  ^          |
        v  |          v
    RECONNECTING <----+  (network sources: error, stall or end; waits by the reconnect policy)
        |
        v
      FAILED  (a file/synthetic source failed, or max_attempts ran out)
    any non-terminal state -> STOPPED (stop requested)
"""

from __future__ import annotations

from enum import Enum


class SourceState(str, Enum):
    CONNECTING = "CONNECTING"  # opening the URI; STREAMING only once a frame arrived
    STREAMING = "STREAMING"  # frames are decoded, inferred and written
    RECONNECTING = "RECONNECTING"  # down; waiting ``next_retry_at`` for attempt ``attempt``
    # a finite source reached its end; every frame emitted or counted as dropped
    FINISHED = "FINISHED"
    FAILED = "FAILED"  # gave up: ``code`` and ``error`` say why
    STOPPED = "STOPPED"  # a stop was requested

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_SOURCE_STATES


TERMINAL_SOURCE_STATES: frozenset[SourceState] = frozenset(
    {SourceState.FINISHED, SourceState.FAILED, SourceState.STOPPED}
)

# Every transition ``vsa.stream.StreamWorker`` makes (``_record``); a state not listed as a
# target of itself is never re-entered. The first entry of a source's transitions, the initial
# CONNECTING, is not a transition.
SOURCE_TRANSITIONS: dict[SourceState, frozenset[SourceState]] = {
    # a frame arrived / the open or the first read failed (network source: retry) / failed for
    # good (file, synthetic, permanent sink error, attempts used up) / a finite source with no
    # frames ended / stop
    SourceState.CONNECTING: frozenset(
        {
            SourceState.STREAMING,
            SourceState.RECONNECTING,
            SourceState.FAILED,
            SourceState.FINISHED,
            SourceState.STOPPED,
        }
    ),
    # error, stall or end of a live stream / end of a file / failed for good / stop
    SourceState.STREAMING: frozenset(
        {
            SourceState.RECONNECTING,
            SourceState.FINISHED,
            SourceState.FAILED,
            SourceState.STOPPED,
        }
    ),
    # the wait is over / a sink failed meanwhile / stop (ends the wait at once)
    SourceState.RECONNECTING: frozenset(
        {SourceState.CONNECTING, SourceState.FAILED, SourceState.STOPPED}
    ),
    SourceState.FINISHED: frozenset(),
    SourceState.FAILED: frozenset(),
    SourceState.STOPPED: frozenset(),
}


def check_source_transition(old: SourceState, new: SourceState) -> None:
    """Raise ``ValueError`` unless a source may go from ``old`` to ``new``."""
    if new not in SOURCE_TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in SOURCE_TRANSITIONS[old])) or "nothing"
        kind = " (a terminal state)" if old in TERMINAL_SOURCE_STATES else ""
        raise ValueError(
            f"illegal source transition {old.value} -> {new.value}: "
            f"{old.value}{kind} may go to {allowed}"
        )


class RunState(str, Enum):
    WAITING = "WAITING"  # no source delivers frames (at start, or every live source is down)
    UP = "UP"  # at least one source streams and none is down
    DEGRADED = "DEGRADED"  # a source streams while others are RECONNECTING or FAILED
    FINISHED = "FINISHED"  # every source ended and at least one reached its end
    FAILED = "FAILED"  # every source failed
    STOPPED = "STOPPED"  # a user stopped it, or its sources ended stopped

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES: frozenset[RunState] = frozenset(
    {RunState.FINISHED, RunState.FAILED, RunState.STOPPED}
)


class DropCause(str, Enum):
    """Why a decoded frame was not emitted (docs/failure-policy.md, "Frame accounting")."""

    DECIMATED = "decimated"  # over the source's fps cap, dropped before any copy
    QUEUE_FULL = "queue_full"  # realtime: a newer frame arrived before this one could be sent
    STALE = "stale"  # realtime: older than max_age_ms when a slot freed or its batch formed
    DECODE_ERROR = "decode_error"  # damaged data: the packet and the rest of its GOP
    INFERENCE_ERROR = "inference_error"  # the inference call failed or gave no result in time
    SHUTDOWN = "shutdown"  # the run stopped before its result arrived
    SINK_ERROR = "sink_error"  # a sink failed; the rest of the stream's frames
    OUTPUT_LOST = "output_lost"  # written into an output file then deleted or replaced
    SOURCE_LOST = "source_lost"  # decoded by a source actor process that died before writing


__all__ = [
    "SOURCE_TRANSITIONS",
    "TERMINAL_RUN_STATES",
    "TERMINAL_SOURCE_STATES",
    "DropCause",
    "RunState",
    "SourceState",
    "check_source_transition",
]
