"""Line and zone counters: a stream processor after the tracker.

Lines. A track crosses a line when its anchor (``LineSpec.anchor``, the bottom centre by
default) moves from one side of the line to the other *through the segment*: between the
last frame it was seen on one side and the first frame it is seen on the other (frames in
between may be missing: occlusions, frames dropped in realtime mode), the path of its anchor
meets the segment. Moving to ``in_side`` counts ``in``, the other way ``out``. An anchor within
``TOLERANCE_PX`` of the line is on neither side (it keeps its side), so a track that hovers on
the line does not count back and forth with each pixel of box noise.

Zones. A track is in a zone while its anchor is inside the polygon. ``zone_enter`` when it is
first seen inside; ``zone_leave`` when it is seen outside, or when its track ends while
inside (it has not been seen for the tracker's ``lost_s``; the event is at the frame where the
track ended, with the dwell time to the last frame it was seen in). ``loiter`` once per visit
when the dwell time reaches ``loiter_s``. Times are stream times (pts), so they do not depend
on how fast the engine runs.

Class filters apply to the track's class when it crosses (lines) or enters (zones).

The counts (``counts()``) are cumulative over the run: ``state``/``restore`` carry them over
a restart (``vsa.analytics.resume`` rebuilds them from the events file, which records each
event once).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vsa.analytics.geometry import Point, anchor_point, inside, passes_through, scaled, side_of
from vsa.config import LineSpec, ZoneSpec
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import (
    LINE_CROSS,
    LOITER,
    ZONE_ENTER,
    ZONE_LEAVE,
    Event,
    LineView,
    SceneView,
    ZoneView,
)

NAME = "scene"
TOLERANCE_PX = 1.0  # an anchor this close to a line is on neither side
FORGET_S = 60.0  # a line forgets a track's side after this long unseen (bounded memory)


@dataclass
class _Line:
    spec: LineSpec
    start: Point = (0.0, 0.0)
    end: Point = (0.0, 0.0)
    # track id -> (its side: -1 left, +1 right; its last anchor on that side; when seen)
    sides: dict[int, tuple[int, Point, float]] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {"in": Counter(), "out": Counter()}
    )  # direction -> class -> n

    @property
    def in_sign(self) -> int:
        return -1 if self.spec.in_side == "left" else 1


@dataclass
class _Visit:
    entered: float  # stream time of the first frame inside
    seen: float  # ... of the last frame it was seen inside
    label: str
    loitered: bool = False


@dataclass
class _Zone:
    spec: ZoneSpec
    polygon: tuple[Point, ...] = ()
    visits: dict[int, _Visit] = field(default_factory=dict)  # track id -> its visit now
    entered: int = 0
    left: int = 0


class SceneCounter:
    """A ``vsa.stream.processors.Processor`` for a stream's lines and zones (see the module
    docstring). Needs ``result.scene.trails`` from the tracker before it: the live tracks."""

    name = NAME

    def __init__(
        self, lines: Sequence[LineSpec], zones: Sequence[ZoneSpec], fps: float | None = None
    ) -> None:
        self.lines = [_Line(s) for s in lines]
        self.zones = [_Zone(s) for s in zones]
        self.fps = fps
        self.events: Counter[str] = Counter()  # kind -> n, over the run
        self._size: tuple[int, int] | None = None  # the frame size the geometry is scaled to

    # --- geometry in pixels, for the frame size in use ---------------------------------
    def _scale(self, width: int, height: int) -> None:
        if self._size == (width, height):
            return
        self._size = (width, height)
        for line in self.lines:
            line.start, line.end = scaled(
                line.spec.points, line.spec.coords == "relative", width, height
            )
        for zone in self.zones:
            zone.polygon = scaled(zone.spec.polygon, zone.spec.coords == "relative", width, height)

    def _time(self, frame: Frame) -> float:
        if frame.pts is not None:
            return float(frame.pts)
        return frame.index / (self.fps or 30.0)

    # --- the processor ---------------------------------------------------------------
    def process(self, frame: Frame, result: FrameResult) -> FrameResult:
        h, w = frame.image.shape[:2]
        self._scale(w, h)
        t = self._time(frame)
        scene = result.scene or SceneView()
        live = set(scene.trails)
        seen: dict[int, tuple[str, Sequence[float]]] = {}
        for d in result.detections:
            if d.track_id is not None:
                seen[d.track_id] = (d.label, d.box)
        events: list[Event] = []

        def event(kind: str, where: str, track: int, label: str, **more: Any) -> None:
            events.append(
                Event(kind, where, track, label, frame.index, frame.pts, frame.wall_time, **more)
            )

        for line in self.lines:
            anchor = line.spec.anchor
            classes = line.spec.classes
            for track, (label, box) in seen.items():
                p = anchor_point(box, anchor)
                side = side_of(line.start, line.end, p, TOLERANCE_PX)
                if side == 0:
                    continue
                before = line.sides.get(track)
                line.sides[track] = (side, p, t)
                if before is None or before[0] == side:
                    continue
                if not passes_through(line.start, line.end, before[1], p):
                    continue  # went round the end of the segment
                if classes is not None and label not in classes:
                    continue
                direction = "in" if side == line.in_sign else "out"
                line.counts[direction][label] += 1
                event(LINE_CROSS, line.spec.id, track, label, direction=direction)
            for track in [k for k, v in line.sides.items() if t - v[2] > FORGET_S or t < v[2]]:
                del line.sides[track]

        for zone in self.zones:
            anchor = zone.spec.anchor
            classes = zone.spec.classes
            for track, (label, box) in seen.items():
                now_inside = inside(zone.polygon, anchor_point(box, anchor))
                visit = zone.visits.get(track)
                if now_inside and visit is None:
                    if classes is not None and label not in classes:
                        continue
                    zone.visits[track] = _Visit(t, t, label)
                    zone.entered += 1
                    event(ZONE_ENTER, zone.spec.id, track, label)
                elif now_inside and visit is not None:
                    visit.seen = t
                elif not now_inside and visit is not None:
                    del zone.visits[track]
                    zone.left += 1
                    event(ZONE_LEAVE, zone.spec.id, track, label, dwell_s=t - visit.entered)
            for track in [k for k in zone.visits if k not in live]:  # its track ended inside
                visit = zone.visits.pop(track)
                zone.left += 1
                event(
                    ZONE_LEAVE, zone.spec.id, track, visit.label, dwell_s=visit.seen - visit.entered
                )
            loiter_s = zone.spec.loiter_s
            if loiter_s is not None:
                for track, visit in zone.visits.items():
                    if not visit.loitered and t - visit.entered >= loiter_s:
                        visit.loitered = True
                        event(LOITER, zone.spec.id, track, visit.label, dwell_s=t - visit.entered)

        for e in events:
            self.events[e.kind] += 1
        view = dataclasses.replace(
            scene,
            lines=tuple(
                LineView(
                    line.spec.id,
                    line.start,
                    line.end,
                    sum(line.counts["in"].values()),
                    sum(line.counts["out"].values()),
                    line.spec.in_side,
                )
                for line in self.lines
            ),
            zones=tuple(
                ZoneView(
                    zone.spec.id,
                    zone.polygon,
                    len(zone.visits),
                    sum(1 for v in zone.visits.values() if v.loitered),
                )
                for zone in self.zones
            ),
        )
        return dataclasses.replace(result, events=(*result.events, *events), scene=view)

    def close(self) -> None:
        pass

    # --- counts, state ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.counts()

    def counts(self) -> dict[str, Any]:
        """Lines and zones for the status (``analytics`` without the tracker's part)."""
        return {
            "lines": {
                line.spec.id: {
                    "in": sum(line.counts["in"].values()),
                    "out": sum(line.counts["out"].values()),
                    "classes": {
                        c: {"in": line.counts["in"][c], "out": line.counts["out"][c]}
                        for c in sorted(set(line.counts["in"]) | set(line.counts["out"]))
                    },
                }
                for line in self.lines
            },
            "zones": {
                zone.spec.id: {
                    "occupancy": len(zone.visits),
                    "entered": zone.entered,
                    "left": zone.left,
                    "loitering": sum(1 for v in zone.visits.values() if v.loitered),
                }
                for zone in self.zones
            },
            "events": dict(self.events),
        }

    def state(self) -> dict[str, Any]:
        """The cumulative counts (live visits end with a restart: their tracks do)."""
        return {
            "lines": {
                line.spec.id: {d: dict(c) for d, c in line.counts.items()} for line in self.lines
            },
            "zones": {z.spec.id: {"entered": z.entered, "left": z.left} for z in self.zones},
            "events": dict(self.events),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Counts of lines and zones that still exist (by id); others are ignored."""
        lines = {line.spec.id: line for line in self.lines}
        for lid, saved in (state.get("lines") or {}).items():
            line = lines.get(lid)
            if line is None or not isinstance(saved, dict):
                continue
            for direction in ("in", "out"):
                for label, n in (saved.get(direction) or {}).items():
                    if isinstance(n, int):
                        line.counts[direction][label] = n
        zones = {zone.spec.id: zone for zone in self.zones}
        for zid, saved in (state.get("zones") or {}).items():
            zone = zones.get(zid)
            if zone is None or not isinstance(saved, dict):
                continue
            zone.entered = int(saved.get("entered") or 0)
            zone.left = int(saved.get("left") or 0)
        for kind, n in (state.get("events") or {}).items():
            if isinstance(n, int):
                self.events[kind] = n


__all__ = ["NAME", "TOLERANCE_PX", "SceneCounter"]
