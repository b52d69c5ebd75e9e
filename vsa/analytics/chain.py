"""A source's analytics processors, from its run-file entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # vsa.stream imports this module
    from vsa.stream.processors import Processor


def processors_for(source: Any) -> list[Processor]:
    """The tracker, then the line and zone counters, for a ``vsa.config.SourceSpec``; none
    when it does not track (``SourceSpec.tracked``)."""
    spec = source.tracked
    if spec is None:
        return []
    from vsa.analytics.counting import SceneCounter
    from vsa.analytics.tracker import TrackerProcessor

    chain: list[Processor] = [TrackerProcessor(spec)]
    if source.lines or source.zones:
        chain.append(SceneCounter(source.lines, source.zones))
    return chain


def tracker_installed() -> bool:
    """Whether the tracker library can be imported here (it is installed apart from vsa's own
    dependencies: images/no-deps.txt)."""
    import importlib.util

    return importlib.util.find_spec("trackers") is not None


def analytics_status(status: dict[str, Any]) -> dict[str, Any] | None:
    """The status's ``analytics`` (docs/analytics.md) from the processors' ``status()``
    (``ProcessorChain.status``), None without a tracker."""
    track = status.get("tracker")
    if track is None:
        return None
    scene = status.get("scene") or {}
    return {
        "tracks": track.get("tracks", 0),
        "track_ids": track.get("track_ids", 0),
        "lines": scene.get("lines", {}),
        "zones": scene.get("zones", {}),
        "events": scene.get("events", {}),
    }


__all__ = ["analytics_status", "processors_for", "tracker_installed"]
