"""What a stream is configured with, and the two callables it is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vsa.config import ReconnectSpec
from vsa.core.frames import Frame, FrameResult
from vsa.sources import FrameSource, SourceOptions
from vsa.stream.outputs import EarlierOutputs
from vsa.stream.processors import Processor


class Pending(Protocol):
    def result(self, timeout: float) -> Sequence[FrameResult | None]: ...


# ``submit(frames, deadlines, credit, behind)``: send frames to inference with the delivery's
# terms (``Lossless.terms``/``Realtime.terms``): each frame's deadline (wall time), the
# stream's credit (its most frames in flight) and whether it lost frames for want of a slot
# since its last send, all None for a lossless stream
Submit = Callable[[list[Frame], list[float] | None, int | None, bool | None], Pending]
Opener = Callable[[str, SourceOptions], FrameSource]

LOSSLESS_IN_FLIGHT, REALTIME_IN_FLIGHT = 8, 1  # max_in_flight by default


@dataclass(frozen=True)
class Mode:
    """A stream's delivery mode in effect: realtime or lossless, its frames in flight at most
    (``Slots``) and why it was chosen (logged)."""

    realtime: bool
    max_in_flight: int
    why: str

    @property
    def name(self) -> str:
        return "realtime" if self.realtime else "lossless"


@dataclass(frozen=True)
class StreamSettings:
    """How one stream delivers its frames (from its run-file entry: ``from_spec``)."""

    max_in_flight: int | None = None  # None: the mode's default (8 lossless, 1 realtime)
    chunk_size: int = 4
    result_timeout_s: float = 120.0
    realtime: bool | None = False  # None: ``mode: auto`` of an http(s) source (see ``mode``)
    max_fps: float | None = None
    max_age_s: float = 1.0
    jitter_buffer_s: float = 2.0  # realtime, live: hold a burst's frames at most this long
    latency_window_s: float = 30.0
    reconnect: ReconnectSpec = field(default_factory=ReconnectSpec)
    options: SourceOptions = field(default_factory=SourceOptions)
    index_offset: int = 0  # a restarted source goes on numbering where it was
    # a resumed stream: its earlier incarnations' files, checked before it starts (output_lost)
    earlier: EarlierOutputs | None = None
    # the stream's result processors, in order (``vsa.stream.processors``): made once by the
    # worker; None: no processors, the sinks get the results as inference made them
    processors: Callable[[], Sequence[Processor]] | None = None
    # a restarted stream: its processors' saved state (``StreamWorker.processor_state``)
    processor_state: dict[str, dict[str, Any]] | None = None

    @classmethod
    def from_spec(cls, source: Any, window_s: float, **overrides: Any) -> StreamSettings:
        """From a ``vsa.config.SourceSpec`` and the run's degradation window."""
        values: dict[str, Any] = dict(
            max_in_flight=source.max_in_flight,
            realtime=source.realtime,
            max_fps=source.fps,
            max_age_s=source.max_age_ms / 1000,
            jitter_buffer_s=source.jitter_buffer_ms / 1000,
            latency_window_s=window_s,
            reconnect=source.reconnect,
            options=SourceOptions.from_spec(source),
        )
        return cls(**{**values, **overrides})

    def in_flight(self, realtime: bool) -> int:
        """``max_in_flight`` in effect in a mode (unset: that mode's default)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return REALTIME_IN_FLIGHT if realtime else LOSSLESS_IN_FLIGHT

    @property
    def most_in_flight(self) -> int:
        """The most frames this stream can have in flight, whichever mode it ends up in (sizes
        its shared-memory ring before a ``mode: auto`` stream has opened)."""
        if self.realtime is None:
            return max(self.in_flight(True), self.in_flight(False))
        return self.in_flight(self.realtime)

    def mode(self, finite: bool | None = None) -> Mode | None:
        """The delivery mode: as set (``realtime`` True or False: explicit, or decided from the
        URI alone), else from the opened source: lossless when it has a known end (``finite``,
        ``vsa.sources.base.has_known_end``), realtime when it is live. None while a mode left
        to the source is not known (``finite`` None: it has not opened yet)."""
        if self.realtime is not None:
            return Mode(self.realtime, self.in_flight(self.realtime), "as configured")
        if finite is None:
            return None
        if finite:
            why = "mode auto: the source has a known duration (a file, an HLS VOD playlist)"
        else:
            why = "mode auto: the source is live (no known duration)"
        return Mode(not finite, self.in_flight(not finite), why)
