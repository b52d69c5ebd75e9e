"""A source's scene analytics in its status (``"analytics"``): typed and round-tripped by
vsa.schema, shown by ``vsa status``, turned into Prometheus deltas (the pure part of
actors/metrics.py), sampled by the run record and summed up by the end-of-run report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from actors.metrics import advance, analytics_deltas, tag_value
from tests.unit.fakes import FakeClock
from tests.unit.test_report import run_of, source
from tests.unit.test_status_schema import T0, polled, record, round_trips
from vsa.cli import render_run
from vsa.report import build_report, write_report
from vsa.runstate import RunState
from vsa.schema import (
    Analytics,
    Crossings,
    LineCounts,
    RunStatus,
    SourceState,
    SourceStatus,
    ZoneCounts,
)
from vsa.supervision.runbook import RunRecord, analytics_counts


def analytics(**change: Any) -> dict[str, Any]:
    """The status's ``analytics`` as the brief spells it, with ``change`` on top."""
    d = {
        "tracks": 3,
        "track_ids": 57,
        "lines": {
            "door": {
                "in": 10,
                "out": 4,
                "classes": {"circle": {"in": 6, "out": 2}, "square": {"in": 4, "out": 2}},
            }
        },
        "zones": {"lobby": {"occupancy": 2, "entered": 30, "left": 28, "loitering": 1}},
        "events": {"line_cross": 14, "zone_enter": 30, "zone_leave": 28, "loiter": 1},
    }
    return {**d, **change}


# --- the schema ---------------------------------------------------------------------------------


def test_analytics_read_typed_and_write_back_unchanged():
    status = {**polled(), "analytics": analytics()}
    s = SourceStatus.from_dict(status)
    a = s.analytics
    assert isinstance(a, Analytics) and a.tracks == 3 and a.track_ids == 57
    door = a.lines["door"]
    assert isinstance(door, LineCounts) and (door.in_, door.out, door.total) == (10, 4, 14)
    assert door.classes["circle"] == Crossings(in_=6, out=2)
    assert a.zones["lobby"] == ZoneCounts(occupancy=2, entered=30, left=28, loitering=1)
    assert a.events["loiter"] == 1
    assert s.to_dict() == status
    assert s.extra == {}  # a known key, not an unknown one


def test_a_run_summary_with_analytics_round_trips_also_through_the_store():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", {**polled(), "analytics": analytics()})
    r.absorb("cam2", {**polled("cam2", inc="7-1.0"), "analytics": None})
    run = round_trips(r.summary())
    assert run.source("cam1").analytics is not None and run.source("cam2").analytics is None
    again = RunRecord.from_json(r.to_json(), clock=clock, monotonic=lambda: clock.now)
    round_trips(again.summary())
    assert again.status("cam1").analytics == run.source("cam1").analytics


def test_a_status_without_analytics_reads_as_before():
    old = polled()
    s = SourceStatus.from_dict(old)
    assert s.analytics is None and "analytics" in s.omitted
    assert s.to_dict() == old  # no "analytics" key appears
    assert SourceStatus(id="a", state=SourceState.STREAMING).to_dict()["analytics"] is None


def test_partial_analytics_and_unknown_keys_round_trip():
    d = {
        "tracks": 0,
        "lines": {"door": {"in": 1, "classes": {"car": {"out": 2, "speed": 3.5}}}},
        "zones": {"lobby": {"entered": 1, "dwell_s": 9.0}},
        "heatmap": [1, 2],
    }
    a = Analytics.from_dict(d)
    assert a.track_ids == 0 and a.lines["door"].out == 0 and a.lines["door"].classes["car"].in_ == 0
    assert a.extra == {"heatmap": [1, 2]}
    assert a.lines["door"].classes["car"].extra == {"speed": 3.5}
    assert a.zones["lobby"].extra == {"dwell_s": 9.0}
    assert a.to_dict() == d
    # constructed, not read: every key is written, "in" under its wire name
    assert LineCounts(in_=2).to_dict() == {"in": 2, "out": 0, "classes": {}}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([1], "source status 'cam1': analytics: expected a dict, got list"),
        ({"lines": [1]}, "analytics: lines: expected a dict, got list"),
        ({"lines": {"door": 3}}, "analytics: lines['door']: expected a dict, got int"),
        (
            {"lines": {"door": {"classes": {"car": None}}}},
            "analytics: lines['door']: classes['car']: expected a dict, got NoneType",
        ),
        ({"zones": {"lobby": "x"}}, "analytics: zones['lobby']: expected a dict, got str"),
        ({"events": 4}, "analytics: events: expected a dict, got int"),
    ],
)
def test_malformed_analytics_are_refused_naming_where(bad: Any, message: str):
    with pytest.raises(ValueError) as exc:
        SourceStatus.from_dict({**polled(), "analytics": bad})
    assert message in str(exc.value)


# --- vsa status -----------------------------------------------------------------------------


def test_status_table_shows_each_line_and_zone_of_a_source_with_analytics():
    two_lines = analytics(
        lines={
            "door": {"in": 10, "out": 4, "classes": {}},
            "gate": {"in": 0, "out": 1, "classes": {}},
        }
    )
    run = {
        "id": "r-1",
        "name": "r",
        "created_at": T0,
        "state": "UP",
        "output_dir": "/out",
        "sources": [
            {**polled("door"), "analytics": two_lines},
            {**polled("cam2"), "analytics": None},
            polled("cam3"),
        ],
    }
    text = render_run(RunStatus.from_dict(run))
    assert "  door: line door in 10 out 4" in text.splitlines()
    assert "  door: line gate in 0 out 1" in text.splitlines()
    assert "  door: zone lobby 2 inside (30 entered, 28 left, 1 loitering)" in text.splitlines()
    assert "cam2: line" not in text and "cam2: zone" not in text and "cam3: " not in text


# --- Prometheus deltas (actors/metrics.py, pure part) ------------------------------------------


def test_advance_counts_from_zero_and_a_lower_count_is_a_new_base():
    seen: dict[Any, int] = {}
    assert advance(seen, "k", 5) == 5
    assert advance(seen, "k", 5) == 0
    assert advance(seen, "k", 8) == 3
    assert advance(seen, "k", 2) == 0  # restarted: never negative
    assert advance(seen, "k", 4) == 2  # from the new base
    assert seen == {"k": 4}


def test_analytics_deltas_by_line_direction_class_and_event_kind():
    seen: dict[Any, int] = {}
    crossings, events = analytics_deltas(seen, Analytics.from_dict(analytics()))
    assert sorted((t["line"], t["direction"], t["class"], n) for t, n in crossings) == [
        ("door", "in", "circle", 6),
        ("door", "in", "square", 4),
        ("door", "out", "circle", 2),
        ("door", "out", "square", 2),
    ]
    assert sorted(events) == [
        ("line_cross", 14),
        ("loiter", 1),
        ("zone_enter", 30),
        ("zone_leave", 28),
    ]

    # a second of traffic: a circle in, a new class out, one more entry
    later = analytics(
        lines={
            "door": {
                "in": 11,
                "out": 5,
                "classes": {
                    "circle": {"in": 7, "out": 2},
                    "square": {"in": 4, "out": 2},
                    "truck": {"in": 0, "out": 1},
                },
            }
        },
        events={"line_cross": 16, "zone_enter": 31, "zone_leave": 28, "loiter": 1},
    )
    crossings, events = analytics_deltas(seen, Analytics.from_dict(later))
    assert sorted((t["class"], t["direction"], n) for t, n in crossings) == [
        ("circle", "in", 1),
        ("truck", "out", 1),
    ]
    assert sorted(events) == [("line_cross", 2), ("zone_enter", 1)]
    # nothing new: nothing to add; a count that went down is a new base, not a negative step
    assert analytics_deltas(seen, Analytics.from_dict(later)) == ([], [])
    lower = copy.deepcopy(later)
    lower["lines"]["door"]["classes"]["circle"]["in"] = 1
    assert analytics_deltas(seen, Analytics.from_dict(lower)) == ([], [])
    lower["lines"]["door"]["classes"]["circle"]["in"] = 3
    crossings, _ = analytics_deltas(seen, Analytics.from_dict(lower))
    assert [(t["class"], t["direction"], n) for t, n in crossings] == [("circle", "in", 2)]


def test_tag_values_are_ascii_and_distinct():
    assert tag_value("person") == "person"
    assert tag_value('a "quoted", {odd}=name') == 'a "quoted", {odd}=name'
    assert tag_value("café") == "caf\\xe9"
    assert tag_value("行人") == "\\u884c\\u4eba"
    assert tag_value("a\nb\x00") == "a\\nb\\x00"
    assert tag_value("caf\\xe9") == "caf\\\\xe9"  # a backslash is escaped: no collision
    long = "é" * 256
    assert tag_value(long).isascii() and tag_value(long).isprintable()
    crossings, _ = analytics_deltas(
        {}, Analytics.from_dict({"lines": {"door": {"in": 1, "classes": {"vélo": {"in": 1}}}}})
    )
    assert crossings == [({"line": "door", "direction": "in", "class": "v\\xe9lo"}, 1)]


# --- the run record's counts series ------------------------------------------------------------


def test_sample_keeps_the_counts_of_sources_with_analytics_only():
    clock = FakeClock(1000.0)
    r = record(clock)
    r.absorb("cam1", {**polled(), "analytics": analytics()})
    r.sample()
    clock.advance(1.0)
    more = analytics(zones={"lobby": {"occupancy": 1, "entered": 31, "left": 30, "loitering": 0}})
    r.absorb("cam1", {**polled(), "analytics": more})
    r.sample()
    assert r.counts == {
        "cam1": {
            "line:door:in": [[1000.0, 10], [1001.0, 10]],
            "line:door:out": [[1000.0, 4], [1001.0, 4]],
            "zone:lobby:entered": [[1000.0, 30], [1001.0, 31]],
            "zone:lobby:left": [[1000.0, 28], [1001.0, 30]],
        }
    }
    assert len(r.series["cam1"]) == 2 and len(r.series["cam2"]) == 2  # as before
    for _ in range(4000):
        clock.advance(1.0)
        r.sample()
    rows = r.counts["cam1"]["line:door:in"]
    assert len(rows) <= 4000 and rows[-1] == [clock.now, 10]


def test_analytics_counts_names():
    s = SourceStatus.from_dict({**polled(), "analytics": analytics()})
    assert analytics_counts(s) == {
        "line:door:in": 10,
        "line:door:out": 4,
        "zone:lobby:entered": 30,
        "zone:lobby:left": 28,
    }
    assert analytics_counts(SourceStatus.from_dict(polled())) == {}


# --- the end-of-run report ---------------------------------------------------------------------


def test_report_has_each_streams_totals_and_the_runs_summary():
    b = analytics(
        track_ids=5,
        lines={"road": {"in": 3, "out": 0, "classes": {"circle": {"in": 3, "out": 0}}}},
        zones={},
        events={"line_cross": 3},
    )
    run = run_of(
        source("a", [10.0] * 5, analytics=analytics()),
        source("b", [10.0] * 5, analytics=b),
        source("c", [10.0] * 5),
    )
    report = build_report(run, {})
    by_id = {s["id"]: s for s in report["streams"]}
    assert by_id["a"]["analytics"] == {
        "track_ids": 57,
        "lines": {
            "door": {
                "in": 10,
                "out": 4,
                "classes": {"circle": {"in": 6, "out": 2}, "square": {"in": 4, "out": 2}},
            }
        },
        "zones": {"lobby": {"entered": 30, "left": 28}},  # no live occupancy or loitering
        "events": {"line_cross": 14, "zone_enter": 30, "zone_leave": 28, "loiter": 1},
    }
    assert "analytics" not in by_id["c"]
    assert report["analytics"] == {
        "streams": ["a", "b"],
        "track_ids": 62,
        "crossings": {"in": 13, "out": 4},
        "classes": {"circle": {"in": 9, "out": 2}, "square": {"in": 4, "out": 2}},
        "zones": {"entered": 30, "left": 28},
        "events": {"line_cross": 17, "zone_enter": 30, "zone_leave": 28, "loiter": 1},
    }
    assert "counts" not in report  # none sampled
    json.dumps(report)


def test_a_report_without_analytics_is_as_before():
    run = run_of(source("a", [10.0] * 5), {**source("b", [10.0] * 5), "analytics": None})
    series = {"a": [[100.0, 5.0, 10.0, 10.0]]}
    report = build_report(run, series)
    assert "analytics" not in report and "counts" not in report
    assert all("analytics" not in s for s in report["streams"])
    assert build_report(run, series, {}) == report
    assert build_report(run, series, {"a": {}}) == report  # nothing sampled for it


def test_a_report_with_counts_draws_them(tmp_path: Path):
    run = run_of(source("a", [10.0] * 5, analytics=analytics()), source("b", [10.0] * 5))
    series = {sid: [[100.0 + k, 5.0, 10.0, 10.0] for k in range(10)] for sid in ("a", "b")}
    counts = {
        "a": {
            "line:door:in": [[100.0 + k, k] for k in range(10)],
            "line:door:out": [[100.0 + k, k // 2] for k in range(10)],
            "zone:lobby:entered": [[100.0 + k, 3 * k] for k in range(10)],
        }
    }
    report = build_report(run, series, counts)
    assert report["counts"] == counts
    paths = write_report(tmp_path, report)
    assert [p.name for p in paths] == ["report.json", "report.png"]
    written = json.loads((tmp_path / "report.json").read_text())
    assert "plot_error" not in written and written["counts"] == counts
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # three panels: taller than the two-panel chart of the same run without counts
    plain = tmp_path / "plain"
    write_report(plain, build_report(run, series))
    assert _png_height(png) > _png_height((plain / "report.png").read_bytes())


def _png_height(png: bytes) -> int:
    return int.from_bytes(png[20:24], "big")  # IHDR: width (16:20), height (20:24)


def test_the_final_summary_with_analytics_builds_a_report():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", {**polled(state="FINISHED"), "analytics": analytics()})
    r.absorb("cam2", polled("cam2", state="FINISHED", drops={}, decoded=30))
    r.sample()
    clock.advance(10)
    final = r.final_summary(RunState.FINISHED, clock.now)
    report = build_report(final, r.series, r.counts)
    assert report["analytics"]["streams"] == ["cam1"]
    assert report["counts"]["cam1"]["line:door:in"] == [[T0, 10]]
    typed = RunStatus.from_dict(final).to_dict()
    assert build_report(typed, r.series, r.counts) == report
