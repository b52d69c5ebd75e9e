"""A stream's live view: an annotated JPEG made only while someone watches.

``Preview`` is shared by the stream's sink thread (``PreviewSink``, the first of its sinks, so
it sees the frame as decoded) and whoever serves the live page (``latest``, through the
source actor). A viewer's request marks the stream as watched for ``WATCH_S``; while it is
watched, the sink thread encodes the annotated frame at most ``fps`` times a second. Unwatched,
a frame costs one clock reading: an engine nobody looks at pays nothing for its live page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vsa.core.frames import Frame, FrameResult

WATCH_S = 3.0  # a stream stays watched this long after the last request
PREVIEW_FPS = 5.0
PREVIEW_WIDTH = 640  # larger frames are scaled down to this width for the page


@dataclass(frozen=True)
class Picture:
    jpeg: bytes
    frame: int
    time: float  # the frame's capture time


class Preview:
    def __init__(
        self,
        fps: float = PREVIEW_FPS,
        width: int = PREVIEW_WIDTH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.period = 1.0 / fps
        self.width = width
        self._clock = clock
        self._lock = threading.Lock()
        self._watched_until = 0.0
        self._made_at = float("-inf")
        self._latest: Picture | None = None
        self.made = 0  # pictures encoded (for tests and the benchmark)

    def watch(self) -> Picture | None:
        """A viewer asks: the stream is watched for ``WATCH_S`` more; the newest picture (None
        until the sink thread made one)."""
        with self._lock:
            self._watched_until = self._clock() + WATCH_S
            return self._latest

    def due(self) -> bool:
        """Whether the sink thread should make a picture of this frame."""
        now = self._clock()
        return now < self._watched_until and now - self._made_at >= self.period

    def make(self, frame: Frame, result: FrameResult) -> None:
        import cv2

        from vsa.draw import draw_detections

        self._made_at = self._clock()
        picture = draw_detections(frame.image, result.detections, scene=result.scene)
        h, w = picture.shape[:2]
        if w > self.width:
            picture = cv2.resize(
                picture, (self.width, round(h * self.width / w)), interpolation=cv2.INTER_AREA
            )
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if ok:
            with self._lock:
                self._latest = Picture(jpeg.tobytes(), frame.index, frame.wall_time)
                self.made += 1


class PreviewSink:
    """The stream's first sink (internal, never in the run file): hands frames to its
    ``Preview`` while watched. A failure is logged by ``Outputs`` as a best-effort loss."""

    sink_name = None  # not one of the run's sinks: no entry in the status
    policy = "best_effort"

    def __init__(self, preview: Preview) -> None:
        self.preview = preview

    def write(self, frame: Frame, result: FrameResult) -> None:
        if self.preview.due():
            self.preview.make(frame, result)

    def close(self) -> None:
        pass


__all__ = ["PREVIEW_FPS", "WATCH_S", "Picture", "Preview", "PreviewSink"]
