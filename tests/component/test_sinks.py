"""Sinks: the MP4 writer, JSON lines, per-frame records and mask RLE."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vsa.config import JsonlSinkSpec, VideoSinkSpec
from vsa.models.base import Detection, rle_decode, rle_encode
from vsa.sinks import FrameResult, JsonlSink, VideoSink, frame_record, open_sinks
from vsa.sinks.jsonl import JsonlWriter
from vsa.sinks.video import VideoWriter
from vsa.sources.base import Frame


def image(k: int, w: int = 96, h: int = 64) -> np.ndarray:
    """A frame that differs from its neighbours (a bar that moves)."""
    out = np.full((h, w, 3), 90, np.uint8)
    x = (k * 3) % (w - 8)
    out[:, x : x + 8] = (40, 200, 60)
    return out


def decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def decode_tolerant(path: Path) -> list[av.VideoFrame]:
    """Frames of a file still being written: stop at the first incomplete packet."""
    frames: list[av.VideoFrame] = []
    with av.open(str(path)) as container:
        try:
            for packet in container.demux(video=0):
                frames += packet.decode()
        except av.error.FFmpegError:
            pass
    return frames


# --- VideoWriter ----------------------------------------------------------------------------


def test_video_writer_writes_every_frame(tmp_path: Path):
    path = tmp_path / "sub" / "a.mp4"  # parent directories are created
    writer = VideoWriter(path, fps=15)
    for k in range(12):
        writer.write(image(k), k / 15)
    assert writer.frames_written == 12
    writer.close()
    frames = decode(path)
    assert len(frames) == 12
    assert {(f.width, f.height) for f in frames} == {(96, 64)}


def test_video_writer_keeps_the_picture(tmp_path: Path):
    path = tmp_path / "a.mp4"
    writer = VideoWriter(path, fps=10, crf=10)
    source = [image(k) for k in range(5)]
    for k, img in enumerate(source):
        writer.write(img, k / 10)
    writer.close()
    decoded = [f.to_ndarray(format="bgr24") for f in decode(path)]
    for original, back in zip(source, decoded, strict=True):
        assert np.abs(original.astype(int) - back.astype(int)).mean() < 6


@pytest.mark.parametrize(("w", "h"), [(97, 65), (96, 65), (97, 64)])
def test_odd_sizes_are_padded_to_even(tmp_path: Path, w: int, h: int):
    path = tmp_path / "odd.mp4"
    writer = VideoWriter(path, fps=10)
    for k in range(4):
        writer.write(image(k, w, h), k / 10)
    writer.close()
    frames = decode(path)
    assert len(frames) == 4
    # yuv420p needs even sizes: the edge row/column is repeated (cropping would lose a
    # 1-pixel-wide video entirely; see test_sinks_sizes.py)
    assert {(f.width, f.height) for f in frames} == {(w + w % 2, h + h % 2)}


def test_frames_without_pts_are_spaced_at_the_nominal_rate(tmp_path: Path):
    path = tmp_path / "nopts.mp4"
    writer = VideoWriter(path, fps=20)
    for k in range(6):
        writer.write(image(k))
    writer.close()
    times = [f.time for f in decode(path)]
    assert len(times) == 6
    steps = np.diff(times)
    assert np.allclose(steps, 0.05, atol=1e-3), times


def test_pts_are_kept(tmp_path: Path):
    path = tmp_path / "pts.mp4"
    given = [0.0, 0.1, 0.3, 0.4, 0.7, 0.8]  # on the 1/fps grid, with gaps
    writer = VideoWriter(path, fps=10)
    for k, pts in enumerate(given):
        writer.write(image(k), pts)
    writer.close()
    times = [f.time for f in decode(path)]
    # the muxer may shift the whole timeline (B-frame delay); the spacing is kept
    assert np.allclose(np.array(times) - times[0], given, atol=1e-3), times


def test_pts_strictly_increasing_even_when_given_equal_or_backwards(tmp_path: Path):
    path = tmp_path / "pts.mp4"
    given = [0.0, 0.1, 0.1, 0.05, None, 0.5]  # equal, backwards, missing
    writer = VideoWriter(path, fps=10)
    for k, pts in enumerate(given):
        writer.write(image(k), pts)
    writer.close()
    times = [f.time for f in decode(path)]
    assert len(times) == 6
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), times
    # equal or backwards: one frame step after the last, and later pts keep that shift;
    # missing: one frame step
    assert np.allclose(np.array(times) - times[0], [0, 0.1, 0.2, 0.3, 0.4, 0.75], atol=1e-3)
    assert writer.discontinuities == 2


def test_timestamp_jumps_keep_the_video_continuous(tmp_path: Path):
    """A reconnect restarts pts at 0; a camera clock jumps an hour: the video plays on."""
    path = tmp_path / "jumps.mp4"
    given = [5.0, 5.1, 5.2, 0.0, 0.1, 3600.1, 3600.2, 3600.4]
    writer = VideoWriter(path, fps=10)
    for k, pts in enumerate(given):
        writer.write(image(k), pts)
    writer.close()
    times = [f.time for f in decode(path)]
    expected = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8]  # the 0.2 s gap after the jump is kept
    assert np.allclose(np.array(times) - times[0], expected, atol=1e-3), times
    assert writer.discontinuities == 2


def test_fragmented_file_is_readable_before_close(tmp_path: Path):
    path = tmp_path / "live.mp4"
    writer = VideoWriter(path, fps=10)
    try:
        for k in range(60):
            writer.write(image(k), k / 10)
        frames = decode_tolerant(path)  # the writer is still open
        # a fragment per frame, no encoder lookahead: all but the last frame are on disk
        assert len(frames) >= 59
        assert {(f.width, f.height) for f in frames} == {(96, 64)}
    finally:
        writer.close()
    assert len(decode(path)) == 60


def test_size_change_raises_a_clear_error(tmp_path: Path):
    writer = VideoWriter(tmp_path / "cam7.mp4", fps=10)
    writer.write(image(0, 96, 64), 0.0)
    writer.write(image(1, 95, 63), 0.1)  # pads to the same size: fine
    with pytest.raises(ValueError) as info:
        writer.write(image(2, 128, 64), 0.2)
    assert str(info.value) == "cam7.mp4: frame size changed from 96x64 to 128x64"
    writer.close()
    assert len(decode(tmp_path / "cam7.mp4")) == 2


def test_close_without_frames_and_twice(tmp_path: Path):
    writer = VideoWriter(tmp_path / "empty.mp4")
    writer.close()
    writer.close()
    assert not (tmp_path / "empty.mp4").exists()
    assert writer.fps == 25.0  # no or bad fps: 25


def test_non_fragmented_file(tmp_path: Path):
    path = tmp_path / "plain.mp4"
    writer = VideoWriter(path, fps=10, fragmented=False)
    for k in range(5):
        writer.write(image(k), k / 10)
    writer.close()
    assert len(decode(path)) == 5


# --- JSONL ----------------------------------------------------------------------------------


def test_jsonl_writer_lines_parse_and_are_flushed(tmp_path: Path):
    path = tmp_path / "deep" / "a.jsonl"
    writer = JsonlWriter(path)
    records = [{"frame": k, "x": [1.5, None], "s": "é"} for k in range(3)]
    for r in records:
        writer.write(r)
    # flushed line by line: readable while open
    # each line carries the schema version first (issue 25)
    expected = [{"v": 2, **r} for r in records]
    assert [json.loads(line) for line in path.read_text().splitlines()] == expected
    assert writer.lines_written == 3
    writer.close()
    writer.close()
    assert path.read_text().count("\n") == 3


# --- frame records --------------------------------------------------------------------------


def test_frame_record_fields():
    img = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:25] = True
    det = Detection("circle", 0, 0.876543, (10.26, 20.0, 39.96, 39.98), mask)
    frame = Frame(7, 0.4666666667, 1700000000.1234567, img, decode_s=0.0031234)
    result = FrameResult(
        index=7,
        detections=[det],
        infer_ms=12.34567,
        batch_size=3,
        arrived=1700000000.1434567,
        queue_ms=5.4321,
    )
    record = frame_record("run-1", "cam1", frame, result)
    assert set(record) == {
        "run",
        "source",
        "frame",
        "pts",
        "capture_time",
        "latency_ms",
        "infer_ms",
        "decode_ms",
        "to_engine_ms",
        "queue_ms",
        "batch",
        "batch_size",
        "width",
        "height",
        "detections",
    }
    assert record["run"] == "run-1"
    assert record["source"] == "cam1"
    assert record["frame"] == 7
    assert record["pts"] == 0.466667
    assert record["latency_ms"] > 0  # capture (2023) to now
    assert record["capture_time"] == pytest.approx(1700000000.123457, abs=1e-6)
    assert record["infer_ms"] == 12.346
    # where the latency went: decode, capture to the engine, waiting for the batch
    assert record["decode_ms"] == 3.12
    assert record["to_engine_ms"] == pytest.approx(20.0, abs=0.01)
    assert record["queue_ms"] == 5.43
    assert record["batch_size"] == 3
    assert (record["width"], record["height"]) == (80, 60)
    [d] = record["detections"]
    assert d["label"] == "circle"
    assert d["class_id"] == 0
    assert d["score"] == 0.8765
    assert d["box"] == [10.3, 20.0, 40.0, 40.0]
    # the mask is a full-frame COCO RLE placed at mask_box()
    assert d["mask"]["size"] == [60, 80]
    full = rle_decode(d["mask"])
    expected = np.zeros((60, 80), bool)
    x1, y1, x2, y2 = det.mask_box()
    assert (x1, y1, x2, y2) == (10, 20, 40, 40)
    expected[y1:y2, x1:x2] = mask[: y2 - y1, : x2 - x1]
    np.testing.assert_array_equal(full, expected)
    assert full.sum() == mask.sum()
    json.dumps(record)  # serialisable as is


def test_frame_record_without_pts_or_masks():
    frame = Frame(index=0, pts=None, wall_time=1.0, image=np.zeros((4, 6, 3), np.uint8))
    det = Detection("square", 1, 0.5, (0.0, 0.0, 2.0, 2.0))
    record = frame_record("r", "s", frame, FrameResult(0, [det], 0.0, 1))
    assert record["pts"] is None
    assert "mask" not in record["detections"][0]
    assert frame_record("r", "s", frame, FrameResult(0, [], 0.0, 1))["detections"] == []


def test_open_sinks_and_write(tmp_path: Path):
    specs = [VideoSinkSpec(type="video", draw_masks=False), JsonlSinkSpec(type="jsonl")]
    sinks = open_sinks(specs, tmp_path / "out", "run-1", "cam1", fps=10.0)
    assert [type(s) for s in sinks] == [VideoSink, JsonlSink]
    for k in range(3):
        frame = Frame(index=k, pts=k / 10, wall_time=float(k), image=image(k))
        for sink in sinks:
            sink.write(frame, FrameResult(k, [], 1.0, 1))
    for sink in sinks:
        sink.close()
    assert len(decode(tmp_path / "out" / "cam1.mp4")) == 3
    lines = (tmp_path / "out" / "cam1.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2]
    assert {json.loads(line)["source"] for line in lines} == {"cam1"}


# --- RLE ------------------------------------------------------------------------------------

RLE_KNOWN = [
    pytest.param([[0, 1], [1, 1]], [1, 3], id="column-major"),
    pytest.param([[1, 0], [0, 0]], [0, 1, 3], id="first-pixel-set-starts-with-zero-run"),
    pytest.param([[0, 0, 0], [0, 0, 0]], [6], id="all-zero"),
    pytest.param([[1, 1, 1], [1, 1, 1]], [0, 6], id="all-one"),
    pytest.param([[1, 0, 1]], [0, 1, 1, 1], id="alternating"),
]


@pytest.mark.parametrize(("mask", "counts"), RLE_KNOWN)
def test_rle_encode_known(mask: list[list[int]], counts: list[int]):
    arr = np.array(mask, bool)
    rle = rle_encode(arr)
    assert rle == {"size": list(arr.shape), "counts": counts}
    np.testing.assert_array_equal(rle_decode(rle), arr)


@pytest.mark.parametrize("seed", range(8))
def test_rle_round_trip_random(seed: int):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    density = [0.0, 1.0, 0.5, 0.05, 0.95][seed % 5]
    mask = rng.random((h, w)) < density
    if seed == 7:
        mask[:] = False
        mask[0, 0] = True  # only the first pixel
    rle = rle_encode(mask)
    assert sum(rle["counts"]) == h * w
    assert all(c >= 0 for c in rle["counts"])
    assert all(c > 0 for c in rle["counts"][1:])
    back = rle_decode(rle)
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)
    json.dumps(rle)  # plain ints
