"""A decoded frame, and what inference returns for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsa.core.detections import Detection
from vsa.core.scene import Event, SceneView


class Frame:
    """One decoded frame: a contiguous HxWx3 uint8 BGR array plus where it came from.

    A source may hand over a frame whose pixels are not made yet: ``convert`` makes them (the
    colour conversion of a decoded picture, the rendering of a synthetic one) the first time
    ``image`` is read. A realtime stream replaces frames nobody will see by newer ones, so
    those are never converted; ``decode_s`` then includes the conversion once it happened.
    ``convert`` may also fill ``truth`` (a synthetic frame's ground truth).
    """

    __slots__ = (
        "_convert",
        "_image",
        "_truth",
        "decode_cpu_s",
        "decode_s",
        "index",
        "pts",
        "wall_time",
    )

    def __init__(
        self,
        index: int,
        pts: float | None,
        wall_time: float,
        image: np.ndarray | None = None,
        truth: list[dict[str, Any]] | None = None,
        decode_s: float | None = None,
        *,
        convert: Callable[[Frame], np.ndarray] | None = None,
        decode_cpu_s: float = 0.0,
    ) -> None:
        if (image is None) == (convert is None):
            raise ValueError("a Frame needs either its image or a convert function, not both")
        self.index = index  # 0-based position in the stream (numbered across reconnects)
        self.pts = pts  # presentation time in seconds (None when the stream has none)
        self.wall_time = wall_time  # capture time: time.time() when the frame left the decoder
        self._image, self._convert, self._truth = image, convert, truth
        self.decode_s = decode_s  # time spent decoding (or rendering) and converting it
        self.decode_cpu_s = decode_cpu_s  # CPU of the threads that did it (FFmpeg's own: not)

    @property
    def converted(self) -> bool:
        """Whether the pixels exist (a frame dropped before anyone looked at it never has)."""
        return self._image is not None

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            assert self._convert is not None
            started, started_cpu = time.perf_counter(), time.thread_time()
            convert, self._convert = self._convert, None
            self._image = convert(self)
            self.decode_s = (self.decode_s or 0.0) + time.perf_counter() - started
            self.decode_cpu_s += time.thread_time() - started_cpu
        return self._image

    @image.setter
    def image(self, value: np.ndarray) -> None:
        self._image, self._convert = value, None

    @property
    def truth(self) -> list[dict[str, Any]] | None:
        """A synthetic frame's ground truth (made with its image)."""
        if self._convert is not None:
            self.image  # noqa: B018 - converting fills it
        return self._truth

    @truth.setter
    def truth(self, value: list[dict[str, Any]] | None) -> None:
        self._truth = value

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, pts={self.pts}, wall_time={self.wall_time})"


@dataclass
class FrameResult:
    """What the inference actor returns for one frame."""

    index: int
    detections: list[Detection]
    infer_ms: float  # model time of the batch the frame was in
    batch_size: int
    batch: int = 0  # sequence number of that batch in the inference engine
    arrived: float | None = None  # wall time the frame reached the inference engine
    queue_ms: float | None = None  # from its arrival to the start of its batch
    # added on the stream's side by its processors (``vsa.analytics``), never by inference:
    events: tuple[Event, ...] = field(default=())  # line crossings, zone entries... (in order)
    scene: SceneView | None = None  # lines, zones and track trails for the overlay


__all__ = ["Frame", "FrameResult"]
