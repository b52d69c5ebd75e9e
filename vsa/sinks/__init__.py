"""Sinks: where a stream's results go. Each gets the frame and its detections in order.

Outputs are never written through a symlink planted under their name (``PermissionError``).
A sink notices when its file is deleted or replaced while it writes (the output directory
removed mid-run) and raises :class:`OutputLost` with the number of frames that went with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vsa.config import JsonlSinkSpec, SinkSpec
from vsa.constants import CHECK_INTERVAL_S
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import EVENTS_SCHEMA_VERSION
from vsa.sinks.jsonl import VERSION_KEY, JsonlWriter
from vsa.sinktypes import SinkContext, sink_type

if TYPE_CHECKING:
    from vsa.sinks.video import VideoSink

log = logging.getLogger("vsa.sinks")


class OutputLost(Exception):
    """The file at ``path`` was deleted or replaced while a sink wrote it (``reason``).

    ``frames_lost``: frames this sink wrote into that file; no file holds them any more.
    Raised once with the count; the sink is then finished: a later ``write`` raises again
    with ``frames_lost`` 0, and ``close`` only releases the file.
    """

    def __init__(self, path: str | Path, reason: str, frames_lost: int) -> None:
        self.path = Path(path)
        self.reason = reason
        self.frames_lost = frames_lost
        super().__init__(f"{reason}; {frames_lost} frames lost")

    def __reduce__(self):  # survive pickling through Ray with its fields intact
        return (type(self), (self.path, self.reason, self.frames_lost))


class Sink(Protocol):
    def write(self, frame: Frame, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class _Writer(Protocol):
    path: Path

    def missing(self) -> str | None: ...

    def close(self) -> None: ...


class _WatchedSink:
    """Checks that the file being written is still the one at its path: before a write at
    most every ``check_interval_s`` of ``clock``, at close, and on demand (:meth:`lost`)."""

    writer: _Writer

    def __init__(self, clock: Callable[[], float], check_interval_s: float) -> None:
        self._clock = clock
        self._interval = check_interval_s
        self._last_check = clock()
        self._lost: OutputLost | None = None  # once found
        self.frames_written = 0  # by this sink, into every file it opened
        self.frames_lost = 0  # of those, the frames whose file vanished

    def _in_file(self) -> int:
        """Frames this sink wrote into the current file."""
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why the current file is no longer at its path (deleted, replaced), or None.

        Only looks (one ``stat``): nothing is marked or closed.
        """
        return self.writer.missing()

    def lost(self) -> OutputLost | None:
        """Check now, whatever the interval: the loss of the current file, or None.

        A loss found here counts as reported (as if raised): the file is released, a later
        ``write`` raises with ``frames_lost`` 0 and ``close`` is quiet. Once lost, every call
        returns the same :class:`OutputLost`, with the frames that were lost.
        """
        if self._lost is None:
            reason = self.writer.missing()
            if reason is not None:
                self._mark_lost(reason)
        return self._lost

    def _check(self) -> None:
        """Before a write: raise :class:`OutputLost` when the file vanished (checked if due)."""
        if self._lost is not None:
            raise OutputLost(self._lost.path, self._lost.reason, 0)
        now = self._clock()
        if now - self._last_check < self._interval:
            return
        self._last_check = now
        reason = self.writer.missing()
        if reason is not None:
            raise self._mark_lost(reason)

    def _close_writer(self) -> None:
        """Close the current file, checking it one last time (unless already reported)."""
        if self._lost is None:
            reason = self.writer.missing()
            if reason is not None:
                raise self._mark_lost(reason)
        self.writer.close()

    def _mark_lost(self, reason: str) -> OutputLost:
        lost = self._in_file()
        self.frames_lost += lost
        self._lost = OutputLost(self.writer.path, reason, lost)
        try:
            self.writer.close()  # release the unlinked file
        except Exception as exc:  # noqa: BLE001 - the loss is what gets reported
            log.warning("%s: closing the lost file failed: %s", self.writer.path, exc)
        log.error("%s; %d frames written to it are lost", reason, lost)
        return self._lost

    def close(self) -> None:
        self._close_writer()


class JsonlSink(_WatchedSink):
    def __init__(
        self,
        run_id: str,
        source_id: str,
        path: Path,
        resume: bool = False,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_interval_s: float = CHECK_INTERVAL_S,
        rotate_bytes: int | None = None,
    ) -> None:
        super().__init__(clock, check_interval_s)
        self.run_id, self.source_id, self.path = run_id, source_id, Path(path)
        self.writer: JsonlWriter = JsonlWriter(path, append=resume, rotate_bytes=rotate_bytes)

    def _in_file(self) -> int:
        # this sink's lines in the current file only: an earlier incarnation's (on resume) and
        # those of rotated files are not in it
        return self.writer.lines_in_file

    def write(self, frame: Frame, result: FrameResult) -> None:
        self._check()
        self.writer.write(frame_record(self.run_id, self.source_id, frame, result))
        self.frames_written += 1


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
        # where the latency went (wall ms): decoding and converting the frame; from leaving the
        # decoder to reaching the inference engine (waiting for a slot, the object store, the
        # call); waiting there for its batch. The rest of latency_ms is infer_ms, the way back
        # and the sinks written before this line.
        "decode_ms": None if frame.decode_s is None else round(frame.decode_s * 1000, 2),
        "to_engine_ms": (
            None if result.arrived is None else round((result.arrived - frame.wall_time) * 1000, 2)
        ),
        "queue_ms": None if result.queue_ms is None else round(result.queue_ms, 2),
        "batch_size": result.batch_size,
        "batch": result.batch,
        "width": w,
        "height": h,
        "detections": [d.to_json(h, w) for d in result.detections],
    }


class EventsSink:
    """A stream's analytics events (``result.events``: line crossings, zone entries...), one
    line each in ``<id>.events.jsonl`` (schema: docs/analytics.md), appended on resume."""

    def __init__(
        self,
        run_id: str,
        source_id: str,
        path: Path,
        resume: bool = False,
        rotate_bytes: int | None = None,
    ) -> None:
        self.run_id, self.source_id = run_id, source_id
        self.writer = JsonlWriter(path, append=resume, rotate_bytes=rotate_bytes)

    def write(self, frame: Frame, result: FrameResult) -> None:
        for event in result.events:
            self.writer.write(
                {VERSION_KEY: EVENTS_SCHEMA_VERSION, **event.to_json(self.run_id, self.source_id)}
            )

    def close(self) -> None:
        self.writer.close()


class TruthSink:
    """A synthetic source's ground truth (``synthetic://...&truth=1``) for each frame written:
    ``<id>.truth.jsonl``, one line per frame with each visible object's identity and box."""

    def __init__(self, run_id: str, source_id: str, path: Path, resume: bool = False) -> None:
        self.run_id, self.source_id = run_id, source_id
        self.writer = JsonlWriter(path, append=resume)

    def write(self, frame: Frame, result: FrameResult) -> None:
        truth = frame.truth
        if truth is None:
            return
        self.writer.write(
            {
                VERSION_KEY: 1,
                "run": self.run_id,
                "source": self.source_id,
                "frame": frame.index,
                "pts": None if frame.pts is None else round(frame.pts, 6),
                "objects": [
                    {
                        "id": t.get("id"),
                        "class": t["label"],
                        "box": [round(v, 2) for v in t["box"]],
                        "visible": t.get("visible"),
                    }
                    for t in truth
                ],
            }
        )

    def close(self) -> None:
        self.writer.close()


class _Unopened:
    """A best-effort sink that could not open: each frame is its ``sink_error`` loss."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def write(self, frame: Frame, result: FrameResult) -> None:
        raise OSError(self.reason)

    def close(self) -> None:
        pass


def open_jsonl(spec: JsonlSinkSpec, context: SinkContext) -> JsonlSink:
    """The ``jsonl`` sink type's factory (``vsa.sinktypes``)."""
    path = context.output_dir / f"{context.source_id}.jsonl"
    return JsonlSink(
        context.run_id, context.source_id, path, context.resume, rotate_bytes=spec.rotate_size
    )


def open_sinks(
    specs: Sequence[SinkSpec],
    output_dir: str | Path,
    run_id: str,
    source_id: str,
    fps: float | None,
    resume: bool = False,
    *,
    events: bool = False,
    truth: bool = False,
) -> list[Sink]:
    """The stream's sinks, through the sink registry (``vsa.sinktypes``); ``resume``
    continues the files of an earlier incarnation. Each sink gets ``sink_name`` (its type) and
    ``policy`` (``required`` or ``best_effort``: ``vsa.stream.outputs.Outputs`` applies it).

    The caller writes each frame to the sinks in this order. The frame's pixels are theirs:
    the last sink that draws overlays (a video sink) draws them into ``frame.image`` itself,
    not into a copy (a drawing sink before it draws on a copy), unless a sink after it reads
    the pixels (a snapshot sink: then every sink draws on a copy); so after the sinks the
    image may hold the overlays.
    """
    out = Path(output_dir)
    sinks: list[Sink] = []
    types = [sink_type(spec.type) for spec in specs]
    last_drawing = max((i for i, t in enumerate(types) if t.draws), default=-1)
    if any(t.reads_pixels for t in types[last_drawing + 1 :]):
        last_drawing = -1  # a sink after it reads the pixels as decoded: everyone draws on copies
    for i, (spec, kind) in enumerate(zip(specs, types, strict=True)):
        context = SinkContext(out, run_id, source_id, fps, resume, draw_in_place=i == last_drawing)
        try:
            sink = kind.open(spec, context)
        except Exception as exc:
            if spec.policy != "best_effort":
                raise  # the stream's record cannot be written: SINK_ERROR
            # a best-effort sink that cannot open loses every frame, the stream goes on
            log.error(
                "%s: the %s sink cannot open (%s): its frames are lost", source_id, kind.name, exc
            )
            sink = _Unopened(f"the {kind.name} sink could not open: {exc}")
        sink.sink_name, sink.policy = kind.name, spec.policy
        sinks.append(sink)
    if events:  # the source's lines and zones: written whatever the sinks
        rotate = next((s.rotate_size for s in specs if s.type == "jsonl"), None)
        path = out / f"{source_id}.events.jsonl"
        sinks.append(EventsSink(run_id, source_id, path, resume, rotate_bytes=rotate))
    if truth:
        sinks.append(TruthSink(run_id, source_id, out / f"{source_id}.truth.jsonl", resume))
    return sinks


def output_paths(specs: Sequence[SinkSpec], output_dir: str | Path, source_id: str) -> list[Path]:
    """The first file of each of a stream's sinks (their types name them): a resumed stream
    that wrote frames finds each of them there (later segments come after the first)."""
    out = Path(output_dir)
    return [out / n for spec in specs for n in sink_type(spec.type).files(spec, source_id)]


def __getattr__(name: str) -> Any:
    # ``VideoSink`` lives in vsa.sinks.video (PyAV, OpenCV), imported only when asked for so
    # that this package, and the JSONL sink, import without them.
    if name == "VideoSink":
        from vsa.sinks.video import VideoSink

        return VideoSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHECK_INTERVAL_S",
    "EventsSink",
    "FrameResult",
    "JsonlSink",
    "OutputLost",
    "Sink",
    "TruthSink",
    "VideoSink",
    "frame_record",
    "open_jsonl",
    "open_sinks",
    "output_paths",
]
