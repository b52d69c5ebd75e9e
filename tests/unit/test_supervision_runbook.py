"""The run record: counters carried over a source restart, state from the sources, events,
the series, warnings and the durable form; a fake clock, no Ray."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakes import FakeClock
from vsa.config import RunSpec, parse_run
from vsa.runstate import RunState
from vsa.secrets import is_sealed, unseal
from vsa.stream.ledger import FrameLedger
from vsa.supervision.runbook import (
    KV_VERSION,
    RunRecord,
    initial_source_status,
    merge,
    seal_sources,
)

SECRET_URI = "rtsp://admin:hunter2@cam.local:554/live"


def spec(ids: tuple[str, ...] = ("cam1", "cam2"), **extra: Any) -> RunSpec:
    return parse_run(
        {
            "name": "r",
            "output_dir": "/tmp/vsa-unit-out",
            "sources": [{"id": i, "uri": "synthetic://shapes?frames=3"} for i in ids],
            **extra,
        },
        env={},
    )


def record(clock: FakeClock | None = None, **extra: Any) -> RunRecord:
    clock = clock or FakeClock(1_700_000_000.0)
    return RunRecord.submitted("r-1", spec(**extra), {}, clock=clock, monotonic=lambda: clock.now)


def status(
    sid: str = "cam1",
    inc: str | None = "a",
    state: str = "STREAMING",
    decoded: int = 0,
    emitted: int = 0,
    drops: dict[str, int] | None = None,
    resumed: dict[str, int] | None = None,
    p99: float | None = None,
) -> dict[str, Any]:
    """A status as ``SourceActor.status`` returns it (the fields the controller reads)."""
    out: dict[str, Any] = {
        "id": sid,
        "state": state,
        "code": None,
        "error": None,
        "incarnation": inc,
        "frames_decoded": decoded,
        "frames_inferred": emitted,
        "frames_emitted": emitted,
        "frames_dropped": sum((drops or {}).values()),
        "drops": dict(drops or {}),
        "fps": 25.0,
        "latency_ms": {"p50": None if p99 is None else p99 / 2, "p99": p99},
    }
    if resumed is not None:
        out["resumed"] = resumed
    return out


# --- absorb: a polled status, and the counters of a restarted source carried over ------------


def counts(s: dict[str, Any]) -> tuple[int, int, int, dict[str, int], int]:
    return (
        s["frames_decoded"],
        s["frames_inferred"],
        s["frames_emitted"],
        s["drops"],
        s["restarts"],
    )


# (id, statuses polled in turn, counts after the last, events' details)
ABSORB: list[tuple[str, list[dict[str, Any]], tuple[Any, ...], list[dict[str, Any]]]] = [
    ("first answer", [status(decoded=5, emitted=4, drops={"q": 1})], (5, 4, 4, {"q": 1}, 0), []),
    (
        "same incarnation: the latest counts",
        [status(decoded=5, emitted=4), status(decoded=9, emitted=9)],
        (9, 9, 9, {}, 0),
        [],
    ),
    (
        "an incarnation first seen is not a restart",
        [status(inc=None, decoded=2), status(inc="a", decoded=3)],
        (3, 0, 0, {}, 0),
        [],
    ),
    (
        "restarted without a JSONL: what was decoded and not written is source_lost",
        [
            status(decoded=100, emitted=90, drops={"queue_full": 5}),
            status(inc="b", decoded=10, emitted=8),
        ],
        (110, 98, 98, {"queue_full": 5, "source_lost": 5}, 1),
        [{"source": "cam1", "lost": 5}],
    ),
    (
        "restarted, resumed after its JSONL: nothing lost",
        [
            status(decoded=100, emitted=90, drops={"queue_full": 5}),
            status(inc="b", decoded=3, emitted=1, resumed={"frame": 100, "emitted": 95}),
        ],
        (103, 96, 96, {"queue_full": 5}, 1),
        [{"source": "cam1", "lost": 0}],
    ),
    (
        "restarted twice: the counts of both earlier incarnations",
        [
            status(decoded=10, emitted=10),
            status(inc="b", decoded=20, emitted=20),
            status(inc="c", decoded=1, emitted=1),
        ],
        (31, 31, 31, {}, 2),
        [{"source": "cam1", "lost": 0}, {"source": "cam1", "lost": 0}],
    ),
]


@pytest.mark.parametrize(
    ("polled", "expected", "events"), [c[1:] for c in ABSORB], ids=[c[0] for c in ABSORB]
)
def test_absorb(
    polled: list[dict[str, Any]], expected: tuple[Any, ...], events: list[dict[str, Any]]
):
    r = record()
    returned = [r.absorb("cam1", s) for s in polled]
    assert counts(r.sources["cam1"]) == expected
    assert [d for d in returned if d is not None] == events
    assert [{k: e[k] for k in ("source", "lost")} for e in r.events] == events
    assert all(e["event"] == "source_restarted" for e in r.events)
    assert r.sources["cam2"]["state"] == "CONNECTING"  # the other source is untouched


def test_merge_adds_the_earlier_incarnations():
    s = status(decoded=4, emitted=3, drops={"stale": 1})
    assert merge(None, s) == {**s, "restarts": 0}
    assert merge({}, s) == {**s, "restarts": 0}
    base = {"frames_decoded": 10, "frames_inferred": 7, "frames_emitted": 7}
    merged = merge({**base, "drops": {"stale": 2, "x": 1}, "restarts": 3}, s)
    assert counts(merged) == (14, 10, 10, {"stale": 3, "x": 1}, 3)
    assert merged["frames_dropped"] == 4


def old_merge(base: Mapping[str, Any] | None, status: Mapping[str, Any]) -> dict[str, Any]:
    """``merge`` as it was before it used ``FrameLedger.merge``, verbatim: the oracle."""
    if not base:
        return {**status, "restarts": 0}
    out = dict(status)
    for key in ("frames_decoded", "frames_inferred", "frames_emitted"):
        out[key] = status.get(key, 0) + base.get(key, 0)
    drops = Counter(base.get("drops", {}))
    drops.update(status.get("drops", {}))
    out["drops"] = dict(drops)
    out["frames_dropped"] = sum(drops.values())
    out["restarts"] = base.get("restarts", 0)
    return out


# (earlier incarnations' counts as carried in ``base``, the polled status's counts)
MERGES = [
    pytest.param(FrameLedger(), FrameLedger(3, 2, 2, Counter(stale=1)), id="nothing-earlier"),
    pytest.param(
        FrameLedger(100, 90, 90, Counter(queue_full=5, source_lost=5)),
        FrameLedger(10, 8, 8, Counter(stale=2)),
        id="new-cause-after",
    ),
    pytest.param(
        FrameLedger(7, 7, 7, Counter(stale=2, decimated=4)),
        FrameLedger(9, 3, 3, Counter(decimated=6, stale=0)),
        id="same-causes-and-a-zero",
    ),
    pytest.param(FrameLedger(14, 12, 12, Counter(stale=2)), FrameLedger(), id="nothing-yet"),
]


@pytest.mark.parametrize(("earlier", "now"), MERGES)
def test_the_controllers_merge_is_the_ledgers(earlier: FrameLedger, now: FrameLedger):
    """One merge: the record's counts are ``FrameLedger.merge``'s, and the merged dict is the one
    the controller saved before (same keys, same order, the status's own ``in_flight``)."""
    base = {
        "frames_decoded": earlier.decoded,
        "frames_inferred": earlier.inferred,
        "frames_emitted": earlier.emitted,
        "drops": dict(earlier.drops),
        "restarts": 2,
    }
    polled = status(decoded=now.decoded, emitted=now.emitted, drops=dict(now.drops))
    polled.update(frames_inferred=now.inferred, in_flight=now.in_flight)
    merged = merge(base, polled)
    total = now.merge(earlier)
    assert FrameLedger.from_fields(merged) == total
    assert merged["frames_dropped"] == total.dropped
    assert merged["in_flight"] == now.in_flight  # this incarnation's frames under way
    assert merged == old_merge(base, polled)
    assert list(merged) == list(old_merge(base, polled))
    assert list(merged["drops"]) == list(old_merge(base, polled)["drops"])


def test_a_restart_carries_the_ledgers_merge():
    """Through ``absorb``: the record's counts after a restart are those of the dead incarnation
    (with its unwritten frames as ``source_lost``) merged with the new one's by the ledger."""
    r = record()
    r.absorb("cam1", status(decoded=100, emitted=90, drops={"queue_full": 5}))
    r.absorb("cam1", status(inc="b", decoded=10, emitted=8, drops={"stale": 1}))
    dead = FrameLedger(100, 90, 90, Counter(queue_full=5, source_lost=5))
    assert FrameLedger.from_fields(r.sources["cam1"]) == FrameLedger(
        10, 8, 8, Counter(stale=1)
    ).merge(dead)
    assert r.status("cam1").frames_dropped == 11


def test_source_ended():
    r = record()
    r.source_ended("cam2", "FAILED", "source actor died: ActorDiedError")
    assert r.sources["cam2"]["state"] == "FAILED"
    assert r.sources["cam2"]["error"] == "source actor died: ActorDiedError"
    with pytest.raises(KeyError):
        r.source_ended("nope", "STOPPED", "stop failed: X")


# --- assess: the run's state from its sources, with the degradation --------------------------

STATES = [
    (("CONNECTING", "CONNECTING"), RunState.WAITING),
    (("STREAMING", "CONNECTING"), RunState.UP),
    (("STREAMING", "RECONNECTING"), RunState.DEGRADED),
    (("RECONNECTING", "FAILED"), RunState.WAITING),
    (("FINISHED", "FAILED"), RunState.FINISHED),
    (("FAILED", "FAILED"), RunState.FAILED),
    (("STOPPED", "FINISHED"), RunState.FINISHED),
    (("STOPPED", "STOPPED"), RunState.STOPPED),
]


@pytest.mark.parametrize(("states", "expected"), STATES)
def test_assess_derives_the_state(states: tuple[str, str], expected: RunState):
    r = record()
    for sid, state in zip(("cam1", "cam2"), states, strict=True):
        r.absorb(sid, status(sid, state=state))
    assert r.assess() is expected
    assert r.state is RunState.WAITING  # the caller enters it
    assert r.events == []


def test_assess_degraded_while_too_slow_and_back():
    clock = FakeClock(1_700_000_000.0)
    r = record(clock, degradation={"max_p99_latency_ms": 100.0})
    for sid in ("cam1", "cam2"):
        r.absorb(sid, status(sid, p99=500.0))
    assert r.assess() is RunState.UP  # measured above, not yet for hold_s
    clock.advance(3.5)
    assert r.assess() is RunState.DEGRADED
    assert [e["event"] for e in r.events] == ["degraded"]
    assert r.events[-1]["reason"] == "cam1 p99 latency 500 ms, cam2 p99 latency 500 ms"
    assert r.reason() == "cam1 p99 latency 500 ms, cam2 p99 latency 500 ms"
    for sid in ("cam1", "cam2"):
        r.absorb(sid, status(sid, p99=10.0))
    clock.advance(0.5)
    assert r.assess() is RunState.DEGRADED  # under the limit, not yet for hold_s
    clock.advance(3.5)
    assert r.assess() is RunState.UP
    assert [e["event"] for e in r.events] == ["degraded", "degradation_ended"]
    assert r.reason() is None


def test_assess_of_an_ended_run_does_not_measure():
    r = record(degradation={"max_p99_latency_ms": 100.0})
    for sid in ("cam1", "cam2"):
        r.absorb(sid, status(sid, state="FINISHED", p99=500.0))
    assert r.assess() is RunState.FINISHED
    assert r.degradation.window == {}


# --- the series, warnings, transitions, events -----------------------------------------------


def test_sample_once_a_second_and_bounded():
    clock = FakeClock(1000.0)
    r = record(clock)
    r.absorb("cam1", status(p99=40.0))
    r.sample()
    clock.advance(0.5)
    r.sample()  # too soon
    clock.advance(0.5)
    r.sample()
    assert r.series["cam1"] == [[1000.0, 25.0, 20.0, 40.0], [1001.0, 25.0, 20.0, 40.0]]
    assert r.series["cam2"] == [[1000.0, 0.0, None, None], [1001.0, 0.0, None, None]]
    for _ in range(4000):
        clock.advance(1.0)
        r.sample()
    assert len(r.series["cam1"]) <= 4000
    assert r.series["cam1"][-1][0] == clock.now


def test_warning_shown_for_hold_s_and_one_event_while_shown():
    clock = FakeClock(1_700_000_000.0)
    r = record(clock)
    r.warn("spilling", "object store spilling", 60.0)
    clock.advance(30.0)
    r.warn("spilling", "object store spilling more", 60.0)  # shown still: no new event
    assert [e["reason"] for e in r.events] == ["object store spilling"]
    assert r.summary()["warnings"] == ["object store spilling more"]
    clock.advance(60.5)
    assert r.summary()["warnings"] == []
    r.warn("spilling", "again", 60.0)
    assert [e["reason"] for e in r.events] == ["object store spilling", "again"]


def test_enter_keeps_the_reason_and_bounds_the_transitions():
    clock = FakeClock(1000.0)
    r = record(clock)
    assert r.transitions == [{"t": 1000.0, "state": "WAITING"}]
    r.absorb("cam1", status(state="STREAMING"))
    r.enter(RunState.UP)
    assert r.transitions[-1] == {"t": 1000.0, "state": "UP", "reason": "cam2 CONNECTING"}
    r.enter(RunState.STOPPED)
    assert r.transitions[-1]["reason"] is None  # a terminal state has no reason
    for _ in range(300):
        r.enter(RunState.UP)
    assert len(r.transitions) == 200


def test_events_are_bounded():
    r = record()
    for i in range(150):
        r.event("recovered", n=i)
    assert len(r.events) == 100
    assert r.events[0]["n"] == 50


def test_sources_error():
    r = record()
    assert r.sources_error() == "every source failed"
    r.source_ended("cam1", "FAILED", "boom")
    r.source_ended("cam2", "FAILED", "bang")
    assert r.sources_error() == "cam1: boom; cam2: bang"


def test_final_summary_reads_as_ended_without_changing_the_record():
    clock = FakeClock(1000.0)
    r = record(clock)
    r.error = "why"
    final = r.final_summary(RunState.FAILED, 1234.5678)
    assert final["state"] == "FAILED" and final["finished_at"] == 1234.5678
    assert final["error"] == "why"
    assert final["transitions"][-1] == {"t": 1234.568, "state": "FAILED"}
    assert r.state is RunState.WAITING and len(r.transitions) == 1
    assert r.summary()["transitions"] == [{"t": 1000.0, "state": "WAITING"}]


def test_submitted_run():
    clock = FakeClock(1000.0)
    r = record(clock)
    assert r.id == "r-1" and r.created_at == 1000.0 and r.state is RunState.WAITING
    assert r.sources["cam1"] == initial_source_status("cam1", "synthetic://shapes?frames=3")
    summary = r.summary()
    assert [s["id"] for s in summary["sources"]] == ["cam1", "cam2"]
    assert summary["reason"] == "cam1 CONNECTING, cam2 CONNECTING"
    assert summary["model"] is None and summary["report"] == []


# --- the durable form ------------------------------------------------------------------------


def test_to_json_format():
    r = record()
    r.model, r.engine_key = {"model": "shapenet", "device": "cpu"}, "k1"
    r.sealed = {"cam1": "vsa-sealed:v1:xyz"}
    r.absorb("cam1", status(decoded=3, emitted=3))
    r.absorb("cam1", status(inc="b", decoded=1, emitted=1))
    r.actors["cam1"] = object()  # controller-owned: never written
    r.monitor = object()
    r.warn("spilling", "w", 60.0)
    d = json.loads(r.to_json())
    assert list(d) == [
        "v",
        "id",
        "spec",
        "created_at",
        "state",
        "finished_at",
        "error",
        "model",
        "engine_key",
        "placement",  # added without a version change: older records read as unplaced
        "sources",
        "base",
        "stop_requested",
        "paused",
        "pending",
        "pending_since",
        "removed",
        "removed_base",
        "sealed",
        "transitions",
        "events",
    ]
    assert d["v"] == KV_VERSION == 1
    assert d["spec"] == json.loads(json.dumps(r.spec.model_dump()))
    assert d["base"] == {
        "cam1": {
            "frames_decoded": 3,
            "frames_inferred": 3,
            "frames_emitted": 3,
            "drops": {},
            "restarts": 1,
        }
    }


def test_round_trip():
    clock = FakeClock(1000.0)
    r = record(clock)
    r.absorb("cam1", status(decoded=7, emitted=6, drops={"q": 1}))
    r.absorb("cam1", status(inc="b", decoded=2, emitted=2))
    r.enter(RunState.UP)
    r.stop_requested = True
    r.sealed = {"cam2": "vsa-sealed:v1:abc"}
    back = RunRecord.from_json(r.to_json(), clock=clock)
    assert back.to_json() == r.to_json()
    for name in ("id", "spec", "created_at", "state", "sources", "base", "sealed", "events"):
        assert getattr(back, name) == getattr(r, name), name
    assert back.stop_requested and back.actors == {} and back.monitor is None
    assert back.summary() == r.summary()


def test_a_record_of_another_format_is_refused():
    d = json.loads(record().to_json())
    d["v"] = 2
    with pytest.raises(ValueError, match="saved run format 2"):
        RunRecord.from_json(json.dumps(d))


def test_an_old_record_in_clear_is_sealed_when_loaded(key_file: Path):
    clear = parse_run(
        {
            "name": "r",
            "output_dir": "/tmp/vsa-unit-out",
            "sources": [
                {"id": "cam1", "uri": SECRET_URI},
                {"id": "cam2", "uri": "synthetic://shapes"},
            ],
        },
        env={},
    )
    d = json.loads(RunRecord("r-1", clear, 1.0).to_json())
    del d["sealed"]  # saved before credentials were sealed
    back = RunRecord.from_json(json.dumps(d))
    assert "hunter2" not in back.to_json()
    assert list(back.sealed) == ["cam1"] and unseal(back.sealed["cam1"]) == SECRET_URI
    assert back.spec.sources[1].uri == "synthetic://shapes"


def test_seal_sources(key_file: Path):
    clear = parse_run(
        {"name": "r", "output_dir": "/o", "sources": [{"id": "cam1", "uri": SECRET_URI}]},
        env={},
    )
    masked, sealed = seal_sources(clear)
    assert "hunter2" not in masked.model_dump_json()
    assert is_sealed(sealed["cam1"]) and unseal(sealed["cam1"]) == SECRET_URI
    assert seal_sources(spec()) == (spec(), {})
