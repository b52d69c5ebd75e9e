"""How a stream's decoded frames reach inference: the two delivery strategies.

- :class:`Lossless`: every frame is inferred. The decode thread waits for one of
  ``max_in_flight`` slots (back-pressure: a file is read as fast as inference goes, a live
  source falls behind) and submits frames in chunks of ``chunk_size`` (live sources: at once).
- :class:`Realtime`: only the newest frame is kept (an older one not yet sent is dropped as
  ``queue_full``); a submit thread sends it as soon as a slot is free unless it is older than
  ``max_age_s`` (``stale``). Latency stays bounded; frames are dropped instead of queued.

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
from vsa.flow import LatestSlot
from vsa.schema import DropCause

Count = Callable[[Frame], None]
Drop = Callable[[DropCause, int], None]
Flush = Callable[[list[Frame]], None]


class Slots:
    """At most ``max_in_flight`` frames between submit and result; waiting gives up on stop."""

    def __init__(self, max_in_flight: int, stopping: threading.Event) -> None:
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
    ) -> None:
        self.slots, self.max_age_s, self._clock = slots, max_age_s, clock
        self._count, self._drop, self._flush, self._end = count, drop, flush, end
        self._stopping = stopping
        self._latest: LatestSlot[Frame] = LatestSlot()
        self._decode_done = threading.Event()

    def offer(self, frame: Frame, live: bool) -> bool:
        self._count(frame)
        replaced = self._latest.put(frame)
        if replaced is frame:  # the submit thread has ended (stopping)
            self._drop(DropCause.SHUTDOWN, 1)
            return False
        if replaced is not None:  # the older frame was never sent
            self._drop(DropCause.QUEUE_FULL, 1)
        return True

    def end_connection(self) -> None:
        pass

    def stale(self, frame: Frame) -> bool:
        return self._clock() - frame.wall_time > self.max_age_s

    def run(self) -> None:
        """The submit thread: whenever a slot is free, submit the newest frame unless stale."""
        try:
            while self.slots.acquire():
                frame = None
                while frame is None:
                    frame = self._latest.take(0.2)
                    if frame is None and (self._decode_done.is_set() or self._stopping.is_set()):
                        break
                if frame is None:
                    self.slots.release()
                    break
                if self.stale(frame):
                    self._drop(DropCause.STALE, 1)
                    self.slots.release()
                    continue
                self._flush([frame])
        finally:
            if self._latest.close() is not None:
                self._drop(DropCause.SHUTDOWN, 1)
            self._end()

    def decoding_ended(self) -> None:
        self._decode_done.set()  # the submit thread sends what is left, then ends the queue
