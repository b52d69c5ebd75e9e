"""The stream's multi-object tracker: ByteTrack from the ``trackers`` library (Roboflow,
Apache-2.0; chosen by measurement: docs/tracker-choice.md), as a stream processor.

- **Ids are the engine's, not the library's.** A track gets the stream's next id (1, 2, ...)
  when the library confirms it, so ids never repeat within a run: a restarted or resumed
  stream restores the high-water mark (``state``/``restore``, found in its files by
  ``vsa.analytics.resume``) and goes on above it.
- **Time, not calls.** Each frame is given to the library with its timestamp (its pts, or
  index / fps without one), so the Kalman prediction covers frames a realtime stream dropped
  or a decimated one never decoded, and a track is lost after ``lost_s`` of stream time, not
  after a number of calls.
- **Reconnects end tracks.** A jump back in time or a gap longer than ``lost_s`` (a source
  that reconnected, a camera that restarted its clock) resets the tracker: every track ends
  and new ids follow.
- Class-agnostic, like ByteTrack: a track takes the class of its detection in each frame.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections import deque
from typing import Any

import numpy as np

from vsa.config import TrackingSpec
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import SceneView

NAME = "tracker"
TRAIL_ANCHOR = "bottom_center"
_FRAME_RATE = 30.0  # the library's reference rate: its Kalman steps are 1/30 s of elapsed time


def _tracker_library() -> Any:
    # NumPy 1.x's OpenBLAS wakes its thread pool for the Kalman filter's small matrix products
    # (p99 2-4 ms a frame on the Jetson-like stack, docs/tracker-choice.md); one thread is
    # faster for these sizes. Only applies if NumPy was not loaded yet in this process.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import supervision as sv
    from trackers import ByteTrackTracker

    return sv, ByteTrackTracker


def _with_track(detection: Detection, track_id: int) -> Detection:
    """A copy of ``detection`` with its track id (the result given is never changed)."""
    new = copy.copy(detection)  # a shallow copy: the mask array is shared, never written
    new.track_id = track_id
    return new


class TrackerProcessor:
    """A ``vsa.stream.processors.Processor`` that gives tracked detections their
    ``track_id`` and puts each live track's recent anchor points into ``result.scene``."""

    name = NAME

    def __init__(self, spec: TrackingSpec, fps: float | None = None) -> None:
        self.spec = spec
        self.fps = fps  # for streams without timestamps: index / fps
        self._sv, self._cls = _tracker_library()
        self.next_id = 1  # the stream's next track id (ids are never reused in a run)
        self._new_library_tracker()
        self._last_t: float | None = None
        self.resets = 0  # tracker resets after a jump in time (reconnects)

    def _new_library_tracker(self) -> None:
        s = self.spec
        self._tracker = self._cls(
            lost_track_buffer=max(1, round(s.lost_s * _FRAME_RATE)),
            frame_rate=_FRAME_RATE,
            track_activation_threshold=s.activation_score,
            minimum_consecutive_frames=s.min_frames,
            minimum_iou_threshold=s.match_iou,
            high_conf_det_threshold=s.high_score,
        )
        self._ids: dict[int, int] = {}  # library id -> stream id
        self._trails: dict[int, deque[tuple[float, float]]] = {}

    @property
    def track_ids(self) -> int:
        """Ids handed out so far in the run (the last one given)."""
        return self.next_id - 1

    @property
    def live(self) -> int:
        """Confirmed tracks the library still follows (seen, or lost for less than lost_s)."""
        return sum(1 for t in self._tracker.tracks if t.tracker_id >= 0)

    def _time(self, frame: Frame) -> float:
        if frame.pts is not None:
            return float(frame.pts)
        return frame.index / (self.fps or _FRAME_RATE)

    def process(self, frame: Frame, result: FrameResult) -> FrameResult:
        sv = self._sv
        t = self._time(frame)
        if self._last_t is not None and (t < self._last_t or t - self._last_t > self.spec.lost_s):
            self.resets += 1  # a reconnect or a clock jump: every track ends, new ids follow
            self._new_library_tracker()
            self._last_t = None
        self._last_t = t
        dets = result.detections
        if dets:
            detections = sv.Detections(
                xyxy=np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4),
                confidence=np.array([d.score for d in dets], dtype=np.float32),
                class_id=np.array([d.class_id for d in dets], dtype=int),
                data={"i": np.arange(len(dets))},
            )
        else:
            detections = sv.Detections.empty()
        tracked = self._tracker.update(detections, timestamp=t)
        ids: list[int | None] = [None] * len(dets)
        if len(tracked):
            for i, lib_id in zip(
                tracked.data["i"].tolist(), tracked.tracker_id.tolist(), strict=True
            ):
                if lib_id < 0:
                    continue
                sid = self._ids.get(lib_id)
                if sid is None:
                    sid = self._ids[lib_id] = self.next_id
                    self.next_id += 1
                ids[i] = sid
        alive = {t_.tracker_id for t_ in self._tracker.tracks if t_.tracker_id >= 0}
        for lib_id in [k for k in self._ids if k not in alive]:
            self._trails.pop(self._ids.pop(lib_id), None)
        out = [d if tid is None else _with_track(d, tid) for d, tid in zip(dets, ids, strict=True)]
        keep = self.spec.trail_points
        trails: dict[int, tuple[tuple[float, float], ...]] = {}
        for d in out:
            if d.track_id is None:
                continue
            x1, _, x2, y2 = d.box
            trail = self._trails.get(d.track_id)
            if trail is None:
                trail = self._trails[d.track_id] = deque(maxlen=max(1, keep))
            trail.append(((x1 + x2) * 0.5, y2))
        for sid in self._ids.values():  # live tracks, seen now or lost for a moment
            trail = self._trails.get(sid)
            if trail is not None:
                trails[sid] = tuple(trail) if keep else ()
        scene = result.scene or SceneView()
        return dataclasses.replace(
            result, detections=out, scene=dataclasses.replace(scene, trails=trails)
        )

    def close(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"track_ids": self.track_ids}

    def status(self) -> dict[str, Any]:
        return {"tracks": self.live, "track_ids": self.track_ids}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on above the saved high-water mark (never below the ids given already)."""
        saved = state.get("track_ids")
        if isinstance(saved, int) and not isinstance(saved, bool) and saved >= 0:
            self.next_id = max(self.next_id, saved + 1)


__all__ = ["NAME", "TrackerProcessor"]
