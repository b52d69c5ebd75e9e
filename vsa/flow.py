"""Flow-control pieces of a stream, without threads of their own (clocks are injected).

- :class:`Decimator`: keep at most ``fps`` frames per second of media (or wall) time.
- :class:`LatencyWindow`: capture-to-result latencies of the last ``window_s`` seconds,
  for p50/p99 in the status.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class Decimator:
    """Keeps frames spaced by at least one period of ``max_fps``; drift-free on steady input."""

    def __init__(self, max_fps: float) -> None:
        if max_fps <= 0:
            raise ValueError("max_fps must be > 0")
        self.period = 1.0 / max_fps
        self._tolerance = 0.1 * self.period  # jitter of camera timestamps
        self._next: float | None = None

    def keep(self, t: float) -> bool:
        if self._next is not None and t < self._next - self._tolerance:
            if t < self._next - 10 * self.period:  # timestamps went backwards: start again
                self._next = None
            else:
                return False
        # on time: the next slot is one period later; after a gap, count from this frame
        if self._next is None or t - self._next > self.period:
            self._next = t + self.period
        else:
            self._next += self.period
        return True


class LatencyWindow:
    """Latencies (seconds) of the last ``window_s`` seconds, at most ``max_samples`` of them."""

    def __init__(
        self,
        window_s: float = 30.0,
        max_samples: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, latency_s: float) -> None:
        self._samples.append((self._clock(), latency_s))

    def _recent(self) -> list[float]:
        cutoff = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return sorted(v for _, v in self._samples)

    def percentiles(self, *qs: float) -> list[float | None]:
        values = self._recent()
        if not values:
            return [None for _ in qs]
        return [
            values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))] for q in qs
        ]


class LatencyHistogram:
    """Every latency of a run in log-spaced buckets (1 ms to ~100 s, ~5% wide): percentiles
    of a whole run in constant memory, mergeable across streams.

    ``max_s`` is the largest latency seen (0.0 while ``total`` is 0). Percentiles are bucket
    upper edges, capped at ``max_s``: no percentile is above the maximum.
    """

    BASE_S = 0.001
    GROWTH = 1.05

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.max_s = 0.0

    def _bucket(self, seconds: float) -> int:
        if seconds <= self.BASE_S:
            return 0
        return 1 + int(math.log(seconds / self.BASE_S, self.GROWTH))

    def _edge(self, bucket: int) -> float:
        """Upper edge of ``bucket`` in seconds."""
        return self.BASE_S * self.GROWTH**bucket

    def add(self, seconds: float) -> None:
        b = self._bucket(seconds)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.total += 1
        self.max_s = max(self.max_s, seconds)

    def merge(self, counts: dict[int, int] | dict[str, int], max_s: float | None = None) -> None:
        """Add another histogram's ``counts`` (keys may be strings, as they come through JSON).

        ``max_s`` is that histogram's maximum. Without it, the upper edge of its highest
        non-empty bucket stands in (at most ~5% above the real maximum). Ignored when
        ``counts`` holds no samples.
        """
        filled = {int(b): int(n) for b, n in counts.items() if int(n) > 0}
        if not filled:
            return
        for b, n in filled.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.total += sum(filled.values())
        self.max_s = max(self.max_s, self._edge(max(filled)) if max_s is None else max_s)

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile, in seconds (at most ``max_s``)."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100 * self.total))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(self._edge(b), self.max_s)
        return self.max_s
