"""Bursty live streams are paced, not thinned (issue 24 item 2): the jitter buffer's due times,
its take, the arrival statistics, the bursty synthetic source, and the steady-delivery floor
of realtime delivery with a consumer slower than the camera (a fake clock, no threads)."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from tests.unit.fakes import FakeClock
from vsa.core.frames import Frame
from vsa.schema import DropCause
from vsa.sources.synthetic import SyntheticParams, SyntheticSource
from vsa.stream.delivery import Realtime, Slots
from vsa.stream.pacing import ArrivalStats, JitterBuffer, Pacer, frames_to_hold

FPS = 15.0
T0 = 1_700_000_000.0


def smooth(k: int) -> float:
    """Arrival of frame k of a 15 fps camera delivering each frame when it is due."""
    return T0 + k / FPS


def bursty(k: int, burst: int = 15) -> float:
    """Arrival of frame k when ``burst`` frames come at once, as the last of them is due (HLS
    with 1 s segments at 15 fps)."""
    return T0 + (k // burst * burst + burst - 1) / FPS


def dues(pacer: Pacer, arrivals: list[float], pts: list[float | None]) -> list[float]:
    return [pacer.due(p, a) for p, a in zip(pts, arrivals, strict=True)]


# --- the pacer -----------------------------------------------------------------------------------


def test_a_smooth_source_is_released_on_arrival():
    arrivals = [smooth(k) for k in range(60)]
    assert dues(Pacer(2.0), arrivals, [k / FPS for k in range(60)]) == arrivals


def test_decode_jitter_of_a_smooth_source_adds_no_hold():
    """Frames 0-20 ms late (a keyframe decodes longer) are still released on arrival."""
    late = [0.0, 0.02, 0.0, 0.005, 0.018, 0.0, 0.01, 0.0]
    arrivals = [smooth(k) + late[k % len(late)] for k in range(64)]
    assert dues(Pacer(2.0), arrivals, [k / FPS for k in range(64)]) == arrivals


def test_a_burst_is_released_at_the_pace_of_its_timestamps():
    arrivals = [bursty(k) for k in range(45)]
    got = dues(Pacer(2.0), arrivals, [k / FPS for k in range(45)])
    first = arrivals[0]
    assert got == pytest.approx([first + k / FPS for k in range(45)])
    assert all(d >= a for d, a in zip(got, arrivals, strict=True))


def test_a_burst_longer_than_the_bound_loses_its_excess_then_paces_again():
    """3 s at once (a player joining a live HLS playlist 3 segments back), bound 1 s: frames
    are held at most 1 s; the next bursts are paced from there."""
    arrivals = [T0] * 45 + [T0 + 1 + k / 1000 for k in range(15)]
    got = dues(Pacer(1.0), arrivals, [k / FPS for k in range(60)])
    assert max(d - a for d, a in zip(got, arrivals, strict=True)) == pytest.approx(1.0)
    assert got[:16] == pytest.approx([T0 + k / FPS for k in range(16)])
    assert got[16:45] == pytest.approx([T0 + 1.0] * 29)  # the excess: all but one skipped
    assert got[45:] == pytest.approx([T0 + 1.0 + (k + 1) / FPS for k in range(15)])


@pytest.mark.parametrize(
    "second_pts, why",
    [
        (0.0, "timestamps restarted (a reconnect)"),
        (100.0, "a leap forward (a discontinuity)"),
        (None, "no timestamp"),
    ],
)
def test_a_timestamp_that_is_no_pace_to_follow_is_released_on_arrival(second_pts, why):
    pacer = Pacer(2.0)
    pacer.due(5.0, T0)
    assert pacer.due(second_pts, T0 + 0.001) == T0 + 0.001, why


def test_a_source_falling_behind_its_timestamps_is_followed_not_held():
    pacer = Pacer(2.0)
    pacer.due(0.0, T0)
    assert pacer.due(1 / FPS, T0 + 0.5) == T0 + 0.5  # late: re-anchored on it
    assert pacer.due(2 / FPS, T0 + 0.5) == pytest.approx(T0 + 0.5 + 1 / FPS)


def test_a_mapping_left_late_is_brought_back_within_a_window():
    """One late burst re-anchors the mapping later; once every frame of a window was held,
    the mapping moves back so the earliest of them would have been on time."""
    pacer = Pacer(1.0, window_s=2.0)
    arrivals = [bursty(k) for k in range(15)] + [bursty(k) + 0.3 for k in range(15, 30)]
    arrivals += [bursty(k) for k in range(30, 120)]
    got = dues(pacer, arrivals, [k / FPS for k in range(120)])
    holds = [d - a for d, a in zip(got, arrivals, strict=True)]
    assert holds[30] == pytest.approx(0.3)  # held: the mapping is 0.3 s late
    assert holds[-15] == pytest.approx(0.0)  # a burst's first frame is on time again


def test_a_smooth_source_that_opened_with_a_backlog_is_released_on_arrival_again():
    """FFmpeg hands over what it probed at once (here 1.2 s), then the stream is smooth: the
    backlog is paced, and once two frames in a row came at their pace the mapping follows
    them (a smooth camera is not held by its opening backlog: the model-bound live case's
    p99 latency doubled while it was, for a window)."""
    arrivals = [T0] * 18 + [T0 + (k - 17) / FPS for k in range(18, 120)]
    got = dues(Pacer(2.0, window_s=2.0), arrivals, [k / FPS for k in range(120)])
    holds = [d - a for d, a in zip(got, arrivals, strict=True)]
    assert holds[17] == pytest.approx(17 / FPS) and holds[18] == pytest.approx(17 / FPS)
    assert holds[19:] == [0.0] * 101  # the second frame at its pace: released on arrival


def test_hold_zero_releases_every_frame_on_arrival():
    arrivals = [bursty(k) for k in range(30)]
    assert dues(Pacer(0.0), arrivals, [k / FPS for k in range(30)]) == arrivals


@pytest.mark.parametrize("hold", [-1.0, float("nan"), float("inf")])
def test_the_pacers_bound_must_be_a_number_at_least_zero(hold):
    with pytest.raises(ValueError, match="hold_s must be a number >= 0"):
        Pacer(hold)


# --- the jitter buffer ---------------------------------------------------------------------------


def test_take_gives_the_newest_due_item_and_counts_the_older_ones():
    buf: JitterBuffer[str] = JitterBuffer()
    for i, due in enumerate([1.0, 2.0, 3.0, 4.0]):
        assert buf.put(f"f{i}", due, now=0.5) == 0
    assert buf.take(0.9) == (None, 0, 1.0)
    assert buf.take(3.5) == ((3.0, "f2"), 2, 4.0)
    assert buf.take(4.0) == ((4.0, "f3"), 0, None)
    assert len(buf) == 0


def test_an_item_due_on_arrival_makes_every_older_one_useless():
    buf: JitterBuffer[str] = JitterBuffer()
    buf.put("a", 2.0, now=1.0)
    buf.put("b", 3.0, now=1.0)
    assert buf.put("c", 1.0, now=1.0) == 2
    assert buf.take(1.0) == ((1.0, "c"), 0, None)


def test_the_buffer_holds_at_most_max_held_items():
    buf: JitterBuffer[int] = JitterBuffer(max_held=3)
    dropped = [buf.put(i, 10.0 + i, now=0.0) for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1] and len(buf) == 3
    assert buf.take(20.0) == ((14.0, 4), 2, None)
    assert buf.clear() == 0


# --- arrival statistics ----------------------------------------------------------------------


def arrival_of(arrivals: list[float], holds: list[float] | None = None) -> dict:
    stats = ArrivalStats(window_s=30.0)
    for k, a in enumerate(arrivals):
        stats.add(k / FPS, a, 0.0 if holds is None else holds[k])
    return stats.fields()


def test_a_smooth_source_is_not_bursty():
    fields = arrival_of([smooth(k) for k in range(150)])
    assert fields == {"bursty": False, "burst_frames": 1.0, "jitter_ms": 0.0, "hold_ms": 0.0}


def test_a_source_delivering_a_second_at_once_is_bursty():
    holds = [(k % 15) / FPS for k in range(150)]
    fields = arrival_of([bursty(k) for k in range(150)], holds)
    assert fields["bursty"] is True and fields["burst_frames"] == 15.0
    # 140 steps of 67 ms that arrived at once, 9 that arrived 1 s after the one before (933
    # ms late)
    assert fields["jitter_ms"] == pytest.approx((140 * 1000 / FPS + 9 * 14000 / FPS) / 149, abs=0.1)
    assert fields["hold_ms"] == pytest.approx(14 / FPS * 1000, abs=0.1)


def test_arrival_statistics_cover_the_last_window_only():
    stats = ArrivalStats(window_s=10.0)
    for k in range(150):  # 10 s of bursts
        stats.add(k / FPS, bursty(k), 0.0)
    for k in range(150, 450):  # then 20 s of smooth delivery
        stats.add(k / FPS, smooth(k), 0.0)
    assert stats.fields()["burst_frames"] == 1.0 and stats.fields()["bursty"] is False


def test_no_arrival_yet_has_no_statistics():
    assert ArrivalStats().fields() == {
        "bursty": False,
        "burst_frames": None,
        "jitter_ms": None,
        "hold_ms": None,
    }


# --- the bursty synthetic source -------------------------------------------------------------


@pytest.mark.parametrize("burst, expected", [(1, [k / 15 for k in range(6)]), (3, [2 / 15] * 3)])
def test_synthetic_burst_delivers_n_frames_at_once_every_n_intervals(burst, expected):
    clock = FakeClock(0.0)
    uri = f"synthetic://shapes?width=64&height=64&fps=15&frames=6&burst={burst}"
    source = SyntheticSource(uri, clock=clock, sleep=clock.advance)
    delivered = [(clock.now, frame.pts) for frame in source.frames()]
    assert [pts for _, pts in delivered] == pytest.approx([k / 15 for k in range(6)])
    assert [t for t, _ in delivered][: len(expected)] == pytest.approx(expected)
    if burst == 3:
        assert [t for t, _ in delivered][3:] == pytest.approx([5 / 15] * 3)


@pytest.mark.parametrize("value", ["0", "1001", "x"])
def test_synthetic_burst_must_be_a_whole_number_from_1_to_1000(value):
    with pytest.raises(ValueError, match="'burst'"):
        SyntheticParams.from_uri(f"synthetic://shapes?burst={value}")


# --- realtime delivery: the steady-delivery floor ----------------------------------------------


class Consumer:
    """The worker's side of realtime delivery: drops, and the frames it sent with their
    deadlines (``terms``)."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.sent: list[int] = []
        self.deadlines: list[float] = []
        self.delivery: Realtime | None = None

    def drop(self, cause: DropCause, n: int) -> None:
        self.drops[cause.value] += n

    def flush(self, chunk: list[Frame]) -> None:
        assert self.delivery is not None
        deadlines, _, _ = self.delivery.terms(chunk)
        self.deadlines += deadlines or []
        self.sent += [f.index for f in chunk]


def realtime(clock: FakeClock, hold_s: float, consumer: Consumer, max_age_s: float = 1.0):
    stopping = threading.Event()
    consumer.delivery = Realtime(
        Slots(1, stopping),
        max_age_s,
        lambda f: None,
        consumer.drop,
        consumer.flush,
        lambda: None,
        stopping,
        clock,
        hold_s=hold_s,
        arrival=ArrivalStats(),
    )
    return consumer.delivery


def frame(k: int, arrival: float) -> Frame:
    return Frame(k, k / FPS, arrival, image=np.zeros((2, 2, 3), np.uint8))


def replay(arrive, hold_s: float, seconds: float = 20.0, per_frame_s: float = 0.1) -> Consumer:
    """A 15 fps camera (frame k arrives at ``arrive(k)``) and a consumer that takes a frame
    whenever it is free and then is busy ``per_frame_s``, stepped every 2 ms of fake time."""
    clock, consumer = FakeClock(T0), Consumer()
    d = realtime(clock, hold_s, consumer)
    k, busy_until, step = 0, T0, 0.002
    for _ in range(int(seconds / step)):
        while arrive(k) <= clock.now:
            assert d.offer(frame(k, arrive(k)), live=True)
            k += 1
        if clock.now >= busy_until:
            f, _ = d.release()
            if f is not None:
                if d.stale(f):
                    consumer.drop(DropCause.STALE, 1)
                else:
                    consumer.flush([f])
                    busy_until = clock.now + per_frame_s
        clock.advance(step)
    return consumer


def test_a_bursty_source_feeds_a_slow_consumer_as_well_as_a_smooth_one():
    """15 frames at once every second, a consumer able to take 10 fps: it gets at least 0.9
    of what the same consumer gets from the same camera delivering smoothly."""
    steady = replay(smooth, hold_s=2.0)
    paced = replay(bursty, hold_s=2.0)
    assert len(steady.sent) >= 150  # the consumer's 10 fps over 20 s, less the first frames
    assert len(paced.sent) >= 0.9 * len(steady.sent)
    assert paced.drops["stale"] == 0  # held frames age from their release
    gaps = np.diff(paced.sent)
    assert gaps.max() <= 3  # steady: never a second's worth of frames skipped at once


def test_without_the_jitter_buffer_a_bursty_source_is_thinned_to_a_frame_per_burst():
    """The behaviour before pacing (hold 0): one frame per burst."""
    thinned = replay(bursty, hold_s=0.0)
    assert len(thinned.sent) <= 21


def test_a_held_frames_age_and_deadline_count_from_its_release():
    clock, consumer = FakeClock(T0), Consumer()
    d = realtime(clock, hold_s=2.0, consumer=consumer, max_age_s=0.5)
    for k in range(15):  # a second of video arrives at T0
        d.offer(frame(k, T0), live=True)
    clock.advance(14 / FPS + 0.1)  # the last one was released 0.1 s ago, captured 1.03 s ago
    f, next_due = d.release()
    assert f is not None and f.index == 14 and next_due is None
    assert consumer.drops == {"queue_full": 14}
    assert not d.stale(f)
    consumer.flush([f])
    assert consumer.deadlines == [pytest.approx(T0 + 14 / FPS + 0.5)]


def test_a_file_in_realtime_mode_is_not_paced():
    clock, consumer = FakeClock(T0), Consumer()
    d = realtime(clock, hold_s=2.0, consumer=consumer)
    for k in range(5):
        d.offer(frame(k, T0), live=False)
    assert consumer.drops == {"queue_full": 4}
    f, _ = d.release()
    assert f is not None and f.index == 4


@pytest.mark.parametrize(
    "width, height, held",
    [(320, 180, 64), (640, 360, 64), (1920, 1080, 43), (3840, 2160, 10), (7680, 4320, 4)],
)
def test_the_frames_held_are_bounded_by_their_memory(width, height, held):
    """About 128 MiB of decoded (YUV 4:2:0) pictures per stream, 4 to 64 frames."""
    assert frames_to_hold(width * height * 3) == held
