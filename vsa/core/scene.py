"""What scene analytics adds to a frame's result: its events and what the overlay draws.

Plain data, NumPy- and OpenCV-free: ``vsa.analytics`` makes them (the tracker, the line and
zone counters), the sinks write the events (``<id>.events.jsonl``) and ``vsa.draw`` draws the
overlay. Everything is in source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVENTS_SCHEMA_VERSION = 1  # "v" of every line of <id>.events.jsonl (docs/analytics.md)

# Event kinds (``Event.kind``)
LINE_CROSS = "line_cross"  # a track's anchor crossed a line: ``direction`` in or out
ZONE_ENTER = "zone_enter"  # a track's anchor entered a zone
ZONE_LEAVE = "zone_leave"  # ... left it (or its track ended inside): ``dwell_s``
LOITER = "loiter"  # a track has been in a zone for ``loiter_s`` (once per visit)
EVENT_KINDS = (LINE_CROSS, ZONE_ENTER, ZONE_LEAVE, LOITER)


@dataclass(frozen=True)
class Event:
    """One analytics event of a stream, at the frame where it happened."""

    kind: str  # one of EVENT_KINDS
    where: str  # the line's or the zone's id
    track_id: int
    label: str  # the track's class when it happened
    frame: int
    pts: float | None
    wall_time: float  # the frame's capture time
    direction: str | None = None  # line_cross: "in" or "out"
    dwell_s: float | None = None  # zone_leave, loiter: seconds in the zone (stream time)

    def to_json(self, run_id: str, source_id: str) -> dict[str, Any]:
        """The events-file line (``"v"`` is added by the writer)."""
        record: dict[str, Any] = {
            "run": run_id,
            "source": source_id,
            "kind": self.kind,
            "line" if self.kind == LINE_CROSS else "zone": self.where,
            "track_id": self.track_id,
            "class": self.label,
            "frame": self.frame,
            "pts": None if self.pts is None else round(self.pts, 6),
            "time": round(self.wall_time, 6),
        }
        if self.direction is not None:
            record["direction"] = self.direction
        if self.dwell_s is not None:
            record["dwell_s"] = round(self.dwell_s, 3)
        return record


@dataclass(frozen=True)
class LineView:
    id: str
    start: tuple[float, float]  # pixels
    end: tuple[float, float]
    count_in: int
    count_out: int
    in_side: str  # "left" or "right" of start -> end, as seen on the screen


@dataclass(frozen=True)
class ZoneView:
    id: str
    polygon: tuple[tuple[float, float], ...]  # pixels
    occupancy: int
    loitering: int = 0  # tracks in it for longer than its loiter_s now


@dataclass(frozen=True)
class SceneView:
    """What the overlay draws besides the detections: lines and zones with their live counts,
    and each live track's recent anchor points (oldest first), by track id."""

    lines: tuple[LineView, ...] = ()
    zones: tuple[ZoneView, ...] = ()
    trails: dict[int, tuple[tuple[float, float], ...]] = field(default_factory=dict)


__all__ = [
    "EVENTS_SCHEMA_VERSION",
    "EVENT_KINDS",
    "LINE_CROSS",
    "LOITER",
    "ZONE_ENTER",
    "ZONE_LEAVE",
    "Event",
    "LineView",
    "SceneView",
    "ZoneView",
]
