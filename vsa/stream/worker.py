"""One stream's pipeline, without Ray: decode -> submit to inference -> sinks, in order.

Wiring only. The parts: ``books`` (the state machine and the frame ledger behind one lock),
``delivery`` (lossless or realtime), ``decoder`` (the decode thread: connect, deliver, retry),
``results`` (the sink thread: results in submit order, processors, outputs, final state),
``processors`` (the stream's result processors, made from ``StreamSettings.processors`` and
restored from ``StreamSettings.processor_state``) and ``outputs``.

Threads: decode; sink; in realtime mode also submit (the newest frame whenever a slot frees).
``submit`` is injected: the Ray source actor puts frames in the object store and calls the
inference actor; tests call a model directly.

The delivery mode is built at once when the settings know it, else (``mode: auto``, an
http(s) stream) when the source first opens: lossless if it has a known duration, realtime if
it is live (``StreamSettings.mode``); reconnects keep it. Nothing is decoded before that, so
every frame is counted by the one delivery.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from vsa.analytics.chain import analytics_status
from vsa.core.clock import SYSTEM_CLOCK, Clock
from vsa.core.frames import Frame
from vsa.reconnect import Backoff
from vsa.schema import DropCause, SourceState
from vsa.sinks import Sink
from vsa.sources import FrameSource, open_source
from vsa.sources.errors import SourceError
from vsa.stream.books import Books
from vsa.stream.connection import stop_grace_s
from vsa.stream.decoder import Decoder
from vsa.stream.delivery import Lossless, Realtime, Slots
from vsa.stream.outputs import Outputs
from vsa.stream.processors import ProcessorChain
from vsa.stream.results import END, ResultWriter
from vsa.stream.settings import Mode, Opener, StreamSettings, Submit
from vsa.uri import mask_source_uri

log = logging.getLogger("vsa.stream")


class StreamWorker:
    def __init__(
        self,
        run_id: str,
        source_id: str,
        uri: str,
        sinks_factory: Callable[[float | None], list[Sink]],
        submit: Submit,
        settings: StreamSettings | None = None,
        *,
        opener: Opener = open_source,
        backoff: Backoff | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_emit: Callable[[Frame, float], None] | None = None,
    ) -> None:
        """``on_emit(frame, capture-to-result seconds)`` is called once per emitted frame."""
        self.run_id, self.source_id, self.uri = run_id, source_id, uri
        self.settings = s = settings or StreamSettings()
        self.name = f"run={run_id} source={source_id}"
        self._submit, self._clock = submit, clock
        self.stopping = threading.Event()
        self.carried_lost = 0  # frames of earlier incarnations whose files are gone
        self.books = Books(self.name, s.index_offset, s.latency_window_s, clock)
        # the caller's options stay as they were: this stream's copy reports to its books
        self.options = dataclasses.replace(s.options, on_skip=self.books.skipped, max_fps=s.max_fps)
        self.outputs = Outputs(sinks_factory, self.name)
        self.processors = ProcessorChain(s.processors() if s.processors else (), self.name)
        if s.processor_state:
            self.processors.restore(s.processor_state)
        self.writer = ResultWriter(
            self.books,
            self.outputs,
            self.stopping,
            s.result_timeout_s,
            clock,
            on_emit,
            self.processors,
        )
        self.decoder = Decoder(
            uri,
            opener,
            self.options,
            s.max_fps,
            backoff or Backoff(s.reconnect),
            self.books,
            self.outputs,
            self._delivery_for,
            self._decoding_ended,
            self.stopping,
        )
        decode = threading.Thread(target=self.decoder.run, name=f"decode:{source_id}", daemon=True)
        self._sink = threading.Thread(
            target=self.writer.run,
            args=(decode, lambda: self.decoder.opening),
            name=f"sink:{source_id}",
            daemon=True,
        )
        self._threads = [decode, self._sink]
        self._started = False
        self.mode: Mode | None = None  # None until known (mode auto: the first open)
        self.delivery: Lossless | Realtime | None = None
        mode = s.mode()
        if mode is not None:
            self._deliver(mode)

    def _deliver(self, mode: Mode) -> Lossless | Realtime:
        """Build the stream's delivery in ``mode`` (and in realtime its submit thread)."""
        s, books, clock = self.settings, self.books, self._clock
        slots = Slots(mode.max_in_flight, self.stopping)
        self.writer.use(slots, release_early=mode.realtime)
        end = self._results_end
        delivery: Lossless | Realtime
        if mode.realtime:
            delivery = Realtime(
                slots,
                s.max_age_s,
                books.count,
                books.drop,
                self._flush,
                end,
                self.stopping,
                clock.time,
                hold_s=s.jitter_buffer_s,
                arrival=books.arrival,
            )
        else:
            chunk = min(s.chunk_size, mode.max_in_flight)
            delivery = Lossless(slots, chunk, books.count, books.skipped, self._flush, end)
        self.mode, self.delivery = mode, delivery
        if mode.realtime:
            submitter = threading.Thread(
                target=delivery.run, name=f"submit:{self.source_id}", daemon=True
            )
            self._threads.append(submitter)
            if self._started:  # decided on the decode thread, at the first open
                submitter.start()
        return delivery

    def _delivery_for(self, source: FrameSource) -> Lossless | Realtime:
        """The decoder's delivery after an open: a mode left to the source is decided at the
        first one (and kept across reconnects)."""
        if self.delivery is not None:
            return self.delivery
        mode = self.settings.mode(source.finite)
        assert mode is not None
        log.info("%s %s: mode %s (%s)", self.name, mask_source_uri(self.uri), mode.name, mode.why)
        return self._deliver(mode)

    def _results_end(self) -> None:
        self.writer.pending.put(END)

    def _decoding_ended(self) -> None:
        if self.delivery is None:  # never opened: nothing was delivered
            self._results_end()
        else:
            self.delivery.decoding_ended()

    def _flush(self, chunk: list[Frame]) -> None:
        """Submit a chunk to inference with its delivery's terms; its results go to the sink
        thread in this order."""
        assert self.delivery is not None
        try:
            pending = self._submit(chunk, *self.delivery.terms(chunk))
        except Exception as exc:  # noqa: BLE001 - inference unreachable: count and go on
            log.warning("%s submit failed: %s", self.name, exc)
            self.books.drop(DropCause.INFERENCE_ERROR, len(chunk))
            self.delivery.slots.release(len(chunk))
            return
        self.writer.pending.put((chunk, pending))

    def start(self) -> None:
        if self._earlier_lost():
            return  # FAILED before it connected: nothing to decode, nothing to write
        self._started = True
        for thread in list(self._threads):
            thread.start()

    def _earlier_lost(self) -> bool:
        """A resumed stream whose earlier files are gone (deleted while the engine was down)
        fails as a mid-run deletion does: ``SINK_ERROR``, the frames they held moved to
        ``output_lost`` (``carried_lost``: the carried counters must drop them)."""
        earlier = self.settings.earlier
        lost = None if earlier is None else earlier.lost()
        if lost is None:
            return False
        self.carried_lost = lost.frames_lost
        self.books.lost_earlier(lost.frames_lost)
        self.books.fail(
            SourceError(
                "SINK_ERROR", f"{lost.reason}; {lost.frames_lost} frames written to it are lost"
            )
        )
        self.stopping.set()
        self.outputs.ready.set()  # never opened
        self.processors.close()
        self.books.finish(True)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop decoding, write every frame already in flight, close the sinks.

        Frames whose results do not arrive within ``timeout`` are counted as ``shutdown`` so
        that the sinks are always closed in time. The decode thread closes the source itself
        (closing a PyAV container under a running ``decode()`` crashes the process). Returns
        once the source is terminal with exact counts; a thread blocked in a read gets
        ``stop_grace_s`` more (reads are bounded by the source's timeouts).
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"stop timeout must be a positive number of seconds, got {timeout!r}")
        self.writer.stop_deadline = self._clock.monotonic() + max(0.0, timeout - 1.0)
        self.stopping.set()
        if self.decoder.opening:  # inside an open, nothing in flight: the sink thread ends now
            self.writer.pending.put(END)
            if self._sink.ident is not None:
                self._sink.join(timeout + stop_grace_s(self.options))
            return
        self.join(timeout + stop_grace_s(self.options))

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                left = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
                thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def processor_state(self) -> dict[str, dict[str, Any]]:
        """The processors' state by name, taken between two frames (``ProcessorChain.state``):
        a restarted stream goes on from it (``StreamSettings.processor_state``)."""
        return self.processors.state()

    @property
    def state(self) -> SourceState:
        return self.books.machine.state

    @property
    def done(self) -> bool:
        return self.state.terminal

    def status(self) -> dict[str, Any]:
        return {
            "id": self.source_id,
            "uri": mask_source_uri(self.uri),
            "mode": "auto" if self.mode is None else self.mode.name,  # auto: not opened yet
            **self.books.fields(),
            "sinks": self.outputs.status(),
            **(
                {"analytics": analytics_status(self.processors.status())} if self.processors else {}
            ),
        }
