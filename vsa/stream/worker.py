"""One stream's pipeline, without Ray: decode -> submit to inference -> sinks, in order.

Wiring only; the decisions live beside it: the state machine (``machine``), the frame
accounting (``ledger``), the delivery strategy (``delivery``: lossless or realtime), what to
do after a connection ends (``connection``) and the outputs (``outputs``).

Threads: the decode thread opens the source and hands each frame to the delivery strategy;
in realtime mode a submit thread sends the newest frame whenever a slot frees; the sink
thread takes the results in submit order and writes the outputs. ``submit`` is injected: the
Ray source actor puts frames in the object store and calls the inference actor; tests call
a model directly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from vsa.core.clock import SYSTEM_CLOCK, Clock
from vsa.core.frames import Frame, FrameResult
from vsa.flow import Decimator, LatencyHistogram, LatencyWindow
from vsa.reconnect import Backoff
from vsa.schema import DropCause, SourceState
from vsa.sinks import OutputLost, Sink
from vsa.sources import FrameSource, open_source
from vsa.sources.errors import SourceError, classify
from vsa.stream.connection import GiveUp, SinkOpenFailed, after_error, sink_error, stop_grace_s
from vsa.stream.delivery import Lossless, Realtime, Slots
from vsa.stream.ledger import FrameLedger
from vsa.stream.machine import SourceMachine
from vsa.stream.outputs import Outputs
from vsa.stream.settings import Opener, Pending, StreamSettings, Submit
from vsa.uri import NETWORK_SCHEMES, mask_source_uri, mask_uri, scheme_of

log = logging.getLogger("vsa.stream")
_END = object()


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
        self.run_id, self.source_id, self.uri = run_id, source_id, uri
        self.settings = s = settings or StreamSettings()
        self._submit, self._opener, self._clock = submit, opener, clock
        self._on_emit = on_emit  # (frame, capture-to-result seconds), once per emitted frame
        # the options are the caller's: this stream's copy reports skipped frames to its ledger
        self.options = dataclasses.replace(s.options, on_skip=self._skipped, max_fps=s.max_fps)
        self.name = f"run={run_id} source={source_id}"
        self.reconnects = scheme_of(uri) in NETWORK_SCHEMES  # files and generators do not
        self.backoff = backoff or Backoff(s.reconnect)
        self.machine = SourceMachine(self.name, clock.time)
        self.ledger = FrameLedger()
        self.outputs = Outputs(sinks_factory, self.name)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._opening = False
        self._pending: queue.Queue[Any] = queue.Queue()
        self._latency = LatencyWindow(s.latency_window_s, clock=clock.monotonic)
        self._run_latency = LatencyHistogram()  # the whole run, for the end-of-run report
        self._emit_times: deque[float] = deque(maxlen=512)
        self._last_frame_at: float | None = None
        slots = Slots(s.max_in_flight, self.stopping)
        end = lambda: self._pending.put(_END)  # noqa: E731
        self.delivery: Lossless | Realtime = (
            Realtime(
                slots,
                s.max_age_s,
                self._count,
                self._drop,
                self._flush,
                end,
                self.stopping,
                clock.time,
            )
            if s.realtime
            else Lossless(
                slots,
                min(s.chunk_size, s.max_in_flight),
                self._count,
                self._skipped,
                self._flush,
                end,
            )
        )
        self._threads = [
            threading.Thread(target=self._decode_loop, name=f"decode:{source_id}", daemon=True),
            threading.Thread(target=self._sink_loop, name=f"sink:{source_id}", daemon=True),
        ]
        if s.realtime:
            self._threads.append(
                threading.Thread(target=self.delivery.run, name=f"submit:{source_id}", daemon=True)
            )

    # --- control -------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

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
        self._stop_deadline = self._clock.monotonic() + max(0.0, timeout - 1.0)
        self.stopping.set()
        if self._opening:  # inside an open, nothing in flight: the sink thread ends now
            self._pending.put(_END)
            if self._threads[1].ident is not None:
                self._threads[1].join(timeout + stop_grace_s(self.options))
            return
        self.join(timeout + stop_grace_s(self.options))

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(
                    None if deadline is None else max(0.0, deadline - self._clock.monotonic())
                )
        return not any(t.is_alive() for t in self._threads)

    @property
    def done(self) -> bool:
        return self.machine.state.terminal

    @property
    def state(self) -> SourceState:
        return self.machine.state

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock.monotonic()
            recent = [t for t in self._emit_times if now - t <= 3.0]
            fps = (len(recent) - 1) / max(now - recent[0], 1e-6) if len(recent) >= 2 else 0.0
            age = None if self._last_frame_at is None else round(now - self._last_frame_at, 2)
            p50, p99 = self._latency.percentiles(50, 99)
            machine = self.machine.fields()
            transitions = machine.pop("transitions")
            return {
                "id": self.source_id,
                "uri": mask_source_uri(self.uri),
                **machine,
                "last_frame_age_s": age,
                **self.ledger.fields(),
                "fps": round(fps, 2),
                "mode": "realtime" if self.settings.realtime else "lossless",
                "latency_ms": {
                    "p50": None if p50 is None else round(p50 * 1000, 1),
                    "p99": None if p99 is None else round(p99 * 1000, 1),
                },
                "transitions": transitions,
                "latency_hist": dict(self._run_latency.counts),
                "latency_max_ms": (
                    round(self._run_latency.max_s * 1000, 1) if self._run_latency.total else None
                ),
            }

    # --- counting (callbacks of the source and the delivery strategy) ---------------------
    def _count(self, frame: Frame) -> None:
        with self._lock:
            frame.index = self.settings.index_offset + self.ledger.decode()  # across reconnects
            self._last_frame_at = self._clock.monotonic()

    def _skipped(self, cause: DropCause | str, count: int) -> None:
        """Frames the source lost before handing them over (damaged data, over the fps cap)."""
        with self._lock:
            self.ledger.skip(cause, count)

    def _drop(self, cause: DropCause, count: int) -> None:
        with self._lock:
            self.ledger.drop(cause, count)

    def _fail(self, exc: BaseException) -> None:
        error = classify(exc, self.uri)
        with self._lock:
            self.machine.fail(error)
        log.error("%s failed: %s", self.name, self.machine.error)

    # --- the decode thread -----------------------------------------------------------------
    def _flush(self, chunk: list[Frame]) -> None:
        try:
            pending = self._submit(chunk)
        except Exception as exc:  # noqa: BLE001 - inference unreachable: count and go on
            log.warning("%s submit failed: %s", self.name, exc)
            self._drop(DropCause.INFERENCE_ERROR, len(chunk))
            self.delivery.slots.release(len(chunk))
            return
        self._pending.put((chunk, pending))

    def _decode_loop(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    error = self._connect_and_stream()
                except SinkOpenFailed as exc:  # never retried as a camera outage
                    self.stopping.set()
                    self._fail(sink_error(exc.cause))
                    return
                except Exception as exc:  # noqa: BLE001 - any source error ends this connection only
                    error = classify(exc, self.uri)
                if self.stopping.is_set() or error is None:
                    return  # stopped, or a finite source reached its end
                if not self._retry_later(error):
                    return
        finally:
            self.outputs.ready.set()
            self.delivery.decoding_ended()

    def _retry_later(self, error: SourceError) -> bool:
        """Wait by the reconnect policy; False when the source must give up (FAILED)."""
        step = after_error(error, self.machine.attempt, self.reconnects, self.backoff)
        if isinstance(step, GiveUp):
            self._fail(step.error)
            return False
        with self._lock:
            self.machine.attempt = step.attempt
            self.machine.reconnecting(error, step.delay_s)
        log.warning(
            "%s %s; reconnect attempt %d in %.1f s%s",
            self.name,
            self.machine.error,
            step.attempt,
            step.delay_s,
            " (permanent error: waiting the policy's longest delay)" if error.permanent else "",
        )
        if self.stopping.wait(step.delay_s):
            return False
        with self._lock:
            self.machine.connecting()
        return True

    def _connect_and_stream(self) -> SourceError | None:
        """One connection: open, stream until it ends or fails. None = finished for good."""
        source: FrameSource | None = None
        try:
            self._opening = True
            try:
                source = self._opener(self.uri, self.options)
            finally:
                self._opening = False
            if self.stopping.is_set():
                return None
            self.outputs.open(source.fps)
            decimator = None  # sources that can drop frames before any copy do it themselves
            if self.settings.max_fps and not source.decimates:
                decimator = Decimator(self.settings.max_fps)
            first = True
            for frame in source.frames():
                if first:  # connected *and* delivering: only now is the source STREAMING
                    first = False
                    with self._lock:
                        self.machine.streaming()
                    log.info("%s streaming %s", self.name, mask_source_uri(self.uri))
                if decimator is not None and not decimator.keep(
                    frame.wall_time if frame.pts is None else frame.pts
                ):
                    self._skipped(DropCause.DECIMATED, 1)
                    continue
                if not self.delivery.offer(frame, source.live) or self.stopping.is_set():
                    return None
            return SourceError("ENDED", "the stream ended") if source.endless else None
        finally:
            self.delivery.end_connection()
            if source is not None:
                try:
                    source.close()
                except Exception:  # noqa: BLE001
                    pass

    # --- the sink thread -------------------------------------------------------------------
    def _wait_timeout(self) -> float:
        if self._stop_deadline is None:
            return self.settings.result_timeout_s
        return max(0.05, self._stop_deadline - self._clock.monotonic())

    def _release(self, cause: DropCause, count: int) -> None:
        """Count frames that held an in-flight slot as dropped and free their slots."""
        self._drop(cause, count)
        self.delivery.slots.release(count)

    def _output_lost(self, exc: OutputLost) -> None:
        """An output file vanished: the frames written into it move to ``output_lost``."""
        lost = self.outputs.frames_lost(exc)
        with self._lock:
            lost = self.ledger.lose_output(lost)
            failed = self.machine.failed
        if not failed:
            self._fail(
                SourceError("SINK_ERROR", f"{exc.reason}; {lost} frames written to it are lost")
            )

    def _sink_failed(self, exc: BaseException) -> None:
        if isinstance(exc, OutputLost):
            self._output_lost(exc)
        else:
            self._fail(sink_error(exc))

    def _results(self, chunk: list[Frame], pending: Pending) -> Sequence[FrameResult | None] | None:
        try:
            return pending.result(timeout=self._wait_timeout())
        except Exception as exc:  # noqa: BLE001 - inference failed or timed out for this chunk
            cancel = getattr(pending, "cancel", None)
            if cancel is not None:
                cancel()
            stopping = (
                self._stop_deadline is not None and self._clock.monotonic() >= self._stop_deadline
            )
            if not stopping:
                log.warning(
                    "%s inference failed for %d frames: %s",
                    self.name,
                    len(chunk),
                    mask_uri(str(exc)),
                )
            self._release(DropCause.SHUTDOWN if stopping else DropCause.INFERENCE_ERROR, len(chunk))
            return None

    def _sink_loop(self) -> None:
        failed = False
        while (item := self._pending.get()) is not _END:
            chunk, pending = item
            if failed:  # a sink broke: keep consuming so every frame is counted
                self._release(DropCause.SINK_ERROR, len(chunk))
                continue
            results = self._results(chunk, pending)
            for done, (frame, result) in enumerate(
                zip(chunk, results or (), strict=results is not None)
            ):
                if result is None:  # too old when its batch formed: dropped, not inferred
                    self._release(DropCause.STALE, 1)
                    continue
                with self._lock:
                    self.ledger.infer()
                try:
                    self.outputs.write(frame, result)
                except Exception as exc:  # noqa: BLE001 - a sink that cannot write fails the stream
                    failed = True
                    self.stopping.set()
                    self._sink_failed(exc)
                    self._release(DropCause.SINK_ERROR, len(chunk) - done)
                    break
                self._emitted(frame)
        self._finish()

    def _emitted(self, frame: Frame) -> None:
        latency = self._clock.time() - frame.wall_time
        with self._lock:
            self.ledger.emit()
            self._emit_times.append(self._clock.monotonic())
            self._latency.add(latency)
            self._run_latency.add(latency)
        if self._on_emit is not None:
            try:
                self._on_emit(frame, latency)
            except Exception:  # noqa: BLE001 - metrics never break a stream
                log.exception("on_emit failed")
        self.delivery.slots.release()

    def _finish(self) -> None:
        decode = self._threads[0]
        if self._stop_deadline is None:
            decode.join()
        elif not self._opening:  # an open still in progress is left to end on its own
            decode.join(max(0.0, self._stop_deadline - self._clock.monotonic()))
        if decode.is_alive() or decode.ident is None:
            self.outputs.ready.set()
        self.outputs.close(self._output_lost)
        with self._lock:
            final = self.machine.finish(self.stopping.is_set())
        log.info(
            "%s %s: %d decoded, %d emitted, drops %s",
            self.name,
            final.value,
            self.ledger.decoded,
            self.ledger.emitted,
            dict(self.ledger.drops),
        )
