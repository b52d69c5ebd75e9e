"""Sinks: where a stream's results go. Each gets the frame and its detections in order."""

from __future__ import annotations

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
    def __init__(self, spec: VideoSinkSpec, path: Path, fps: float | None) -> None:
        self.spec = spec
        self.writer = VideoWriter(path, fps=fps, crf=spec.crf)

    def write(self, frame: Frame, result: FrameResult) -> None:
        annotated = draw_detections(frame.image, result.detections, draw_masks=self.spec.draw_masks)
        self.writer.write(annotated, frame.pts)

    def close(self) -> None:
        self.writer.close()


class JsonlSink:
    def __init__(self, run_id: str, source_id: str, path: Path) -> None:
        self.run_id, self.source_id = run_id, source_id
        self.writer = JsonlWriter(path)

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
) -> list[Sink]:
    out = Path(output_dir)
    sinks: list[Sink] = []
    for spec in specs:
        if isinstance(spec, VideoSinkSpec):
            sinks.append(VideoSink(spec, out / f"{source_id}.mp4", fps))
        elif isinstance(spec, JsonlSinkSpec):
            sinks.append(JsonlSink(run_id, source_id, out / f"{source_id}.jsonl"))
    return sinks


__all__ = ["FrameResult", "Sink", "frame_record", "open_sinks"]
