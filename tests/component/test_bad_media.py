"""Bad media through the real PyAV source and a real stream worker: each fails or recovers
with a clear code, every frame is accounted for, and the outputs stay playable.

The files come from ``tests/media.py``; inference is an instant stand-in (no model), since
what is under test is decoding, accounting and the sinks.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import av
import pytest

from tests import media
from vsa.config import JsonlSinkSpec, VideoSinkSpec
from vsa.sinks import FrameResult, open_sinks
from vsa.sources import Frame, SourceOptions
from vsa.stream import StreamSettings, StreamWorker

pytestmark = pytest.mark.usefixtures("strict_transitions")  # tests/fixtures.py

TIMEOUT = 60.0


def instant(chunk: list[Frame], *terms: object) -> Future:  # terms: ignored
    fut: Future = Future()
    fut.set_result([FrameResult(f.index, [], 0.0, len(chunk)) for f in chunk])
    return fut


def run_file(path: Path, out: Path, **options) -> dict:
    sinks = [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
    worker = StreamWorker(
        "run-1",
        "cam1",
        f"file://{path}",
        lambda fps: open_sinks(sinks, out, "run-1", "cam1", fps),
        instant,
        StreamSettings(options=SourceOptions(**options)),
    )
    worker.start()
    assert worker.join(TIMEOUT), "the worker did not end"
    status = worker.status()
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]
    return status


def video_frames(path: Path) -> list[tuple[int, int, float]]:
    with av.open(str(path)) as c:
        return [(f.width, f.height, f.time) for f in c.decode(video=0)]


def jsonl_frames(out: Path) -> list[int]:
    return [json.loads(x)["frame"] for x in (out / "cam1.jsonl").read_text().splitlines()]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.mark.parametrize("make", [media.empty_file, media.not_video, media.truncated_mp4])
def test_unreadable_files_fail_with_corrupt_data(make, tmp_path: Path, out: Path):
    path = make(tmp_path)
    status = run_file(path, out)
    assert status["state"] == "FAILED"
    assert status["code"] == "CORRUPT_DATA"
    assert status["error"].startswith("CORRUPT_DATA: Invalid data found")
    assert status["frames_decoded"] == 0
    assert not (out / "cam1.mp4").exists()  # nothing opened for a source that never opened


def test_truncated_file_keeps_what_decodes(tmp_path: Path, out: Path):
    status = run_file(media.truncated_faststart_mp4(tmp_path), out)
    assert status["state"] == "FINISHED", status["error"]
    assert status["frames_emitted"] >= 10
    assert set(status["drops"]) <= {"decode_error"}
    assert len(video_frames(out / "cam1.mp4")) == status["frames_emitted"]


def test_corrupt_packets_skip_to_the_next_keyframe_and_are_counted(tmp_path: Path, out: Path):
    status = run_file(media.corrupt_packets(tmp_path), out)
    assert status["state"] == "FINISHED"
    first_bad = min(media.CORRUPT_PACKETS)
    next_key = (first_bad // media.GOP + 1) * media.GOP
    skipped = next_key - first_bad  # the damaged packet and the rest of its GOP
    assert status["drops"] == {"decode_error": skipped}
    assert status["frames_decoded"] == media.CORRUPT_FRAMES
    assert status["frames_emitted"] == media.CORRUPT_FRAMES - skipped
    assert jsonl_frames(out) == [
        k for k in range(media.CORRUPT_FRAMES) if not first_bad <= k < next_key
    ]
    assert len(video_frames(out / "cam1.mp4")) == status["frames_emitted"]


def test_unsupported_codec(tmp_path: Path, out: Path):
    status = run_file(media.unsupported_codec(tmp_path), out)
    assert status["state"] == "FAILED"
    assert status["code"] == "UNSUPPORTED_CODEC"
    assert "no decoder" in status["error"]


def test_resolution_change_starts_a_new_video_segment(tmp_path: Path, out: Path):
    status = run_file(media.resolution_change(tmp_path), out)
    assert status["state"] == "FINISHED"
    n = media.RES_CHANGE_FRAMES
    assert status["frames_emitted"] == 2 * n
    (w1, h1), (w2, h2) = media.RES_CHANGE_SIZES
    assert {(w, h) for w, h, _ in video_frames(out / "cam1.mp4")} == {(w1, h1)}
    assert len(video_frames(out / "cam1.mp4")) == n
    assert {(w, h) for w, h, _ in video_frames(out / "cam1.part2.mp4")} == {(w2, h2)}
    assert len(video_frames(out / "cam1.part2.mp4")) == n
    assert jsonl_frames(out) == list(range(2 * n))  # one JSONL across segments


def test_huge_frames_are_refused_unless_allowed(tmp_path: Path, out: Path):
    path = media.huge_frame(tmp_path)
    status = run_file(path, out)
    assert status["state"] == "FAILED"
    assert status["code"] == "FRAME_TOO_LARGE"
    assert "7680x4320" in status["error"] and "max_frame_pixels" in status["error"]
    w, h = media.HUGE_SIZE
    status = run_file(path, tmp_path / "allowed", max_frame_pixels=w * h)
    assert status["state"] == "FINISHED" and status["frames_emitted"] == 3


def test_timestamp_jumps_keep_a_continuous_video(tmp_path: Path, out: Path):
    status = run_file(media.timestamp_jumps(tmp_path), out)
    assert status["state"] == "FINISHED"
    frames = video_frames(out / "cam1.mp4")
    assert len(frames) == status["frames_emitted"] == 30
    times = [t for _, _, t in frames]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] - times[0] < 10  # not an hour of frozen picture


def test_stream_starting_mid_gop_waits_for_its_first_keyframe(tmp_path: Path, out: Path):
    status = run_file(media.mid_gop(tmp_path), out)
    assert status["state"] == "FINISHED"
    assert status["drops"] == {"decode_error": 9}  # the P-frames before the first keyframe
    assert status["frames_emitted"] == media.MID_GOP_FRAMES - 1 - 9
    assert len(video_frames(out / "cam1.mp4")) == status["frames_emitted"]


def test_good_clip_is_untouched(tmp_path: Path, out: Path):
    status = run_file(media.good_clip(tmp_path), out)
    assert status["state"] == "FINISHED"
    assert status["frames_emitted"] == 30 and status["drops"] == {}
