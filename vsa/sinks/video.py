"""Annotated H.264 MP4 writer (PyAV/libx264).

The MP4 is fragmented (``frag_keyframe+empty_moov``, packets flushed as written): a
fragment per keyframe (every 2 s) reaches the disk as it completes, so a process that
dies before ``close()`` leaves a playable file missing at most its last fragment.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TIME_BASE = Fraction(1, 1000)  # pts in milliseconds


class VideoWriter:
    def __init__(
        self, path: str | Path, fps: float | None = None, crf: int = 23, fragmented: bool = True
    ) -> None:
        self.path = Path(path)
        self.fragmented = fragmented
        self.fps = fps if fps and fps > 0 else 25.0
        self.crf = crf
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._last_pts: int | None = None
        self.frames_written = 0

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(
            str(self.path),
            mode="w",
            format="mp4",
            options=(
                {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
                if self.fragmented
                else {}
            ),
        )
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
            "g": str(max(1, round(self.fps * 2))),
        }
        self._stream = stream

    def write(self, image: np.ndarray, pts: float | None = None) -> None:
        """Append one BGR frame; ``pts`` in seconds (made strictly increasing)."""
        h, w = image.shape[:2]
        w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sizes
        if self._container is None:
            self._open(w2, h2)
        if (w2, h2) != (self._stream.width, self._stream.height):
            raise ValueError(
                f"{self.path.name}: frame size changed from {self._stream.width}x{self._stream.height} to {w2}x{h2}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h2, :w2]), format="bgr24")
        step = round(1000 / self.fps)
        ms = (
            round(pts * 1000)
            if pts is not None
            else (self._last_pts + step if self._last_pts is not None else 0)
        )
        if self._last_pts is not None and ms <= self._last_pts:
            ms = self._last_pts + 1
        frame.pts, frame.time_base = ms, TIME_BASE
        self._last_pts = ms
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and write the trailer; the file is closed even if flushing fails."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
