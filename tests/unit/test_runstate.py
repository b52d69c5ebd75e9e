"""Run states derived from source states (the table in vsa/runstate.py)."""

from __future__ import annotations

import pytest

from vsa.runstate import RunState, carry_over, derive_run_state, run_reason
from vsa.schema import SourceStatus
from vsa.stream import SourceState

TABLE = [
    # no source streams yet
    ([], RunState.WAITING),
    (["CONNECTING"], RunState.WAITING),
    (["CONNECTING", "CONNECTING"], RunState.WAITING),
    (["CONNECTING", "FAILED"], RunState.WAITING),
    (["CONNECTING", "FINISHED"], RunState.WAITING),
    # every source that has not ended is streaming
    (["STREAMING"], RunState.UP),
    (["STREAMING", "STREAMING"], RunState.UP),
    (["STREAMING", "FINISHED"], RunState.UP),
    (["STREAMING", "CONNECTING"], RunState.UP),
    # no source streams: every live one is down, still retrying
    (["RECONNECTING"], RunState.WAITING),
    (["RECONNECTING", "CONNECTING"], RunState.WAITING),
    (["RECONNECTING", "FAILED"], RunState.WAITING),
    (["RECONNECTING", "FINISHED"], RunState.WAITING),
    # some are down (failed or reconnecting) while others stream
    (["STREAMING", "FAILED"], RunState.DEGRADED),
    (["STREAMING", "RECONNECTING"], RunState.DEGRADED),
    (["STREAMING", "RECONNECTING", "CONNECTING", "FINISHED"], RunState.DEGRADED),
    (["FAILED", "STREAMING", "FINISHED", "CONNECTING"], RunState.DEGRADED),
    # every source ended, at least one reached its end
    (["FINISHED"], RunState.FINISHED),
    (["FINISHED", "FINISHED"], RunState.FINISHED),
    (["FINISHED", "FAILED"], RunState.FINISHED),
    (["FAILED", "FAILED", "FINISHED"], RunState.FINISHED),
    (["FINISHED", "STOPPED"], RunState.FINISHED),
    # every source failed
    (["FAILED"], RunState.FAILED),
    (["FAILED", "FAILED", "FAILED"], RunState.FAILED),
]


@pytest.mark.parametrize(
    ("sources", "expected"), TABLE, ids=[",".join(s) or "no-sources" for s, _ in TABLE]
)
def test_derive_run_state(sources: list[str], expected: RunState):
    assert derive_run_state(sources) is expected


def test_accepts_any_iterable_and_source_state_values():
    assert derive_run_state(iter(["STREAMING", "FAILED"])) is RunState.DEGRADED
    states = [SourceState.STREAMING, SourceState.FINISHED]
    assert derive_run_state(states) is RunState.UP  # str enum members compare as strings
    assert derive_run_state([SourceState.FAILED]) is RunState.FAILED


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (RunState.WAITING, False),
        (RunState.UP, False),
        (RunState.DEGRADED, False),
        (RunState.FINISHED, True),
        (RunState.FAILED, True),
        (RunState.STOPPED, True),
    ],
)
def test_terminal(state: RunState, terminal: bool):
    assert state.terminal is terminal


def test_states_are_strings():
    assert RunState("UP") is RunState.UP
    assert RunState.DEGRADED == "DEGRADED"
    assert {s.value for s in RunState} == {
        "WAITING",
        "UP",
        "DEGRADED",
        "FINISHED",
        "FAILED",
        "STOPPED",
        "PAUSED",
        "PENDING",
    }


def test_reason_names_the_sources_that_are_down_with_their_codes():
    sources = [
        {"id": "cam1", "state": "STREAMING", "code": None},
        {"id": "cam2", "state": "RECONNECTING", "code": "UNREACHABLE"},
        {"id": "cam3", "state": "FAILED", "code": "AUTH_FAILED"},
        {"id": "cam4", "state": "CONNECTING", "code": None},
        {"id": "clip", "state": "FINISHED", "code": None},
    ]
    statuses = [SourceStatus.from_dict(s) for s in sources]
    assert run_reason(statuses) == (
        "cam2 RECONNECTING (UNREACHABLE), cam3 FAILED (AUTH_FAILED), cam4 CONNECTING"
    )
    assert run_reason(statuses[:1]) is None


CARRY = [
    # previous (last poll of the dead process), resumed (from the JSONL), (emitted, decoded, lost)
    pytest.param({"frames_decoded": 90, "frames_emitted": 80, "drops": {}},
                 {"frame": 84, "emitted": 84}, (84, 90, 6), id="wrote-more-after-the-poll"),
    pytest.param({"frames_decoded": 90, "frames_emitted": 80, "drops": {"stale": 2}},
                 {"frame": 95, "emitted": 93}, (93, 95, 0), id="decoded-more-after-the-poll"),
    pytest.param({"frames_decoded": 90, "frames_emitted": 80, "drops": {"decode_error": 3}},
                 None, (80, 90, 7), id="no-jsonl-in-flight-is-lost"),
    pytest.param({"frames_decoded": 0, "frames_emitted": 0, "drops": {}},
                 None, (0, 0, 0), id="died-before-any-frame"),
]  # fmt: skip


@pytest.mark.parametrize(("previous", "resumed", "expected"), CARRY)
def test_carry_over_keeps_the_frame_accounting_exact(previous, resumed, expected):
    polled = SourceStatus.from_dict({"id": "cam1", "state": "STREAMING", **previous})
    emitted, decoded, lost = carry_over(polled, resumed)
    assert (emitted, decoded, lost) == expected
    drops = sum(previous["drops"].values())
    assert decoded == emitted + drops + lost  # the invariant across a restart
    assert lost >= 0


def test_last_record_skips_lines_that_are_not_frame_records(tmp_path):
    """A damaged or foreign last line must not crash a restarted source actor."""
    from vsa.sinks.jsonl import last_record

    path = tmp_path / "cam.jsonl"
    path.write_text('{"run":"r1","frame":7,"pts":0.7}\n[1,2]\n{"run":"r1","frame":"8"}\n')
    assert last_record(path, "r1")["frame"] == 7
