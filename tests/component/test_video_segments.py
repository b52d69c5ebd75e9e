"""Recordings (issue 26): the video sink's segments, retention, and what it records (draw,
info line, fps, scale), with real PyAV/x264 on small frames. Segment boundaries follow the
frames' timestamps and names their capture times, so no test sleeps."""

from __future__ import annotations

import calendar
from pathlib import Path

import numpy as np
import pytest

from tests.component.test_sinks import decode, decode_tolerant
from vsa.config import ConfigError, VideoSinkSpec, parse_run, video_files
from vsa.core.detections import Detection
from vsa.core.frames import Frame, FrameResult
from vsa.outputs import run_files
from vsa.sinks import OutputLost
from vsa.sinks.video import VideoSink

W, H, FPS = 64, 48, 10
T0 = float(calendar.timegm((2026, 12, 7, 1, 48, 0, 0, 0, 0)))  # 2026-12-07T01:48:00Z


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def image(k: int) -> np.ndarray:
    """A grey picture with a bar that moves."""
    out = np.full((H, W, 3), 90, np.uint8)
    x = (k * 3) % (W - 8)
    out[:, x : x + 8] = (40, 200, 60)
    return out


def frame(k: int, start: float = T0, pts0: float = 0.0) -> Frame:
    return Frame(index=k, pts=pts0 + k / FPS, wall_time=start + k / FPS, image=image(k))


def result(k: int) -> FrameResult:
    mask = np.zeros((20, 30), bool)
    mask[2:18, 2:28] = True
    return FrameResult(k, [Detection("person", 0, 0.9, (8.0, 10.0, 38.0, 30.0), mask)], 1.0, 1)


def sink(tmp_path: Path, resume: bool = False, **fields) -> VideoSink:
    fields = {"segment_s": 1, **fields}
    clocks = {k: fields.pop(k) for k in ("clock", "wall_clock") if k in fields}
    spec = VideoSinkSpec(type="video", **fields)
    return VideoSink(spec, tmp_path / "out" / "cam1.mp4", float(FPS), resume, **clocks)


def folder(tmp_path: Path) -> Path:
    return tmp_path / "out" / "cam1" / "video"


def names(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in folder(tmp_path).iterdir())


def write(s: VideoSink, frames: range, **kw) -> None:
    for k in frames:
        s.write(frame(k, **kw), result(k))


def test_segments_are_cut_on_the_timeline_named_by_utc_start_and_each_plays(tmp_path: Path):
    s = sink(tmp_path)
    write(s, range(35))  # 3.5 segments' worth
    expected = [f"cam1_20261207T0148{sec:02d}Z.mp4" for sec in range(4)]
    assert names(tmp_path) == expected  # sorted by name is sorted by time
    assert [p.name for p in s.segments] == expected
    for path in s.segments[:3]:  # closed: complete MP4s of their own
        frames = decode(path)
        assert len(frames) == 10
        assert frames[0].key_frame and frames[0].time == 0  # each starts with a keyframe, at 0
    assert len(decode_tolerant(s.segments[3])) >= 4  # the open one: all but its last frame
    s.close()
    counts = [len(decode(p)) for p in s.segments]
    assert counts == [10, 10, 10, 5]
    assert sum(counts) == s.frames_written == 35
    assert s.frames_skipped == 0 and s.frames_lost == 0


def test_segments_follow_the_timeline_when_timestamps_restart_or_are_missing(tmp_path: Path):
    s = sink(tmp_path)
    write(s, range(15))
    write(s, range(15, 25), pts0=-1.5)  # a reconnect: timestamps start again at 0
    s.close()
    assert [len(decode(p)) for p in s.segments] == [10, 10, 5]
    untimed = sink(tmp_path / "untimed")
    for k in range(25):  # no timestamps: a frame step (1/fps of the source) each
        untimed.write(Frame(k, None, T0 + k / FPS, image(k)), result(k))
    untimed.close()
    assert [len(decode(p)) for p in untimed.segments] == [10, 10, 5]


def test_a_resolution_change_starts_a_segment_that_sorts_after_the_last(tmp_path: Path):
    s = sink(tmp_path, segment_s=600)
    write(s, range(3))
    big = Frame(index=3, pts=0.3, wall_time=T0 + 0.3, image=np.zeros((2 * H, 2 * W, 3), np.uint8))
    s.write(big, result(3))  # the same second as the first segment's start: named a second on
    s.close()
    assert names(tmp_path) == ["cam1_20261207T014800Z.mp4", "cam1_20261207T014801Z.mp4"]
    assert [(f.width, len(decode(p))) for p in s.segments for f in decode(p)[:1]] == [
        (W, 3),
        (2 * W, 1),
    ]


def test_the_run_files_and_the_first_files_of_a_segmented_recording(tmp_path: Path):
    s = sink(tmp_path)
    write(s, range(25))
    s.close()
    run = {
        "name": "r",
        "output_dir": str(tmp_path / "out"),
        "sources": [{"id": "cam1", "uri": "synthetic://shapes?frames=3"}],
        "sinks": [{"type": "video", "segment_s": 1}],
    }
    spec = parse_run(run)
    found = run_files(spec, tmp_path / "out")  # what --overwrite replaces, what a claim sees
    assert sorted(p.name for p in found) == names(tmp_path) and len(found) == 3
    assert video_files(spec.sinks[0], "cam1") == []  # a resume demands no fixed name
    assert video_files(VideoSinkSpec(type="video"), "cam1") == ["cam1.mp4"]


def test_retention_by_bytes_deletes_the_oldest_closed_segments_only(tmp_path: Path):
    reference = sink(tmp_path / "ref")
    write(reference, range(35))
    reference.close()
    sizes = [p.stat().st_size for p in reference.segments]
    s1, s2, s3, _ = sizes
    assert all(s > 1000 for s in sizes)
    limit = s2 + s3 + s1 // 2  # holds two full segments, not three
    s = sink(tmp_path, retention={"max_bytes": limit})
    for k in range(35):
        s.write(frame(k), result(k))
        assert s.writer.path.exists()  # the open segment is never deleted
    assert names(tmp_path) == [  # the first went when the third closed
        "cam1_20261207T014801Z.mp4",
        "cam1_20261207T014802Z.mp4",
        "cam1_20261207T014803Z.mp4",
    ]
    assert [p.name for p in s.segments] == names(tmp_path)
    s.close()  # the last one closes: the oldest go while over the limit, the newest stays
    kept = names(tmp_path)
    assert kept == [p.name for p in reference.segments][-len(kept) :]
    assert sum(sizes[-len(kept) :]) <= limit < sum(sizes[-len(kept) - 1 :])
    assert s.segments_deleted == 4 - len(kept)

    tiny = sink(tmp_path / "tiny", retention={"max_bytes": "1B"})
    write(tiny, range(25))
    assert [p.name for p in folder(tmp_path / "tiny").iterdir()] == [tiny.writer.path.name]
    tiny.close()
    assert [p.name for p in folder(tmp_path / "tiny").iterdir()] == [tiny.writer.path.name]
    assert len(decode(tiny.writer.path)) == 5


def test_retention_by_age_deletes_segments_that_started_too_long_ago(tmp_path: Path):
    wall = Clock(T0)
    s = sink(tmp_path, retention={"max_age_h": 2 / 3600}, wall_clock=wall)  # 2 s
    for k in range(35):
        wall.t = T0 + k / FPS
        s.write(frame(k), result(k))
    # at the third cut (now 01:48:03) only the segment of 01:48:00 started over 2 s ago
    assert names(tmp_path) == [f"cam1_20261207T0148{sec:02d}Z.mp4" for sec in (1, 2, 3)]
    wall.t = T0 + 86_400  # a day later, at close: every closed one is too old but the newest
    s.close()
    assert names(tmp_path) == ["cam1_20261207T014803Z.mp4"]
    assert len(decode(folder(tmp_path) / "cam1_20261207T014803Z.mp4")) == 5


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def first_picture(path: Path) -> np.ndarray:
    return decode(path)[0].to_ndarray(format="bgr24")


def recorded(tmp_path: Path, name: str, frames: int = 1, **fields) -> VideoSink:
    s = sink(tmp_path / name, segment_s=None, crf=10, draw_masks=True, **fields)
    write(s, range(frames))
    s.close()
    return s


def test_draw_none_records_the_frames_as_decode(tmp_path: Path):
    raw = image(0)
    plain = first_picture(recorded(tmp_path, "none", draw="none").path)
    drawn = first_picture(recorded(tmp_path, "overlay").path)
    assert mean_difference(plain, raw) < 4  # x264's and yuv420p's loss only
    assert mean_difference(drawn, raw) > 5 * max(mean_difference(plain, raw), 1)


def test_the_info_line_is_drawn_in_its_corner(tmp_path: Path):
    plain = first_picture(recorded(tmp_path, "plain", draw="none").path)
    info = first_picture(recorded(tmp_path, "info", draw="none", info=True).path)
    corner, rest = (slice(0, 8), slice(0, 32)), (slice(24, H), slice(32, W))
    assert mean_difference(info[corner], plain[corner]) > 30
    assert mean_difference(info[rest], plain[rest]) < 2


def test_the_recording_fps_skips_frames_without_losing_them(tmp_path: Path):
    s = recorded(tmp_path, "half", frames=35, fps=FPS / 2)
    assert (s.frames_written, s.frames_skipped, s.frames_lost) == (18, 17, 0)
    frames = decode(s.path)
    assert len(frames) == 18
    assert [round(f.time, 3) for f in frames[:3]] == [0.0, 0.2, 0.4]  # every other frame
    segmented = sink(tmp_path / "seg", fps=FPS / 2)
    write(segmented, range(35))
    segmented.close()
    assert [len(decode(p)) for p in segmented.segments] == [5, 5, 5, 3]


def test_scale_halves_the_size(tmp_path: Path):
    frames = decode(recorded(tmp_path, "small", frames=3, scale=0.5).path)
    assert {(f.width, f.height) for f in frames} == {(W // 2, H // 2)}
    assert len(frames) == 3


def test_a_deleted_open_segment_is_an_output_lost(tmp_path: Path):
    clock = Clock(100.0)
    s = sink(tmp_path, clock=clock)
    write(s, range(15))  # 01:48:00 closed (10 frames), 01:48:01 open (5)
    first, current = s.segments
    first.unlink()  # a closed segment: not watched, nothing lost
    clock.t += 10
    s.write(frame(15), result(15))
    current.unlink()
    clock.t += 10
    with pytest.raises(OutputLost) as info:
        s.write(frame(16), result(16))
    assert info.value.path == current
    assert info.value.frames_lost == 6 == s.frames_lost
    s.close()


def test_a_resumed_recording_starts_a_new_segment_and_keeps_the_old_ones(tmp_path: Path):
    before = sink(tmp_path)
    write(before, range(15))
    before.close()  # 01:48:00 (10 frames), 01:48:01 (5)
    # restarted within the same second: the source's timestamps start again at 0
    after = sink(tmp_path, resume=True)
    assert [p.name for p in after.segments] == names(tmp_path)
    write(after, range(5), start=T0 + 1.5)
    after.close()
    assert names(tmp_path) == [f"cam1_20261207T0148{sec:02d}Z.mp4" for sec in (0, 1, 2)]
    assert [p.name for p in after.segments] == names(tmp_path)
    assert [len(decode(p)) for p in after.segments] == [10, 5, 5]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"segment_s": 0.5}, "segment_s: must be at least 1 second"),
        ({"retention": {"max_age_h": 24}}, "retention: needs segment_s"),
        ({"segment_s": 60, "retention": {}}, "retention: give max_age_h, max_bytes or both"),
        ({"segment_s": 60, "retention": {"max_bytes": "lots"}}, "'lots' is not a size"),
        ({"scale": 0}, "scale: must be in (0, 1]"),
        ({"scale": 2}, "scale: must be in (0, 1]"),
        ({"fps": 0}, "fps: must be more than 0"),
        ({"draw": "boxes"}, "draw: Input should be 'overlay' or 'none'"),
    ],
)
def test_recording_fields_are_checked(fields: dict, problem: str):
    run = {
        "name": "r",
        "output_dir": "/tmp/vsa-recordings",
        "sources": [{"id": "cam1", "uri": "synthetic://shapes?frames=3"}],
        "sinks": [{"type": "video", **fields}],
    }
    with pytest.raises(ConfigError) as info:
        parse_run(run)
    assert len(info.value.problems) == 1
    assert problem in info.value.problems[0]


def test_sizes_are_read_in_decimal_and_binary_units():
    def max_bytes(value: object) -> int | None:
        spec = VideoSinkSpec(type="video", segment_s=600, retention={"max_bytes": value})
        return spec.retention.max_bytes

    assert max_bytes("50GB") == 50 * 10**9
    assert max_bytes("50 GiB") == 50 * 2**30
    assert max_bytes("1.5MB") == 1_500_000
    assert max_bytes(12345) == max_bytes("12345") == 12345
