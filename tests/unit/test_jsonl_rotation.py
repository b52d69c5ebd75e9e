"""JSONL and events files rotated by size: the current file keeps its name, the rotated ones
sort by time, a restarted stream finds its place, ids and counts in them, and claims and
--overwrite see them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_analytics import frame as make_frame
from vsa.analytics.resume import saved_state
from vsa.config import parse_run
from vsa.core.frames import FrameResult
from vsa.outputs import run_files
from vsa.sinks import JsonlSink, OutputLost
from vsa.sinks.jsonl import (
    JsonlWriter,
    count_all_lines,
    last_record,
    rotated_files,
)

T0 = 1_796_608_080.0  # 2026-12-07T01:48:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 0.4  # several rotations within one second get -2, -3...
        return self.now


def record(k: int, run: str = "run-1") -> dict:
    return {"run": run, "frame": k, "detections": [{"track_id": k // 10}], "pad": "x" * 200}


def test_rotated_files_sort_by_time_and_hold_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "cam.jsonl"
    writer = JsonlWriter(path, rotate_bytes=2048, clock=Clock())
    for k in range(60):
        writer.write(record(k))
    writer.close()
    rotated = rotated_files(path)
    assert len(rotated) == writer.rotations >= 5
    assert rotated[0].name == "cam.20261207T014800Z.jsonl"
    assert rotated[1].name == "cam.20261207T014800Z-2.jsonl"  # the same second, later
    frames = [
        json.loads(line)["frame"] for p in (*rotated, path) for line in p.read_text().splitlines()
    ]
    assert frames == list(range(60))
    assert writer.lines_written == 60 and writer.lines_in_file == len(path.read_text().splitlines())
    assert count_all_lines(path) == 60


def test_a_restart_right_after_a_rotation_finds_its_place_in_the_rotated_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cam.jsonl"
    writer = JsonlWriter(path, rotate_bytes=2048, clock=Clock())
    k = 0
    while writer.rotations == 0 or writer.lines_in_file:  # until the file was just rotated
        writer.write(record(k))
        k += 1
    writer.close()
    assert path.read_text() == ""
    assert last_record(path, "run-1")["frame"] == k - 1
    assert last_record(path, "another-run") is None


def test_only_the_current_file_is_watched(tmp_path: Path) -> None:
    sink = JsonlSink("run-1", "cam", tmp_path / "cam.jsonl", rotate_bytes=2048, check_interval_s=0)
    sink.writer._clock = Clock()
    for k in range(30):
        sink.write(make_frame(k), FrameResult(k, [], 1.0, 1))
    for old in rotated_files(tmp_path / "cam.jsonl"):
        old.unlink()  # a user's retention: not a loss
    sink.write(make_frame(30), FrameResult(30, [], 1.0, 1))
    in_current = sink.writer.lines_in_file
    (tmp_path / "cam.jsonl").unlink()
    lost = sink.lost()
    assert isinstance(lost, OutputLost) and lost.frames_lost == in_current < 31


def test_ids_and_counts_come_back_from_rotated_files(tmp_path: Path) -> None:
    (tmp_path / "cam.20261207T014800Z.jsonl").write_text('{"v":2,"detections":[{"track_id":41}]}\n')
    (tmp_path / "cam.jsonl").write_text('{"v":2,"detections":[{"track_id":7}]}\n')
    crossing = {"v": 1, "run": "run-1", "kind": "line_cross", "line": "door", "direction": "in",
                "class": "person", "track_id": 41}  # fmt: skip
    (tmp_path / "cam.events.20261207T014800Z.jsonl").write_text(json.dumps(crossing) + "\n")
    (tmp_path / "cam.events.jsonl").write_text(json.dumps({**crossing, "track_id": 7}) + "\n")
    state = saved_state(tmp_path, "run-1", "cam")
    assert state["tracker"] == {"track_ids": 41}
    assert state["scene"]["lines"] == {"door": {"in": {"person": 2}, "out": {}}}
    assert state["scene"]["events"] == {"line_cross": 2}


def test_claims_and_overwrite_see_rotated_files(tmp_path: Path) -> None:
    spec = parse_run(
        {
            "name": "r",
            "output_dir": str(tmp_path),
            "sources": [
                {
                    "id": "cam",
                    "uri": "synthetic://shapes?frames=3",
                    "lines": [{"id": "door", "points": [[0.5, 0], [0.5, 1]]}],
                }  # fmt: skip
            ],
            "sinks": [{"type": "jsonl", "rotate_size": "2KB"}],
        }
    )
    assert spec.sinks[0].rotate_size == 2000
    names = ["cam.jsonl", "cam.20261207T014800Z.jsonl", "cam.20261207T014800Z-2.jsonl",
             "cam.events.jsonl", "cam.events.20261207T014800Z.jsonl", "cam.x.jsonl"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("{}\n")
    found = sorted(p.name for p in run_files(spec, tmp_path))
    assert found == sorted(names[:-1])
