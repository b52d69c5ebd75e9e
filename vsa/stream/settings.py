"""What a stream is configured with, and the two callables it is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vsa.config import ReconnectSpec
from vsa.core.frames import Frame, FrameResult
from vsa.sources import FrameSource, SourceOptions
from vsa.stream.outputs import EarlierOutputs


class Pending(Protocol):
    def result(self, timeout: float) -> Sequence[FrameResult | None]: ...


Submit = Callable[[list[Frame]], Pending]
Opener = Callable[[str, SourceOptions], FrameSource]


@dataclass(frozen=True)
class StreamSettings:
    """How one stream delivers its frames (from its run-file entry: ``from_spec``)."""

    max_in_flight: int = 8
    chunk_size: int = 4
    result_timeout_s: float = 120.0
    realtime: bool = False
    max_fps: float | None = None
    max_age_s: float = 1.0
    latency_window_s: float = 30.0
    reconnect: ReconnectSpec = field(default_factory=ReconnectSpec)
    options: SourceOptions = field(default_factory=SourceOptions)
    index_offset: int = 0  # a restarted source goes on numbering where it was
    # a resumed stream: its earlier incarnations' files, checked before it starts (output_lost)
    earlier: EarlierOutputs | None = None

    @classmethod
    def from_spec(cls, source: Any, window_s: float, **overrides: Any) -> StreamSettings:
        """From a ``vsa.config.SourceSpec`` and the run's degradation window."""
        values: dict[str, Any] = dict(
            max_in_flight=source.in_flight,
            realtime=source.realtime,
            max_fps=source.fps,
            max_age_s=source.max_age_ms / 1000,
            latency_window_s=window_s,
            reconnect=source.reconnect,
            options=SourceOptions.from_spec(source),
        )
        return cls(**{**values, **overrides})
