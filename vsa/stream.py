"""One stream's pipeline, without Ray: decode -> submit to inference -> sinks, in order.

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
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol

from vsa.sinks import FrameResult, Sink
from vsa.sources import Frame, FrameSource, open_source
from vsa.uri import mask_uri

log = logging.getLogger("vsa.stream")


class SourceState(str, Enum):
    CONNECTING = "CONNECTING"
    STREAMING = "STREAMING"
    FINISHED = (
        "FINISHED"  # a finite source reached its end; every frame emitted or counted as dropped
    )
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def terminal(self) -> bool:
        return self in (SourceState.FINISHED, SourceState.FAILED, SourceState.STOPPED)


class Pending(Protocol):
    def result(self, timeout: float) -> Sequence[FrameResult]: ...


Submit = Callable[[list[Frame]], Pending]
_END = object()


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
        opener: Callable[[str], FrameSource] = open_source,
    ) -> None:
        self.run_id, self.source_id, self.uri = run_id, source_id, uri
        self._sinks_factory, self._submit, self._opener = sinks_factory, submit, opener
        self.max_in_flight = max_in_flight
        self.chunk_size = max(1, min(chunk_size, max_in_flight))
        self.result_timeout_s = result_timeout_s
        self.state = SourceState.CONNECTING
        self.error: str | None = None
        self.decoded = self.inferred = self.emitted = 0
        self.drops: Counter[str] = Counter()
        self._slots = threading.Semaphore(max_in_flight)
        self._pending: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._stop_deadline: float | None = None
        self._emit_times: deque[float] = deque(maxlen=512)
        self._lock = threading.Lock()
        self._source: FrameSource | None = None
        self._sinks: list[Sink] = []
        self._sinks_ready = threading.Event()
        self.started_at = time.time()
        self._decode_thread = threading.Thread(
            target=self._decode_loop, name=f"decode:{source_id}", daemon=True
        )
        self._sink_thread = threading.Thread(
            target=self._sink_loop, name=f"sink:{source_id}", daemon=True
        )

    # --- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._decode_thread.start()
        self._sink_thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop decoding, write every frame already in flight, close the sinks.

        Frames whose results do not arrive within ``timeout`` are counted as dropped
        (``shutdown``) so that the sinks are always closed in time. The source is
        closed by the decode thread itself (closing a PyAV container under a running
        ``decode()`` from another thread crashes the process).
        """
        self._stop_deadline = time.monotonic() + max(0.0, timeout - 1.0)
        self._stopping.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._decode_thread, self._sink_thread):
            if thread.is_alive() or thread.ident is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
        return not (self._decode_thread.is_alive() or self._sink_thread.is_alive())

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
            return {
                "id": self.source_id,
                "uri": mask_uri(self.uri),
                "state": self.state.value,
                "error": self.error,
                "frames_decoded": self.decoded,
                "frames_inferred": self.inferred,
                "frames_emitted": self.emitted,
                "frames_dropped": sum(self.drops.values()),
                "drops": dict(self.drops),
                "in_flight": self.decoded - self.emitted - sum(self.drops.values()),
                "fps": round(fps, 2),
            }

    # --- threads -------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}".replace(self.uri, mask_uri(self.uri))
        with self._lock:
            self.error = mask_uri(message)
        log.error("run=%s source=%s failed: %s", self.run_id, self.source_id, self.error)

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
                self.drops["inference_error"] += len(chunk)
            for _ in chunk:
                self._slots.release()
            return
        self._pending.put((chunk, pending))

    def _decode_loop(self) -> None:
        chunk: list[Frame] = []
        try:
            self._source = self._opener(self.uri)
            self._sinks = self._sinks_factory(self._source.fps)
            self._sinks_ready.set()
            if self._stopping.is_set():
                return
            with self._lock:
                self.state = SourceState.STREAMING
            log.info(
                "run=%s source=%s streaming %s", self.run_id, self.source_id, mask_uri(self.uri)
            )
            live = self._source.live
            for frame in self._source.frames():
                if not self._acquire_slot():
                    with self._lock:
                        self.decoded += 1
                        self.drops["shutdown"] += 1
                    break
                with self._lock:
                    self.decoded += 1
                chunk.append(frame)
                if live or len(chunk) >= self.chunk_size:
                    self._flush(chunk)
                    chunk = []
                if self._stopping.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - any source error ends this stream only
            if not self._stopping.is_set():
                self._fail(exc)
        finally:
            self._flush(chunk)
            self._sinks_ready.set()
            self._pending.put(_END)
            if self._source is not None:
                try:
                    self._source.close()
                except Exception:  # noqa: BLE001
                    pass

    def _wait_timeout(self) -> float:
        if self._stop_deadline is None:
            return self.result_timeout_s
        return max(0.05, self._stop_deadline - time.monotonic())

    def _drop(self, cause: str, count: int) -> None:
        with self._lock:
            self.drops[cause] += count
        for _ in range(count):
            self._slots.release()

    def _sink_loop(self) -> None:
        failed = False
        while True:
            item = self._pending.get()
            if item is _END:
                break
            chunk, pending = item
            if failed:  # a sink broke: keep consuming so every frame is counted
                self._drop("sink_error", len(chunk))
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
                self._drop("shutdown" if stopping else "inference_error", len(chunk))
                continue
            for done, (frame, result) in enumerate(zip(chunk, results, strict=True)):
                with self._lock:
                    self.inferred += 1
                try:
                    for sink in self._sinks:
                        sink.write(frame, result)
                except Exception as exc:  # noqa: BLE001 - a sink that cannot write fails the stream
                    failed = True
                    self._stopping.set()
                    self._fail(exc)
                    self._drop("sink_error", len(chunk) - done)
                    break
                with self._lock:
                    self.emitted += 1
                    self._emit_times.append(time.monotonic())
                self._slots.release()
        self._finish()

    def _finish(self) -> None:
        self._decode_thread.join()
        self._sinks_ready.wait(timeout=5)
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                log.error(
                    "run=%s source=%s closing a sink failed: %s", self.run_id, self.source_id, exc
                )
        with self._lock:
            if self.error is not None:
                self.state = SourceState.FAILED
            elif self._stopping.is_set():
                self.state = SourceState.STOPPED
            else:
                self.state = SourceState.FINISHED
        log.info(
            "run=%s source=%s %s: %d decoded, %d emitted, drops %s",
            self.run_id,
            self.source_id,
            self.state.value,
            self.decoded,
            self.emitted,
            dict(self.drops),
        )
