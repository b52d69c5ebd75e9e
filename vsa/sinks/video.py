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

With ``segment_s`` the video sink records in segments, each such a file of its own, named by
its UTC start and deleted by ``retention`` (:class:`VideoSink`, docs/recordings.md).
"""

from __future__ import annotations

import calendar
import io
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vsa.config import VideoSinkSpec, video_folder
from vsa.core.frames import Frame, FrameResult
from vsa.draw import BLACK, FONT, WHITE, draw_detections
from vsa.sinks import CHECK_INTERVAL_S, _WatchedSink
from vsa.sinks.jsonl import FileId, file_identity, missing_reason, open_nofollow
from vsa.sinktypes import SinkContext

log = logging.getLogger("vsa.sinks")

TIME_BASE = Fraction(1, 1000)  # pts in milliseconds
MAX_GAP_MS = 10_000  # a forward jump longer than this is a discontinuity, not a pause


class Timeline:
    """Source timestamps (seconds) made into strictly increasing milliseconds.

    Source timestamps are kept while they move forward by less than ``MAX_GAP_MS``. When they
    jump backwards (a reconnect restarts them, a camera clock is reset) or far forwards, the
    timeline continues one frame step (``1000 / fps`` ms) after the last frame instead; a frame
    without a timestamp is one step after the last too.
    """

    def __init__(self, fps: float) -> None:
        self.step = max(1, round(1000 / fps))
        self.last: int | None = None
        self._offset_ms = 0  # added to source pts; moved at each discontinuity
        self.discontinuities = 0

    def ms(self, pts: float | None) -> int:
        """The next frame's place on the timeline, in ms."""
        last, step = self.last, self.step
        if pts is None:
            ms = 0 if last is None else last + step
        else:
            ms = round(pts * 1000) + self._offset_ms
            if last is not None and not (last < ms <= last + MAX_GAP_MS):
                self._offset_ms += last + step - ms
                ms = last + step
                self.discontinuities += 1
        self.last = ms
        return ms


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
        self._timeline = Timeline(self.fps)
        self.frames_written = 0

    @property
    def discontinuities(self) -> int:
        """Jumps of the source's timestamps the file steps over (see :meth:`write`)."""
        return self._timeline.discontinuities

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
        frame.pts, frame.time_base = self._timeline.ms(pts), TIME_BASE
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


STAMP = "%Y%m%dT%H%M%SZ"  # a segment's UTC start in its name: sorts as it is dated
INFO_WINDOW_MS = 2000  # the info line's frame rate: of the frames recorded in this window


def segment_name(source_id: str, start: float) -> str:
    """``cam1_20261207T014800Z.mp4``: the segment of ``source_id`` that started at ``start``
    (epoch seconds, UTC, to the second)."""
    return f"{source_id}_{time.strftime(STAMP, time.gmtime(start))}.mp4"


def segment_start(path: Path) -> int | None:
    """A segment's UTC start (epoch seconds) from its name; None if it holds no valid time."""
    try:
        return calendar.timegm(time.strptime(path.stem.rpartition("_")[2], STAMP))
    except ValueError:
        return None


def segment_pattern(source_id: str) -> re.Pattern[str]:
    """The names of ``source_id``'s segments (in its folder)."""
    return re.compile(rf"^{re.escape(source_id)}_\d{{8}}T\d{{6}}Z\.mp4$")


class VideoSink(_WatchedSink):
    """Annotated MP4. A resolution change starts a new segment: ``cam1.mp4``, ``cam1.part2.mp4``, ...

    With ``spec.segment_s``, a recording in segments instead (docs/recordings.md):
    ``<output_dir>/cam1/video/cam1_<UTC start>.mp4``. A segment is cut at the first frame
    ``segment_s`` or more after the segment's first frame on the stream's timeline (its
    timestamps, made continuous as :class:`Timeline` does), and at a resolution change; each
    segment is an MP4 of its own from its own encoder, so it starts with a keyframe and at
    timestamp 0. It is named by its first frame's capture time (``frame.wall_time``), a second
    later than the segment before it at least, so names sort and never meet. After each cut,
    and at close, ``spec.retention`` deletes the oldest closed segments (by their names' times
    against ``wall_clock``, and by size); never the open one, nor the newest. Only the open
    segment is watched (a deleted one raises ``OutputLost`` with its frames).

    ``spec.fps`` records at most that many frames a second: a frame is kept when its place on
    the timeline reaches the next slot of ``1000 / fps`` ms; the others are skipped by design
    (``frames_skipped``), not lost. ``spec.scale`` resizes after the overlays are drawn;
    ``spec.info`` writes its line after that (so it is readable at the recording's size);
    ``spec.draw == "none"`` draws no overlays.

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
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock, check_interval_s)
        self.spec, self.path, self.fps = spec, path, fps
        self.draw_in_place = draw_in_place
        self.source_id = path.stem
        self._wall_clock = wall_clock
        # the recording's rate: the source's, capped by spec.fps
        self.record_fps = min(spec.fps, fps) if spec.fps and fps and fps > 0 else spec.fps or fps
        self.frames_skipped = 0  # over spec.fps: not recorded by design, not lost
        self.segments_deleted = 0  # by retention
        self.segments: list[Path] = []  # earlier segments kept on resume, then this run's
        self._size: tuple[int, int] | None = None
        # the stream's timeline (ms), for segment boundaries, the fps cap and the info line
        needs_timeline = spec.segment_s is not None or spec.fps is not None or spec.info
        self._timeline = Timeline(fps if fps and fps > 0 else 25.0) if needs_timeline else None
        self._slot_ms = 1000 / spec.fps if spec.fps else None
        self._first_ms: int | None = None
        self._last_slot: int | None = None
        self._recent: deque[int] = deque()  # timeline ms of the frames recorded lately (info)
        if spec.segment_s is None:
            n = 1
            while resume and self._part(n).exists():  # a restarted source: go on in a new segment
                self.segments.append(self._part(n))
                n += 1
            self.writer: VideoWriter = VideoWriter(self._part(n), fps=self.record_fps, crf=spec.crf)
            self.segments.append(self._part(n))
            return
        self.folder = path.parent / video_folder(self.source_id)
        self._segment_ms = round(spec.segment_s * 1000)
        self._segment_first_ms: int | None = None  # timeline ms of the open segment's 1st frame
        earlier = self._on_disk()
        # never a name at or before one on disk (a restart within the same second)
        self._last_start = segment_start(earlier[-1]) if earlier else None
        if resume:  # a restarted source: its segments stay, it goes on in a new one
            self.segments += earlier
        # no segment before the first frame: it names the first one
        self.writer = VideoWriter(self.folder / f"{self.source_id}_.mp4", crf=spec.crf)

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
        ms = None if self._timeline is None else self._timeline.ms(frame.pts)
        if ms is not None and not self._keep(ms):
            self.frames_skipped += 1
            return
        size = frame.image.shape[1], frame.image.shape[0]
        resized = self._size is not None and size != self._size
        if self.spec.segment_s is not None:
            assert ms is not None
            first = self._segment_first_ms
            if first is None or resized or ms - first >= self._segment_ms:
                self._cut(frame.wall_time, ms, size if resized else None)
            pts: float | None = (ms - self._segment_first_ms) / 1000
        else:
            if resized:
                self._close_writer()  # the finished segment is checked once more as it ends
                path = self._part(len(self.segments) + 1)
                log.info(
                    "%s: frame size changed from %dx%d to %dx%d; continuing in %s",
                    self.path.name,
                    *self._size,
                    *size,
                    path.name,
                )
                self.writer = VideoWriter(path, fps=self.record_fps, crf=self.spec.crf)
                self.segments.append(path)
            pts = frame.pts
        self._size = size
        self.writer.write(self._picture(frame, result, ms), pts)
        self.frames_written += 1

    def _keep(self, ms: int) -> bool:
        """Whether the frame at ``ms`` is recorded under ``spec.fps`` (always without it):
        the first frame in each slot of ``1000 / fps`` ms from the first frame. A frame up to
        1 ms early counts as on time (timestamps are rounded to ms)."""
        if self._first_ms is None:
            self._first_ms = ms
        if self._slot_ms is None:
            return True
        slot = math.floor((ms - self._first_ms + 1) / self._slot_ms)
        if self._last_slot is not None and slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True

    def _cut(self, wall_time: float, ms: int, size: tuple[int, int] | None) -> None:
        """Close the open segment (if any) and start the next at the frame at ``ms``."""
        closed = not self.writer.closed
        if closed:
            self._close_writer()  # the finished segment is checked once more as it ends
        start = math.floor(wall_time)
        if self._last_start is not None and start <= self._last_start:
            start = self._last_start + 1  # names sort, and never meet
        path = self.folder / segment_name(self.source_id, start)
        if size is not None:
            log.info(
                "%s: frame size changed from %dx%d to %dx%d; continuing in %s",
                self.source_id,
                *self._size,
                *size,
                path.name,
            )
        self.writer = VideoWriter(path, fps=self.record_fps, crf=self.spec.crf)
        self.segments.append(path)
        self._segment_first_ms, self._last_start = ms, start
        if closed:
            self._retain()

    def _picture(self, frame: Frame, result: FrameResult, ms: int | None) -> np.ndarray:
        """The frame as recorded: overlays (``draw``), ``scale``, then the ``info`` line."""
        image = frame.image
        if self.spec.draw == "overlay":
            # drawn on the frame as decoded; the writer pads odd sizes afterwards
            image = draw_detections(
                image,
                result.detections,
                draw_masks=self.spec.draw_masks,
                in_place=self.draw_in_place,
                scene=result.scene,
            )
        if self.spec.scale < 1:
            h, w = image.shape[:2]
            size = max(1, round(w * self.spec.scale)), max(1, round(h * self.spec.scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if self.spec.info:
            ours = image is not frame.image or (self.draw_in_place and image.flags.writeable)
            if not ours:
                image = image.copy()
            assert ms is not None
            self._draw_info(image, frame.wall_time, ms)
        return image

    def _draw_info(self, image: np.ndarray, wall_time: float, ms: int) -> None:
        """``cam1  2026-12-07 01:48:00Z  25.0 fps`` in the top left corner, on black."""
        recent = self._recent
        recent.append(ms)
        while recent[0] < ms - INFO_WINDOW_MS:
            recent.popleft()
        span = recent[-1] - recent[0]
        rate = f"{(len(recent) - 1) * 1000 / span:.1f} fps" if span > 0 else "- fps"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall_time))
        text = f"{self.source_id}  {stamp}Z  {rate}"
        h, w = image.shape[:2]
        scale = max(0.3, min(h, w) / 900)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        cv2.rectangle(image, (0, 0), (min(w, tw + 4), min(h, th + base + 4)), BLACK, -1)
        cv2.putText(image, text, (2, th + 2), FONT, scale, WHITE, 1, cv2.LINE_AA)

    def _on_disk(self) -> list[Path]:
        """The stream's segments in its folder, oldest first."""
        pattern = segment_pattern(self.source_id)
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        found = [self.folder / n for n in sorted(names) if pattern.match(n)]
        return [p for p in found if segment_start(p) is not None]  # not a 20261399T... impostor

    def _retain(self) -> None:
        """Delete the oldest closed segments until the stream's are within ``spec.retention``:
        those that started more than ``max_age_h`` before ``wall_clock``, then the oldest
        while the stream's segments hold more than ``max_bytes`` in all. Never the current
        segment (the open one; at close, the newest). A segment that cannot be deleted is
        logged and kept."""
        rules = self.spec.retention
        if rules is None:
            return
        current = self.writer.path
        segments = self._on_disk()
        closed = [p for p in segments if p != current]  # oldest first
        doomed: list[Path] = []
        if rules.max_age_h is not None:
            oldest = self._wall_clock() - rules.max_age_h * 3600
            while closed and (segment_start(closed[0]) or 0) < oldest:
                doomed.append(closed.pop(0))
        if rules.max_bytes is not None:
            sizes = {p: _size(p) for p in segments if p not in doomed}
            total = sum(sizes.values())
            while closed and total > rules.max_bytes:
                p = closed.pop(0)
                total -= sizes[p]
                doomed.append(p)
        for p in doomed:
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("%s: retention cannot delete %s: %s", self.source_id, p, exc)
                continue
            self.segments_deleted += 1
            if p in self.segments:
                self.segments.remove(p)
            log.info("%s: retention deleted %s", self.source_id, p.name)

    def counts(self) -> dict[str, int]:
        """For the status's ``sinks.video``: frames its own ``fps`` skipped (not losses),
        segments retention deleted (the status shows them when there are any)."""
        out = {}
        if self.frames_skipped:
            out["frames_skipped"] = self.frames_skipped
        if self.segments_deleted:
            out["segments_deleted"] = self.segments_deleted
        return out

    def close(self) -> None:
        super().close()
        if self.spec.segment_s is not None and self._lost is None and self.frames_written:
            self._retain()  # the last segment closed: it is the newest, kept


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


def open_video(spec: VideoSinkSpec, context: SinkContext) -> VideoSink:
    """The ``video`` sink type's factory (``vsa.sinktypes``)."""
    path = context.output_dir / f"{context.source_id}.mp4"
    return VideoSink(spec, path, context.fps, context.resume, draw_in_place=context.draw_in_place)
