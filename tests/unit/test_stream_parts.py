"""The stream's decisions without threads or I/O: state machine, ledger, retry, delivery."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import numpy as np
import pytest

from tests.unit.fakes import FakeClock
from vsa.config import ReconnectSpec
from vsa.core.frames import Frame
from vsa.reconnect import Backoff
from vsa.schema import SOURCE_TRANSITIONS, DropCause, SourceState
from vsa.sources.errors import SourceError
from vsa.stream.connection import GiveUp, Retry, after_error
from vsa.stream.delivery import Lossless, Realtime, Slots
from vsa.stream.ledger import FrameLedger
from vsa.stream.machine import SourceMachine

S = SourceState


def machine_in(state: SourceState, clock: FakeClock | None = None) -> SourceMachine:
    """A machine brought to ``state`` by legal transitions."""
    m = SourceMachine("test", clock or FakeClock(100.0))
    path = {
        S.CONNECTING: [],
        S.STREAMING: [S.STREAMING],
        S.RECONNECTING: [S.RECONNECTING],
        S.FINISHED: [S.FINISHED],
        S.FAILED: [S.FAILED],
        S.STOPPED: [S.STOPPED],
    }[state]
    for step in path:
        m.enter(step)
    assert m.state is state
    return m


# --- the state machine -------------------------------------------------------------------------
@pytest.mark.usefixtures("strict_transitions")
@pytest.mark.parametrize("state", [S.CONNECTING, S.STREAMING, S.RECONNECTING])
def test_stop_is_legal_from_every_live_state(state):
    m = machine_in(state)
    assert m.finish(stopping=True) is S.STOPPED
    assert [t["state"] for t in m.transitions][-1] == "STOPPED"


@pytest.mark.parametrize("final", [S.FINISHED, S.FAILED, S.STOPPED])
@pytest.mark.parametrize("then", list(SourceState))
def test_a_terminal_state_is_final(final, then):
    m = machine_in(final)
    before = list(m.transitions)
    assert m.enter(then) is False
    assert m.state is final and list(m.transitions) == before


@pytest.mark.parametrize(
    "old, new",
    [
        (o, n)
        for o in SourceState
        for n in SourceState
        if not o.terminal and n not in SOURCE_TRANSITIONS[o]
    ],
)
def test_an_illegal_transition_is_logged_loudly_and_recorded(old, new, caplog):
    m = machine_in(old)
    with caplog.at_level(logging.ERROR, logger="vsa.stream"):
        assert m.enter(new) is True
    assert m.state is new
    assert "illegal source transition" in caplog.text


@pytest.mark.usefixtures("strict_transitions")
def test_a_reconnect_cycle_counts_and_clears_the_error():
    clock = FakeClock(1000.0)
    m = machine_in(S.STREAMING, clock)
    m.attempt = 1
    m.reconnecting(SourceError("TIMEOUT", "rtsp://u:pw@cam/x timed out"), delay_s=2.5)
    assert m.state is S.RECONNECTING and m.next_retry_at == 1002.5
    assert m.code == "TIMEOUT" and "pw" not in m.error
    assert m.transitions[-1] == {"t": 1000.0, "state": "RECONNECTING", "code": "TIMEOUT"}
    clock.advance(2.5)
    m.connecting()
    assert m.next_retry_at is None
    m.streaming()
    assert (m.reconnects, m.attempt, m.code, m.error) == (1, 0, None, None)
    assert m.finish(stopping=False) is S.FINISHED


@pytest.mark.usefixtures("strict_transitions")
def test_a_failure_is_final_with_its_code_even_when_stopping():
    m = machine_in(S.STREAMING)
    m.fail(SourceError("SINK_ERROR", "disk full"))
    assert m.state is S.STREAMING  # the outputs are closed first
    assert m.finish(stopping=True) is S.FAILED
    assert m.transitions[-1]["code"] == "SINK_ERROR"
    assert m.fields()["error"] == "SINK_ERROR: disk full"


# --- the ledger ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "steps, counts",
    [
        ([("decode", 3), ("emit", 3)], (3, 3, {}, 0)),
        ([("decode", 4), ("emit", 1), ("drop", "stale", 2)], (4, 1, {"stale": 2}, 1)),
        ([("skip", "decode_error", 5), ("decode", 1), ("emit", 1)], (6, 1, {"decode_error": 5}, 0)),
        ([("decode", 2), ("emit", 2), ("lose", 5)], (2, 0, {"output_lost": 2}, 0)),
        (
            [("skip", DropCause.DECIMATED, 2), ("drop", DropCause.SHUTDOWN, 0)],
            (2, 0, {"decimated": 2}, 0),
        ),
    ],
)
def test_ledger_cause_sequences_give_counts_and_the_invariant(steps, counts):
    ledger = FrameLedger()
    for step in steps:
        kind, *args = step
        if kind == "decode":
            ledger.decode(*args)
        elif kind == "emit":
            for _ in range(args[0]):
                ledger.emit()
        elif kind == "drop":
            ledger.drop(*args)
        elif kind == "skip":
            ledger.skip(*args)
        else:
            ledger.lose_output(*args)
    decoded, emitted, drops, in_flight = counts
    f = ledger.fields()
    assert (f["frames_decoded"], f["frames_emitted"], f["drops"], f["in_flight"]) == counts
    assert f["frames_dropped"] == sum(drops.values())
    assert ledger.balanced is (in_flight == 0)
    assert FrameLedger.from_fields(f).fields() == f


def test_ledger_refuses_an_unknown_cause():
    with pytest.raises(ValueError):
        FrameLedger().drop("tired", 1)


def test_ledger_merge_across_incarnations_keeps_the_invariant():
    earlier = FrameLedger(10, 8, 7, Counter(stale=1, source_lost=2))
    now = FrameLedger(5, 5, 5, Counter())
    merged = now.merge(earlier)
    assert (merged.decoded, merged.emitted, merged.dropped) == (15, 12, 3)
    assert merged.balanced and merged.drops == Counter(stale=1, source_lost=2)


def test_ledger_merge_lists_the_earlier_causes_first_and_keeps_zeros():
    """As the controller's records always had them (``vsa.supervision.runbook.merge``)."""
    earlier = FrameLedger(4, 4, 2, Counter(stale=2))
    now = FrameLedger(3, 3, 3, Counter(decimated=0, queue_full=0, stale=0))
    merged = now.merge(earlier)
    assert list(merged.drops.items()) == [("stale", 2), ("decimated", 0), ("queue_full", 0)]
    assert (merged.decoded, merged.inferred, merged.emitted) == (7, 7, 5)
    assert now.drops == Counter(decimated=0, queue_full=0, stale=0)  # neither is changed
    assert earlier.drops == Counter(stale=2)


# --- after a connection ended ------------------------------------------------------------------
BACKOFF = Backoff(ReconnectSpec(initial_s=1, max_s=8, multiplier=2, jitter=0, max_attempts=3))


@pytest.mark.parametrize(
    "code, attempt, reconnects, expected",
    [
        ("TIMEOUT", 0, False, GiveUp),  # a file is not retried
        ("TIMEOUT", 0, True, Retry(1, 1.0, None)),
        ("TIMEOUT", 2, True, Retry(3, 4.0, None)),
        ("AUTH_FAILED", 0, True, Retry(1, 8.0, None)),  # permanent: the longest delay at once
        ("SINK_ERROR", 0, True, GiveUp),  # never retried, whatever the source
        ("SECRET_UNAVAILABLE", 0, True, GiveUp),
        ("TIMEOUT", 3, True, GiveUp),  # max_attempts used up
    ],
)
def test_after_an_error_retry_or_give_up(code, attempt, reconnects, expected):
    error = SourceError(code, "x")
    step = after_error(error, attempt, reconnects, BACKOFF)
    if expected is GiveUp:
        assert isinstance(step, GiveUp) and step.error.code == code
    else:
        assert step == Retry(expected.attempt, expected.delay_s, error)


def test_giving_up_after_the_attempts_says_so():
    step = after_error(SourceError("TIMEOUT", "no answer"), 3, True, BACKOFF)
    assert isinstance(step, GiveUp)
    assert step.error.message == "no answer (gave up after 3 reconnect attempts)"


# --- delivery --------------------------------------------------------------------------------
def frame(k: int, wall_time: float = 0.0) -> Frame:
    return Frame(index=k, pts=k / 10, wall_time=wall_time, image=np.zeros((2, 2, 3), np.uint8))


class Book:
    """The worker's side of a delivery strategy: counts, drops and submitted chunks."""

    def __init__(self) -> None:
        self.counted: list[int] = []
        self.drops: Counter[str] = Counter()
        self.chunks: list[list[int]] = []
        self.ended = 0

    def count(self, f: Frame) -> None:
        self.counted.append(f.index)

    def drop(self, cause: DropCause, n: int) -> None:
        self.drops[cause.value] += n

    def flush(self, chunk: list[Frame]) -> None:
        self.chunks.append([f.index for f in chunk])

    def end(self) -> None:
        self.ended += 1


def lossless(max_in_flight: int, chunk: int, stopping: threading.Event | None = None):
    book = Book()
    stop = stopping or threading.Event()
    d = Lossless(Slots(max_in_flight, stop), chunk, book.count, book.drop, book.flush, book.end)
    return d, book


def test_lossless_submits_in_chunks_and_live_frames_at_once():
    d, book = lossless(8, 3)
    for k in range(7):
        assert d.offer(frame(k), live=False)
    d.end_connection()
    assert book.chunks == [[0, 1, 2], [3, 4, 5], [6]]
    d.offer(frame(7), live=True)
    assert book.chunks[-1] == [7]
    d.decoding_ended()
    assert book.ended == 1


def test_lossless_holds_at_most_max_in_flight_and_a_stop_ends_the_wait():
    stopping = threading.Event()
    d, book = lossless(2, 1, stopping)
    assert d.offer(frame(0), live=False) and d.offer(frame(1), live=False)
    stopping.set()  # no slot is free: the third frame is not handed over
    assert d.offer(frame(2), live=False) is False
    assert book.drops == {"shutdown": 1} and book.counted == [0, 1]


def realtime(clock: FakeClock, max_age_s: float = 0.5):
    book = Book()
    stopping = threading.Event()
    d = Realtime(
        Slots(4, stopping), max_age_s, book.count, book.drop, book.flush, book.end, stopping, clock
    )
    return d, book


def test_realtime_keeps_only_the_newest_frame():
    d, book = realtime(FakeClock(10.0))
    for k in range(3):
        assert d.offer(frame(k, wall_time=10.0), live=True)
    assert book.drops == {"queue_full": 2} and book.counted == [0, 1, 2]
    d.decoding_ended()
    d.run()  # sends the newest, then ends the queue
    assert book.chunks == [[2]] and book.ended == 1


def test_realtime_drops_a_frame_older_than_max_age_instead_of_sending_it():
    clock = FakeClock(10.0)
    d, book = realtime(clock, max_age_s=0.5)
    d.offer(frame(0, wall_time=9.0), live=True)  # captured 1 s ago
    d.decoding_ended()
    d.run()
    assert book.chunks == [] and book.drops == {"stale": 1} and book.ended == 1


def test_realtime_after_the_submit_thread_ended_a_frame_is_a_shutdown_drop():
    d, book = realtime(FakeClock(10.0))
    d.decoding_ended()
    d.run()
    assert d.offer(frame(0, wall_time=10.0), live=True) is False
    assert book.drops == {"shutdown": 1}
