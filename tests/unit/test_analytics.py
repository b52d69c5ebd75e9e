"""Scene analytics without Ray: geometry, the run file's checks, the tracker, the line and
zone counters, and what a restarted stream finds in its files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vsa.analytics import geometry
from vsa.analytics.chain import analytics_status, processors_for
from vsa.analytics.counting import SceneCounter
from vsa.analytics.resume import max_track_id, replay_events, saved_state
from vsa.analytics.tracker import TrackerProcessor
from vsa.config import (
    ConfigError,
    LineSpec,
    TrackingSpec,
    ZoneSpec,
    class_problems,
    parse_run,
    side_files,
)
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import LINE_CROSS, LOITER, ZONE_ENTER, ZONE_LEAVE, SceneView
from vsa.sinks import EventsSink
from vsa.stream.processors import ProcessorChain

W, H = 640, 360
IMAGE = np.zeros((H, W, 3), np.uint8)


def run_file(**source: object) -> dict:
    return {
        "name": "r",
        "output_dir": "/tmp/vsa-analytics-unit",
        "sources": [{"id": "cam", "uri": "synthetic://shapes?frames=10", **source}],
    }


def refused(**source: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_run(run_file(**source))
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


# --- the run file ---------------------------------------------------------------------------


def test_lines_and_zones_turn_tracking_on_with_their_files() -> None:
    spec = parse_run(
        run_file(
            lines=[{"id": "door", "points": [[0.5, 0], [0.5, 1]]}],
            zones=[{"id": "lobby", "polygon": [[0, 0], [0.4, 0], [0.4, 1]], "loiter_s": 5}],
        )
    )
    source = spec.sources[0]
    assert source.tracked == TrackingSpec()
    assert side_files(source) == ["cam.events.jsonl"]
    assert parse_run(run_file()).sources[0].tracked is None
    assert parse_run(run_file(tracking={"lost_s": 2})).sources[0].tracked.lost_s == 2
    truth = parse_run(run_file(uri="synthetic://shapes?frames=10&truth=1")).sources[0]
    assert side_files(truth) == ["cam.truth.jsonl"]


@pytest.mark.parametrize(
    ("source", "where", "says"),
    [
        (
            {"lines": [{"id": "a", "points": [[0.5, 0.2], [0.5, 0.2]]}]},
            "lines[0].points",
            "same point",
        ),
        ({"lines": [{"id": "a", "points": [[0.5, 0], [1.2, 1]]}]}, "lines[0].points[1]", "[0, 1]"),
        (
            {"lines": [{"id": "a", "points": [[-3, 0], [10, 10]], "coords": "pixels"}]},
            "lines[0].points[0]",
            ">= 0",
        ),
        ({"zones": [{"id": "z", "polygon": [[0, 0], [1, 1]]}]}, "zones[0].polygon", "at least 3"),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]},
            "zones[0].polygon",
            "intersects itself",
        ),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]},
            "zones[0].polygon",
            "one line",
        ),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]},
            "zones[0].polygon[1]",
            "[0, 1]",
        ),
        (
            {
                "lines": [{"id": "x", "points": [[0, 0], [1, 1]]}],
                "zones": [{"id": "x", "polygon": [[0, 0], [1, 0], [1, 1]]}],
            },
            "zones[0].id",
            "duplicate id 'x'",
        ),
        (
            {
                "lines": [
                    {"id": "x", "points": [[0, 0], [1, 1]]},
                    {"id": "x", "points": [[0, 1], [1, 0]]},
                ]
            },
            "lines[1].id",
            "duplicate id 'x'",
        ),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "anchor": "nose"}]},
            "zones[0].anchor",
            "bottom_center",
        ),
        (
            {"zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "loiter_s": 0}]},
            "zones[0].loiter_s",
            "greater than 0",
        ),
    ],
)
def test_bad_geometry_is_refused_naming_the_field(source: dict, where: str, says: str) -> None:
    problem = refused(**source)
    assert problem.startswith(f"sources[0].{where}:"), problem
    assert says in problem


def test_unknown_class_names_are_refused_once_the_model_is_known() -> None:
    spec = parse_run(
        run_file(
            lines=[{"id": "door", "points": [[0.5, 0], [0.5, 1]], "classes": ["circle", "dog"]}],
            zones=[{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "classes": ["square"]}],
        )
    )
    problems = class_problems(spec, ["circle", "square", "triangle", "diamond"])
    assert problems == [
        "sources[0].lines[0].classes: unknown class 'dog'; the model's classes are 'circle', "
        "'square', 'triangle', 'diamond'"
    ]
    assert class_problems(spec, ["circle", "square", "dog"]) == []


# --- geometry -------------------------------------------------------------------------------


def test_sides_are_as_seen_on_the_screen() -> None:
    a, b = (0.0, 100.0), (200.0, 100.0)  # drawn left to right
    assert geometry.side_of(a, b, (50, 20)) == -1  # above: on the left walking a -> b
    assert geometry.side_of(a, b, (50, 180)) == 1
    assert geometry.side_of(a, b, (50, 100.5), tolerance=1) == 0
    assert geometry.passes_through(a, b, (50, 20), (60, 180))
    assert not geometry.passes_through(a, b, (250, 20), (260, 180))  # beyond the segment's end


def test_polygon_inside_and_self_intersection() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    assert geometry.inside(square, (5, 5)) and not geometry.inside(square, (15, 5))
    assert geometry.self_intersection(square) is None
    assert geometry.self_intersection([(0, 0), (10, 10), (10, 0), (0, 10)]) == (0, 2)
    assert geometry.area(square) == 100


# --- the tracker and the counters -------------------------------------------------------------


def frame(k: int, fps: float = 15.0) -> Frame:
    return Frame(k, k / fps, 1_000_000 + k / fps, image=IMAGE)


def boxes_at(k: int, objects: int = 4, speed: float = 3.0) -> list[Detection]:
    """Objects in their own lanes moving right at ``speed`` px/frame."""
    out = []
    for j in range(objects):
        x = 20 + speed * k + 15 * j
        y = 20 + 80 * j
        out.append(Detection("circle" if j % 2 else "square", j % 2, 0.9, (x, y, x + 40, y + 40)))
    return out


def run_chain(chain: list, frames: list[int], make=boxes_at) -> list[FrameResult]:
    out = []
    for k in frames:
        result = FrameResult(k, make(k), 1.0, 1)
        for p in chain:
            result = p.process(frame(k), result)
        out.append(result)
    return out


def test_tracks_keep_their_ids_through_dropped_frames() -> None:
    tracker = TrackerProcessor(TrackingSpec())
    every = run_chain([tracker], list(range(0, 60)))
    ids = [tuple(d.track_id for d in r.detections) for r in every[2:]]
    assert len(set(ids)) == 1 and None not in ids[0]
    # every second frame dropped (a realtime stream): the same tracks, no new ids
    half = TrackerProcessor(TrackingSpec())
    results = run_chain([half], list(range(0, 120, 2)))
    assert {tuple(d.track_id for d in r.detections) for r in results[2:]} == {(1, 2, 3, 4)}
    assert half.track_ids == 4 and half.live == 4


def test_a_gap_longer_than_lost_s_ends_tracks_and_new_ids_follow() -> None:
    tracker = TrackerProcessor(TrackingSpec(lost_s=1.0))
    run_chain([tracker], list(range(0, 10)))
    assert tracker.track_ids == 4
    later = run_chain([tracker], list(range(40, 50)))  # 2 s later: a reconnect
    assert tracker.resets == 1
    assert {d.track_id for d in later[-1].detections} == {5, 6, 7, 8}
    back = run_chain([tracker], list(range(0, 5)))  # the clock went back (a camera restart)
    assert tracker.resets == 2 and {d.track_id for d in back[-1].detections} == {9, 10, 11, 12}


def test_ids_go_on_above_the_restored_high_water_mark() -> None:
    tracker = TrackerProcessor(TrackingSpec())
    tracker.restore({"track_ids": 41})
    results = run_chain([tracker], list(range(0, 5)))
    assert {d.track_id for d in results[-1].detections} == {42, 43, 44, 45}
    assert tracker.state() == {"track_ids": 45}
    tracker.restore({"track_ids": 3})  # never below ids already given
    assert tracker.next_id == 46


def crossing_chain(**line: object) -> list:
    spec = TrackingSpec(min_frames=1)
    lines = [LineSpec(id="mid", points=((0.5, 0), (0.5, 1)), **line)]
    return [TrackerProcessor(spec), SceneCounter(lines, [])]


def test_each_object_crossing_a_line_counts_once_with_its_direction() -> None:
    chain = crossing_chain()
    results = run_chain(chain, list(range(0, 120)))
    events = [e for r in results for e in r.events]
    assert [e.kind for e in events] == [LINE_CROSS] * 4
    # a line drawn top to bottom: walking down the screen, its left is +x; the objects move
    # right, onto its left side, which is "in" by default
    assert {e.direction for e in events} == {"in"}
    assert sorted(e.track_id for e in events) == [1, 2, 3, 4]
    counts = chain[1].counts()["lines"]["mid"]
    assert counts["in"] == 4 and counts["out"] == 0
    assert counts["classes"] == {"circle": {"in": 2, "out": 0}, "square": {"in": 2, "out": 0}}
    # the other way round: every crossing is out
    flipped = crossing_chain(in_side="right")
    run_chain(flipped, list(range(0, 120)))
    assert flipped[1].counts()["lines"]["mid"]["out"] == 4


def test_crossings_survive_every_second_frame_dropped_and_class_filters() -> None:
    chain = crossing_chain(classes=["circle"])
    results = run_chain(chain, list(range(0, 120, 2)))
    events = [e for r in results for e in r.events]
    assert len(events) == 2 and {e.label for e in events} == {"circle"}


def test_a_track_hovering_on_the_line_does_not_count_back_and_forth() -> None:
    def jitter(k: int) -> list[Detection]:
        x = 300 + (0.4 if k % 2 else -0.4)  # its bottom centre within 1 px of x = 320
        return [Detection("circle", 0, 0.9, (x, 100, x + 40, 140))]

    chain = crossing_chain()
    results = run_chain(chain, list(range(0, 60)), make=jitter)
    assert [e for r in results for e in r.events] == []


def test_zones_count_entries_leaves_dwell_and_loitering() -> None:
    spec = TrackingSpec(min_frames=1, lost_s=0.5)
    zone = ZoneSpec(id="right", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)], loiter_s=1.0)
    counter = SceneCounter([], [zone])

    def one(k: int) -> list[Detection]:
        if k >= 100:
            return []  # the object is gone: its track ends inside the zone
        x = 260 + 3 * k
        return [Detection("circle", 0, 0.9, (x, 100, x + 40, 140))]

    results = run_chain([TrackerProcessor(spec), counter], list(range(0, 120)), make=one)
    events = [e for r in results for e in r.events]
    assert [e.kind for e in events] == [ZONE_ENTER, LOITER, ZONE_LEAVE]
    enter, loiter, leave = events
    assert enter.frame == 14  # bottom centre x = 260 + 3k + 20 passes 320 at k = 14
    assert loiter.dwell_s == pytest.approx(1.0, abs=0.07)
    assert leave.dwell_s == pytest.approx((99 - 14) / 15, abs=0.01)  # to the last frame seen
    assert counter.counts()["zones"]["right"] == {
        "occupancy": 0,
        "entered": 1,
        "left": 1,
        "loitering": 0,
    }
    view = results[50].scene
    assert isinstance(view, SceneView) and view.zones[0].occupancy == 1
    assert view.zones[0].loitering == 1 and 1 in view.trails


def test_status_and_the_chain() -> None:
    spec = parse_run(run_file(lines=[{"id": "door", "points": [[0.5, 0], [0.5, 1]]}]))
    chain = ProcessorChain(processors_for(spec.sources[0]), "cam")
    for k in range(0, 120):
        chain.process(frame(k), FrameResult(k, boxes_at(k), 1.0, 1))
    status = analytics_status(chain.status())
    assert status["track_ids"] == 4 and status["tracks"] == 4
    assert status["lines"]["door"]["in"] + status["lines"]["door"]["out"] == 4
    assert status["events"] == {LINE_CROSS: 4}
    assert analytics_status({}) is None
    assert processors_for(parse_run(run_file()).sources[0]) == []


# --- files: the events file and what a restart finds in it ------------------------------------


def test_events_file_replays_into_the_same_counts_and_ids(tmp_path: Path) -> None:
    zone = ZoneSpec(id="right", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])
    line = LineSpec(id="mid", points=((0.5, 0), (0.5, 1)))
    counter = SceneCounter([line], [zone])
    tracker = TrackerProcessor(TrackingSpec(min_frames=1))
    sink = EventsSink("run-1", "cam", tmp_path / "cam.events.jsonl")
    for result in run_chain([tracker, counter], list(range(0, 120))):
        sink.write(frame(result.index), result)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "cam.events.jsonl").read_text().splitlines()]
    assert lines[0]["v"] == 1 and lines[0]["run"] == "run-1" and lines[0]["source"] == "cam"
    assert {x["kind"] for x in lines} == {LINE_CROSS, ZONE_ENTER}
    (tmp_path / "cam.jsonl").write_text('{"v":2,"detections":[{"track_id":7}]}\n')
    assert max_track_id(tmp_path / "cam.jsonl", tmp_path / "cam.events.jsonl") == 7
    assert max_track_id(tmp_path / "missing.jsonl") == 0
    replayed = SceneCounter([line], [zone])
    replayed.restore(replay_events(tmp_path / "cam.events.jsonl", "run-1"))
    assert replayed.state() == counter.state()
    assert replay_events(tmp_path / "cam.events.jsonl", "another-run")["events"] == {}
    state = saved_state(tmp_path, "run-1", "cam")
    assert state["tracker"] == {"track_ids": 7}


# --- measuring against the truth (vsa.analytics.evaluate) -----------------------------------


def test_mot_metrics_of_perfect_and_swapped_tracks() -> None:
    from vsa.analytics.evaluate import mot_metrics

    truth = {
        k: [(0, "a", (k, 0, k + 10, 10), 1.0), (1, "b", (k, 50, k + 10, 60), 1.0)]
        for k in range(10)
    }
    perfect = {k: [(7, "a", (k, 0, k + 10, 10)), (8, "b", (k, 50, k + 10, 60))] for k in range(10)}
    m = mot_metrics(truth, perfect)
    assert (m["MOTA"], m["IDF1"], m["IDSW"], m["objects"], m["tracks"]) == (1.0, 1.0, 0, 2, 2)
    # the ids swap half way: two switches, IDF1 down to a half
    swapped = {
        k: [
            (7 if k < 5 else 8, "a", (k, 0, k + 10, 10)),
            (8 if k < 5 else 7, "b", (k, 50, k + 10, 60)),
        ]
        for k in range(10)
    }
    m = mot_metrics(truth, swapped)
    assert m["IDSW"] == 2 and m["IDF1"] == pytest.approx(0.5)
    # an object hardly visible is not required: missing it costs nothing, tracking it neither
    hidden = {k: [*truth[k], (2, "c", (200, 0, 210, 10), 0.1)] for k in range(10)}
    assert mot_metrics(hidden, perfect)["MOTA"] == 1.0
    extra = {k: [*perfect[k], (9, "c", (200, 0, 210, 10))] for k in range(10)}
    assert mot_metrics(hidden, extra)["FP"] == 0


def test_true_counts_follow_identities_through_the_same_counters() -> None:
    from vsa.analytics.evaluate import count_errors, true_counts

    line = LineSpec(id="mid", points=((0.5, 0), (0.5, 1)))
    truth = {k: [(3, "circle", (250 + 10 * k, 100, 290 + 10 * k, 140), 1.0)] for k in range(10)}
    counts = true_counts(truth, {k: k / 15 for k in truth}, [line], [], (W, H))
    assert counts["lines"]["mid"]["in"] == 1
    engine = {"lines": {"mid": {"in": 2, "out": 0}}, "zones": {}}
    assert count_errors(engine, counts) == {"mid.in": 1, "mid.out": 0}
