"""The decode thread of a stream: open the source, hand each frame to the delivery strategy,
and after a connection ends retry by the reconnect policy or give up.

The delivery comes from ``delivery(source)`` after each open: the worker builds it on the
first one, when a mode left to the source (``mode: auto``, an http(s) stream) is decided, and
keeps it for the stream's life. ``ended()`` marks the end of decoding (also when no open ever
succeeded)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vsa.flow import Decimator
from vsa.reconnect import Backoff
from vsa.schema import DropCause
from vsa.sources import FrameSource, SourceOptions
from vsa.sources.errors import SourceError, classify
from vsa.stream.books import Books
from vsa.stream.connection import GiveUp, SinkOpenFailed, after_error, sink_error
from vsa.stream.delivery import Lossless, Realtime
from vsa.stream.outputs import Outputs
from vsa.stream.settings import Opener
from vsa.uri import NETWORK_SCHEMES, mask_source_uri, scheme_of

log = logging.getLogger("vsa.stream")


class Decoder:
    def __init__(
        self,
        uri: str,
        opener: Opener,
        options: SourceOptions,
        max_fps: float | None,
        backoff: Backoff,
        books: Books,
        outputs: Outputs,
        delivery: Callable[[FrameSource], Lossless | Realtime],
        ended: Callable[[], None],
        stopping: threading.Event,
    ) -> None:
        self.uri, self._opener, self.options, self.max_fps = uri, opener, options, max_fps
        self.backoff, self.books, self.outputs = backoff, books, outputs
        self._delivery, self._ended, self.stopping = delivery, ended, stopping
        self.reconnects = scheme_of(uri) in NETWORK_SCHEMES  # files and generators do not
        self.opening = False  # inside the opener: nothing of this connection is in flight
        self.name = books.name

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    error = self._connect_and_stream()
                except SinkOpenFailed as exc:  # never retried as a camera outage
                    self.stopping.set()
                    self.books.fail(sink_error(exc.cause))
                    return
                except Exception as exc:  # noqa: BLE001 - any source error ends this connection only
                    error = classify(exc, self.uri)
                if self.stopping.is_set() or error is None:
                    return  # stopped, or a finite source reached its end
                if not self._retry_later(error):
                    return
        finally:
            self.outputs.ready.set()
            self._ended()

    def _retry_later(self, error: SourceError) -> bool:
        """Wait by the reconnect policy; False when the source must give up (FAILED)."""
        step = after_error(error, self.books.machine.attempt, self.reconnects, self.backoff)
        if isinstance(step, GiveUp):
            self.books.fail(step.error)
            return False
        self.books.reconnecting(error, step.attempt, step.delay_s)
        log.warning(
            "%s %s; reconnect attempt %d in %.1f s%s",
            self.name,
            self.books.machine.error,
            step.attempt,
            step.delay_s,
            " (permanent error: waiting the policy's longest delay)" if error.permanent else "",
        )
        if self.stopping.wait(step.delay_s):
            return False
        self.books.connecting()
        return True

    def _connect_and_stream(self) -> SourceError | None:
        """One connection: open, stream until it ends or fails. None = finished for good."""
        source: FrameSource | None = None
        delivery: Lossless | Realtime | None = None
        try:
            self.opening = True
            try:
                source = self._opener(self.uri, self.options)
            finally:
                self.opening = False
            if self.stopping.is_set():
                return None
            delivery = self._delivery(source)
            self.outputs.open(source.fps)
            decimator = None  # sources that can drop frames before any copy do it themselves
            if self.max_fps and not source.decimates:
                decimator = Decimator(self.max_fps)
            first = True
            for frame in source.frames():
                if first:  # connected *and* delivering: only now is the source STREAMING
                    first = False
                    self.books.streaming()
                    log.info("%s streaming %s", self.name, mask_source_uri(self.uri))
                if decimator is not None and not decimator.keep(
                    frame.wall_time if frame.pts is None else frame.pts
                ):
                    self.books.skipped(DropCause.DECIMATED, 1)
                    continue
                if not delivery.offer(frame, source.live) or self.stopping.is_set():
                    return None
            return SourceError("ENDED", "the stream ended") if source.endless else None
        finally:
            if delivery is not None:
                delivery.end_connection()
            if source is not None:
                try:
                    source.close()
                except Exception:  # noqa: BLE001
                    pass
