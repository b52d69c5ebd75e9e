"""Decimation, the latest-frame mailbox and the latency window."""

from __future__ import annotations

import pytest

from vsa.flow import Decimator, LatencyWindow


def kept(fps_in: float, cap: float, seconds: float = 10.0, start: float = 0.0) -> int:
    d = Decimator(cap)
    n = int(fps_in * seconds)
    return sum(d.keep(start + k / fps_in) for k in range(n))


@pytest.mark.parametrize(
    ("fps_in", "cap", "expected"), [(15, 5, 50), (30, 15, 150), (25, 10, 100), (10, 15, 100)]
)
def test_decimation_keeps_the_cap_rate_without_drift(fps_in, cap, expected):
    assert kept(fps_in, cap) == expected


def test_decimation_tolerates_jitter_and_restarts_after_jumps():
    d = Decimator(5)
    times = [0.0, 0.19, 0.41, 0.59, 0.8]  # 5 fps with +-10 ms jitter: all kept
    assert all(d.keep(t) for t in times)
    assert d.keep(100.0)  # a gap: count from here
    assert not d.keep(100.1)
    assert d.keep(3.0)  # timestamps went backwards (a reconnect): start again
    with pytest.raises(ValueError):
        Decimator(0)


def test_latency_window_percentiles_and_expiry():
    now = [0.0]
    w = LatencyWindow(window_s=10, clock=lambda: now[0])
    assert w.percentiles(50, 99) == [None, None]
    for k in range(100):
        w.add((k + 1) / 1000)
    assert w.percentiles(50, 99, 100) == [0.05, 0.099, 0.1]
    now[0] = 11.0
    w.add(5.0)
    assert w.percentiles(50) == [5.0]  # the old samples left the window


def test_latency_histogram_percentiles_within_a_bucket_and_merge():
    from vsa.flow import LatencyHistogram

    h = LatencyHistogram()
    assert h.percentile(50) is None
    for k in range(1, 1001):
        h.add(k / 1000)  # 1 ms .. 1 s
    for q, exact in ((50, 0.5), (90, 0.9), (99, 0.99)):
        assert exact <= h.percentile(q) <= exact * 1.06
    other = LatencyHistogram()
    other.merge({str(b): n for b, n in h.counts.items()})  # as it arrives through JSON
    assert other.total == 1000 and other.percentile(50) == h.percentile(50)


def test_latency_histogram_merge_keeps_the_max():
    from vsa.flow import LatencyHistogram

    h = LatencyHistogram()
    assert h.max_s == 0.0 and h.total == 0
    h.merge({"10": 3, "51": 1}, max_s=0.0117)  # 11.7 ms is in bucket 51
    assert h.max_s == 0.0117  # as given, not a bucket edge
    h.merge({"5": 2}, max_s=0.004)
    assert h.max_s == 0.0117 and h.total == 6
    h.merge({}, max_s=9.0)  # no samples: a max without samples is ignored
    assert h.max_s == 0.0117
    # the percentiles (bucket upper edges) never exceed the maximum
    assert h.percentile(100) == 0.0117
    assert h.percentile(50) <= 0.0117


def test_latency_histogram_merge_without_max_uses_the_top_bucket():
    from vsa.flow import LatencyHistogram

    source = LatencyHistogram()
    for ms in (3.0, 7.0, 200.0):
        source.add(ms / 1000)
    assert source.max_s == 0.2
    other = LatencyHistogram()
    other.merge({str(b): n for b, n in source.counts.items()})  # counts only
    assert 0.2 <= other.max_s <= 0.2 * 1.05
    assert other.percentile(99) == other.max_s
    exact = LatencyHistogram()
    exact.merge({str(b): n for b, n in source.counts.items()}, max_s=source.max_s)
    assert exact.max_s == 0.2 and exact.percentile(99) == 0.2
