"""Sinks: where a stream's results go. Each gets the frame and its detections in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vsa.config import JsonlSinkSpec, SinkSpec, VideoSinkSpec
from vsa.draw import draw_detections
from vsa.models.base import Detection
from vsa.sinks.jsonl import JsonlWriter
from vsa.sinks.video import VideoWriter
from vsa.sources.base import Frame

log = logging.getLogger("vsa.sinks")


@dataclass
class FrameResult:
    """What the inference actor returns for one frame."""

    index: int
    detections: list[Detection]
    infer_ms: float  # model time of the batch the frame was in
    batch_size: int
    batch: int = 0  # sequence number of that batch in the inference engine


class Sink(Protocol):
    def write(self, frame: Frame, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class VideoSink:
    """Annotated MP4. A resolution change starts a new segment: ``cam1.mp4``, ``cam1.part2.mp4``, ..."""

    def __init__(
        self, spec: VideoSinkSpec, path: Path, fps: float | None, resume: bool = False
    ) -> None:
        self.spec, self.path, self.fps = spec, path, fps
        self.segments: list[Path] = []  # earlier segments kept on resume, then this run's
        n = 1
        while resume and self._part(n).exists():  # a restarted source: go on in a new segment
            self.segments.append(self._part(n))
            n += 1
        self.writer = VideoWriter(self._part(n), fps=fps, crf=spec.crf)
        self.segments.append(self._part(n))
        self._size: tuple[int, int] | None = None

    def _part(self, n: int) -> Path:
        """Segment ``n``: ``cam1.mp4`` for 1, ``cam1.part<n>.mp4`` after it."""
        if n == 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}.part{n}{self.path.suffix}")

    def write(self, frame: Frame, result: FrameResult) -> None:
        size = frame.image.shape[1], frame.image.shape[0]
        if self._size is not None and size != self._size:
            self.writer.close()
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
        annotated = draw_detections(frame.image, result.detections, draw_masks=self.spec.draw_masks)
        self.writer.write(annotated, frame.pts)

    def close(self) -> None:
        self.writer.close()


class JsonlSink:
    def __init__(self, run_id: str, source_id: str, path: Path, resume: bool = False) -> None:
        self.run_id, self.source_id = run_id, source_id
        self.writer = JsonlWriter(path, append=resume)

    def write(self, frame: Frame, result: FrameResult) -> None:
        self.writer.write(frame_record(self.run_id, self.source_id, frame, result))

    def close(self) -> None:
        self.writer.close()


def frame_record(run_id: str, source_id: str, frame: Frame, result: FrameResult) -> dict[str, Any]:
    """One JSONL line: which frame, when, how long inference took, and the detections."""
    h, w = frame.image.shape[:2]
    return {
        "run": run_id,
        "source": source_id,
        "frame": frame.index,
        "pts": None if frame.pts is None else round(frame.pts, 6),
        "capture_time": round(frame.wall_time, 6),
        "latency_ms": round((time.time() - frame.wall_time) * 1000, 1),  # capture to result
        "infer_ms": round(result.infer_ms, 3),
        "batch_size": result.batch_size,
        "batch": result.batch,
        "width": w,
        "height": h,
        "detections": [d.to_json(h, w) for d in result.detections],
    }


def open_sinks(
    specs: Sequence[SinkSpec],
    output_dir: str | Path,
    run_id: str,
    source_id: str,
    fps: float | None,
    resume: bool = False,
) -> list[Sink]:
    """The stream's sinks; ``resume`` continues the files of an earlier incarnation."""
    out = Path(output_dir)
    sinks: list[Sink] = []
    for spec in specs:
        if isinstance(spec, VideoSinkSpec):
            sinks.append(VideoSink(spec, out / f"{source_id}.mp4", fps, resume))
        elif isinstance(spec, JsonlSinkSpec):
            sinks.append(JsonlSink(run_id, source_id, out / f"{source_id}.jsonl", resume))
    return sinks


__all__ = ["FrameResult", "Sink", "frame_record", "open_sinks"]
