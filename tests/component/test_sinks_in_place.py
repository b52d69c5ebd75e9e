"""The video sink draws into the decoded frame itself when no later sink needs its pixels.

What the user sees must not change: the MP4 holds the same pictures and the JSONL the same
records as when the overlays were drawn on a copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vsa.config import JsonlSinkSpec, VideoSinkSpec
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.draw import draw_detections
from vsa.sinks import JsonlSink, open_sinks
from vsa.sinks.video import VideoSink, VideoWriter

W, H = 96, 64


def image(k: int) -> np.ndarray:
    out = np.full((H, W, 3), 90, np.uint8)
    x = (k * 5) % (W - 10)
    out[:, x : x + 10] = (40, 200, 60)
    return out


def detections(k: int) -> list[Detection]:
    x = 10 + k % 30
    mask = np.zeros((30, 40), bool)
    mask[5:25, 5:35] = True
    return [
        Detection("circle", 0, 0.9, (float(x), 20.0, float(x + 40), 50.0), mask),
        Detection("square", 1, 0.7, (60.0, 0.0, 96.0, 20.0), None),
    ]


def frame(k: int, read_only: bool = False) -> Frame:
    img = image(k)
    img.setflags(write=not read_only)
    return Frame(index=k, pts=k / 10, wall_time=1700000000.0 + k, image=img)


def result(k: int) -> FrameResult:
    return FrameResult(k, detections(k), 1.5, 1)


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> dict[Path, list[np.ndarray]]:
    """The pictures each video writer is handed, by file."""
    seen: dict[Path, list[np.ndarray]] = {}
    original = VideoWriter.write

    def write(self: VideoWriter, img: np.ndarray, pts: float | None = None) -> None:
        seen.setdefault(self.path, []).append(img.copy())
        original(self, img, pts)

    monkeypatch.setattr(VideoWriter, "write", write)
    return seen


def in_place_flags(sinks: list) -> list[bool]:
    return [s.draw_in_place for s in sinks if isinstance(s, VideoSink)]


@pytest.mark.parametrize(
    ("kinds", "flags"),
    [
        (["video", "jsonl"], [True]),  # the default: JSONL reads only the size
        (["jsonl", "video"], [True]),
        (["video"], [True]),
        (["video", "jsonl", "video"], [False, True]),  # the first must leave the pixels alone
    ],
)
def test_open_sinks_draws_in_place_only_in_the_last_video_sink(tmp_path, kinds, flags):
    specs = [
        VideoSinkSpec(type="video") if k == "video" else JsonlSinkSpec(type="jsonl") for k in kinds
    ]
    sinks = open_sinks(specs, tmp_path, "run-1", "cam1", fps=10.0)
    try:
        assert in_place_flags(sinks) == flags
    finally:
        for sink in sinks:
            sink.close()


def test_a_video_sink_made_directly_draws_on_a_copy(tmp_path):
    sink = VideoSink(VideoSinkSpec(type="video"), tmp_path / "cam1.mp4", 10.0)
    f = frame(0)
    before = f.image.copy()
    sink.write(f, result(0))
    sink.close()
    np.testing.assert_array_equal(f.image, before)


def run_sinks(out: Path, in_place: bool, read_only: bool = False) -> list[Frame]:
    sinks = open_sinks(
        [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")], out, "run-1", "cam1", 10.0
    )
    if not in_place:
        sinks[0].draw_in_place = False  # as before: drawn on a copy
    frames = []
    for k in range(6):
        f = frame(k, read_only)
        for sink in sinks:  # in order, as the stream writes them
            sink.write(f, result(k))
        frames.append(f)
    for sink in sinks:
        sink.close()
    return frames


def records(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("latency_ms")  # wall-clock dependent
    return lines


def test_in_place_writes_the_same_video_and_jsonl_as_a_copy(tmp_path, written):
    copied = run_sinks(tmp_path / "copy", in_place=False)
    drawn = run_sinks(tmp_path / "inplace", in_place=True)
    a, b = written[tmp_path / "copy" / "cam1.mp4"], written[tmp_path / "inplace" / "cam1.mp4"]
    assert len(a) == len(b) == 6
    for k in range(6):
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(b[k], draw_detections(image(k), detections(k)))
        np.testing.assert_array_equal(copied[k].image, image(k))  # copy: frame untouched
        np.testing.assert_array_equal(drawn[k].image, b[k])  # in place: the frame was drawn on
    assert records(tmp_path / "copy" / "cam1.jsonl") == records(tmp_path / "inplace" / "cam1.jsonl")
    for x, y in zip(
        decoded(tmp_path / "copy" / "cam1.mp4"),
        decoded(tmp_path / "inplace" / "cam1.mp4"),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


def test_read_only_frames_are_copied_and_left_alone(tmp_path, written):
    frames = run_sinks(tmp_path, in_place=True, read_only=True)
    pictures = written[tmp_path / "cam1.mp4"]
    for k, f in enumerate(frames):
        assert not f.image.flags.writeable
        np.testing.assert_array_equal(f.image, image(k))
        np.testing.assert_array_equal(pictures[k], draw_detections(image(k), detections(k)))
    assert len(decoded(tmp_path / "cam1.mp4")) == len(frames)


def test_a_second_video_sink_gets_the_undrawn_frame(tmp_path, written):
    first = VideoSink(VideoSinkSpec(type="video"), tmp_path / "a.mp4", 10.0)
    jsonl = JsonlSink("run-1", "cam1", tmp_path / "cam1.jsonl")
    last = VideoSink(VideoSinkSpec(type="video"), tmp_path / "b.mp4", 10.0, draw_in_place=True)
    for k in range(3):
        f = frame(k)
        for sink in (first, jsonl, last):
            sink.write(f, result(k))
    for sink in (first, jsonl, last):
        sink.close()
    for k in range(3):
        expected = draw_detections(image(k), detections(k))
        np.testing.assert_array_equal(written[tmp_path / "a.mp4"][k], expected)
        np.testing.assert_array_equal(written[tmp_path / "b.mp4"][k], expected)  # not drawn twice
