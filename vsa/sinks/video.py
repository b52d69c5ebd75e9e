"""Annotated H.264 MP4 output: the writer (PyAV/libx264) and the video sink that draws on frames.

The MP4 is fragmented with one fragment per frame (``frag_every_frame+empty_moov``,
packets flushed as written) and the encoder runs without lookahead (``tune=zerolatency``),
so every frame reaches the disk as soon as the next one is written: a process that is
killed leaves a playable file missing at most its last frame. (Measured: killed after 13
frames, 12 decode; with a fragment per keyframe and lookahead, none did.) The cost is
~100-200 bytes of fragment headers per frame.

The file is opened by vsa (never through a symlink at its name) and handed to PyAV as an
unbuffered file object, so each packet PyAV flushes is a ``write`` to the OS at once.
Frames of odd width or height are padded to even sizes (yuv420p), repeating the edge.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vsa.config import VideoSinkSpec
from vsa.core.frames import Frame, FrameResult
from vsa.draw import draw_detections
from vsa.sinks import CHECK_INTERVAL_S, _WatchedSink
from vsa.sinks.jsonl import FileId, file_identity, missing_reason, open_nofollow
from vsa.sinktypes import SinkContext

log = logging.getLogger("vsa.sinks")

TIME_BASE = Fraction(1, 1000)  # pts in milliseconds
MAX_GAP_MS = 10_000  # a forward jump longer than this is a discontinuity, not a pause


class VideoWriter:
    def __init__(
        self, path: str | Path, fps: float | None = None, crf: int = 23, fragmented: bool = True
    ) -> None:
        self.path = Path(path)
        self.fragmented = fragmented
        self.fps = fps if fps and fps > 0 else 25.0
        self.crf = crf
        self._container: av.container.OutputContainer | None = None
        self._file: io.FileIO | None = None
        self.identity: FileId | None = None  # of the file, once the first frame opened it
        self._stream = None
        self._last_pts: int | None = None
        self._offset_ms = 0  # added to source pts; moved at each discontinuity
        self.discontinuities = 0
        self.frames_written = 0

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            identity = file_identity(fd)
            file = io.FileIO(fd, "wb")  # unbuffered: what PyAV flushes is on disk
        except BaseException:
            os.close(fd)
            raise
        try:
            self._container = av.open(
                file,
                mode="w",
                format="mp4",
                options=(
                    {
                        "movflags": "frag_every_frame+empty_moov+default_base_moof",
                        "flush_packets": "1",
                    }
                    if self.fragmented
                    else {}
                ),
            )
        except BaseException:
            file.close()
            raise
        self._file, self.identity = file, identity
        stream = self._container.add_stream(
            "libx264", rate=Fraction(self.fps).limit_denominator(1001)
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        # The encoder must count in ms too, or close timestamps collapse onto one 1/fps tick.
        stream.codec_context.time_base = TIME_BASE
        stream.options = {
            "crf": str(self.crf),
            "preset": "veryfast",
            "tune": "zerolatency",  # no lookahead: a frame is written when it is encoded
            "g": str(max(1, round(self.fps * 2))),
        }
        self._stream = stream

    def write(self, image: np.ndarray, pts: float | None = None) -> None:
        """Append one BGR frame; ``pts`` in seconds.

        Source timestamps are kept while they move forward by less than ``MAX_GAP_MS``.
        When they jump backwards (a reconnect restarts them, a camera clock is reset) or
        far forwards, the video continues one frame step after the last frame instead:
        the file stays playable and its length matches what was recorded.
        """
        h, w = image.shape[:2]
        w2, h2 = w + w % 2, h + h % 2  # yuv420p needs even sizes: pad, never crop to 0
        if self._container is None:
            self._open(w2, h2)
        if (w2, h2) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"{self.path.name}: frame size changed from {self._stream.width}x{self._stream.height} to {w2}x{h2}"
            )
        if (w2, h2) != (w, h):  # repeat the last column/row
            image = np.pad(image, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        step = max(1, round(1000 / self.fps))
        last = self._last_pts
        if pts is None:
            ms = 0 if last is None else last + step
        else:
            ms = round(pts * 1000) + self._offset_ms
            if last is not None and not (last < ms <= last + MAX_GAP_MS):
                self._offset_ms += last + step - ms
                ms = last + step
                self.discontinuities += 1
        frame.pts, frame.time_base = ms, TIME_BASE
        self._last_pts = ms
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def missing(self) -> str | None:
        """Why the file written is no longer at ``path`` (deleted, replaced), or None.

        None before the first frame (no file yet). One ``stat``; still answers after close.
        """
        if self.identity is None:
            return None
        return missing_reason(self.path, self.identity)

    @property
    def closed(self) -> bool:
        """No segment is open (never opened, or closed)."""
        return self._container is None

    def close(self) -> None:
        """Flush the encoder and write the trailer; the file is closed even if flushing fails."""
        if self._container is None:
            return
        container, self._container = self._container, None
        file, self._file = self._file, None
        try:
            try:
                for packet in self._stream.encode(None):
                    container.mux(packet)
            finally:
                container.close()
        finally:
            if file is not None:
                file.close()  # PyAV does not close a file object it was given


class VideoSink(_WatchedSink):
    """Annotated MP4. A resolution change starts a new segment: ``cam1.mp4``, ``cam1.part2.mp4``, ...

    ``draw_in_place``: draw the overlays into ``frame.image`` itself instead of a copy of it
    (a read-only image is still copied). Only for the last sink that reads a frame's pixels:
    after this sink wrote it, the frame shows the overlays. ``open_sinks`` decides.
    """

    def __init__(
        self,
        spec: VideoSinkSpec,
        path: Path,
        fps: float | None,
        resume: bool = False,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_interval_s: float = CHECK_INTERVAL_S,
        draw_in_place: bool = False,
    ) -> None:
        super().__init__(clock, check_interval_s)
        self.spec, self.path, self.fps = spec, path, fps
        self.draw_in_place = draw_in_place
        self.segments: list[Path] = []  # earlier segments kept on resume, then this run's
        n = 1
        while resume and self._part(n).exists():  # a restarted source: go on in a new segment
            self.segments.append(self._part(n))
            n += 1
        self.writer: VideoWriter = VideoWriter(self._part(n), fps=fps, crf=spec.crf)
        self.segments.append(self._part(n))
        self._size: tuple[int, int] | None = None

    def _part(self, n: int) -> Path:
        """Segment ``n``: ``cam1.mp4`` for 1, ``cam1.part<n>.mp4`` after it."""
        if n == 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}.part{n}{self.path.suffix}")

    def _in_file(self) -> int:
        # Only the current segment is watched: earlier ones are closed and complete, and
        # their frames are not counted as lost even when the whole directory went.
        return self.writer.frames_written

    def write(self, frame: Frame, result: FrameResult) -> None:
        self._check()
        size = frame.image.shape[1], frame.image.shape[0]
        if self._size is not None and size != self._size:
            self._close_writer()  # the finished segment is checked once more as it ends
            path = self._part(len(self.segments) + 1)
            log.info(
                "%s: frame size changed from %dx%d to %dx%d; continuing in %s",
                self.path.name,
                *self._size,
                *size,
                path.name,
            )
            self.writer = VideoWriter(path, fps=self.fps, crf=self.spec.crf)
            self.segments.append(path)
        self._size = size
        # drawn on the frame as decoded; the writer pads odd sizes afterwards
        annotated = draw_detections(
            frame.image,
            result.detections,
            draw_masks=self.spec.draw_masks,
            in_place=self.draw_in_place,
            scene=result.scene,
        )
        self.writer.write(annotated, frame.pts)
        self.frames_written += 1


def open_video(spec: VideoSinkSpec, context: SinkContext) -> VideoSink:
    """The ``video`` sink type's factory (``vsa.sinktypes``)."""
    path = context.output_dir / f"{context.source_id}.mp4"
    return VideoSink(spec, path, context.fps, context.resume, draw_in_place=context.draw_in_place)
