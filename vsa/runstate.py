"""Run states, derived from the states of the run's sources.

| run state | when |
|---|---|
| WAITING  | no source delivers frames: at start, or while every live source is down (it keeps retrying) |
| UP       | at least one source streams and none is down (CONNECTING at start or FINISHED is not down) |
| DEGRADED | at least one source streams while others are RECONNECTING or FAILED |
| FINISHED | every source ended and at least one reached its end |
| FAILED   | every source failed |
| STOPPED  | a user stopped it (from any state), or its sources ended stopped |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vsa.schema import (
    TERMINAL_RUN_STATES,
    TERMINAL_SOURCE_STATES,
    RunState,
    SourceState,
    SourceStatus,
)

__all__ = [
    "DOWN",
    "ENDED",
    "TERMINAL_RUN_STATES",
    "RunState",
    "carry_over",
    "derive_run_state",
    "run_reason",
]

# source states as the plain strings of a polled status
ENDED = frozenset(s.value for s in TERMINAL_SOURCE_STATES)
DOWN = frozenset({SourceState.RECONNECTING.value, SourceState.FAILED.value})


def derive_run_state(source_states: Iterable[str]) -> RunState:
    states = list(source_states)
    if states and all(s in ENDED for s in states):
        if all(s == "FAILED" for s in states):
            return RunState.FAILED
        return RunState.FINISHED if "FINISHED" in states else RunState.STOPPED
    if not any(s == "STREAMING" for s in states):
        return RunState.WAITING
    return RunState.DEGRADED if any(s in DOWN for s in states) else RunState.UP


def run_reason(sources: Iterable[SourceStatus]) -> str | None:
    """Why a run is not simply UP: the sources that are down or not yet streaming, with codes."""
    parts = []
    for s in sources:
        state = s.state.value
        if state in DOWN or state == "CONNECTING":
            code = s.code
            parts.append(f"{s.id} {state}" + (f" ({code})" if code else ""))
    return ", ".join(parts) or None


def carry_over(previous: SourceStatus, resumed: Mapping[str, int] | None) -> tuple[int, int, int]:
    """``(emitted, decoded, lost)`` of a source's incarnations before Ray restarted its actor.

    ``previous``: the last status polled from the dead incarnation (with the counts of the ones
    before it); ``resumed``: what the new incarnation read from the stream's JSONL, ``frame``
    (the next frame number) and ``emitted`` (its lines), or None without a JSONL; with
    ``output_lost`` the frames the new incarnation counts itself because their files are gone. What the dead
    process had decoded and not written is ``lost`` (counted as ``source_lost``), so that
    decoded == emitted + dropped holds across the restart. A file or generator source resumes
    right after the last frame written, so those frames are decoded again by the new process.
    """
    drops = sum(previous.drops.values())
    polled = previous.frames_decoded
    if resumed and "emitted" in resumed:
        emitted = resumed["emitted"]
        decoded = max(polled, resumed["frame"], emitted + drops)
    else:  # no JSONL: the last poll is all we know
        emitted = previous.frames_emitted
        decoded = max(polled, emitted + drops)
    # ``output_lost``: frames written into files deleted while the engine was down, which the
    # new incarnation counts itself (decoded and dropped as output_lost): not carried here
    gone = min(emitted, int((resumed or {}).get("output_lost", 0)))
    emitted, decoded = emitted - gone, decoded - gone
    return emitted, decoded, decoded - emitted - drops
