"""The batch former, driven by a fake clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.unit.fakes import FakeClock
from vsa.batching import BatchFormer, max_min_shares


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


def test_empty_former(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(4, 0.5, clock=clock)
    assert len(former) == 0
    assert former.oldest_wait() is None
    assert former.time_until_ready() is None
    assert not former.ready()
    assert former.take() == []
    assert former.drain() == []


def test_ready_when_max_batch_size_frames_wait(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(3, 10.0, clock=clock)
    former.add("a", "a0")
    former.add("b", "b0")
    assert not former.ready()
    former.add("a", "a1")
    assert former.ready()
    assert former.time_until_ready() == 0.0
    assert former.take() == ["a0", "b0", "a1"]
    assert len(former) == 0


def test_ready_after_max_wait_and_not_before(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(8, 0.5, clock=clock)
    former.add("a", "a0")
    assert former.time_until_ready() == 0.5
    assert not former.ready()
    clock.advance(0.25)
    former.add("b", "b0")  # a younger frame does not restart the wait
    assert former.oldest_wait() == 0.25
    assert former.time_until_ready() == 0.25
    assert not former.ready()
    clock.advance(0.125)
    assert former.time_until_ready() == 0.125
    assert not former.ready()
    clock.advance(0.125)
    assert former.time_until_ready() == 0.0
    assert former.ready()
    clock.advance(5.0)  # never negative
    assert former.time_until_ready() == 0.0
    assert former.oldest_wait() == 5.5
    assert former.take() == ["a0", "b0"]
    assert former.time_until_ready() is None


def test_wait_restarts_from_the_oldest_left_over_frame(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(2, 1.0, clock=clock)
    former.add("a", "a0")
    clock.advance(0.5)
    former.add("a", "a1")
    clock.advance(0.25)
    former.add("a", "a2")
    assert former.ready()
    assert former.take() == ["a0", "a1"]
    # a2 arrived 0 s ago: it waits its own full max_wait
    assert former.oldest_wait() == 0.0
    assert former.time_until_ready() == 1.0
    clock.advance(1.0)
    assert former.ready()
    assert former.take() == ["a2"]


def test_zero_max_wait_is_ready_at_once(clock: FakeClock):
    former: BatchFormer[int] = BatchFormer(8, 0.0, clock=clock)
    former.add("a", 1)
    assert former.ready()
    assert former.take() == [1]


def test_round_robin_does_not_let_a_busy_stream_fill_the_batch(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(4, 0.02, clock=clock)
    for k in range(20):
        former.add("busy", f"busy{k}")
    former.add("quiet", "quiet0")
    former.add("quiet", "quiet1")
    first = former.take()
    assert len(first) == 4
    assert first == ["busy0", "quiet0", "busy1", "quiet1"]
    # Then only the busy stream is left, in its own order.
    assert former.take() == ["busy2", "busy3", "busy4", "busy5"]
    assert len(former) == 14


def test_order_within_a_stream_is_preserved(clock: FakeClock):
    former: BatchFormer[tuple[str, int]] = BatchFormer(3, 0.0, clock=clock)
    streams = ["a", "b", "c", "d"]
    for k in range(10):
        for s in streams[: 1 + k % 4]:  # uneven arrival
            former.add(s, (s, k))
    taken: list[tuple[str, int]] = []
    while len(former):
        batch = former.take()
        assert 1 <= len(batch) <= 3
        taken += batch
    assert len(taken) == sum(1 + k % 4 for k in range(10))
    for s in streams:
        ks = [k for (t, k) in taken if t == s]
        assert ks == sorted(ks) and len(ks) == len(set(ks))


def test_streams_left_out_go_first_in_the_next_batch(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(2, 0.0, clock=clock)
    for s in ("a", "b", "c"):
        for k in range(3):
            former.add(s, f"{s}{k}")
    assert former.take() == ["a0", "b0"]
    assert former.take() == ["c0", "a1"]  # c was left out: it goes first
    assert former.take() == ["b1", "c1"]
    assert former.take() == ["a2", "b2"]
    assert former.take() == ["c2"]
    assert former.take() == []


def test_new_stream_is_served_in_the_next_batch(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(2, 0.0, clock=clock)
    for k in range(6):
        former.add("a", f"a{k}")
    assert former.take() == ["a0", "a1"]
    former.add("late", "late0")
    batch = former.take()
    assert "late0" in batch
    assert batch == ["a2", "late0"]


def test_a_stream_can_fill_the_batch_alone(clock: FakeClock):
    former: BatchFormer[int] = BatchFormer(4, 0.0, clock=clock)
    for k in range(5):
        former.add("a", k)
    assert former.take() == [0, 1, 2, 3]
    assert former.take() == [4]


def test_len_counts_waiting_frames(clock: FakeClock):
    former: BatchFormer[int] = BatchFormer(2, 1.0, clock=clock)
    for k in range(5):
        former.add(k % 2, k)
    assert len(former) == 5
    former.take()
    assert len(former) == 3


def test_drain_returns_everything_and_empties(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(2, 1.0, clock=clock)
    former.add("a", "a0")
    former.add("b", "b0")
    former.add("a", "a1")
    assert sorted(former.drain()) == ["a0", "a1", "b0"]
    assert len(former) == 0
    assert former.time_until_ready() is None
    assert former.take() == []
    former.add("c", "c0")  # usable after a drain
    assert former.take() == ["c0"]


def test_uses_monotonic_clock_by_default():
    former: BatchFormer[int] = BatchFormer(1, 0.0)
    former.add("a", 1)
    assert former.oldest_wait() >= 0.0
    assert former.ready()


@pytest.mark.parametrize(
    ("size", "wait", "message"),
    [
        (0, 0.02, "max_batch_size must be >= 1"),
        (-3, 0.02, "max_batch_size must be >= 1"),
        (4, -0.001, "max_wait_s must be >= 0"),
    ],
)
def test_invalid_arguments(size: int, wait: float, message: str):
    with pytest.raises(ValueError) as info:
        BatchFormer(size, wait)
    assert str(info.value) == message


def test_higher_priority_streams_are_served_first_under_saturation():
    former = BatchFormer(max_batch_size=4, max_wait_s=0.0, clock=lambda: 0.0)
    for k in range(6):
        former.add("low", ("low", k), priority=0)
        former.add("high", ("high", k), priority=5)
        former.add("high2", ("high2", k), priority=5)
    first = former.take()
    assert sorted(first) == [("high", 0), ("high", 1), ("high2", 0), ("high2", 1)]
    second = former.take()
    assert {s for s, _ in second} == {"high", "high2"}
    assert {s for s, _ in former.take()} == {"high", "high2"}  # their last two each
    assert [s for s, _ in former.take()] == ["low"] * 4  # only now the low stream


def test_lower_priority_fills_what_is_left():
    former = BatchFormer(max_batch_size=4, max_wait_s=0.0, clock=lambda: 0.0)
    former.add("high", "h0", priority=1)
    for k in range(5):
        former.add("low", f"l{k}")
    assert former.take() == ["h0", "l0", "l1", "l2"]


# --- groups (runs): fair across groups, priority within one ------------------------------


def _saturate(former: BatchFormer, adds: dict[str, list[tuple[str, int]]], depth: int) -> None:
    """Top every (group, stream) up to ``depth`` waiting frames."""
    for group, streams in adds.items():
        for stream, priority in streams:
            for _ in range(depth):
                former.add(stream, (group, stream), priority=priority, group=group)


def _group_of(item: tuple[str, str]) -> str:
    return item[0]


def test_a_high_priority_run_cannot_starve_another_run():
    """The rule: with both groups saturated, each gets exactly 2 of every 4 slots."""
    former: BatchFormer[tuple[str, str]] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    groups = {
        "runA": [(f"a{k}", 100) for k in range(4)],
        "runB": [("b0", 0)],
    }
    slots = {"runA": 0, "runB": 0}
    for _ in range(100):
        _saturate(former, groups, depth=4)  # more than a batch waits for every stream, always
        batch = former.take()
        assert len(batch) == 4
        assert [_group_of(i) for i in batch] in (
            ["runA", "runB", "runA", "runB"],
            ["runB", "runA", "runB", "runA"],
        )
        for item in batch:
            slots[_group_of(item)] += 1
    assert slots == {"runA": 200, "runB": 200}


def test_within_a_run_the_four_streams_still_round_robin():
    former: BatchFormer[tuple[str, str]] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    groups = {"runA": [(f"a{k}", 100) for k in range(4)], "runB": [("b0", 0)]}
    per_stream: dict[str, int] = {}
    for _ in range(100):
        _saturate(former, groups, depth=4)
        for _, stream in former.take():
            per_stream[stream] = per_stream.get(stream, 0) + 1
    assert per_stream == {"a0": 50, "a1": 50, "a2": 50, "a3": 50, "b0": 200}


@pytest.mark.parametrize(
    ("groups", "batch_size", "batches", "expected"),
    [
        # n saturated groups of weight 1 get exactly 1/n of the slots over n*k slots
        ({"r1": [("s", 0)], "r2": [("s", 0)], "r3": [("s", 0)]}, 4, 30, [40, 40, 40]),
        ({"r1": [("s", 0)], "r2": [("s", 9), ("t", 9)], "r3": [("s", 1)]}, 3, 10, [10, 10, 10]),
        ({"r1": [("s", 0)], "r2": [("s", 0)]}, 1, 10, [5, 5]),
        ({"r1": [("s", 5)], "r2": [("x", 0), ("y", 0), ("z", 0)]}, 5, 20, [50, 50]),
    ],
)
def test_saturated_groups_share_evenly(
    groups: dict[str, list[tuple[str, int]]], batch_size: int, batches: int, expected: list[int]
):
    former: BatchFormer[tuple[str, str]] = BatchFormer(batch_size, 0.0, clock=lambda: 0.0)
    slots = dict.fromkeys(groups, 0)
    taken: list[str] = []
    for _ in range(batches):
        _saturate(former, groups, depth=batch_size)
        batch = former.take()
        assert len(batch) == batch_size
        taken += [_group_of(i) for i in batch]
    for group in taken:
        slots[group] += 1
    assert list(slots.values()) == expected
    # and in every window of len(groups) consecutive slots, each group exactly once
    n = len(groups)
    for start in range(0, len(taken) - n + 1):
        assert sorted(taken[start : start + n]) == sorted(groups)


def test_within_a_group_priority_still_wins():
    former: BatchFormer[str] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    for k in range(4):
        former.add("low", f"l{k}", priority=0, group="run")
        former.add("high", f"h{k}", priority=7, group="run")
    assert former.take() == ["h0", "h1", "h2", "h3"]
    assert former.take() == ["l0", "l1", "l2", "l3"]


def test_priority_is_per_group_and_groups_alternate():
    former: BatchFormer[str] = BatchFormer(6, 0.0, clock=lambda: 0.0)
    for k in range(3):
        former.add("low", f"Al{k}", priority=0, group="A")
        former.add("high", f"Ah{k}", priority=100, group="A")
        former.add("cam", f"B{k}", priority=0, group="B")
    # A's turns go to its high stream; B's single low stream is not behind A's priority
    assert former.take() == ["Ah0", "B0", "Ah1", "B1", "Ah2", "B2"]
    assert former.take() == ["Al0", "Al1", "Al2"]


def test_the_same_stream_name_in_two_groups_is_two_streams():
    former: BatchFormer[str] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    for k in range(2):
        former.add("cam1", f"A{k}", group="A")
        former.add("cam1", f"B{k}", group="B")
    assert former.take() == ["A0", "B0", "A1", "B1"]


def test_a_group_that_stops_adding_does_not_block_others():
    former: BatchFormer[str] = BatchFormer(3, 10.0, clock=lambda: 0.0)
    former.add("s", "A0", group="A")
    for k in range(8):
        former.add("s", f"B{k}", group="B")
    assert former.take() == ["A0", "B0", "B1"]
    # A has nothing left: B fills whole batches
    assert former.take() == ["B2", "B3", "B4"]
    assert former.take() == ["B5", "B6", "B7"]
    assert former.take() == []
    assert len(former) == 0


def test_a_group_that_comes_back_is_served_within_one_round():
    former: BatchFormer[str] = BatchFormer(2, 0.0, clock=lambda: 0.0)
    for k in range(6):
        former.add("s", f"A{k}", group="A")
        former.add("s", f"B{k}", group="B")
    assert former.take() == ["A0", "B0"]
    former.add("s", "C0", group="C")
    assert former.take() == ["A1", "B1"]  # C joins behind the groups already waiting
    assert former.take() == ["C0", "A2"]
    assert former.take() == ["B2", "A3"]


def test_fairness_carries_over_between_batches_of_odd_size():
    former: BatchFormer[str] = BatchFormer(3, 0.0, clock=lambda: 0.0)
    for k in range(6):
        former.add("s", f"A{k}", group="A")
        former.add("s", f"B{k}", group="B")
    assert former.take() == ["A0", "B0", "A1"]
    assert former.take() == ["B1", "A2", "B2"]  # B was left out last: it goes first
    former.max_batch_size = 4  # mutated from outside
    assert former.take() == ["A3", "B3", "A4", "B4"]


@pytest.mark.parametrize(
    ("weights", "batch_size", "expected_first_six"),
    [
        ({"A": 2}, 3, ["A", "A", "B", "A", "A", "B"]),
        ({"A": 2}, 2, ["A", "A", "B", "A", "A", "B"]),  # the turns carry over a batch boundary
        ({"B": 3}, 4, ["A", "B", "B", "B", "A", "B"]),
        ({"A": 1, "B": 1}, 4, ["A", "B", "A", "B", "A", "B"]),
    ],
)
def test_weighted_groups_take_that_many_turns_per_round(
    weights: dict[str, int], batch_size: int, expected_first_six: list[str]
):
    former: BatchFormer[str] = BatchFormer(batch_size, 0.0, clock=lambda: 0.0)
    for group, weight in weights.items():
        former.set_weight(group, weight)
    for k in range(20):
        former.add("s", f"A{k}", group="A")
        former.add("s", f"B{k}", group="B")
    taken: list[str] = []
    while len(taken) < 6:
        taken += [item[0] for item in former.take()]
    assert taken[:6] == expected_first_six


def test_weight_over_many_batches():
    former: BatchFormer[tuple[str, str]] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    former.set_weight("heavy", 3)
    assert former.weight("heavy") == 3 and former.weight("light") == 1
    groups = {"heavy": [("s", 0)], "light": [("s", 0)]}
    slots = dict.fromkeys(groups, 0)
    for _ in range(100):
        _saturate(former, groups, depth=4)
        for item in former.take():
            slots[_group_of(item)] += 1
    assert slots == {"heavy": 300, "light": 100}
    former.set_weight("heavy", 1)
    assert former.weight("heavy") == 1


@pytest.mark.parametrize("weight", [0, -1, 1.5, True, "2"])
def test_invalid_weight(weight: object):
    former: BatchFormer[int] = BatchFormer(4, 0.0)
    with pytest.raises(ValueError, match="weight must be an integer >= 1"):
        former.set_weight("A", weight)


def test_waits_and_drain_span_groups(clock: FakeClock):
    former: BatchFormer[str] = BatchFormer(3, 1.0, clock=clock)
    former.add("s", "A0", group="A")
    clock.advance(0.25)
    former.add("s", "B0", group="B")
    former.add("t", "B1", group="B")
    assert len(former) == 3
    assert former.oldest_wait() == 0.25
    assert former.ready()
    assert former.take() == ["A0", "B0", "B1"]
    former.add("s", "A1", group="A")
    clock.advance(0.5)
    former.add("s", "C0", group="C")
    assert former.time_until_ready() == 0.5
    assert sorted(former.drain()) == ["A1", "C0"]
    assert len(former) == 0 and former.take() == []


def test_ungrouped_streams_share_one_default_group():
    """``group=None`` keeps the single-level behaviour: priority across all such streams."""
    former: BatchFormer[str] = BatchFormer(4, 0.0, clock=lambda: 0.0)
    for k in range(4):
        former.add("low", f"l{k}")
        former.add("high", f"h{k}", priority=3)
        former.add("cam", f"R{k}", group="run")
    # the default group and "run" alternate; within the default group, priority wins
    assert former.take() == ["h0", "R0", "h1", "R1"]
    assert former.take() == ["h2", "R2", "h3", "R3"]
    assert former.take() == ["l0", "l1", "l2", "l3"]


def test_stale_items_do_not_use_a_place_or_their_group_turn():
    """A run whose waiting frames went stale still gets its share of the fresh ones."""
    former: BatchFormer[tuple[str, int]] = BatchFormer(4, 0.0)
    for k in range(6):
        former.add("a/cam0", ("a", k), group="a")  # a's first four are stale
    for k in range(6):
        former.add("b/cam0", ("b", k), group="b")
    batch, stale = former.take_fresh(lambda item: item[0] == "a" and item[1] < 4)
    assert stale == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]
    assert batch == [("a", 4), ("b", 0), ("a", 5), ("b", 1)]
    assert len(former) == 4
    assert former.take_fresh(lambda item: True) == ([], [("b", 2), ("b", 3), ("b", 4), ("b", 5)])
    assert len(former) == 0


# --- closing early once every bounded stream's frames are in ---------------------------------
def test_a_batch_closes_once_every_realtime_stream_sent_its_credit():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.050, clock=clock)
    former.add("a", 1, credit=1)
    former.add("b", 2, credit=1)
    assert former.take() == [1, 2]
    former.batch_done()
    clock.advance(0.2)  # the results went back; each camera sends its next frame
    former.add("a", 3, credit=1)
    assert former.time_until_ready() == pytest.approx(0.050)  # "b" may still send one
    former.add("b", 4, credit=1)
    assert former.time_until_ready() == 0.0  # nothing more can come: do not wait
    assert former.take() == [3, 4]


def test_a_stream_with_credit_two_is_in_with_two_frames():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.050, clock=clock)
    former.add("a", 1, credit=2)
    assert former.time_until_ready() > 0
    former.add("a", 2, credit=2)
    assert former.time_until_ready() == 0.0


def test_an_unbounded_stream_keeps_the_wait():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.050, clock=clock)
    former.add("lossless", 1)  # no credit: it may send more at any time
    former.add("a", 2, credit=1)
    assert former.time_until_ready() == pytest.approx(0.050)


def test_a_stream_quiet_past_the_horizon_is_not_waited_for():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.050, clock=clock, horizon_s=1.0)
    former.add("gone", 1, credit=1)
    assert former.take() == [1]
    former.batch_done()
    clock.advance(1.5)  # "gone" stopped sending
    former.add("a", 2, credit=1)
    assert former.time_until_ready() == 0.0
    clock.advance(0.1)
    former.add("gone", 3, group="other-run", credit=1)  # same name, another run: its own sender
    assert former.all_in()


def test_cameras_in_the_running_batch_are_waited_for_so_batches_stay_whole():
    """Four cameras, one frame in flight each: while two of them are in the running batch,
    the other two are not sent alone as soon as it ends; the batch waits (at most max_wait)
    for the two to come back, so the four go on together instead of in alternating halves."""
    clock = FakeClock(0.0)
    former = BatchFormer(2, 0.050, clock=clock)
    for k, cam in enumerate("abcd"):
        former.add(cam, k, credit=1)
    assert former.take() == [0, 1]  # a and b run; c and d wait
    assert former.all_in()  # everyone's frame is waiting or running: nothing else can come
    former.batch_done()
    former.max_batch_size = 4
    assert former.time_until_ready() == pytest.approx(0.050)  # a and b will send again
    former.add("a", 4, credit=1)
    former.add("b", 5, credit=1)
    assert former.time_until_ready() == 0.0
    assert sorted(former.take()) == [2, 3, 4, 5]


def test_a_fair_share_splits_realtime_cameras_evenly_across_concurrent_batches():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.050, clock=clock)
    for cam in "abcd":
        former.add(cam, cam, credit=1)
    assert former.fair_share(2) == 2 and former.fair_share(3) == 2 and former.fair_share(1) == 4
    first, _ = former.take_fresh(lambda item: False, former.fair_share(2))
    second, _ = former.take_fresh(lambda item: False, former.fair_share(2))
    assert (first, second) == (["a", "b"], ["c", "d"])
    former.add("lossless", "x")  # a stream without credit: batches fill up as before
    assert former.fair_share(2) is None


def simulate_cameras(fair: bool, seconds: float = 900.0, seed: int = 3) -> dict[str, int]:
    """Results per camera: four realtime cameras (one frame in flight each), two batches at
    once on a CPU (a batch takes 0.25 s per frame), each camera's next frame arriving 2-12 ms
    after its result, one time in five 20-100 ms; the former driven as ``InferenceEngine._next_batch`` drives it (``fair``:
    a batch short of its fair share waits up to half a batch time; otherwise ``max_wait``)."""
    import heapq
    import random

    from vsa.constants import FAIR_WAIT, FAIR_WAIT_MAX_S

    rng = random.Random(seed)
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.020, clock=clock)
    results = dict.fromkeys("abcd", 0)
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def at(t: float, kind: str, data: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    for cam in results:
        at(rng.uniform(0.0, 0.06), "frame", cam)
    running, batch_s = 0, 0.5
    while events and clock.now < seconds:
        t, _, kind, data = heapq.heappop(events)
        clock.now = max(clock.now, t)
        if kind == "frame":
            former.add(data, data, credit=1)
        elif kind == "done":
            running -= 1
            former.batch_done(data)
            for (_, cam), n in data.items():
                results[cam] += n
                # the camera's newest frame goes out when the result is back: a few ms, and
                # sometimes tens (the source waits for a core on a saturated host)
                late = rng.random() < 0.2
                at(
                    clock.now + rng.uniform(*((0.02, 0.1) if late else (0.002, 0.012))),
                    "frame",
                    cam,
                )
        while running < 2:  # a model thread is free
            share = former.fair_share(2)
            delay = (
                former.time_until_ready(share, min(FAIR_WAIT * batch_s, FAIR_WAIT_MAX_S))
                if fair
                else former.time_until_ready()
            )
            if delay is None:
                break
            if delay > 0:
                at(clock.now + max(delay, 1e-6), "wake", None)  # past float rounding
                break
            batch, _ = former.take_fresh(lambda item: False, share)
            running += 1
            at(clock.now + 0.25 * len(batch), "done", dict(former.last_taken))
    return results


def spread(results: dict[str, int]) -> float:
    counts = list(results.values())
    return (max(counts) - min(counts)) / (sum(counts) / len(counts))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_cameras_get_the_same_rate_when_a_short_batch_waits_for_its_fair_share(seed: int):
    """With two batches at once, a batch closed after max_wait without a camera whose next
    frame was on its way is smaller, ends sooner and brings its cameras round more often
    (here two cameras settle in batches of one and get 1.5 times the others' rate; the
    benchmark measured spreads of 7-16 %). Waiting up to half a batch time for the fair share
    keeps the pairs whole: every camera within 2 % of the others. The price is the model
    thread's wait for a late camera, ~5 % of the throughput here, where a batch of two costs
    exactly two of one (on a real CPU it costs less)."""
    before, after = simulate_cameras(False, seed=seed), simulate_cameras(True, seed=seed)
    assert spread(before) > 0.2, before
    assert spread(after) < 0.02, after
    assert sum(after.values()) >= 0.93 * sum(before.values()), (before, after)


def test_a_short_batch_waits_for_a_camera_whose_result_just_came_back_and_not_longer():
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.020, clock=clock)
    for cam in "ab":
        former.add(cam, cam, credit=1)
    assert former.take_fresh(lambda item: False, 2)[0] == ["a", "b"]
    former.batch_done(dict(former.last_taken))  # both results go back at t = 0
    clock.advance(0.005)
    former.add("a", "a2", credit=1)  # a's next frame; b's is on its way
    assert former.time_until_ready(2, 0.2) == pytest.approx(0.195)  # 0.2 after b's result
    assert former.time_until_ready() == pytest.approx(0.020)  # without a fair share: max_wait
    clock.advance(0.05)
    former.add("b", "b2", credit=1)
    assert former.time_until_ready(2, 0.2) == 0.0  # the fair share is in


def test_a_camera_slower_than_the_model_is_not_waited_for():
    """Its result came back long ago and it has not sent since: only max_wait applies."""
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.020, clock=clock)
    for cam in ("a", "slow"):
        former.add(cam, cam, credit=1)
    former.take_fresh(lambda item: False, 2)
    former.batch_done(dict(former.last_taken))
    clock.advance(0.5)  # "slow" sends once a second; "a" came round many times meanwhile
    former.add("a", "a2", credit=1)
    assert former.time_until_ready(2, 0.2) == pytest.approx(0.020)


# --- a share that credit does not buy: cameras beside lossless streams -----------------------
def simulate_mixed(
    cameras: dict[str, str | None],
    files: dict[str, str | None],
    seconds: float = 600.0,
    seed: int = 3,
    per_frame_s: float = 0.1,
    camera_fps: float | None = None,
    file_fps: float | None = None,
    fair: bool = True,
    weights: dict[str, int] | None = None,
    says_behind: bool = True,
    cpu: bool = True,
) -> dict[str, Any]:
    """One model thread, driven as ``InferenceEngine._next_batch`` drives the former.

    ``cameras``/``files``: stream -> group (run). A camera (credit 1) sends its newest frame
    2-12 ms after its result (one time in five 20-100 ms: a busy host), or, with
    ``camera_fps``, at most at that rate; a lossless stream keeps 8 frames in flight (its
    next one arrives 2-12 ms after a result), or, with ``file_fps``, decodes at that rate.
    A batch takes ``per_frame_s`` per frame (a CPU). ``fair=False``: the former without the
    engine's patience (no cap); ``says_behind``: cameras tell the former when they lost
    frames (as ``Realtime`` does), else it judges by timing; ``cpu``: batches of one round
    (``round_size``), as the engine forms them on a CPU. Returns frames per stream, the cameras' latencies in batch
    times (frame arrival to result over the mean batch time) and the total."""
    import heapq
    import random

    from vsa.constants import FAIR_WAIT, FAIR_WAIT_MAX_S

    rng = random.Random(seed)
    clock = FakeClock(0.0)
    former = BatchFormer(8, 0.020, clock=clock)
    for group, weight in (weights or {}).items():
        former.set_weight(group, weight)
    group_of = {**cameras, **files}
    served = dict.fromkeys(group_of, 0)
    latency: list[float] = []
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def at(t: float, kind: str, data: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    def gap() -> float:
        late = rng.random() < 0.2
        return rng.uniform(*((0.02, 0.1) if late else (0.002, 0.012)))

    last_capture = dict.fromkeys(cameras, -1.0)
    behind: dict[str, bool] = {}

    def camera_sends(cam: str) -> None:
        t = clock.now + gap()
        # a model-bound camera always has a newer frame than the one it sends (it lost some:
        # ``behind``); one capturing at ``camera_fps`` sends its newest capture, and lost
        # frames when one was captured between that and the last it sent
        behind[cam] = True
        if camera_fps:
            interval = 1 / camera_fps
            newest = math.floor(t / interval) * interval
            if newest <= last_capture[cam] + 1e-9:  # nothing new yet: the next capture
                newest = last_capture[cam] + interval
                t = newest + 0.001
            behind[cam] = newest - last_capture[cam] > interval * 1.5
            last_capture[cam] = newest
        at(t, "frame", cam)

    for cam in cameras:
        camera_sends(cam)
    file_next = dict.fromkeys(files, 0.0)
    for name in files:
        for _ in range(8):
            t = file_next[name] + (1 / file_fps if file_fps else rng.uniform(0.0, 0.01))
            file_next[name] = t
            at(t, "frame", name)
    batch_s, batches, busy, running = 0.0, 0, 0.0, False
    while events and clock.now < seconds:
        t, _, kind, data = heapq.heappop(events)
        clock.now = max(clock.now, t)
        if kind == "frame":
            stream = data
            credit = 1 if stream in cameras else None
            former.add(
                stream,
                (stream, clock.now),
                group=group_of[stream],
                credit=credit,
                behind=behind.get(stream) if says_behind else None,
            )
        elif kind == "done":
            taken, items, took = data
            running = False
            former.batch_done(taken)
            batches += 1
            busy += took
            batch_s = took if not batch_s else 0.8 * batch_s + 0.2 * took
            for stream, arrived in items:
                served[stream] += 1
                if stream in cameras:
                    latency.append(clock.now - arrived)
                    camera_sends(stream)
                else:  # a slot is free: the lossless stream sends one more
                    t = clock.now + gap()
                    if file_fps:
                        t = max(t, file_next[stream] + 1 / file_fps)
                    file_next[stream] = t
                    at(t, "frame", stream)
        if running:
            continue
        patience = min(FAIR_WAIT * batch_s, FAIR_WAIT_MAX_S) if fair else 0.0
        former.patience_s = patience
        share = former.round_size() if cpu and fair else None
        delay = former.time_until_ready(share, patience)
        if delay is None:
            continue
        if delay > 0:
            at(clock.now + max(delay, 1e-6), "wake", None)
            continue
        batch, _ = former.take_fresh(lambda item: False, share)
        if not batch:
            continue
        running = True
        took = per_frame_s * len(batch)
        at(clock.now + took, "done", (dict(former.last_taken), batch, took))
    mean_batch = busy / max(1, batches)
    latency.sort()
    return {
        "served": served,
        "total": sum(served.values()),
        "p50": latency[len(latency) // 2] / mean_batch if latency else None,
        "p99": latency[int(len(latency) * 0.99)] / mean_batch if latency else None,
    }


@pytest.mark.parametrize("seed", [3, 4])
def test_a_camera_beside_a_lossless_file_gets_its_fair_share(seed: int):
    """The issue's case: a realtime camera (credit 1) beside a lossless file in one run. The
    former alone served the camera once per batch of eight (about 1/8 of the frames, at
    several batch times of latency); with the cap each gets at least 0.9 of half, and the
    camera's latency stays about one batch time."""
    before = simulate_mixed({"cam": "run"}, {"file": "run"}, fair=False, seed=seed)
    after = simulate_mixed({"cam": "run"}, {"file": "run"}, seed=seed)
    assert before["served"]["cam"] < 0.2 * before["total"], before
    fair = after["total"] / 2
    assert after["served"]["cam"] >= 0.9 * fair, after
    assert after["served"]["file"] >= 0.9 * fair, after
    assert after["p50"] <= 1.6, after  # in batch times (the batch it joins + its own wait)


@pytest.mark.parametrize("seed", [3, 4])
def test_several_cameras_and_files_each_get_a_max_min_fair_share(seed: int):
    cameras = {f"cam{i}": "run" for i in range(3)}
    files = {f"file{i}": "run" for i in range(2)}
    after = simulate_mixed(cameras, files, seed=seed)
    n = len(cameras) + len(files)
    for stream, count in after["served"].items():
        assert count >= 0.9 * after["total"] / n, (stream, after)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_camera_run_beside_a_lossless_run_gets_half(seed: int):
    """Across runs the share is per run: a camera run beside a batch job in another run."""
    before = simulate_mixed({"cam": "live"}, {"file": "batch"}, fair=False, seed=seed)
    after = simulate_mixed({"cam": "live"}, {"file": "batch"}, seed=seed)
    assert before["served"]["cam"] < 0.2 * before["total"], before
    for stream in ("cam", "file"):
        assert after["served"][stream] >= 0.9 * after["total"] / 2, after


def test_runs_of_cameras_and_of_files_share_by_run_then_by_stream():
    cameras = {"cam0": "live", "cam1": "live"}
    files = {"file0": "batch", "file1": "batch", "file2": "batch"}
    after = simulate_mixed(cameras, files, seed=5)
    half = after["total"] / 2
    for stream in cameras:
        assert after["served"][stream] >= 0.9 * half / 2, after
    for stream in files:
        assert after["served"][stream] >= 0.9 * half / 3, after


def test_a_camera_slower_than_the_model_gets_all_it_asks_and_the_file_the_rest():
    """Max-min: a 1 fps camera asks for less than half of a 10 frames/s model; it gets every
    frame it sends, within about one batch time, and the file keeps the rest (no throughput
    lost to waiting). (A camera whose frame interval is shorter than two full batches of the
    file gets less than it asks: it is not waited for, see docs/performance.md.)"""
    after = simulate_mixed({"cam": "run"}, {"file": "run"}, camera_fps=1.0, seconds=300.0)
    capacity = after["total"] / 300.0
    shares = max_min_shares({"cam": 1.0, "file": math.inf}, capacity)
    assert after["served"]["cam"] / 300.0 >= 0.9 * shares["cam"], after
    assert after["served"]["file"] / 300.0 >= 0.9 * shares["file"], after
    alone = simulate_mixed({}, {"file": "run"}, seconds=300.0)
    assert after["total"] >= 0.9 * alone["total"], (after, alone)


def test_a_slow_file_leaves_the_camera_what_it_does_not_use():
    after = simulate_mixed({"cam": "run"}, {"file": "run"}, file_fps=1.0, seconds=300.0)
    capacity = after["total"] / 300.0
    shares = max_min_shares({"cam": math.inf, "file": 1.0}, capacity)
    assert after["served"]["file"] / 300.0 >= 0.9 * shares["file"], after
    assert after["served"]["cam"] / 300.0 >= 0.9 * shares["cam"], after


def test_a_higher_priority_file_still_comes_first_and_a_lower_one_yields():
    """Priorities keep their meaning: a file above the camera's level is not capped by it
    (its frames fill the batch); a file below it is (a few frames beside the camera's)."""
    for file_priority, expected in (
        (1, ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"]),
        (-1, ["c1", "f0", "f1", "f2"]),
    ):
        clock = FakeClock(0.0)
        former = BatchFormer(8, 0.020, clock=clock)
        former.patience_s = 0.1
        former.add("cam", "c0", credit=1)
        assert former.take() == ["c0"]
        former.batch_done()
        clock.advance(0.01)
        former.add("cam", "c1", credit=1)  # right after its result: eager, it caps its peers
        for i in range(20):
            former.add("file", f"f{i}", priority=file_priority)
        assert former.take() == expected


@pytest.mark.parametrize("says_behind", [True, False])
def test_the_share_holds_whether_cameras_say_they_are_behind_or_not(says_behind: bool):
    after = simulate_mixed({"cam": "run"}, {"file": "run"}, says_behind=says_behind)
    for stream in ("cam", "file"):
        assert after["served"][stream] >= 0.9 * after["total"] / 2, after


def test_a_camera_that_gets_all_its_frames_caps_nobody_however_soon_it_sends():
    """A camera that lost no frame (``behind=False``) gets all it asks for: it does not hold
    the file back, even when its next frame comes right after its result."""
    for behind, files in ((False, 7), (True, 3)):
        clock = FakeClock(0.0)
        former = BatchFormer(8, 0.020, clock=clock)
        former.patience_s = 0.1
        former.add("cam", "c0", credit=1, behind=False)
        assert former.take() == ["c0"]
        former.batch_done()
        clock.advance(0.005)
        former.add("cam", "c1", credit=1, behind=behind)
        for i in range(20):
            former.add("file", f"f{i}")
        batch = former.take()
        assert batch[0] == "c1" and len(batch) == 1 + files, batch


def test_max_min_shares_fill_the_small_demands_then_split_the_rest():
    assert max_min_shares({"a": 2.0, "b": math.inf}, 10.0) == {"a": 2.0, "b": 8.0}
    assert max_min_shares({"a": 6.0, "b": math.inf}, 10.0) == {"a": 5.0, "b": 5.0}
    shares = max_min_shares({"a": 1.0, "b": 3.0, "c": 9.0, "d": 9.0}, 12.0)
    assert shares == {"a": 1.0, "b": 3.0, "c": 4.0, "d": 4.0}
