"""A source's state machine: its state, why it is there, and the transitions it made.

No threads and no I/O: the stream worker calls it with its lock held; unit tests call it
directly (``tests/unit/test_stream_machine.py``). Every transition is checked against
``vsa.schema.SOURCE_TRANSITIONS``; a terminal state is final.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from vsa.constants import TRANSITIONS_KEPT
from vsa.schema import SourceState, check_source_transition
from vsa.sources.errors import SourceError
from vsa.uri import mask_uri

log = logging.getLogger("vsa.stream")


class SourceMachine:
    """``state``, ``code``/``error`` (why it is not streaming), the reconnect ``attempt`` and
    ``next_retry_at``, ``reconnects`` made, and the last ``TRANSITIONS_KEPT`` transitions."""

    def __init__(self, name: str = "", wall: Callable[[], float] = time.time) -> None:
        self.name = name  # "run=... source=..." for log lines
        self._wall = wall
        self.state = SourceState.CONNECTING
        self.code: str | None = None
        self.error: str | None = None
        self.failed = False
        self.attempt = 0
        self.next_retry_at: float | None = None
        self.reconnects = 0  # connections made after the first
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)
        self.transitions.append({"t": round(wall(), 3), "state": self.state.value})

    def enter(self, state: SourceState, code: str | None = None) -> bool:
        """Enter ``state``; False (and nothing changes) when the source already ended.

        An illegal transition is logged loudly and recorded anyway: a bookkeeping bug must
        never crash a stream in production (tests make each one fail, ``strict_transitions``).
        """
        if self.state.terminal:
            log.info("%s already %s: %s ignored", self.name, self.state.value, state.value)
            return False
        try:
            check_source_transition(self.state, state)
        except ValueError as exc:
            log.error("%s %s (recorded anyway)", self.name, exc)
        self.state = state
        entry: dict[str, Any] = {"t": round(self._wall(), 3), "state": state.value}
        if code:
            entry["code"] = code
        self.transitions.append(entry)
        return True

    def _why(self, error: SourceError) -> None:
        self.code, self.error = error.code, f"{error.code}: {mask_uri(error.message)}"

    def streaming(self) -> None:
        """The first frame of a connection arrived."""
        if self.attempt:
            self.reconnects += 1
        self.attempt, self.code, self.error = 0, None, None
        self.enter(SourceState.STREAMING)

    def reconnecting(self, error: SourceError, delay_s: float) -> None:
        """Down: wait ``delay_s`` before attempt ``attempt``."""
        self._why(error)
        self.next_retry_at = self._wall() + delay_s
        self.enter(SourceState.RECONNECTING, error.code)

    def connecting(self) -> None:
        """The wait is over: open again."""
        self.next_retry_at = None
        self.enter(SourceState.CONNECTING)

    def fail(self, error: SourceError) -> None:
        """Remember why the source gives up; it ends FAILED when its outputs are closed."""
        self._why(error)
        self.failed = True

    def finish(self, stopping: bool) -> SourceState:
        """The final state, once every frame is accounted for and the outputs are closed."""
        if self.failed:
            final = SourceState.FAILED
        elif stopping:
            final = SourceState.STOPPED
        else:
            final = SourceState.FINISHED
        self.next_retry_at = None
        self.enter(final, self.code if final is SourceState.FAILED else None)
        return self.state

    def fields(self) -> dict[str, Any]:
        """The status fields this machine owns."""
        return {
            "state": self.state.value,
            "code": self.code,
            "error": self.error,
            "attempt": self.attempt,
            "next_retry_at": self.next_retry_at,
            "reconnects": self.reconnects,
            "transitions": list(self.transitions),
        }
