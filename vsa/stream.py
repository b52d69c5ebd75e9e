"""One stream's pipeline, without Ray: decode -> submit to inference -> sinks, in order.

The source state machine (docs/states.md)::

    CONNECTING -> STREAMING -> FINISHED            (a file or finite source reached its end)
        |  ^          |
        v  |          v
    RECONNECTING <----+  (network sources: error, stall or end; waits by the reconnect policy)
        |
        v
      FAILED  (a file/synthetic source failed, or max_attempts ran out)
    any non-terminal state -> STOPPED (stop requested)

Every transition is checked against ``vsa.schema.SOURCE_TRANSITIONS``.

Two threads. The decode thread opens the source, decodes frames and submits them in
small chunks (one call per chunk amortises the per-call cost; live sources submit
every frame at once for latency). The sink thread takes the results in submit order
and writes every sink. A semaphore bounds the frames in flight: when inference is
busy, the decode thread waits (lossless), so nothing queues without limit.

``submit`` is injected: the Ray source actor puts frames in the object store and
calls the inference actor; unit tests call a model directly.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vsa.config import ReconnectSpec
from vsa.constants import STOP_GRACE_S, TRANSITIONS_KEPT
from vsa.core.frames import Frame, FrameResult
from vsa.flow import Decimator, LatencyHistogram, LatencyWindow, LatestSlot
from vsa.reconnect import Backoff
from vsa.schema import DropCause, SourceState, check_source_transition
from vsa.sinks import OutputLost, Sink
from vsa.sources import FrameSource, SourceOptions, open_source
from vsa.sources.errors import NEVER_RETRIED, SourceError, classify, describe
from vsa.uri import NETWORK_SCHEMES, mask_source_uri, mask_uri, scheme_of

__all__ = ["STOP_GRACE_S", "TRANSITIONS_KEPT", "SourceState", "StreamWorker", "stop_grace_s"]

log = logging.getLogger("vsa.stream")


class Pending(Protocol):
    def result(self, timeout: float) -> Sequence[FrameResult]: ...


Submit = Callable[[list[Frame]], Pending]


def stop_grace_s(spec: Any) -> float:
    """How long a stopping source may still take after the drain timeout: a decode thread
    blocked in an open or a read ends within the source's own timeouts."""
    read = min(spec.read_timeout_s, spec.stall_timeout_s)
    return max(STOP_GRACE_S, spec.open_timeout_s + 1, read + 1)


class _SinkOpenFailed(Exception):
    """The stream's outputs could not be opened (a SINK_ERROR, whatever the source type)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _sink_error(exc: BaseException) -> SourceError:
    return SourceError("SINK_ERROR", f"{describe(exc)} ({type(exc).__name__})")


Opener = Callable[[str, SourceOptions], FrameSource]
_END = object()


def _cause(cause: DropCause | str) -> str:
    """The plain string a drop is counted under (status, JSONL, reports and metrics)."""
    return cause.value if isinstance(cause, DropCause) else cause


class StreamWorker:
    def __init__(
        self,
        run_id: str,
        source_id: str,
        uri: str,
        sinks_factory: Callable[[float | None], list[Sink]],
        submit: Submit,
        max_in_flight: int = 8,
        chunk_size: int = 4,
        result_timeout_s: float = 120.0,
        opener: Opener = open_source,
        reconnect: ReconnectSpec | None = None,
        options: SourceOptions | None = None,
        backoff: Backoff | None = None,
        realtime: bool = False,
        max_fps: float | None = None,
        max_age_s: float = 1.0,
        latency_window_s: float = 30.0,
        index_offset: int = 0,
        on_emit: Callable[[Frame, float], None] | None = None,
    ) -> None:
        self.run_id, self.source_id, self.uri = run_id, source_id, uri
        self._sinks_factory, self._submit, self._opener = sinks_factory, submit, opener
        self.max_in_flight = max_in_flight
        self.chunk_size = max(1, min(chunk_size, max_in_flight))
        self.result_timeout_s = result_timeout_s
        self.options = options or SourceOptions()
        self.options.on_skip = self._skipped
        self.options.max_fps = max_fps
        self.realtime, self.max_fps, self.max_age_s = realtime, max_fps, max_age_s
        self.index_offset = index_offset  # a restarted source goes on numbering where it was
        self._on_emit = on_emit  # (frame, capture-to-result seconds), once per emitted frame
        self._latest: LatestSlot[Frame] = LatestSlot()
        self._decode_done = threading.Event()
        self._latency = LatencyWindow(latency_window_s)
        self._run_latency = LatencyHistogram()  # the whole run, for the end-of-run report
        # only network sources come back: a file or a generator fails the same way again
        self.reconnects = scheme_of(uri) in NETWORK_SCHEMES
        self.backoff = backoff or Backoff(reconnect or ReconnectSpec())
        self.state = SourceState.CONNECTING
        self.error: str | None = None
        self.code: str | None = None
        self._failed = False
        self._opening = False
        self.attempt = 0
        self.next_retry_at: float | None = None
        self.reconnect_count = 0  # connections made after the first
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)
        self.decoded = self.inferred = self.emitted = 0
        self.drops: Counter[str] = Counter()
        self._slots = threading.Semaphore(max_in_flight)
        self._pending: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._emit_times: deque[float] = deque(maxlen=512)
        self._last_frame_at: float | None = None
        self._lock = threading.Lock()
        self._source: FrameSource | None = None
        self._sinks: list[Sink] = []
        self._sinks_ready = threading.Event()
        self.started_at = time.time()
        self._record(SourceState.CONNECTING)
        self._decode_thread = threading.Thread(
            target=self._decode_loop, name=f"decode:{source_id}", daemon=True
        )
        self._sink_thread = threading.Thread(
            target=self._sink_loop, name=f"sink:{source_id}", daemon=True
        )
        self._submit_thread = threading.Thread(
            target=self._submit_loop, name=f"submit:{source_id}", daemon=True
        )

    # --- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._decode_thread.start()
        if self.realtime:
            self._submit_thread.start()
        self._sink_thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop decoding, write every frame already in flight, close the sinks.

        Frames whose results do not arrive within ``timeout`` are counted as dropped
        (``shutdown``) so that the sinks are always closed in time. The source is
        closed by the decode thread itself (closing a PyAV container under a running
        ``decode()`` from another thread crashes the process). Returns once the source is
        in a terminal state with exact counts; a thread blocked in a read gets
        ``stop_grace_s`` more (reads are bounded by the source's timeouts).
        """
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"stop timeout must be a positive number of seconds, got {timeout!r}")
        self._stop_deadline = time.monotonic() + max(0.0, timeout - 1.0)
        self._stopping.set()
        if self._opening:
            # The decode thread is inside an open (up to open_timeout_s) and has nothing in
            # flight for this connection: let the sink thread finish now instead of waiting.
            self._pending.put(_END)
            if self._sink_thread.ident is not None:
                self._sink_thread.join(timeout + stop_grace_s(self.options))
            return
        self.join(timeout + stop_grace_s(self.options))

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._decode_thread, self._submit_thread, self._sink_thread):
            if thread.is_alive() or thread.ident is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
        return not any(
            t.is_alive() for t in (self._decode_thread, self._submit_thread, self._sink_thread)
        )

    @property
    def done(self) -> bool:
        return self.state.terminal

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._emit_times if now - t <= 3.0]
            fps = 0.0
            if len(recent) >= 2 and now - recent[0] > 0:
                fps = (len(recent) - 1) / max(now - recent[0], 1e-6)
            age = None if self._last_frame_at is None else round(now - self._last_frame_at, 2)
            p50, p99 = self._latency.percentiles(50, 99)
            return {
                "id": self.source_id,
                "uri": mask_source_uri(self.uri),
                "state": self.state.value,
                "code": self.code,
                "error": self.error,
                "attempt": self.attempt,
                "next_retry_at": self.next_retry_at,
                "reconnects": self.reconnect_count,
                "last_frame_age_s": age,
                "frames_decoded": self.decoded,
                "frames_inferred": self.inferred,
                "frames_emitted": self.emitted,
                "frames_dropped": sum(self.drops.values()),
                "drops": dict(self.drops),
                "in_flight": self.decoded - self.emitted - sum(self.drops.values()),
                "fps": round(fps, 2),
                "mode": "realtime" if self.realtime else "lossless",
                "latency_ms": {
                    "p50": None if p50 is None else round(p50 * 1000, 1),
                    "p99": None if p99 is None else round(p99 * 1000, 1),
                },
                "transitions": list(self.transitions),
                "latency_hist": dict(self._run_latency.counts),
                "latency_max_ms": (
                    round(self._run_latency.max_s * 1000, 1) if self._run_latency.total else None
                ),
            }

    # --- threads -------------------------------------------------------------------------
    def _record(self, state: SourceState, code: str | None = None) -> None:
        """Enter ``state`` (call with the lock held, or before the threads start).

        A terminal state is final: a decode thread that was blocked in a read past a stop's
        deadline and then gets a frame does not bring the source back to STREAMING.
        """
        if self.transitions and self.state.terminal:
            log.info(
                "run=%s source=%s already %s: %s ignored",
                self.run_id,
                self.source_id,
                self.state.value,
                state.value,
            )
            return
        if self.transitions:  # the first entry is the initial CONNECTING, not a transition
            try:
                check_source_transition(self.state, state)
            except ValueError as exc:
                # A bookkeeping bug must never crash a stream in production: say so loudly and
                # record the state anyway. Unit tests make every such case fail
                # (tests/unit/conftest.py, ``strict_transitions``).
                log.error("run=%s source=%s %s (recorded anyway)", self.run_id, self.source_id, exc)
        self.state = state
        entry: dict[str, Any] = {"t": round(time.time(), 3), "state": state.value}
        if code:
            entry["code"] = code
        self.transitions.append(entry)

    def _set_state(self, state: SourceState, code: str | None = None) -> None:
        with self._lock:
            if self.state is not state:
                self._record(state, code)

    def _fail(self, exc: BaseException) -> None:
        err = classify(exc, self.uri)
        with self._lock:
            self.code, self.error = err.code, f"{err.code}: {mask_uri(err.message)}"
            self._failed = True
        log.error("run=%s source=%s failed: %s", self.run_id, self.source_id, self.error)

    def _count(self, frame: Frame) -> None:
        with self._lock:
            frame.index = self.index_offset + self.decoded  # numbered across reconnects
            self.decoded += 1
            self._last_frame_at = time.monotonic()

    def _skipped(self, cause: DropCause | str, count: int) -> None:
        """Frames the source lost before they were decoded (damaged data): decoded and dropped."""
        with self._lock:
            self.decoded += count
            self.drops[_cause(cause)] += count

    def _acquire_slot(self) -> bool:
        while not self._stopping.is_set():
            if self._slots.acquire(timeout=0.2):
                return True
        return False

    def _flush(self, chunk: list[Frame]) -> None:
        if not chunk:
            return
        try:
            pending = self._submit(chunk)
        except Exception as exc:  # noqa: BLE001 - inference unreachable: count and go on
            log.warning("run=%s source=%s submit failed: %s", self.run_id, self.source_id, exc)
            with self._lock:
                self.drops[DropCause.INFERENCE_ERROR.value] += len(chunk)
            for _ in chunk:
                self._slots.release()
            return
        self._pending.put((chunk, pending))

    def _decode_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    error = self._connect_and_stream()
                except _SinkOpenFailed as exc:  # never retried as a camera outage
                    self._stopping.set()
                    self._fail(_sink_error(exc.cause))
                    return
                except Exception as exc:  # noqa: BLE001 - any source error ends this connection only
                    error = classify(exc, self.uri)
                if self._stopping.is_set():
                    return
                if error is None:
                    return  # a finite source reached its end
                if not self._retry_later(error):
                    return
        finally:
            self._sinks_ready.set()
            self._decode_done.set()
            if not self.realtime:
                self._pending.put(_END)  # in realtime mode the submit thread ends the queue

    def _submit_loop(self) -> None:
        """Realtime mode: whenever a slot is free, submit the newest frame, unless it is stale."""
        try:
            while True:
                if not self._acquire_slot():
                    break
                frame = None
                while frame is None:
                    frame = self._latest.take(0.2)
                    if frame is None and (self._decode_done.is_set() or self._stopping.is_set()):
                        break
                if frame is None:
                    self._slots.release()
                    break
                if time.time() - frame.wall_time > self.max_age_s:
                    self._drop(DropCause.STALE, 1)
                    continue
                self._flush([frame])
        finally:
            left = self._latest.close()
            if left is not None:
                with self._lock:
                    self.drops[DropCause.SHUTDOWN.value] += 1
            self._pending.put(_END)

    def _retry_later(self, error: SourceError) -> bool:
        """Wait by the reconnect policy; False when the source must give up (FAILED)."""
        if not self.reconnects or error.code in NEVER_RETRIED:
            self._fail(error)
            return False
        self.attempt += 1
        if self.backoff.exhausted(self.attempt):
            self._fail(
                SourceError(
                    error.code,
                    f"{error.message} (gave up after {self.attempt - 1} reconnect attempts)",
                )
            )
            return False
        delay = self.backoff.delay(self.attempt, error.permanent)
        with self._lock:
            self.code, self.error = error.code, f"{error.code}: {mask_uri(error.message)}"
            self.next_retry_at = time.time() + delay
            self._record(SourceState.RECONNECTING, error.code)
        log.warning(
            "run=%s source=%s %s; reconnect attempt %d in %.1f s%s",
            self.run_id,
            self.source_id,
            self.error,
            self.attempt,
            delay,
            " (permanent error: waiting the policy's longest delay)" if error.permanent else "",
        )
        if self._stopping.wait(delay):
            return False
        with self._lock:
            self.next_retry_at = None
            self._record(SourceState.CONNECTING)
        return True

    def _connect_and_stream(self) -> SourceError | None:
        """One connection: open, stream until it ends or fails. None = finished for good."""
        chunk: list[Frame] = []
        source: FrameSource | None = None
        try:
            self._opening = True
            try:
                source = self._source = self._opener(self.uri, self.options)
            finally:
                self._opening = False
            if self._stopping.is_set():
                return None
            if not self._sinks_ready.is_set():
                try:
                    self._sinks = self._sinks_factory(source.fps)
                except Exception as exc:  # noqa: BLE001 - the outputs, not the camera
                    raise _SinkOpenFailed(exc) from exc
                self._sinks_ready.set()
            first = True
            decimator = None
            if self.max_fps and not getattr(source, "decimates", False):
                decimator = Decimator(self.max_fps)
            for frame in source.frames():
                if first:  # connected *and* delivering: only now is the source STREAMING
                    first = False
                    with self._lock:
                        if self.attempt:
                            self.reconnect_count += 1
                        self.attempt, self.code, self.error = 0, None, None
                        self._record(SourceState.STREAMING)
                    log.info(
                        "run=%s source=%s streaming %s",
                        self.run_id,
                        self.source_id,
                        mask_source_uri(self.uri),
                    )
                if decimator is not None and not decimator.keep(
                    frame.wall_time if frame.pts is None else frame.pts
                ):
                    self._skipped(DropCause.DECIMATED, 1)
                    continue
                if self.realtime:
                    self._count(frame)
                    replaced = self._latest.put(frame)
                    if replaced is frame:  # the submit thread has ended (stopping)
                        self._drop(DropCause.SHUTDOWN, 1, held_slot=False)
                        return None
                    if replaced is not None:  # the older frame was never sent
                        self._drop(DropCause.QUEUE_FULL, 1, held_slot=False)
                    if self._stopping.is_set():
                        return None
                    continue
                if not self._acquire_slot():  # lossless: wait for the engine
                    self._skipped(DropCause.SHUTDOWN, 1)
                    return None
                self._count(frame)
                chunk.append(frame)
                if source.live or len(chunk) >= self.chunk_size:
                    self._flush(chunk)
                    chunk = []
                if self._stopping.is_set():
                    return None
            if getattr(source, "endless", False):
                return SourceError("ENDED", "the stream ended")
            return None
        finally:
            self._flush(chunk)
            if source is not None:
                try:
                    source.close()
                except Exception:  # noqa: BLE001
                    pass

    def _wait_timeout(self) -> float:
        if self._stop_deadline is None:
            return self.result_timeout_s
        return max(0.05, self._stop_deadline - time.monotonic())

    def _drop(self, cause: DropCause, count: int, held_slot: bool = True) -> None:
        """Count decoded frames as dropped; give back their in-flight slots if they held one."""
        with self._lock:
            self.drops[cause.value] += count
        if held_slot:
            for _ in range(count):
                self._slots.release()

    def _sink_failed(self, exc: BaseException) -> None:
        """A sink broke: the source FAILS with SINK_ERROR. When an output file vanished (its
        directory deleted, the file replaced), the frames written into it are held by no file:
        they move from emitted to ``output_lost``, so the counts never claim them."""
        if not isinstance(exc, OutputLost):
            self._fail(_sink_error(exc))
            return
        lost = exc.frames_lost
        for sink in self._sinks:  # the directory went: the other files went with it
            gone = getattr(sink, "lost", None)
            other = gone() if gone is not None else None
            if other is not None:
                lost = max(lost, other.frames_lost)
        with self._lock:
            lost = min(lost, self.emitted)
            self.emitted -= lost
            self.drops[DropCause.OUTPUT_LOST.value] += lost
        if not self._failed:
            self._fail(
                SourceError("SINK_ERROR", f"{exc.reason}; {lost} frames written to it are lost")
            )

    def _sink_loop(self) -> None:
        failed = False
        while True:
            item = self._pending.get()
            if item is _END:
                break
            chunk, pending = item
            if failed:  # a sink broke: keep consuming so every frame is counted
                self._drop(DropCause.SINK_ERROR, len(chunk))
                continue
            try:
                results = pending.result(timeout=self._wait_timeout())
            except Exception as exc:  # noqa: BLE001 - inference failed or timed out for this chunk
                cancel = getattr(pending, "cancel", None)
                if cancel is not None:
                    cancel()
                stopping = (
                    self._stop_deadline is not None and time.monotonic() >= self._stop_deadline
                )
                if not stopping:
                    log.warning(
                        "run=%s source=%s inference failed for %d frames: %s",
                        self.run_id,
                        self.source_id,
                        len(chunk),
                        mask_uri(str(exc)),
                    )
                cause = DropCause.SHUTDOWN if stopping else DropCause.INFERENCE_ERROR
                self._drop(cause, len(chunk))
                continue
            for done, (frame, result) in enumerate(zip(chunk, results, strict=True)):
                if result is None:  # too old when its batch formed: dropped, not inferred
                    self._drop(DropCause.STALE, 1)
                    continue
                with self._lock:
                    self.inferred += 1
                try:
                    for sink in self._sinks:
                        sink.write(frame, result)
                except Exception as exc:  # noqa: BLE001 - a sink that cannot write fails the stream
                    failed = True
                    self._stopping.set()
                    self._sink_failed(exc)
                    self._drop(DropCause.SINK_ERROR, len(chunk) - done)
                    break
                latency = time.time() - frame.wall_time
                with self._lock:
                    self.emitted += 1
                    self._emit_times.append(time.monotonic())
                    self._latency.add(latency)
                    self._run_latency.add(latency)
                if self._on_emit is not None:
                    try:
                        self._on_emit(frame, latency)
                    except Exception:  # noqa: BLE001 - metrics never break a stream
                        log.exception("on_emit failed")
                self._slots.release()
        self._finish()

    def _finish(self) -> None:
        if self._stop_deadline is None:
            self._decode_thread.join()
        elif not self._opening:  # an open still in progress is left to end on its own
            self._decode_thread.join(max(0.0, self._stop_deadline - time.monotonic()))
        if self._decode_thread.is_alive() or self._decode_thread.ident is None:
            self._sinks_ready.set()
        self._sinks_ready.wait(timeout=5)
        for sink in self._sinks:
            try:
                sink.close()
            except OutputLost as exc:  # deleted or replaced after the last write
                self._sink_failed(exc)
            except Exception as exc:  # noqa: BLE001
                log.error(
                    "run=%s source=%s closing a sink failed: %s", self.run_id, self.source_id, exc
                )
        with self._lock:
            if self._failed:
                final = SourceState.FAILED
            elif self._stopping.is_set():
                final = SourceState.STOPPED
            else:
                final = SourceState.FINISHED
            self.next_retry_at = None
            self._record(final, self.code if final is SourceState.FAILED else None)
        log.info(
            "run=%s source=%s %s: %d decoded, %d emitted, drops %s",
            self.run_id,
            self.source_id,
            self.state.value,
            self.decoded,
            self.emitted,
            dict(self.drops),
        )
