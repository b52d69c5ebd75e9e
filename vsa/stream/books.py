"""A stream's books: its state machine, its frame ledger, its rates and latencies, behind one
lock. Every thread of the stream writes through here, and ``fields`` reads one consistent
snapshot for the status."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from vsa.core.clock import Clock
from vsa.core.frames import Frame
from vsa.flow import LatencyHistogram, LatencyWindow
from vsa.schema import DropCause, SourceState
from vsa.sources.errors import SourceError
from vsa.stream.ledger import FrameLedger
from vsa.stream.machine import SourceMachine
from vsa.stream.pacing import ArrivalStats

log = logging.getLogger("vsa.stream")


class Books:
    def __init__(self, name: str, index_offset: int, latency_window_s: float, clock: Clock) -> None:
        self.name, self.index_offset, self._clock = name, index_offset, clock
        self.lock = threading.Lock()
        self.machine = SourceMachine(name, clock.time)
        self.ledger = FrameLedger()
        self._latency = LatencyWindow(latency_window_s, clock=clock.monotonic)
        self._run_latency = LatencyHistogram()  # the whole run, for the end-of-run report
        self._emit_times: deque[float] = deque(maxlen=512)
        self._last_frame_at: float | None = None
        # how a live realtime source's frames arrive (bursts, jitter, the jitter buffer's hold)
        self.arrival = ArrivalStats(latency_window_s)

    # --- counting --------------------------------------------------------------------------
    def count(self, frame: Frame) -> None:
        """A decoded frame handed to delivery: numbered on across reconnects and restarts."""
        with self.lock:
            frame.index = self.index_offset + self.ledger.decode()
            self._last_frame_at = self._clock.monotonic()

    def skipped(self, cause: DropCause | str, count: int) -> None:
        """Frames the source lost before handing them over (damaged data, over the fps cap)."""
        with self.lock:
            self.ledger.skip(cause, count)

    def drop(self, cause: DropCause, count: int) -> None:
        with self.lock:
            self.ledger.drop(cause, count)

    def inferred(self) -> None:
        with self.lock:
            self.ledger.infer()

    def emitted(self, frame: Frame) -> float:
        """A frame written to every output; returns its capture-to-result latency."""
        latency = self._clock.time() - frame.wall_time
        with self.lock:
            self.ledger.emit()
            self._emit_times.append(self._clock.monotonic())
            self._latency.add(latency)
            self._run_latency.add(latency)
        return latency

    def lose_output(self, frames: int) -> tuple[int, bool]:
        """Frames written into a vanished output: (how many moved to output_lost, failed already)."""
        with self.lock:
            return self.ledger.lose_output(frames), self.machine.failed

    def lost_earlier(self, frames: int) -> None:
        """Frames earlier incarnations wrote into files that are gone: this incarnation counts
        them (decoded and ``output_lost``), the carried counters no longer do."""
        with self.lock:
            self.ledger.skip(DropCause.OUTPUT_LOST, frames)

    # --- the state machine -----------------------------------------------------------------
    def fail(self, error: SourceError) -> None:
        with self.lock:
            self.machine.fail(error)
        log.error("%s failed: %s", self.name, self.machine.error)

    def streaming(self) -> None:
        with self.lock:
            self.machine.streaming()

    def reconnecting(self, error: SourceError, attempt: int, delay_s: float) -> None:
        with self.lock:
            self.machine.attempt = attempt
            self.machine.reconnecting(error, delay_s)

    def connecting(self) -> None:
        with self.lock:
            self.machine.connecting()

    def finish(self, stopping: bool) -> SourceState:
        with self.lock:
            return self.machine.finish(stopping)

    # --- reading -----------------------------------------------------------------------------
    def fields(self) -> dict[str, Any]:
        """The status fields the books own (state, counts, rate, latency, arrival), one snapshot."""
        with self.lock:
            now = self._clock.monotonic()
            recent = [t for t in self._emit_times if now - t <= 3.0]
            fps = (len(recent) - 1) / max(now - recent[0], 1e-6) if len(recent) >= 2 else 0.0
            age = None if self._last_frame_at is None else round(now - self._last_frame_at, 2)
            p50, p99 = self._latency.percentiles(50, 99)
            machine = self.machine.fields()
            return {
                **{k: v for k, v in machine.items() if k != "transitions"},
                "last_frame_age_s": age,
                **self.ledger.fields(),
                "fps": round(fps, 2),
                "latency_ms": {
                    "p50": None if p50 is None else round(p50 * 1000, 1),
                    "p99": None if p99 is None else round(p99 * 1000, 1),
                },
                "arrival": self.arrival.fields(),
                "transitions": machine["transitions"],
                "latency_hist": dict(self._run_latency.counts),
                "latency_max_ms": (
                    round(self._run_latency.max_s * 1000, 1) if self._run_latency.total else None
                ),
            }
