"""Output failures are the sink's, never the camera's; a stop always ends exact (no Ray)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from tests.component.test_reconnect import Scripted, instant, wait_for
from vsa.config import JsonlSinkSpec, ReconnectSpec, VideoSinkSpec
from vsa.sinks import open_sinks
from vsa.sources.synthetic import SyntheticSource
from vsa.stream import SourceState, StreamSettings, StreamWorker

pytestmark = pytest.mark.usefixtures("strict_transitions")  # tests/fixtures.py

URI = "rtsp://cam.example/live"  # a network source: camera errors are retried


def worker(tmp_path: Path, opener, sinks_factory=None, **kw) -> StreamWorker:
    specs = [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
    return StreamWorker(
        "run-1",
        "cam1",
        URI,
        sinks_factory or (lambda fps: open_sinks(specs, tmp_path / "out", "run-1", "cam1", fps)),
        instant,
        StreamSettings(reconnect=ReconnectSpec(initial_s=0.01, max_s=0.05), **kw),
        opener=opener,
    )


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EROFS, "Read-only file system"),
        NotADirectoryError(errno.ENOTDIR, "Not a directory"),
        IsADirectoryError(errno.EISDIR, "Is a directory"),
    ],
    ids=["read-only", "output_dir-is-a-file", "path-taken-by-a-directory"],
)
def test_outputs_that_cannot_be_opened_fail_the_source_and_are_never_retried(tmp_path, error):
    script = Scripted([(5, "hang")] * 3)

    def sinks(fps):
        raise error

    w = worker(tmp_path, script, sinks)
    w.start()
    wait_for(lambda: w.done)
    status = w.status()
    assert status["state"] == "FAILED" and status["code"] == "SINK_ERROR", status
    assert "RECONNECTING" not in [t["state"] for t in status["transitions"]]
    assert script.connections == 1  # the camera was opened once, not hammered


def test_a_real_read_only_directory_fails_the_source_with_sink_error(tmp_path):
    (tmp_path / "out").write_text("a file where the output directory should be")
    script = Scripted([(5, "hang")] * 3)
    w = worker(tmp_path, script)
    w.start()
    wait_for(lambda: w.done)
    assert (w.status()["state"], w.status()["code"]) == ("FAILED", "SINK_ERROR")
    assert script.connections == 1


def test_output_directory_deleted_mid_stream_moves_its_frames_to_output_lost(tmp_path):
    def camera(uri, options):  # a paced camera: frames keep coming after the deletion
        return SyntheticSource("synthetic://shapes?fps=50&width=64&height=48", options)

    w = worker(tmp_path, camera)
    w.start()
    try:
        wait_for(lambda: w.status()["frames_emitted"] >= 20)
        shutil.rmtree(tmp_path / "out")
        wait_for(lambda: w.done)
    finally:
        w.stop(10)
    status = w.status()
    assert status["code"] == "SINK_ERROR" and "deleted" in status["error"], status
    assert status["frames_emitted"] == 0, status  # no file holds a single frame
    assert status["drops"]["output_lost"] >= 20, status
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]


def test_a_file_deleted_after_the_last_write_is_found_at_close(tmp_path):
    script = Scripted([(10, "hang")])
    w = worker(tmp_path, script)
    w.start()
    try:
        wait_for(lambda: w.status()["frames_emitted"] == 10)
        (tmp_path / "out" / "cam1.jsonl").unlink()
    finally:
        script.release.set()
        w.stop(5)
    status = w.status()
    assert (status["state"], status["code"]) == ("FAILED", "SINK_ERROR"), status
    assert status["frames_emitted"] == 0 and status["drops"]["output_lost"] == 10, status
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "1"])
def test_stop_refuses_a_timeout_that_is_not_a_positive_number(tmp_path, timeout):
    w = worker(tmp_path, Scripted([]))
    with pytest.raises(ValueError, match="stop timeout must be a positive number"):
        w.stop(timeout)


def test_a_very_short_stop_still_ends_terminal_with_exact_counts(tmp_path):
    script = Scripted([(100000, None)])
    w = worker(tmp_path, script)
    w.start()
    wait_for(lambda: w.status()["frames_emitted"] >= 10)
    w.stop(0.001)
    status = w.status()
    assert SourceState(status["state"]).terminal, status
    assert status["in_flight"] == 0, status
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]


def test_a_terminal_state_is_final(tmp_path):
    """A decode thread that wakes after the stop ended the source cannot revive it."""
    w = worker(tmp_path, Scripted([]))
    w.books.machine.enter(SourceState.STOPPED)
    w.books.machine.enter(SourceState.STREAMING)
    assert w.status()["state"] == "STOPPED"
    assert [t["state"] for t in w.status()["transitions"]] == ["CONNECTING", "STOPPED"]


# --- the per-sink failure policy (vsa.sinktypes, vsa.stream.outputs) -------------------------


SYNTHETIC = "synthetic://shapes?fps=50&width=64&height=48&frames="  # ends: never reconnected


def finite_worker(tmp_path: Path, frames: int, sinks_factory) -> StreamWorker:
    return StreamWorker(
        "run-1", "cam1", f"{SYNTHETIC}{frames}", sinks_factory, instant, StreamSettings()
    )


def test_a_best_effort_sink_whose_file_is_deleted_loses_its_frames_and_the_stream_goes_on(
    tmp_path,
):
    specs = [VideoSinkSpec(type="video", policy="best_effort"), JsonlSinkSpec(type="jsonl")]
    w = finite_worker(
        tmp_path, 60, lambda fps: open_sinks(specs, tmp_path / "out", "run-1", "cam1", fps)
    )
    w.start()
    wait_for(lambda: w.status()["frames_emitted"] >= 10)
    (tmp_path / "out" / "cam1.mp4").unlink()  # the recording vanishes mid-stream
    wait_for(lambda: w.done)
    status = w.status()
    # the stream's record (the required JSONL) is whole: nothing failed, nothing dropped
    assert status["state"] == "FINISHED" and status["code"] is None, status
    assert status["frames_emitted"] == 60 and status["frames_dropped"] == 0, status
    assert len((tmp_path / "out" / "cam1.jsonl").read_text().splitlines()) == 60
    video, jsonl = status["sinks"]["video"], status["sinks"]["jsonl"]
    assert jsonl == {"policy": "required", "written": 60, "lost": {}}
    # every frame the stream emitted is written or lost for the video sink, by cause
    assert video["policy"] == "best_effort" and video["lost"]["output_lost"] >= 10, video
    assert video["written"] + sum(video["lost"].values()) == 60, video


class _Failing:
    """A best-effort sink whose writes fail from its ``fail_from``-th frame on."""

    def __init__(self, fail_from: int) -> None:
        self.fail_from, self.calls = fail_from, 0
        self.sink_name, self.policy = "flaky", "best_effort"

    def write(self, frame, result) -> None:
        self.calls += 1
        if self.calls > self.fail_from:
            raise ConnectionError("the broker went away")

    def close(self) -> None:
        pass


def test_a_failing_best_effort_sink_is_counted_and_the_others_get_every_frame(tmp_path):
    specs = [JsonlSinkSpec(type="jsonl")]
    flaky = _Failing(fail_from=4)

    def sinks(fps):
        return [flaky, *open_sinks(specs, tmp_path / "out", "run-1", "cam1", fps)]

    w = finite_worker(tmp_path, 12, sinks)
    w.start()
    wait_for(lambda: w.done)
    status = w.status()
    assert status["state"] == "FINISHED" and status["frames_emitted"] == 12, status
    assert status["sinks"]["flaky"] == {
        "policy": "best_effort",
        "written": 4,
        "lost": {"sink_error": 8},
    }
    assert status["sinks"]["jsonl"]["written"] == 12  # after the failing one, every frame


def test_a_failing_required_sink_still_fails_the_stream(tmp_path):
    specs = [JsonlSinkSpec(type="jsonl")]
    flaky = _Failing(fail_from=4)
    flaky.policy = "required"

    def sinks(fps):
        return [flaky, *open_sinks(specs, tmp_path / "out", "run-1", "cam1", fps)]

    w = finite_worker(tmp_path, 12, sinks)
    w.start()
    wait_for(lambda: w.done)
    status = w.status()
    assert (status["state"], status["code"]) == ("FAILED", "SINK_ERROR"), status
    assert status["frames_emitted"] == 4
