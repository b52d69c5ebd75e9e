"""The snapshot sink: a JPEG of the annotated frame when something worth seeing happens, with
a JSON side file of the frame's detections and of what triggered it.

Files: ``<output_dir>/<source id>/<UTC time>_<class>.jpg`` and ``.json`` beside it, the time
the frame's capture time (``20261207T014800.123Z``: names sort by time). Each is written to a
temporary name and renamed, so a reader never sees half a picture, never through a symbolic
link. ``max_files`` keeps the newest (the oldest pairs are deleted), counting those an earlier
incarnation of the stream left.

Triggers (``SnapshotSinkSpec``), per frame:

- a detection of ``classes`` with ``score >= min_score`` (its box's bottom centre inside
  ``zone`` if given) that *appears*: a track seen for the first time when the source tracks
  (a track never triggers twice); without tracking, any such detection;
- a scene analytics event of a kind in ``events`` (a line crossing, a zone entry, loitering).

Each class has a cool-down (``cooldown_s`` of capture time): a trigger of a class within it is
skipped (counted in ``cooled``). One picture per class per frame at most.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2

from vsa.analytics.geometry import inside, scaled
from vsa.config import SnapshotSinkSpec
from vsa.core.frames import Frame, FrameResult
from vsa.draw import draw_detections
from vsa.sinks.jsonl import open_nofollow
from vsa.sinktypes import SinkContext

log = logging.getLogger("vsa.sinks")

MAX_TRACKS_SEEN = 100_000  # the track ids remembered (never triggering twice), at most
SCHEMA_VERSION = 1  # "v" of the JSON side files


def utc_name(wall_time: float) -> str:
    """``20261207T014800.123Z``: sortable, no characters a file system minds."""
    t = datetime.fromtimestamp(wall_time, tz=timezone.utc)
    return t.strftime("%Y%m%dT%H%M%S.") + f"{t.microsecond // 1000:03d}Z"


def _safe(label: str) -> str:
    """A class name as part of a file name: letters, digits, ``-`` and ``_`` only."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in label)
    return out[:64] or "_"


class SnapshotSink:
    """See the module docstring. ``snapshots``: pictures written; ``cooled``: triggers
    skipped by a class's cool-down."""

    def __init__(self, spec: SnapshotSinkSpec, folder: Path, run_id: str, source_id: str) -> None:
        self.spec, self.folder = spec, Path(folder)
        self.run_id, self.source_id = run_id, source_id
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.folder.is_symlink():
            raise PermissionError(
                f"{self.folder} is a symbolic link: snapshots are not written through it"
            )
        self.snapshots = 0
        self.cooled = 0
        self._last: dict[str, float] = {}  # class -> capture time of its last snapshot
        self._tracks: set[int] = set()
        self._track_order: deque[int] = deque()
        # the pictures kept (oldest first), earlier incarnations' included
        self._kept: deque[Path] = deque(sorted(self.folder.glob("*.jpg")))
        self._zone_px: tuple[tuple[float, float], ...] | None = None
        self._size: tuple[int, int] | None = None

    # --- triggers --------------------------------------------------------------------
    def _in_zone(self, box: Any, width: int, height: int) -> bool:
        if self.spec.zone is None:
            return True
        if self._size != (width, height):
            self._size = (width, height)
            self._zone_px = scaled(self.spec.zone, True, width, height)
        x1, _, x2, y2 = box
        assert self._zone_px is not None
        return inside(self._zone_px, ((x1 + x2) / 2, y2))

    def _new_track(self, track_id: int) -> bool:
        if track_id in self._tracks:
            return False
        self._tracks.add(track_id)
        self._track_order.append(track_id)
        if len(self._track_order) > MAX_TRACKS_SEEN:
            self._tracks.discard(self._track_order.popleft())
        return True

    def triggers(self, frame: Frame, result: FrameResult) -> dict[str, str]:
        """Class -> what triggered it in this frame (the first reason), cool-down aside."""
        spec = self.spec
        found: dict[str, str] = {}
        if spec.on_detection:
            h, w = frame.image.shape[:2]
            for d in result.detections:
                if spec.classes is not None and d.label not in spec.classes:
                    continue
                if d.score < spec.min_score or not self._in_zone(d.box, w, h):
                    continue
                if d.track_id is not None and not self._new_track(d.track_id):
                    continue
                found.setdefault(d.label, "detection")
        for e in result.events:
            if e.kind in spec.events and (spec.classes is None or e.label in spec.classes):
                found.setdefault(e.label, e.kind)
        return found

    # --- the sink --------------------------------------------------------------------
    def write(self, frame: Frame, result: FrameResult) -> None:
        found = self.triggers(frame, result)
        if not found:
            return
        now = frame.wall_time
        due = {}
        for label, why in found.items():
            last = self._last.get(label)
            if last is not None and now - last < self.spec.cooldown_s:
                self.cooled += 1
                continue
            due[label] = why
        if not due:
            return
        picture = draw_detections(frame.image, result.detections, scene=result.scene)
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.spec.quality])
        if not ok:
            raise OSError("the frame could not be encoded as JPEG")
        h, w = frame.image.shape[:2]
        for label, why in due.items():
            name = f"{utc_name(now)}_{_safe(label)}"
            side = {
                "v": SCHEMA_VERSION,
                "run": self.run_id,
                "source": self.source_id,
                "frame": frame.index,
                "pts": None if frame.pts is None else round(frame.pts, 6),
                "time": round(now, 6),
                "class": label,
                "trigger": why,
                "width": w,
                "height": h,
                "detections": [d.to_json(h, w) for d in result.detections],
                "events": [e.to_json(self.run_id, self.source_id) for e in result.events],
            }
            self._put(self.folder / f"{name}.jpg", jpeg.tobytes())
            self._put(self.folder / f"{name}.json", json.dumps(side).encode())
            self._last[label] = now
            self.snapshots += 1
            self._kept.append(self.folder / f"{name}.jpg")
        self._prune()

    def _put(self, path: Path, data: bytes) -> None:
        """``data`` at ``path``, whole or not at all (a temporary file renamed over it)."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)

    def _prune(self) -> None:
        limit = self.spec.max_files
        while limit is not None and len(self._kept) > limit:
            oldest = self._kept.popleft()
            oldest.unlink(missing_ok=True)
            oldest.with_suffix(".json").unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        """For the status's ``sinks.snapshot``: pictures written and cool-down skips."""
        return {"snapshots": self.snapshots, "cooled": self.cooled}

    def close(self) -> None:
        pass


def open_snapshot(spec: SnapshotSinkSpec, context: SinkContext) -> SnapshotSink:
    """The ``snapshot`` sink type's factory (``vsa.sinktypes``)."""
    folder = context.output_dir / context.source_id
    return SnapshotSink(spec, folder, context.run_id, context.source_id)


__all__ = ["SnapshotSink", "open_snapshot", "utc_name"]
