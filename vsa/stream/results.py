"""The sink thread of a stream: take each submitted chunk's results in submit order, run the
stream's processors on each (``processors``), write the outputs, count every frame (emitted,
or dropped with its cause), then close the outputs and the processors and settle the final
state."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from vsa.core.clock import Clock
from vsa.core.frames import Frame, FrameResult
from vsa.schema import DropCause
from vsa.sinks import OutputLost
from vsa.sources.errors import SourceError
from vsa.stream.books import Books
from vsa.stream.connection import sink_error
from vsa.stream.delivery import Slots
from vsa.stream.outputs import Outputs
from vsa.stream.processors import ProcessorChain
from vsa.stream.settings import Pending
from vsa.uri import mask_uri

log = logging.getLogger("vsa.stream")
END = object()  # the last item of the queue of pending chunks


class ResultWriter:
    def __init__(
        self,
        books: Books,
        outputs: Outputs,
        stopping: threading.Event,
        result_timeout_s: float,
        clock: Clock,
        on_emit: Callable[[Frame, float], None] | None = None,
        processors: ProcessorChain | None = None,
    ) -> None:
        """The delivery's slots come with ``use`` before the first chunk does. ``processors``
        (none by default) enrich each inferred result, in frame order, before the sinks."""
        self.books, self.outputs, self.stopping = books, outputs, stopping
        self.processors = processors if processors is not None else ProcessorChain(name=books.name)
        self.slots: Slots | None = None
        self.release_early = False
        self.result_timeout_s, self._clock, self._on_emit = result_timeout_s, clock, on_emit
        self.pending: queue.Queue[Any] = queue.Queue()  # (chunk, Pending) in submit order, END
        self.stop_deadline: float | None = None  # set by a stop: results wait no longer
        self.name = books.name
        # CPU seconds of the frames emitted: decoding them (their own accounts) and writing them
        # (this thread's time in the sinks: drawing, encoding, files)
        self.decode_cpu_s = 0.0
        self.sinks_cpu_s = 0.0
        self.processors_cpu_s = 0.0  # this thread's time in the processors

    def use(self, slots: Slots, release_early: bool) -> None:
        """The slots of the stream's delivery (set once its mode is known). ``release_early``:
        give a chunk's slots back as soon as its results came, before writing it (realtime:
        the next frame goes to the engine meanwhile); otherwise once each frame is written
        (lossless: frames in flight include those being written)."""
        self.slots, self.release_early = slots, release_early

    def _release(self, cause: DropCause, count: int) -> None:
        """Count frames that held an in-flight slot as dropped and free their slots."""
        self.books.drop(cause, count)
        self.slots.release(count)

    def _wait_s(self) -> float:
        if self.stop_deadline is None:
            return self.result_timeout_s
        return max(0.05, self.stop_deadline - self._clock.monotonic())

    def _results(self, chunk: list[Frame], pending: Pending) -> Sequence[FrameResult | None] | None:
        try:
            return pending.result(timeout=self._wait_s())
        except Exception as exc:  # noqa: BLE001 - inference failed or timed out for this chunk
            cancel = getattr(pending, "cancel", None)  # Ray's can withdraw the frames
            if cancel is not None:
                cancel()
            deadline = self.stop_deadline
            stopping = deadline is not None and self._clock.monotonic() >= deadline
            if not stopping:
                log.warning(
                    "%s inference failed for %d frames: %s",
                    self.name,
                    len(chunk),
                    mask_uri(str(exc)),
                )
            self._release(DropCause.SHUTDOWN if stopping else DropCause.INFERENCE_ERROR, len(chunk))
            return None

    def output_lost(self, exc: OutputLost) -> None:
        """An output file vanished: the frames written into it move to ``output_lost``."""
        lost, failed = self.books.lose_output(self.outputs.frames_lost(exc))
        if not failed:
            reason = f"{exc.reason}; {lost} frames written to it are lost"
            self.books.fail(SourceError("SINK_ERROR", reason))

    def run(self, decode: threading.Thread, opening: Callable[[], bool]) -> None:
        """Until END; then wait for ``decode`` (bounded after a stop) and close the outputs."""
        failed = False
        while (item := self.pending.get()) is not END:
            chunk, pending = item
            if failed:  # a sink broke: keep consuming so every frame is counted
                self._release(DropCause.SINK_ERROR, len(chunk))
                continue
            results = self._results(chunk, pending)
            if results is None:  # counted as dropped
                continue
            if self.release_early:  # a realtime camera sends its newest frame while these are
                self.slots.release(len(chunk))  # written: the engine waits for it
            for done, (frame, result) in enumerate(zip(chunk, results, strict=True)):
                if result is None:  # too old when its batch formed: dropped, not inferred
                    self.books.drop(DropCause.STALE, 1)
                    self._done(1)
                    continue
                self.books.inferred()
                if self.processors:  # a processor that fails leaves the result as it was
                    started_cpu = time.thread_time()
                    result = self.processors.process(frame, result)
                    self.processors_cpu_s += time.thread_time() - started_cpu
                started_cpu = time.thread_time()
                try:
                    self.outputs.write(frame, result)
                except Exception as exc:  # noqa: BLE001 - a sink that cannot write fails the stream
                    failed = True
                    self.stopping.set()
                    if isinstance(exc, OutputLost):
                        self.output_lost(exc)
                    else:
                        self.books.fail(sink_error(exc))
                    self.books.drop(DropCause.SINK_ERROR, len(chunk) - done)
                    self._done(len(chunk) - done)
                    break
                self.sinks_cpu_s += time.thread_time() - started_cpu
                self.decode_cpu_s += frame.decode_cpu_s
                self._emitted(frame)
        self._finish(decode, opening)

    def _emitted(self, frame: Frame) -> None:
        latency = self.books.emitted(frame)
        if self._on_emit is not None:
            try:
                self._on_emit(frame, latency)
            except Exception:  # noqa: BLE001 - metrics never break a stream
                log.exception("on_emit failed")
        self._done(1)

    def _done(self, count: int) -> None:
        """Frames written or dropped after their results came: their slots are free now
        (unless they were given back when the results came)."""
        if not self.release_early:
            self.slots.release(count)

    def _finish(self, decode: threading.Thread, opening: Callable[[], bool]) -> None:
        if self.stop_deadline is None:
            decode.join()
        elif not opening():  # an open still in progress is left to end on its own
            decode.join(max(0.0, self.stop_deadline - self._clock.monotonic()))
        if decode.is_alive() or decode.ident is None:
            self.outputs.ready.set()
        self.outputs.close(self.output_lost)
        self.processors.close()
        final = self.books.finish(self.stopping.is_set())
        ledger = self.books.ledger
        log.info(
            "%s %s: %d decoded, %d emitted, drops %s",
            self.name,
            final.value,
            ledger.decoded,
            ledger.emitted,
            dict(ledger.drops),
        )
