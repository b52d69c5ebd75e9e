"""How a stream's decoded frames reach inference: the two delivery strategies.

- :class:`Lossless`: every frame is inferred. The decode thread waits for one of
  ``max_in_flight`` slots (back-pressure: a file is read as fast as inference goes, a live
  source falls behind) and submits frames in chunks of ``chunk_size`` (live sources: at once).
- :class:`Realtime`: the frames of a live source are released at the pace of their
  timestamps (``vsa.stream.pacing``: a source delivering a second of video at once is held in
  a jitter buffer, each frame at most ``hold_s``, so the engine sees a steady rate), those of
  other sources on arrival. Of the released frames only the newest is kept (an older one not
  yet sent is dropped as ``queue_full``); a submit thread sends it as soon as a slot is free
  unless it was released more than ``max_age_s`` ago (``stale``: age counts from the release,
  so the hold alone never makes a frame stale). Latency stays bounded; frames are dropped
  instead of queued.

Both count through callbacks the worker gives them (``count`` numbers a frame and counts it as
decoded; ``drop``/``skip`` count drops) and submit through ``flush`` (which queues the pending
result for the sink thread, or counts the chunk as ``inference_error``). ``end`` marks the end
of the frames for the sink thread. The clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vsa.core.frames import Frame
from vsa.schema import DropCause
from vsa.stream.pacing import ArrivalStats, JitterBuffer, Pacer, frames_to_hold

Count = Callable[[Frame], None]
Drop = Callable[[DropCause, int], None]
Flush = Callable[[list[Frame]], None]


class Slots:
    """At most ``max_in_flight`` frames between submit and result; waiting gives up on stop."""

    def __init__(self, max_in_flight: int, stopping: threading.Event) -> None:
        self.capacity = max_in_flight
        self._sem = threading.Semaphore(max_in_flight)
        self._stopping = stopping

    def acquire(self) -> bool:
        while not self._stopping.is_set():
            if self._sem.acquire(timeout=0.2):
                return True
        return False

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._sem.release()


class Lossless:
    realtime = False

    def __init__(
        self,
        slots: Slots,
        chunk_size: int,
        count: Count,
        skip: Drop,
        flush: Flush,
        end: Callable[[], None],
    ) -> None:
        self.slots, self.chunk_size = slots, max(1, chunk_size)
        self._count, self._skip, self._flush, self._end = count, skip, flush, end
        self._chunk: list[Frame] = []

    def offer(self, frame: Frame, live: bool) -> bool:
        """Hand over one decoded frame; False when the stream is stopping (read no more)."""
        if not self.slots.acquire():
            self._skip(DropCause.SHUTDOWN, 1)
            return False
        self._count(frame)
        self._chunk.append(frame)
        if live or len(self._chunk) >= self.chunk_size:
            self.end_connection()
        return True

    def end_connection(self) -> None:
        """Submit what a connection left in the chunk."""
        chunk, self._chunk = self._chunk, []
        if chunk:
            self._flush(chunk)

    def run(self) -> None:  # no thread of its own
        pass

    def terms(self, frames: list[Frame]) -> tuple[list[float] | None, int | None, bool | None]:
        """What inference is told with these frames: no deadlines, no credit (every frame is
        inferred, whenever its batch comes), nothing to say about frames lost waiting."""
        return None, None, None

    def decoding_ended(self) -> None:
        self._end()


class Realtime:
    realtime = True

    def __init__(
        self,
        slots: Slots,
        max_age_s: float,
        count: Count,
        drop: Drop,
        flush: Flush,
        end: Callable[[], None],
        stopping: threading.Event,
        clock: Callable[[], float] = time.time,
        *,
        hold_s: float = 0.0,
        arrival: ArrivalStats | None = None,
    ) -> None:
        """``hold_s``: the jitter buffer's bound (0: every frame is released on arrival);
        ``arrival``: where a live source's arrivals are recorded (the status)."""
        self.slots, self.max_age_s, self._clock = slots, max_age_s, clock
        self._count, self._drop, self._flush, self._end = count, drop, flush, end
        self._stopping, self._arrival = stopping, arrival
        self._pacer = Pacer(hold_s)
        self._held: JitterBuffer[Frame] = JitterBuffer()
        self._cond = threading.Condition()
        self._closed = False  # the submit thread has ended
        self._decode_done = threading.Event()
        self._released: tuple[int, float] | None = None  # (index, release) of the frame sent
        # a released frame was dropped (``queue_full``) since the last send: no slot was free
        # when it was due, so the stream asks inference for more than its credit lets through
        self._behind = False

    def offer(self, frame: Frame, live: bool) -> bool:
        self._count(frame)
        due = frame.wall_time
        if live:  # a file or an unpaced generator is not paced either
            due = self._pacer.due(frame.pts, frame.wall_time)
            if self._arrival is not None:
                self._arrival.add(frame.pts, frame.wall_time, due - frame.wall_time)
        with self._cond:
            if self._closed:  # the submit thread has ended (stopping)
                useless = -1
            else:
                useless = self._held.put(frame, due, self._clock())
                self._cond.notify()
        if useless < 0:
            self._drop(DropCause.SHUTDOWN, 1)
            return False
        if useless:  # older frames that were never sent
            self._behind = True
            self._drop(DropCause.QUEUE_FULL, useless)
        return True

    def end_connection(self) -> None:
        self._pacer.reset()  # a new connection's timestamps start a new mapping

    def released_at(self, frame: Frame) -> float:
        """When ``frame`` was released (its due time; its capture wall time when it was not
        paced): its age, for ``stale`` and for the engine's deadline, counts from here."""
        if self._released is not None and self._released[0] == frame.index:
            return self._released[1]
        return frame.wall_time

    def terms(self, frames: list[Frame]) -> tuple[list[float] | None, int | None, bool | None]:
        """What inference is told with these frames: each one's deadline (release wall time +
        ``max_age_s``: the engine closes a batch once every such frame is in, and answers None
        for a frame past it), the stream's credit (its most frames in flight) and whether it
        lost a released frame for want of a free slot since its last send (``behind``: it
        asks for more than it gets, so the engine holds its peers to its share, see
        ``vsa.batching``)."""
        behind, self._behind = self._behind, False
        deadlines = [self.released_at(f) + self.max_age_s for f in frames]
        return deadlines, self.slots.capacity, behind

    def stale(self, frame: Frame) -> bool:
        return self._clock() - self.released_at(frame) > self.max_age_s

    def release(self) -> tuple[Frame | None, float | None]:
        """Without waiting: the newest frame due now (older due ones are counted
        ``queue_full``), or None, and when the next held frame is due (None: none is held)."""
        with self._cond:
            taken, skipped, next_due = self._held.take(self._clock())
        if skipped:
            self._behind = True
            self._drop(DropCause.QUEUE_FULL, skipped)
        if taken is None:
            return None, next_due
        due, frame = taken
        self._released = (frame.index, max(due, frame.wall_time))
        return frame, next_due

    def _next(self) -> Frame | None:
        """The newest released frame, waiting for one; None once decoding ended and nothing
        is held, or on stop."""
        while True:
            frame, _ = self.release()
            if frame is not None:
                return frame
            with self._cond:  # what was offered since is seen here, or wakes the wait
                next_due = self._held.next_due()
                if self._stopping.is_set() or (self._decode_done.is_set() and next_due is None):
                    return None
                wait = 0.2 if next_due is None else min(0.2, next_due - self._clock())
                if wait > 0:
                    self._cond.wait(wait)

    def run(self) -> None:
        """The submit thread: whenever a slot is free, submit the newest released frame unless
        stale."""
        try:
            while self.slots.acquire():
                frame = self._next()
                if frame is None:
                    self.slots.release()
                    break
                if self.stale(frame):
                    self._drop(DropCause.STALE, 1)
                    self.slots.release()
                    continue
                self._flush([frame])
                if frame.converted:  # sent: its size bounds the held frames' memory
                    with self._cond:
                        self._held.max_held = frames_to_hold(frame.image.nbytes)
        finally:
            with self._cond:
                self._closed = True
                left = self._held.clear()
            if left:
                self._drop(DropCause.SHUTDOWN, left)
            self._end()

    def decoding_ended(self) -> None:
        self._decode_done.set()  # the submit thread sends what is left, then ends the queue
        with self._cond:
            self._cond.notify()
