"""The snapshot sink with real OpenCV JPEGs (no Ray): what triggers a picture, the cool-down,
the zone, the side file, the file limit, and that it reads the frame as decoded."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsa.config import JsonlSinkSpec, SnapshotSinkSpec, VideoSinkSpec
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.core.scene import LINE_CROSS, Event
from vsa.sinks import open_sinks
from vsa.sinks.snapshot import SnapshotSink, utc_name

T0 = 1_796_608_080.0  # 2026-12-07T01:48:00Z
W, H = 160, 120


def frame(k: int, fps: float = 10.0) -> Frame:
    image = np.full((H, W, 3), 90, np.uint8)
    return Frame(k, k / fps, T0 + k / fps, image=image)


def det(label: str, score: float = 0.9, box=(40, 30, 80, 70), track: int | None = None):
    return Detection(label, 0 if label == "circle" else 1, score, box, track_id=track)


def sink(tmp_path: Path, **spec) -> SnapshotSink:
    return SnapshotSink(SnapshotSinkSpec(type="snapshot", **spec), tmp_path / "cam", "run-1", "cam")


def pictures(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cam").glob("*.jpg"))


def test_a_detection_triggers_a_picture_per_class_and_the_cooldown_holds(tmp_path):
    s = sink(tmp_path, classes=["circle", "square"], min_score=0.5, cooldown_s=2.0)
    for k in range(40):  # 4 s at 10 fps; a circle all along, a square from 1 s on
        dets = [det("circle"), det("triangle")] + ([det("square")] if k >= 10 else [])
        dets.append(det("circle", score=0.3))  # too low: never a trigger on its own
        s.write(frame(k), FrameResult(k, dets, 1.0, 1))
    names = pictures(tmp_path)
    # circle at 0, 2, 4 s... within 4 s: 0 and 2 s; square at 1 and 3 s
    assert names == [
        f"{utc_name(T0)}_circle.jpg",
        f"{utc_name(T0 + 1)}_square.jpg",
        f"{utc_name(T0 + 2)}_circle.jpg",
        f"{utc_name(T0 + 3)}_square.jpg",
    ]
    assert s.counts() == {"snapshots": 4, "cooled": 40 - 2 + 30 - 2}
    side = json.loads((tmp_path / "cam" / names[0]).with_suffix(".json").read_text())
    assert side["v"] == 1 and side["frame"] == 0 and side["class"] == "circle"
    assert side["trigger"] == "detection" and len(side["detections"]) == 3
    picture = cv2.imread(str(tmp_path / "cam" / names[0]))
    assert picture.shape == (H, W, 3)
    assert np.abs(picture.astype(int) - 90).max() > 100  # the overlays are drawn on it


def test_a_track_triggers_once_and_a_new_track_again(tmp_path):
    s = sink(tmp_path, cooldown_s=0)
    for k in range(30):
        tracks = [det("circle", track=1)] + ([det("circle", track=2)] if k >= 20 else [])
        s.write(frame(k), FrameResult(k, tracks, 1.0, 1))
    assert len(pictures(tmp_path)) == 2  # track 1 when it appeared, track 2 when it did


def test_only_detections_inside_the_zone_trigger(tmp_path):
    s = sink(tmp_path, zone=[[0.5, 0], [1, 0], [1, 1], [0.5, 1]], cooldown_s=0)
    s.write(frame(0), FrameResult(0, [det("circle", box=(10, 10, 50, 50))], 1.0, 1))
    assert pictures(tmp_path) == []
    s.write(frame(1), FrameResult(1, [det("circle", box=(100, 10, 140, 50))], 1.0, 1))
    assert len(pictures(tmp_path)) == 1


def test_analytics_events_trigger_without_detections_triggering(tmp_path):
    s = sink(tmp_path, on_detection=False, events=["line_cross"])
    crossing = Event(LINE_CROSS, "door", 7, "square", 5, 0.5, T0 + 0.5, direction="in")
    s.write(frame(4), FrameResult(4, [det("square", track=7)], 1.0, 1))
    assert pictures(tmp_path) == []
    s.write(frame(5), FrameResult(5, [det("square", track=7)], 1.0, 1, events=(crossing,)))
    (name,) = pictures(tmp_path)
    side = json.loads((tmp_path / "cam" / name).with_suffix(".json").read_text())
    assert side["trigger"] == "line_cross" and side["events"][0]["line"] == "door"


def test_the_newest_max_files_are_kept_with_an_earlier_incarnations(tmp_path):
    s = sink(tmp_path, cooldown_s=0, max_files=3)
    for k in range(2):
        s.write(frame(k), FrameResult(k, [det("circle", track=k)], 1.0, 1))
    again = sink(tmp_path, cooldown_s=0, max_files=3)  # a restarted stream
    for k in range(2, 5):
        again.write(frame(k), FrameResult(k, [det("circle", track=k)], 1.0, 1))
    names = pictures(tmp_path)
    assert names == [f"{utc_name(T0 + k / 10)}_circle.jpg" for k in (2, 3, 4)]
    assert sorted((tmp_path / "cam").glob("*.json")) == [
        (tmp_path / "cam" / n).with_suffix(".json") for n in names
    ]


def test_behind_a_video_sink_nobody_draws_into_the_decoded_frame(tmp_path):
    specs = [
        VideoSinkSpec(type="video"),
        JsonlSinkSpec(type="jsonl"),
        SnapshotSinkSpec(type="snapshot", cooldown_s=0),
    ]
    sinks = open_sinks(specs, tmp_path, "run-1", "cam", 10.0)
    assert [s.sink_name for s in sinks] == ["video", "jsonl", "snapshot"]
    assert [s.policy for s in sinks] == ["required", "required", "best_effort"]
    f = frame(0)
    for s in sinks:
        s.write(f, FrameResult(0, [det("circle")], 1.0, 1))
    for s in sinks:
        s.close()
    assert (f.image == 90).all()  # the video sink drew on a copy: the snapshot saw the frame
    assert len(pictures(tmp_path)) == 1


def test_a_symbolic_link_at_the_folder_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cam").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="symbolic link"):
        sink(tmp_path)
