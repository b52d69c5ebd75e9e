"""The batch former, driven by a fake clock."""

from __future__ import annotations

import pytest

from vsa.batching import BatchFormer


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
