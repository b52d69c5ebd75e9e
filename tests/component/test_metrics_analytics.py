"""StreamMetrics.update folds a status's analytics into its metrics: Ray's metric objects are
built (Ray imported, no cluster) and then swapped for recorders of what they were given."""

from __future__ import annotations

from typing import Any

from actors.metrics import StreamMetrics
from tests.unit.test_analytics_status import analytics
from tests.unit.test_status_schema import polled


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("inc", value, tags or {}))

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.calls.append(("set", value, tags or {}))


ANALYTICS = ("line_crossings", "zone_occupancy", "analytics_events", "tracks")


def metrics() -> StreamMetrics:
    m = StreamMetrics("r-1", "cam1")
    for name in ANALYTICS:
        setattr(m, name, Recorder())
    return m


def calls(m: StreamMetrics, name: str) -> list[tuple[str, float, dict[str, str]]]:
    recorder: Any = getattr(m, name)
    out = list(recorder.calls)
    recorder.calls.clear()
    return out


def test_update_advances_crossings_and_events_and_sets_the_live_gauges():
    m = metrics()
    m.update({**polled(), "analytics": analytics()}, frame_bytes=100)
    assert sorted((c[2]["class"], c[2]["direction"], c[1]) for c in calls(m, "line_crossings")) == [
        ("circle", "in", 6),
        ("circle", "out", 2),
        ("square", "in", 4),
        ("square", "out", 2),
    ]
    assert sorted((c[2]["kind"], c[1]) for c in calls(m, "analytics_events")) == [
        ("line_cross", 14),
        ("loiter", 1),
        ("zone_enter", 30),
        ("zone_leave", 28),
    ]
    assert calls(m, "tracks") == [("set", 3, {})]
    assert calls(m, "zone_occupancy") == [("set", 2, {"zone": "lobby"})]

    later = analytics(
        tracks=1,
        lines={
            "door": {
                "in": 11,
                "out": 4,
                "classes": {"circle": {"in": 7, "out": 2}, "square": {"in": 4, "out": 2}},
            }
        },
        zones={"lobby": {"occupancy": 0, "entered": 30, "left": 30, "loitering": 0}},
    )
    m.update({**polled(), "analytics": later}, frame_bytes=100)
    assert calls(m, "line_crossings") == [
        ("inc", 1, {"line": "door", "direction": "in", "class": "circle"})
    ]
    assert calls(m, "analytics_events") == []  # the same counts as before
    assert calls(m, "tracks") == [("set", 1, {})]
    assert calls(m, "zone_occupancy") == [("set", 0, {"zone": "lobby"})]


def test_a_source_without_analytics_touches_none_of_their_metrics():
    m = metrics()
    m.update(polled(), frame_bytes=100)
    m.update({**polled(), "analytics": None}, frame_bytes=100)
    assert all(calls(m, name) == [] for name in ANALYTICS)


def test_the_real_metrics_take_any_class_name():
    """Ray's metrics refuse a tag value that is not ASCII: class names are escaped."""
    m = StreamMetrics("r-1", "cam1")
    odd = analytics(
        lines={"door": {"in": 2, "out": 0, "classes": {"vélo": {"in": 1}, 'a "b"\n': {"in": 1}}}}
    )
    m.update({**polled(), "analytics": odd}, frame_bytes=100)
