"""Pacing a live stream's frames at their timestamps, and how its frames arrive.

HLS, DASH and many HTTP or TCP-interleaved cameras behind a proxy deliver a second of video
at once. Keeping only the newest frame of such a burst (what realtime delivery does with
frames that arrive together) leaves the engine one frame per burst. Instead, realtime delivery
releases the frames of a live stream at the pace of their timestamps:

- :class:`Pacer`: when each frame is due. The first frame anchors a mapping from timestamps to
  wall time; a frame is due at ``pts + offset``, never before it arrived and never more than
  ``hold_s`` after (the jitter buffer's bound: a longer burst loses its excess, as before).
  The mapping follows the source: a frame arriving after its due time re-anchors it (so a
  smooth source, whose frames arrive at their pace, is released on arrival), so does a
  timestamp that goes back or leaps forward (a reconnect, a discontinuity), and it is moved
  earlier when every frame of a window was held (clock drift between camera and host).
- :class:`JitterBuffer`: the frames not sent yet, with their due times. ``take`` gives the
  newest due frame and how many older ones it made useless (``queue_full``). It holds at most
  ``MAX_HELD`` frames and, once the stream's frame size is known, about ``HELD_BYTES`` of
  decoded pictures (``frames_to_hold``); beyond, the oldest are dropped (``queue_full``).
- :class:`ArrivalStats`: bursts, jitter and the buffer's hold over the last window, for the
  status (``arrival``).

No threads and no clock of their own: times are passed in (wall seconds, ``Frame.wall_time``),
so that the unit tests replay streams without sleeping.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")

JUMP_S = 1.0  # a timestamp step outside [0, JUMP_S] s is a discontinuity: re-anchor
EARLY_S = 0.02  # a frame due this soon after it arrived (at most half a frame) is not held
WINDOW_S = 2.0  # the pacer checks its mapping every this many seconds of arrivals
MAX_HELD = 64  # frames held at most; beyond, the oldest is dropped (queue_full)
HELD_BYTES = 128 * 2**20  # ... and about this much decoded video (YUV 4:2:0) per stream
BURSTY_FRAMES = 3.0  # a stream whose bursts hold this many frames on average is bursty


def _step(pts: float | None, last: float | None) -> float | None:
    """The timestamp step from the previous frame, None where it is no pace to follow."""
    if pts is None or last is None:
        return None
    step = pts - last
    return step if 0.0 < step <= JUMP_S else None


class Pacer:
    """Due times of a live stream's frames: at the pace of their timestamps, each held at
    most ``hold_s`` after it arrived (``hold_s`` 0: every frame is due on arrival).

    Every ``window_s`` of arrivals the mapping is checked: when the first frame of every
    burst in the window (with a smooth source: every frame) was held, the mapping is late (it
    only moves later by itself: a late frame, a skipped excess) and is moved earlier by the
    least of those holds, so that the earliest burst would have been on time. This also ends
    the hold of what a source delivers at once when it opens (FFmpeg's probe) once it streams
    smoothly. The frames inside a burst tell nothing about the mapping: they are held by
    design.
    """

    def __init__(self, hold_s: float, window_s: float = WINDOW_S) -> None:
        if not (math.isfinite(hold_s) and hold_s >= 0):
            raise ValueError(f"hold_s must be a number >= 0, got {hold_s!r}")
        self.hold_s, self.window_s = hold_s, window_s
        self.reset()

    def reset(self) -> None:
        """Forget the mapping (a new connection anchors afresh)."""
        self._offset: float | None = None  # due = pts + offset
        self._last: tuple[float, float] | None = None  # (pts, arrival) of the last frame
        self._window_start = -math.inf
        self._least_hold = math.inf  # of the bursts' first frames in the current window
        self._paced_arrival = False  # the last frame came at its pace, not inside a burst

    def due(self, pts: float | None, arrival: float) -> float:
        """When a frame with timestamp ``pts`` (s) that arrived at ``arrival`` (wall s) is due."""
        if pts is None or self.hold_s <= 0:
            return arrival
        last, self._last = self._last, (pts, arrival)
        last_paced = self._paced_arrival
        step = None if last is None else _step(pts, last[0])
        if self._offset is None or last is None or step is None:  # first frame, discontinuity
            self._offset = arrival - pts
            self._window_start, self._least_hold = arrival, math.inf
            return arrival
        if arrival - self._window_start >= self.window_s:
            if math.isfinite(self._least_hold) and self._least_hold > 0:
                self._offset -= self._least_hold
            self._window_start, self._least_hold = arrival, math.inf
        due = pts + self._offset
        if due < arrival:  # later than its pace: the source is behind the mapping, follow it
            self._offset, due = arrival - pts, arrival
        elif due > arrival + self.hold_s:  # more buffered than the bound: skip the excess
            self._offset, due = arrival + self.hold_s - pts, arrival + self.hold_s
            self._window_start, self._least_hold = arrival, math.inf
        hold = due - arrival
        paced = arrival - last[1] >= step / 2
        self._paced_arrival = paced
        if paced and last_paced and hold > min(EARLY_S, step / 2):
            # two frames in a row came at their pace (not in a burst) and would still be held:
            # the mapping is late (what the source delivered at once when it opened, FFmpeg's
            # probe); a smooth stream is released on arrival from here
            self._offset, due, hold = arrival - pts, arrival, 0.0
        if paced:  # the first frame of a burst
            self._least_hold = min(self._least_hold, hold)
        if hold <= min(EARLY_S, step / 2):  # decode jitter of a smooth source: no hold
            return arrival
        return due


def frames_to_hold(bgr_bytes: int) -> int:
    """How many frames the jitter buffer may hold once a frame of the stream is known to take
    ``bgr_bytes`` converted: the held ones are still decoded pictures (YUV 4:2:0, half that),
    at most ``HELD_BYTES`` of them (1080p: 43 frames, 4K: 10), never more than ``MAX_HELD``
    nor fewer than 4."""
    return max(4, min(MAX_HELD, HELD_BYTES // max(1, bgr_bytes // 2)))


class JitterBuffer(Generic[T]):
    """Items (frames) with their due times, in arrival order, at most ``max_held``."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self._held: deque[tuple[float, T]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def put(self, item: T, due: float, now: float) -> int:
        """Hold ``item`` until ``due``; returns how many older items it made useless: all of
        them when it is due already (a newer frame is sent first), else the oldest beyond
        ``max_held``."""
        useless = 0
        if due <= now:
            useless = len(self._held)
            self._held.clear()
        self._held.append((due, item))
        while len(self._held) > self.max_held:
            self._held.popleft()
            useless += 1
        return useless

    def take(self, now: float) -> tuple[tuple[float, T] | None, int, float | None]:
        """``((due, item), skipped, next_due)``: the newest item due by ``now`` (None when none
        is), how many older items were dropped with it, and when the next held one is due."""
        newest = None
        for i, (due, _) in enumerate(self._held):
            if due <= now:
                newest = i
        taken = None
        if newest is not None:
            for _ in range(newest):
                self._held.popleft()
            taken = self._held.popleft()
        return taken, (newest or 0), self.next_due()

    def next_due(self) -> float | None:
        """When the first held item is due; None when none is held."""
        return min((due for due, _ in self._held), default=None)

    def clear(self) -> int:
        """Drop everything held; returns how many."""
        count = len(self._held)
        self._held.clear()
        return count


class ArrivalStats:
    """How a live stream's frames arrive, over its last ``window_s`` seconds of arrivals (at
    most ``max_samples`` frames). Thread-safe: the decode thread adds, the status reads.

    A burst is a run of frames each of which arrived less than half its timestamp step after
    the one before (frames without a usable timestamp: less than ``EARLY_S``); a smooth source
    delivers bursts of one frame.
    """

    def __init__(self, window_s: float = 30.0, max_samples: int = 4096) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        # (arrival, starts a burst, |arrival step - pts step| or None, hold)
        self._samples: deque[tuple[float, bool, float | None, float]] = deque(maxlen=max_samples)
        self._last: tuple[float | None, float] | None = None  # (pts, arrival)

    def add(self, pts: float | None, arrival: float, hold: float) -> None:
        """A frame that arrived at ``arrival`` and is held ``hold`` s by the jitter buffer."""
        with self._lock:
            new_burst, deviation = True, None
            if self._last is not None:
                last_pts, last_arrival = self._last
                gap, step = arrival - last_arrival, _step(pts, last_pts)
                new_burst = gap >= (EARLY_S if step is None else step / 2)
                if step is not None:
                    deviation = abs(gap - step)
            self._last = (pts, arrival)
            self._samples.append((arrival, new_burst, deviation, max(0.0, hold)))
            while self._samples and self._samples[0][0] < arrival - self.window_s:
                self._samples.popleft()

    def fields(self) -> dict[str, Any]:
        """``bursty``, ``burst_frames``, ``jitter_ms``, ``hold_ms`` (docs/states.md); None
        (``bursty`` False) before the first frame."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return {"bursty": False, "burst_frames": None, "jitter_ms": None, "hold_ms": None}
        bursts = max(1, sum(1 for _, starts, _, _ in samples if starts))
        burst_frames = len(samples) / bursts
        deviations = [d for _, _, d, _ in samples if d is not None]
        jitter = sum(deviations) / len(deviations) if deviations else None
        return {
            "bursty": burst_frames >= BURSTY_FRAMES,
            "burst_frames": round(burst_frames, 1),
            "jitter_ms": None if jitter is None else round(jitter * 1000, 1),
            "hold_ms": round(max(h for _, _, _, h in samples) * 1000, 1),
        }
