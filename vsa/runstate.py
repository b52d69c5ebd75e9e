"""Run states, derived from the states of the run's sources.

| run state | when |
|---|---|
| WAITING  | no source streams yet |
| UP       | every source that has not ended is streaming |
| DEGRADED | some sources failed while others stream |
| FINISHED | every source ended and at least one reached its end |
| FAILED   | every source failed |
| STOPPED  | a user stopped it (from any state), or its sources ended stopped |
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class RunState(str, Enum):
    WAITING = "WAITING"
    UP = "UP"
    DEGRADED = "DEGRADED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def terminal(self) -> bool:
        return self in (RunState.FINISHED, RunState.FAILED, RunState.STOPPED)


def derive_run_state(source_states: Iterable[str]) -> RunState:
    states = list(source_states)
    ended = {"FINISHED", "FAILED", "STOPPED"}
    if states and all(s in ended for s in states):
        if all(s == "FAILED" for s in states):
            return RunState.FAILED
        return RunState.FINISHED if "FINISHED" in states else RunState.STOPPED
    streaming = any(s == "STREAMING" for s in states)
    failed = any(s == "FAILED" for s in states)
    if not streaming:
        return RunState.WAITING
    return RunState.DEGRADED if failed else RunState.UP
