"""The JSONL line's schema version (issue 25): ``"v": 2`` first on every line written, a
detection's ``track_id``/``attributes`` only when set, and readers that take lines with or
without ``v`` (a file begun by an older vsa is resumed and appended to as it is).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.sinks import JsonlSink, frame_record
from vsa.sinks.jsonl import (
    SCHEMA_VERSION,
    JsonlWriter,
    count_lines,
    last_record,
    record_version,
)

OLD_LINE = (
    '{"run":"r1","source":"cam1","frame":4,"pts":0.4,"capture_time":1.0,"latency_ms":2.0,'
    '"infer_ms":1.0,"decode_ms":0.5,"to_engine_ms":0.1,"queue_ms":0.2,"batch_size":1,"batch":4,'
    '"width":6,"height":4,"detections":[{"label":"sq","class_id":1,"score":0.5,"box":[0,0,2,2]}]}'
)  # a line as vsa wrote it before the version key


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_frames(path: Path, results: list[FrameResult], resume: bool = False) -> None:
    sink = JsonlSink("r1", "cam1", path, resume)
    for result in results:
        frame = Frame(result.index, result.index / 10, 1.0, np.zeros((4, 6, 3), np.uint8))
        sink.write(frame, result)
    sink.close()


def test_every_line_starts_with_the_version(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    writer = JsonlWriter(path)
    writer.write({"frame": 0, "x": 1})
    writer.close()
    assert SCHEMA_VERSION == 2
    assert path.read_text() == '{"v":2,"frame":0,"x":1}\n'


def test_todays_lines_differ_only_by_the_version(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    det = Detection("sq", 1, 0.5, (0.0, 0.0, 2.0, 2.0))
    write_frames(path, [FrameResult(0, [det], 1.0, 1)])
    [line] = lines(path)
    frame = Frame(0, 0.0, 1.0, np.zeros((4, 6, 3), np.uint8))
    expected = frame_record("r1", "cam1", frame, FrameResult(0, [det], 1.0, 1))
    assert list(line) == ["v", *expected]
    assert line["detections"] == [{"label": "sq", "class_id": 1, "score": 0.5, "box": [0, 0, 2, 2]}]


def test_track_id_and_attributes_reach_the_line_when_set(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    dets = [
        Detection("sq", 1, 0.5, (0.0, 0.0, 2.0, 2.0)),
        Detection("sq", 1, 0.5, (0.0, 0.0, 2.0, 2.0), track_id=7),
        Detection("sq", 1, 0.5, (0.0, 0.0, 2.0, 2.0), attributes={"color": "red", "xy": [1, 2]}),
    ]
    write_frames(path, [FrameResult(0, dets, 1.0, 1)])
    plain, tracked, attributed = lines(path)[0]["detections"]
    assert "track_id" not in plain and "attributes" not in plain
    assert tracked["track_id"] == 7 and "attributes" not in tracked
    assert attributed["attributes"] == {"color": "red", "xy": [1, 2]}
    assert "track_id" not in attributed


def test_an_old_file_is_resumed_and_appended_to(tmp_path: Path):
    """Written by an older vsa (no ``v``), killed mid-line, then resumed after an upgrade."""
    path = tmp_path / "cam1.jsonl"
    path.write_text(f"{OLD_LINE}\n{OLD_LINE[:40]}")
    assert last_record(path, "r1")["frame"] == 4
    assert record_version(last_record(path, "r1")) == 1
    write_frames(path, [FrameResult(5, [], 1.0, 1)], resume=True)
    old, new = lines(path)
    assert "v" not in old and new["v"] == 2
    assert count_lines(path) == 2
    last = last_record(path, "r1")
    assert last["frame"] == 5 and record_version(last) == 2
    assert last_record(path, "other-run") is None


VERSIONS = [
    pytest.param({"frame": 1}, 1, id="no-key-is-1"),
    pytest.param({"v": 2, "frame": 1}, 2, id="2"),
    pytest.param({"v": 3, "frame": 1}, 3, id="newer"),
    pytest.param({"v": "2", "frame": 1}, 1, id="not-an-int"),
    pytest.param({"v": True, "frame": 1}, 1, id="bool"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "expected"), VERSIONS)
def test_record_version(record: dict, expected: int):
    assert record_version(record) == expected


def test_last_record_reads_a_newer_version_too(tmp_path: Path):
    """A downgrade resumes from a newer vsa's file: only ``run`` and ``frame`` are read."""
    path = tmp_path / "cam1.jsonl"
    path.write_text('{"v":3,"run":"r1","frame":9,"new_field":{"a":1}}\n')
    assert last_record(path, "r1")["frame"] == 9
