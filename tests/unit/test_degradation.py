"""The degradation tracker, driven by a fake clock."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from tests.unit.fakes import FakeClock
from vsa.config import DegradationSpec
from vsa.degradation import Condition, DegradationChange, DegradationTracker
from vsa.schema import SourceStatus

LIMITS = DegradationSpec(max_drop_ratio=0.5, max_p99_latency_ms=5000.0, window_s=10.0)


def status(
    decoded: int = 0,
    drops: dict[str, int] | None = None,
    p99: float | None = None,
    state: str = "STREAMING",
) -> dict[str, Any]:
    return {
        "state": state,
        "frames_decoded": decoded,
        "drops": drops or {},
        "latency_ms": {"p50": None if p99 is None else p99 / 2, "p99": p99},
    }


def typed(sources: dict[str, dict[str, Any]]) -> dict[str, SourceStatus]:
    """The polled dicts as the controller hands them to the tracker: read once, typed."""
    return {sid: SourceStatus.from_dict({"id": sid, **s}) for sid, s in sources.items()}


def old_degradation(
    sources: dict[str, dict[str, Any]],
    window: dict[str, list[tuple[float, int, int]]],
    limits: DegradationSpec,
    now: float,
) -> str | None:
    """``ControllerActor._degradation`` as it was before the tracker, verbatim but for its
    arguments: the oracle of the measurements."""
    reasons = []
    for sid, s in sources.items():
        if s.get("state") != "STREAMING":
            continue
        drops = sum(v for k, v in s.get("drops", {}).items() if k != "decimated")
        decoded = s.get("frames_decoded", 0) - s.get("drops", {}).get("decimated", 0)
        samples = window.setdefault(sid, [])
        samples.append((now, decoded, drops))
        while samples and now - samples[0][0] > limits.window_s:
            samples.pop(0)
        t0, d0, x0 = samples[0]
        if now - t0 >= 0.8 * limits.window_s and decoded - d0 > 0:
            ratio = (drops - x0) / (decoded - d0)
            if ratio > limits.max_drop_ratio:
                reasons.append(f"{sid} drops {ratio:.0%} of frames")
        p99 = (s.get("latency_ms") or {}).get("p99")
        if p99 is not None and p99 > limits.max_p99_latency_ms:
            reasons.append(f"{sid} p99 latency {p99:.0f} ms")
    return ", ".join(reasons) or None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def poll(
    tracker: DegradationTracker,
    clock: FakeClock,
    sources: dict[str, dict[str, Any]],
    step: float = 0.5,
) -> DegradationChange | None:
    clock.advance(step)
    return tracker.update(typed(sources))


# --- hysteresis and the set of conditions ---------------------------------------------


def test_a_held_degradation_with_moving_numbers_is_one_change(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    changes = []
    for k in range(60):  # 30 s, a new p99 every poll
        p99 = 5100.0 + 37 * k
        change = poll(tracker, clock, {"cam1": status(k * 15, p99=p99)})
        if change:
            changes.append((k, change))
        if k >= 6:
            assert tracker.reason == f"cam1 p99 latency {p99:.0f} ms"  # always the latest
    assert len(changes) == 1
    k, change = changes[0]
    assert k == 6  # measured above at k=0 (t=0.5); held 3 s at k=6 (t=3.5)
    assert change.started == (Condition("cam1", "latency"),)
    assert change.ended == ()
    assert change.reason == "cam1 p99 latency 5322 ms"
    assert tracker.active == {Condition("cam1", "latency")}


def test_a_source_joining_is_one_more_change_and_clearing_is_one(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    changes: list[DegradationChange] = []

    def run(seconds: float, cam1: float, cam2: float) -> None:
        for _ in range(int(seconds / 0.5)):
            cam1 += 1
            cam2 += 1
            sources = {"cam1": status(p99=cam1), "cam2": status(p99=cam2)}
            change = poll(tracker, clock, sources)
            if change:
                changes.append(change)

    run(10, cam1=6000, cam2=100)
    assert [(c.started, c.ended) for c in changes] == [((Condition("cam1", "latency"),), ())]
    run(10, cam1=6000, cam2=7000)  # cam2 joins
    assert len(changes) == 2
    assert changes[1].started == (Condition("cam2", "latency"),) and changes[1].ended == ()
    assert changes[1].reason == "cam1 p99 latency 6007 ms, cam2 p99 latency 7007 ms"
    run(10, cam1=100, cam2=100)  # both clear together
    assert len(changes) == 3
    assert changes[2].started == ()
    assert set(changes[2].ended) == {Condition("cam1", "latency"), Condition("cam2", "latency")}
    assert changes[2].reason is None
    assert tracker.reason is None and tracker.active == frozenset()
    run(10, cam1=100, cam2=100)
    assert len(changes) == 3


@pytest.mark.parametrize("period", [0.5, 1.0, 2.5])
def test_flapping_faster_than_hold_s_is_no_change(clock: FakeClock, period: float):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    for k in range(int(120 / period)):  # two minutes of a p99 hovering at the threshold
        p99 = 5001.0 if k % 2 else 4999.0
        assert poll(tracker, clock, {"cam1": status(p99=p99)}, step=period) is None
        assert tracker.reason is None
    assert tracker.active == frozenset()


def test_flapping_while_degraded_does_not_end_it(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    for _ in range(8):
        poll(tracker, clock, {"cam1": status(p99=9000)})
    assert tracker.active == {Condition("cam1", "latency")}
    for k in range(100):
        p99 = 4999.0 if k % 4 < 2 else 5001.0  # under for 1 s at a time, never for hold_s
        assert poll(tracker, clock, {"cam1": status(p99=p99)}) is None
        assert tracker.reason == f"cam1 p99 latency {p99:.0f} ms"  # the numbers stay fresh


@pytest.mark.parametrize(
    ("hold_s", "step", "starts_at_poll"),
    [
        (3.0, 0.5, 6),  # first measured at poll 0; 3 s later
        (3.0, 1.0, 3),
        (3.0, 2.0, 2),  # the first poll at or past hold_s
        (0.0, 0.5, 0),  # no hysteresis: at once
    ],
)
def test_a_condition_starts_after_hold_s(
    clock: FakeClock, hold_s: float, step: float, starts_at_poll: int
):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=hold_s)
    started = [
        k for k in range(20) if poll(tracker, clock, {"c": status(p99=6000)}, step=step) is not None
    ]
    assert started == [starts_at_poll]


def test_a_dip_restarts_the_hold(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    series = [6000] * 5 + [4000] + [6000] * 6 + [6000]
    changes = [poll(tracker, clock, {"c": status(p99=p)}) for p in series]
    assert [k for k, c in enumerate(changes) if c] == [12]


def test_drops_and_latency_are_separate_conditions(clock: FakeClock):
    limits = DegradationSpec(max_drop_ratio=0.2, max_p99_latency_ms=1000.0, window_s=2.0)
    tracker = DegradationTracker(limits, clock=clock, hold_s=1.0)
    changes: list[DegradationChange] = []
    for k in range(40):
        sources = {
            "a": status(decoded=10 * k, drops={"stale": 5 * k}, p99=2000 if k >= 20 else 10),
            "b": status(decoded=10 * k, p99=10),
        }
        change = poll(tracker, clock, sources)
        if change:
            changes.append(change)
    assert [c.started for c in changes] == [
        (Condition("a", "drops"),),
        (Condition("a", "latency"),),
    ]
    assert tracker.reason == "a drops 50% of frames, a p99 latency 2000 ms"


def test_a_source_that_stops_streaming_ends_its_conditions_at_once(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    for _ in range(10):
        poll(tracker, clock, {"a": status(p99=9000), "b": status(p99=8000)})
    assert tracker.active == {Condition("a", "latency"), Condition("b", "latency")}
    change = poll(tracker, clock, {"a": status(p99=9000, state="RECONNECTING"), "b": status()})
    assert change is not None
    assert change.ended == (Condition("a", "latency"),)  # b is only clearing: it holds
    assert change.reason == "b p99 latency 8000 ms"  # b's last numbers
    change = poll(tracker, clock, {"b": status(p99=8500)})  # a is gone from the run
    assert change is None and tracker.reason == "b p99 latency 8500 ms"
    assert poll(tracker, clock, {}).ended == (Condition("b", "latency"),)
    assert tracker.reason is None and tracker.window == {}


def test_a_pending_start_is_forgotten_when_the_source_stops_streaming(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    for _ in range(5):  # above for 2 s
        assert poll(tracker, clock, {"a": status(p99=9000)}) is None
    assert poll(tracker, clock, {"a": status(p99=9000, state="RECONNECTING")}) is None
    for _ in range(6):  # above again from the first of these, for 2.5 s
        assert poll(tracker, clock, {"a": status(p99=9000)}) is None
    assert poll(tracker, clock, {"a": status(p99=9000)}) is not None


def test_change_as_event_is_json(clock: FakeClock):
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=0.0)
    change = poll(tracker, clock, {"cam1": status(p99=5234)})
    assert change is not None
    event = change.as_event()
    assert json.loads(json.dumps(event)) == {
        "reason": "cam1 p99 latency 5234 ms",
        "started": [{"source": "cam1", "kind": "latency"}],
        "ended": [],
    }


def test_invalid_hold_s():
    with pytest.raises(ValueError, match="hold_s must be >= 0"):
        DegradationTracker(LIMITS, hold_s=-1.0)


def test_uses_monotonic_clock_by_default():
    tracker = DegradationTracker(LIMITS, hold_s=0.0)
    before = time.monotonic()
    change = tracker.update(typed({"a": status(decoded=10, p99=6000)}))
    assert change is not None and change.started == (Condition("a", "latency"),)
    assert before <= tracker.window["a"][0][0] <= time.monotonic()


# --- the measurements match the controller's old _degradation --------------------------

# (seconds since the previous poll, {source: (decoded, {cause: count}, p99, state)}), expected
Poll = tuple[float, dict[str, tuple[int, dict[str, int], float | None, str]]]

CASES: dict[str, tuple[list[Poll], list[str | None]]] = {
    "drops only once 80% of the window is covered": (
        [(0.0, {"a": (0, {}, None, "STREAMING")})]
        + [(1.0, {"a": (10 * k, {"stale": 9 * k}, None, "STREAMING")}) for k in range(1, 10)],
        [None] * 8 + ["a drops 90% of frames"] * 2,
    ),
    "the ratio is over the window, not since the start": (
        [(1.0, {"a": (10 * k, {"stale": 9 * min(k, 10)}, None, "STREAMING")}) for k in range(25)],
        [None] * 8
        + ["a drops 90% of frames"] * 3
        + [f"a drops {p}% of frames" for p in (81, 72, 63, 54)]
        + [None] * 10,
    ),
    "decimated counts in neither numerator nor denominator": (
        [
            (1.0, {"a": (20 * k, {"decimated": 10 * k, "stale": 6 * k}, None, "STREAMING")})
            for k in range(10)
        ],
        [None] * 8 + ["a drops 60% of frames"] * 2,
    ),
    "exactly at the limit is not above it": (
        [(1.0, {"a": (10 * k, {"stale": 5 * k}, None, "STREAMING")}) for k in range(10)],
        [None] * 10,
    ),
    "no frames decoded over the window: no ratio": (
        [(1.0, {"a": (100, {"stale": 99}, None, "STREAMING")}) for k in range(12)],
        [None] * 12,
    ),
    "drops are summed over every cause but decimated": (
        [
            (
                1.0,
                {
                    "a": (
                        10 * k,
                        {"stale": 2 * k, "queue_full": 3 * k, "decimated": 0},
                        None,
                        "STREAMING",
                    )
                },
            )
            for k in range(10)
        ],
        [None] * 10,  # 50%: at the limit
    ),
    "samples older than the window are let go": (
        [
            (5.0, {"a": (100 * k, {"stale": 0 if k < 3 else 100 * k}, None, "STREAMING")})
            for k in range(6)
        ],
        [
            None,
            None,
            None,
            "a drops 150% of frames",  # (300 - 0) / (300 - 100): the first sample is gone
            "a drops 200% of frames",
            "a drops 100% of frames",
        ],
    ),
    "a source not streaming is neither sampled nor named": (
        [
            (
                1.0,
                {
                    "a": (
                        10 * k,
                        {"stale": 9 * k},
                        9000.0,
                        "STREAMING" if k < 5 or k > 8 else "RECONNECTING",
                    )
                },
            )
            for k in range(14)
        ],
        ["a p99 latency 9000 ms"] * 5
        + [None] * 4
        # the window's first sample is still from k=0: 9 s of it are covered at k=9
        + ["a drops 90% of frames, a p99 latency 9000 ms"] * 5,
    ),
    "p99 above the limit, per source, in source order, drops first": (
        [
            (
                1.0,
                {
                    "b": (0, {}, 5000.4, "STREAMING"),
                    "a": (10 * k, {"stale": 8 * k}, 5000.6, "STREAMING"),
                    "c": (0, {}, None, "STREAMING"),
                },
            )
            for k in range(10)
        ],
        ["b p99 latency 5000 ms, a p99 latency 5001 ms"] * 8
        + ["b p99 latency 5000 ms, a drops 80% of frames, a p99 latency 5001 ms"] * 2,
    ),
}


def _sources(polled: dict[str, tuple[int, dict[str, int], float | None, str]]) -> dict:
    return {sid: status(d, drops, p99, state) for sid, (d, drops, p99, state) in polled.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_measurements_match_the_old_implementation(clock: FakeClock, name: str):
    polls, expected = CASES[name]
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=0.0)
    window: dict[str, list[tuple[float, int, int]]] = {}
    for (step, polled), want in zip(polls, expected, strict=True):
        clock.advance(step)
        sources = _sources(polled)
        old = old_degradation(sources, window, LIMITS, clock.now)
        tracker.update(typed(sources))
        assert old == want, name
        assert tracker.reason == want, name


@pytest.mark.parametrize("seed", range(20))
def test_random_polls_match_the_old_implementation(clock: FakeClock, seed: int):
    rng = random.Random(seed)
    limits = DegradationSpec(
        max_drop_ratio=rng.choice([0.0, 0.2, 0.5, 0.9]),
        max_p99_latency_ms=rng.choice([100.0, 5000.0]),
        window_s=rng.choice([1.0, 3.0, 10.0]),
    )
    tracker = DegradationTracker(limits, clock=clock, hold_s=0.0)
    window: dict[str, list[tuple[float, int, int]]] = {}
    counters = {sid: {"decoded": 0, "stale": 0, "decimated": 0} for sid in ("a", "b", "c")}
    for _ in range(300):
        clock.advance(rng.choice([0.1, 0.5, 0.5, 0.5, 1.0, 2.0]))
        sources = {}
        for sid, n in counters.items():
            new = rng.randrange(0, 30)
            n["decoded"] += new
            n["decimated"] += rng.randrange(0, new // 3 + 1)
            n["stale"] += rng.randrange(0, new - new // 3 + 1)
            p99 = rng.choice([None, limits.max_p99_latency_ms * rng.uniform(0.8, 1.2)])
            state = rng.choice(["STREAMING"] * 8 + ["RECONNECTING", "CONNECTING"])
            drops = {"stale": n["stale"], "decimated": n["decimated"]}
            sources[sid] = status(n["decoded"], drops, p99, state)
        old = old_degradation(sources, window, limits, clock.now)
        tracker.update(typed(sources))
        assert tracker.reason == old


@pytest.mark.parametrize("seed", range(10))
def test_random_polls_with_hold_report_only_changes_of_the_set(clock: FakeClock, seed: int):
    rng = random.Random(seed)
    tracker = DegradationTracker(LIMITS, clock=clock, hold_s=3.0)
    replayed: set[Condition] = set()
    p99 = {"a": 5000.0, "b": 5000.0}
    for _ in range(500):
        clock.advance(0.5)
        before = tracker.active
        for sid in p99:
            p99[sid] = max(0.0, p99[sid] + rng.uniform(-400, 400))
        state = "STREAMING" if rng.random() > 0.02 else "RECONNECTING"
        sources = {
            sid: status(p99=v, state=state if sid == "a" else "STREAMING") for sid, v in p99.items()
        }
        change = tracker.update(typed(sources))
        if change is None:
            assert tracker.active == before
            continue
        assert change.started or change.ended
        assert not set(change.started) & before and set(change.ended) <= before
        replayed |= set(change.started)
        replayed -= set(change.ended)
        assert replayed == tracker.active
        assert change.reason == tracker.reason
        named = [f"{c.source} p99 latency" for c in sorted(tracker.active)]
        assert [
            part.rsplit(" ", 2)[0] for part in (tracker.reason or "").split(", ") if part
        ] == named
