"""Resuming a stream after an engine restart (issue 23, items 9 and 13), no Ray: the files of the
earlier incarnations deleted while the engine was down, and an input file replaced meanwhile."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import media
from tests.component.test_reconnect import instant, wait_for
from vsa.config import JsonlSinkSpec, VideoSinkSpec
from vsa.runstate import carry_over
from vsa.schema import SourceStatus
from vsa.sinks import open_sinks, output_paths
from vsa.sources import SourceOptions, open_source
from vsa.sources.base import input_identity
from vsa.sources.errors import SourceError
from vsa.stream import StreamSettings, StreamWorker
from vsa.stream.outputs import EarlierOutputs
from vsa.supervision.runbook import merge

pytestmark = pytest.mark.usefixtures("strict_transitions")  # tests/fixtures.py

SPECS = [VideoSinkSpec(type="video"), JsonlSinkSpec(type="jsonl")]
# the last saved status of cam1 before the engine went down: 12 frames written, 2 stale
SAVED = {"frames_decoded": 14, "frames_inferred": 12, "frames_emitted": 12, "drops": {"stale": 2}}


def resumed_worker(out: Path, opener, uri: str = "rtsp://cam.example/live", **kw) -> StreamWorker:
    """cam1 resumed with the saved counters (as the source actor builds it)."""
    earlier = EarlierOutputs(SAVED["frames_emitted"], output_paths(SPECS, out, "cam1"))
    return StreamWorker(
        "run-1",
        "cam1",
        uri,
        lambda fps: open_sinks(SPECS, out, "run-1", "cam1", fps, resume=True),
        instant,
        StreamSettings(earlier=earlier, **kw),
        opener=opener,
    )


def never_opened(uri, options):
    raise AssertionError("a stream whose earlier outputs are gone must not connect")


@pytest.mark.parametrize("deleted", ["output_dir", "jsonl", "video"])
def test_outputs_deleted_while_the_engine_was_down_move_their_frames_to_output_lost(
    tmp_path, deleted
):
    out = tmp_path / "out"
    out.mkdir()
    for path in output_paths(SPECS, out, "cam1"):
        path.write_bytes(b"written before the restart\n")
    if deleted == "output_dir":
        shutil.rmtree(out)
    else:
        (out / ("cam1.jsonl" if deleted == "jsonl" else "cam1.mp4")).unlink()

    w = resumed_worker(out, never_opened)
    w.start()
    wait_for(lambda: w.done)
    w.stop(5)
    status = w.status()
    # what a mid-run deletion does: FAILED with SINK_ERROR saying which file went, and how many
    # frames went with it
    assert (status["state"], status["code"]) == ("FAILED", "SINK_ERROR"), status
    assert "deleted while it was down" in status["error"], status
    assert "12 frames written to it are lost" in status["error"], status
    assert [t["state"] for t in status["transitions"]] == ["CONNECTING", "FAILED"]
    assert status["drops"] == {"output_lost": 12}, status
    assert status["frames_decoded"] == status["frames_emitted"] + status["frames_dropped"]
    assert w.carried_lost == 12
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == (
        ["cam1.mp4"] if deleted == "jsonl" else ["cam1.jsonl"]
    )  # nothing recreated: no JSONL restarting at frame 0

    # the controller carries the saved counters over without those frames (the source actor
    # reports them in ``resumed``): no counter claims a frame that no file holds
    resumed = {"output_lost": w.carried_lost}
    if deleted == "video":  # the JSONL is still there: the actor read it
        resumed |= {"frame": 12, "emitted": 12}
    saved = SourceStatus.from_dict({"id": "cam1", "state": "STREAMING", **SAVED})
    emitted, decoded, lost = carry_over(saved, resumed)
    assert (emitted, decoded, lost) == (0, 2, 0)
    base = {"frames_decoded": decoded, "frames_inferred": emitted, "frames_emitted": emitted}
    total = merge({**base, "drops": SAVED["drops"]}, status)
    assert total["frames_emitted"] == 0
    assert total["drops"] == {"stale": 2, "output_lost": 12}
    assert total["frames_decoded"] == 14 == total["frames_emitted"] + total["frames_dropped"]


def test_outputs_that_are_still_there_are_continued(tmp_path):
    """The earlier files are there: the resumed stream goes on as before (no loss)."""
    out = tmp_path / "out"
    clip = media.good_clip(tmp_path, frames=6)
    w0 = StreamWorker(
        "run-1",
        "cam1",
        f"file://{clip}",
        lambda fps: open_sinks(SPECS, out, "run-1", "cam1", fps),
        instant,
    )
    w0.start()
    w0.join(60)
    assert w0.status()["state"] == "FINISHED"
    w = resumed_worker(out, open_source, uri=f"file://{clip}")
    w.start()
    assert w.join(60)
    status = w.status()
    assert status["state"] == "FINISHED" and status["frames_emitted"] == 6, status
    assert "output_lost" not in status["drops"] and w.carried_lost == 0
    assert len((out / "cam1.jsonl").read_text().splitlines()) == 12  # appended


def test_nothing_was_written_before_the_restart_so_nothing_is_lost(tmp_path):
    """A camera that never connected before the engine went down left no files: not a loss."""
    earlier = EarlierOutputs(0, output_paths(SPECS, tmp_path / "out", "cam1"))
    assert earlier.lost() is None


# --- item 13: a resumed input file that was replaced ------------------------------------------


def file_worker(clip: Path, out: Path, expected) -> StreamWorker:
    options = SourceOptions(expect_input=expected, resume_after_pts=0.2)
    return StreamWorker(
        "run-1",
        "cam1",
        f"file://{clip}",
        lambda fps: open_sinks(SPECS, out, "run-1", "cam1", fps, resume=True),
        instant,
        StreamSettings(options=options),
    )


@pytest.mark.parametrize("change", ["shorter", "same-size-other-bytes", "touched"])
def test_a_resumed_file_that_changed_fails_with_source_changed(tmp_path, change):
    clip = media.good_clip(tmp_path, frames=30)
    identity = input_identity(clip)
    if change == "shorter":
        media.good_clip(tmp_path, frames=10)  # replaced by a shorter clip of the same name
    elif change == "same-size-other-bytes":
        data = bytearray(clip.read_bytes())
        data[100] ^= 0xFF
        clip.write_bytes(bytes(data))
        st = os.stat(clip)
        os.utime(clip, ns=(st.st_atime_ns, identity["mtime_ns"]))  # even the same mtime
    else:
        st = os.stat(clip)
        os.utime(clip, ns=(st.st_atime_ns, identity["mtime_ns"] + 10**9))

    with pytest.raises(SourceError) as caught:
        open_source(f"file://{clip}", SourceOptions(expect_input=identity))
    err = caught.value
    assert err.code == "SOURCE_CHANGED" and err.permanent
    assert f"the input file {clip} changed while its stream was stopped" in str(err)
    assert "submit a new run for the new file" in str(err)
    if change == "shorter":
        assert f"size {identity['size']} -> {clip.stat().st_size}" in str(err)

    # the stream fails at once (a file is never retried) and writes nothing more
    w = file_worker(clip, tmp_path / "out", identity)
    w.start()
    assert w.join(30)
    status = w.status()
    assert (status["state"], status["code"]) == ("FAILED", "SOURCE_CHANGED"), status
    assert status["frames_decoded"] == 0 and not (tmp_path / "out" / "cam1.jsonl").exists()


def test_a_resumed_file_that_is_gone_fails_with_source_changed(tmp_path):
    clip = media.good_clip(tmp_path, frames=6)
    identity = input_identity(clip)
    clip.unlink()
    with pytest.raises(SourceError) as caught:
        open_source(f"file://{clip}", SourceOptions(expect_input=identity))
    assert caught.value.code == "SOURCE_CHANGED" and "was removed" in str(caught.value)


def test_an_unchanged_file_resumes_as_before(tmp_path):
    clip = media.good_clip(tmp_path, frames=30, fps=15)
    w = file_worker(clip, tmp_path / "out", input_identity(clip))
    w.start()
    assert w.join(60)
    status = w.status()
    assert status["state"] == "FINISHED", status
    assert status["frames_emitted"] == 30 - 4, status  # after pts 0.2 s: frames 4..29


def test_input_identity_is_size_mtime_and_a_hash_of_the_first_64_kib(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 70000)
    before = input_identity(path)
    assert set(before) == {"size", "mtime_ns", "sha256"} and before["size"] == 70000
    with open(path, "r+b") as f:  # a change past the first 64 KiB alone is not hashed
        f.seek(69000)
        f.write(b"b")
    os.utime(path, ns=(0, before["mtime_ns"]))
    assert input_identity(path) == before
