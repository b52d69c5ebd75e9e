"""vsa.schema: the source state machine's table, terminal states and drop causes."""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path

import pytest

from vsa import runstate, stream
from vsa.schema import (
    SOURCE_TRANSITIONS,
    TERMINAL_RUN_STATES,
    TERMINAL_SOURCE_STATES,
    DropCause,
    RunState,
    SourceState,
    check_source_transition,
)
from vsa.stream.ledger import FrameLedger
from vsa.stream.machine import SourceMachine

ROOT = Path(__file__).resolve().parents[2]
S = SourceState
ALLOWED = [(old, new) for old, targets in SOURCE_TRANSITIONS.items() for new in targets]


def test_the_table_is_the_documented_state_machine():
    assert SOURCE_TRANSITIONS == {
        S.CONNECTING: {S.STREAMING, S.RECONNECTING, S.FAILED, S.FINISHED, S.STOPPED},
        S.STREAMING: {S.RECONNECTING, S.FINISHED, S.FAILED, S.STOPPED},
        S.RECONNECTING: {S.CONNECTING, S.FAILED, S.STOPPED},
        S.FINISHED: set(),
        S.FAILED: set(),
        S.STOPPED: set(),
    }
    assert set(SOURCE_TRANSITIONS) == set(SourceState)


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=lambda s: s.value)
def test_every_allowed_transition_passes(old: SourceState, new: SourceState):
    check_source_transition(old, new)


ILLEGAL = [
    (S.CONNECTING, S.CONNECTING),  # the initial CONNECTING is not a transition
    (S.STREAMING, S.STREAMING),
    (S.RECONNECTING, S.RECONNECTING),
    (S.STREAMING, S.CONNECTING),  # a connection that ends waits in RECONNECTING first
    (S.RECONNECTING, S.STREAMING),  # frames only after CONNECTING
    (S.RECONNECTING, S.FINISHED),  # a source that reconnects never finishes while down
    (S.FINISHED, S.STREAMING),
    (S.FAILED, S.RECONNECTING),
    (S.STOPPED, S.STREAMING),
    (S.STOPPED, S.STOPPED),
]


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transitions_raise_with_a_clear_message(old: SourceState, new: SourceState):
    with pytest.raises(ValueError, match=f"illegal source transition {old.value} -> {new.value}"):
        check_source_transition(old, new)


def test_every_pair_not_in_the_table_raises():
    for old, new in itertools.product(SourceState, repeat=2):
        if (old, new) in ALLOWED:
            continue
        with pytest.raises(ValueError, match=rf"{old.value} -> {new.value}: .* may go to"):
            check_source_transition(old, new)


@pytest.mark.parametrize("state", sorted(TERMINAL_SOURCE_STATES), ids=lambda s: s.value)
def test_terminal_states_have_no_way_out(state: SourceState):
    assert state.terminal and SOURCE_TRANSITIONS[state] == frozenset()
    for new in SourceState:
        with pytest.raises(ValueError, match=r"\(a terminal state\) may go to nothing"):
            check_source_transition(state, new)


@pytest.mark.parametrize(
    "state", [s for s in SourceState if s not in TERMINAL_SOURCE_STATES], ids=lambda s: s.value
)
def test_stop_reaches_stopped_from_every_non_terminal_state(state: SourceState):
    assert not state.terminal
    check_source_transition(state, S.STOPPED)
    # and every non-terminal state can still reach an end
    assert SOURCE_TRANSITIONS[state] & TERMINAL_SOURCE_STATES


def test_terminal_sets():
    assert {s.value for s in TERMINAL_SOURCE_STATES} == {"FINISHED", "FAILED", "STOPPED"}
    assert {s.value for s in TERMINAL_RUN_STATES} == {"FINISHED", "FAILED", "STOPPED"}
    assert {s for s in RunState if s.terminal} == TERMINAL_RUN_STATES
    assert {s for s in SourceState if s.terminal} == TERMINAL_SOURCE_STATES
    assert runstate.ENDED == {"FINISHED", "FAILED", "STOPPED"}


def test_old_import_paths_are_the_same_objects():
    assert stream.SourceState is SourceState
    assert runstate.RunState is RunState


def test_values_are_the_wire_strings():
    assert [s.value for s in SourceState] == [
        "CONNECTING",
        "STREAMING",
        "RECONNECTING",
        "FINISHED",
        "FAILED",
        "STOPPED",
    ]
    assert [s.value for s in RunState] == [
        "WAITING",
        "UP",
        "DEGRADED",
        "FINISHED",
        "FAILED",
        "STOPPED",
        "PAUSED",
        "PENDING",
    ]
    assert SourceState.FAILED == "FAILED" and DropCause.STALE == "stale"


DOCUMENTED_CAUSES = [
    "decimated",
    "queue_full",
    "stale",
    "decode_error",
    "inference_error",
    "shutdown",
    "sink_error",
    "output_lost",
    "source_lost",
]


def _documented_causes() -> list[str]:
    """The causes in docs/failure-policy.md's "Frame accounting" table, in order."""
    text = (ROOT / "docs" / "failure-policy.md").read_text()
    section = text.split("## Frame accounting", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]  # then the per-sink causes (their own table)
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)


def test_per_sink_loss_causes_are_documented():
    text = (ROOT / "docs" / "failure-policy.md").read_text()
    section = text.split("### Per sink: required and best effort", 1)[1].split("\n## ", 1)[0]
    causes = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert causes == ["sink_error", "output_lost", "overflow", "unsent"]


def test_drop_causes_are_the_documented_strings():
    assert [c.value for c in DropCause] == DOCUMENTED_CAUSES
    assert _documented_causes() == DOCUMENTED_CAUSES  # the docs table lists every cause


def test_drop_counts_stay_plain_strings():
    ledger = FrameLedger()
    ledger.skip(DropCause.DECIMATED, 2)
    ledger.skip("decode_error", 1)  # what a source reports through on_skip
    ledger.drop(DropCause.SINK_ERROR, 1)
    drops = ledger.fields()["drops"]
    assert drops == {"decimated": 2, "decode_error": 1, "sink_error": 1}
    assert all(type(k) is str for k in drops)


def test_an_illegal_transition_is_logged_and_recorded_anyway(caplog: pytest.LogCaptureFixture):
    machine = SourceMachine("run=r source=s")
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        machine.enter(S.STREAMING)
        machine.enter(S.CONNECTING)  # a bug: production keeps the stream going
    assert machine.state is S.CONNECTING
    assert [t["state"] for t in machine.transitions] == ["CONNECTING", "STREAMING", "CONNECTING"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "illegal source transition STREAMING -> CONNECTING" in errors[0]
    assert "recorded anyway" in errors[0]
