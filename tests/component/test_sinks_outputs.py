"""Output files: never written through a symlink, and a file that vanishes mid-run is noticed."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.component.test_sinks import decode, decode_tolerant
from vsa.config import JsonlSinkSpec, VideoSinkSpec
from vsa.sinks import (
    CHECK_INTERVAL_S,
    FrameResult,
    JsonlSink,
    OutputLost,
    VideoSink,
    open_sinks,
)
from vsa.sinks.jsonl import JsonlWriter, _drop_partial_last_line, count_lines, last_record
from vsa.sinks.video import VideoWriter
from vsa.sources.base import Frame

LINK_MESSAGE = "is a symbolic link; vsa does not write through links in its output directory"


def image(k: int, w: int = 96, h: int = 64) -> np.ndarray:
    out = np.full((h, w, 3), 90, np.uint8)
    x = (k * 3) % max(1, w - 8)
    out[:, x : x + 8] = (40, 200, 60)
    return out


def frame(k: int, w: int = 96, h: int = 64) -> Frame:
    return Frame(index=k, pts=k / 10, wall_time=1000.0 + k, image=image(k, w, h))


def result(k: int) -> FrameResult:
    return FrameResult(k, [], 1.0, 1)


def open_fds_on(path: Path) -> int:
    """How many of this process's descriptors point at ``path`` (Linux /proc)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in (str(path), f"{path} (deleted)"):
            n += 1
    return n


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the output directory that a planted link points at."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(b"precious data\npartial")
    return path


def assert_untouched(victim: Path) -> None:
    assert victim.read_bytes() == b"precious data\npartial"


# --- 1. no writing through symlinks ---------------------------------------------------------


@pytest.mark.parametrize("append", [False, True])
def test_jsonl_writer_refuses_a_link(tmp_path: Path, victim: Path, append: bool):
    path = tmp_path / "out" / "cam1.jsonl"
    path.parent.mkdir()
    path.symlink_to(victim)
    with pytest.raises(PermissionError) as info:
        JsonlWriter(path, append=append)
    assert str(info.value) == f"{path} {LINK_MESSAGE}"
    assert_untouched(victim)
    assert path.is_symlink()


def test_jsonl_writer_refuses_a_dangling_link(tmp_path: Path):
    target = tmp_path / "elsewhere" / "new.txt"
    path = tmp_path / "cam1.jsonl"
    path.symlink_to(target)
    with pytest.raises(PermissionError, match="is a symbolic link"):
        JsonlWriter(path)
    assert not target.exists()  # O_CREAT did not create the link's target


def test_jsonl_readers_refuse_a_link(tmp_path: Path, victim: Path):
    path = tmp_path / "cam1.jsonl"
    path.symlink_to(victim)
    for call in (
        lambda: _drop_partial_last_line(path),
        lambda: last_record(path, "run-1"),
        lambda: count_lines(path),
    ):
        with pytest.raises(PermissionError, match="is a symbolic link"):
            call()
    assert_untouched(victim)  # its partial last line was not cut


def test_jsonl_readers_on_plain_and_missing_files(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    assert last_record(path, "r") is None and count_lines(path) == 0
    _drop_partial_last_line(path)  # nothing to do
    assert not path.exists()
    path.write_bytes(b'{"run":"r","frame":0}\n{"run":"r","frame":1}\n{"run":"r","fr')
    assert count_lines(path) == 2
    assert last_record(path, "r") == {"run": "r", "frame": 1}
    assert last_record(path, "other") is None
    _drop_partial_last_line(path)
    assert path.read_bytes() == b'{"run":"r","frame":0}\n{"run":"r","frame":1}\n'
    path.write_bytes(b"no newline at all")
    _drop_partial_last_line(path)
    assert path.read_bytes() == b""


def test_jsonl_drop_partial_last_line_on_a_long_file(tmp_path: Path):
    path = tmp_path / "long.jsonl"
    line = b'{"frame":1,"pad":"' + b"x" * 1000 + b'"}\n'
    path.write_bytes(line * 3000 + b'{"frame": 2, "pad": "' + b"y" * 200_000)
    _drop_partial_last_line(path)
    assert path.read_bytes() == line * 3000


def test_jsonl_writer_append_continues_and_truncate_replaces(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":')
    w = JsonlWriter(path, append=True)
    w.write({"a": 2})
    w.close()
    assert path.read_bytes() == b'{"a":1}\n{"v":2,"a":2}\n'  # an old line, then a versioned one
    w = JsonlWriter(path)
    w.write({"a": 3})
    w.close()
    assert path.read_bytes() == b'{"v":2,"a":3}\n'
    assert oct(path.stat().st_mode & 0o777) == oct(0o644 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_video_writer_refuses_a_link(tmp_path: Path, victim: Path):
    path = tmp_path / "cam1.mp4"
    path.symlink_to(victim)
    writer = VideoWriter(path, fps=10)
    with pytest.raises(PermissionError) as info:
        writer.write(image(0), 0.0)  # the file is opened with the first frame
    assert str(info.value) == f"{path} {LINK_MESSAGE}"
    writer.close()
    assert_untouched(victim)


def test_open_sinks_refuse_links(tmp_path: Path, victim: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam1.mp4").symlink_to(victim)
    (out / "cam1.jsonl").symlink_to(victim)
    with pytest.raises(PermissionError, match="cam1.jsonl is a symbolic link"):
        open_sinks([JsonlSinkSpec(type="jsonl")], out, "r", "cam1", fps=10.0)
    [video] = open_sinks([VideoSinkSpec(type="video")], out, "r", "cam1", fps=10.0)
    with pytest.raises(PermissionError, match="cam1.mp4 is a symbolic link"):
        video.write(frame(0), result(0))
    video.close()
    assert_untouched(victim)


def test_video_segment_link_is_refused(tmp_path: Path, victim: Path):
    """A resolution change continues in ``cam1.part2.mp4``: a link there is refused too."""
    (tmp_path / "cam1.part2.mp4").symlink_to(tmp_path / "elsewhere" / "nothing-yet.mp4")
    sink = VideoSink(VideoSinkSpec(type="video"), tmp_path / "cam1.mp4", 10.0)
    sink.write(frame(0), result(0))
    with pytest.raises(PermissionError, match="cam1.part2.mp4 is a symbolic link"):
        sink.write(frame(1, 128, 64), result(1))
    assert not (tmp_path / "elsewhere" / "nothing-yet.mp4").exists()
    assert len(decode(tmp_path / "cam1.mp4")) == 1


def test_video_writer_close_closes_the_file(tmp_path: Path):
    path = tmp_path / "cam1.mp4"
    writer = VideoWriter(path, fps=10)
    for k in range(3):
        writer.write(image(k), k / 10)
    if os.path.isdir("/proc/self/fd"):
        assert open_fds_on(path) == 1
    writer.close()
    if os.path.isdir("/proc/self/fd"):
        assert open_fds_on(path) == 0
    assert len(decode(path)) == 3


def test_video_writer_killed_mid_write_leaves_a_playable_file(tmp_path: Path):
    """SIGKILL while writing through the file object: every frame but the last decodes."""
    path = tmp_path / "killed.mp4"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from vsa.sinks.video import VideoWriter
        w = VideoWriter({str(path)!r}, fps=10)
        for k in range(13):
            img = np.full((64, 96, 3), 90, np.uint8)
            img[:, (k * 3) % 88 : (k * 3) % 88 + 8] = (40, 200, 60)
            w.write(img, k / 10)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    frames = decode_tolerant(path)
    assert 12 <= len(frames) <= 13
    assert {(f.width, f.height) for f in frames} == {(96, 64)}


# --- 2. output deleted or replaced mid-run --------------------------------------------------


def test_jsonl_writer_missing(tmp_path: Path):
    path = tmp_path / "out" / "cam1.jsonl"
    writer = JsonlWriter(path)
    writer.write({"a": 1})
    assert writer.missing() is None
    shutil.rmtree(path.parent)
    assert writer.missing() == f"{path} was deleted"
    writer.write({"a": 2})  # still possible: the file is unlinked, not closed
    writer.close()
    assert writer.missing() == f"{path} was deleted"  # the identity outlives the file object


def test_jsonl_writer_missing_after_replace(tmp_path: Path):
    path = tmp_path / "cam1.jsonl"
    writer = JsonlWriter(path)
    other = tmp_path / "other.jsonl"
    other.write_text("{}\n")
    os.replace(other, path)
    assert writer.missing() == f"{path} was replaced by another file"
    writer.close()


def test_video_writer_missing(tmp_path: Path):
    path = tmp_path / "out" / "cam1.mp4"
    writer = VideoWriter(path, fps=10)
    assert writer.missing() is None  # no frame yet: no file, nothing to lose
    writer.write(image(0), 0.0)
    assert writer.missing() is None
    shutil.rmtree(path.parent)
    assert writer.missing() == f"{path} was deleted"
    writer.write(image(1), 0.1)
    writer.close()


def jsonl_sink(tmp_path: Path, clock: Clock, resume: bool = False) -> JsonlSink:
    return JsonlSink("run-1", "cam1", tmp_path / "out" / "cam1.jsonl", resume, clock=clock)


def video_sink(tmp_path: Path, clock: Clock) -> VideoSink:
    spec = VideoSinkSpec(type="video", draw_masks=False)
    return VideoSink(spec, tmp_path / "out" / "cam1.mp4", 10.0, clock=clock)


@pytest.mark.parametrize("make", [jsonl_sink, video_sink], ids=["jsonl", "video"])
def test_deleted_directory_is_reported_with_the_frames_it_held(tmp_path: Path, make):
    clock = Clock()
    sink = make(tmp_path, clock)
    for k in range(5):
        sink.write(frame(k), result(k))
        clock.t += 0.2
    assert sink.frames_written == 5
    shutil.rmtree(tmp_path / "out")
    sink.write(frame(5), result(5))  # checked 0.2 s ago: not yet noticed
    assert sink.frames_written == 6
    clock.t += CHECK_INTERVAL_S
    with pytest.raises(OutputLost) as info:
        sink.write(frame(6), result(6))  # checked before writing: frame 6 is not written
    lost = info.value
    assert lost.frames_lost == 6  # every frame this writer wrote: no file holds them now
    assert lost.path == sink.path
    assert lost.reason == f"{sink.path} was deleted"
    assert str(lost) == f"{sink.path} was deleted; 6 frames lost"
    assert sink.frames_written == 6 and sink.frames_lost == 6
    # reported once: later calls lose nothing more and close() only releases the file
    with pytest.raises(OutputLost) as again:
        sink.write(frame(7), result(7))
    assert again.value.frames_lost == 0 and again.value.reason == lost.reason
    sink.close()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [jsonl_sink, video_sink], ids=["jsonl", "video"])
def test_close_after_deletion_is_reported(tmp_path: Path, make):
    clock = Clock()
    sink = make(tmp_path, clock)
    for k in range(4):
        sink.write(frame(k), result(k))
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(OutputLost) as info:
        sink.close()  # checked at close whatever the clock says
    assert info.value.frames_lost == 4
    sink.close()  # a second close is quiet
    if os.path.isdir("/proc/self/fd"):
        assert open_fds_on(sink.path) == 0


@pytest.mark.parametrize("make", [jsonl_sink, video_sink], ids=["jsonl", "video"])
def test_replaced_file_is_reported(tmp_path: Path, make):
    clock = Clock()
    sink = make(tmp_path, clock)
    for k in range(3):
        sink.write(frame(k), result(k))
    other = tmp_path / "out" / "other"
    other.write_bytes(b"someone else's")
    os.replace(other, sink.path)
    clock.t += CHECK_INTERVAL_S
    with pytest.raises(OutputLost) as info:
        sink.write(frame(3), result(3))
    assert info.value.reason == f"{sink.path} was replaced by another file"
    assert info.value.frames_lost == 3
    sink.close()
    assert sink.path.read_bytes() == b"someone else's"


@pytest.mark.parametrize("make", [jsonl_sink, video_sink], ids=["jsonl", "video"])
def test_intact_output_is_checked_at_most_every_interval(tmp_path: Path, make, monkeypatch):
    clock = Clock()
    sink = make(tmp_path, clock)
    sink.write(frame(0), result(0))  # the video file exists from here on
    calls: list[float] = []
    original = sink.writer.missing
    monkeypatch.setattr(sink.writer, "missing", lambda: calls.append(clock.t) or original())
    for k in range(1, 41):
        clock.t += 0.05  # 20 frames a second for 2 s
        sink.write(frame(k), result(k))
    assert 3 <= len(calls) <= 4
    assert all(b - a >= CHECK_INTERVAL_S - 1e-9 for a, b in zip(calls, calls[1:], strict=False))
    sink.close()  # and once more at close
    assert len(calls) in (4, 5)
    assert sink.frames_written == 41 and sink.frames_lost == 0


def test_video_sink_checks_the_current_segment(tmp_path: Path):
    clock = Clock()
    sink = video_sink(tmp_path, clock)
    for k in range(3):
        sink.write(frame(k), result(k))
    for k in range(3, 5):
        sink.write(frame(k, 128, 64), result(k))  # cam1.part2.mp4
    assert [p.name for p in sink.segments] == ["cam1.mp4", "cam1.part2.mp4"]
    (tmp_path / "out" / "cam1.mp4").unlink()  # a finished segment: not watched
    clock.t += CHECK_INTERVAL_S
    sink.write(frame(5, 128, 64), result(5))
    (tmp_path / "out" / "cam1.part2.mp4").unlink()
    clock.t += CHECK_INTERVAL_S
    with pytest.raises(OutputLost) as info:
        sink.write(frame(6, 128, 64), result(6))
    assert info.value.path == tmp_path / "out" / "cam1.part2.mp4"
    assert info.value.frames_lost == 3  # the frames of the current segment
    assert sink.frames_written == 6
    sink.close()


def test_video_sink_checks_a_segment_when_it_ends(tmp_path: Path):
    """A size change closes the segment: a deleted one is reported then, not forgotten."""
    clock = Clock()
    sink = video_sink(tmp_path, clock)
    for k in range(3):
        sink.write(frame(k), result(k))
    (tmp_path / "out" / "cam1.mp4").unlink()
    with pytest.raises(OutputLost) as info:
        sink.write(frame(3, 128, 64), result(3))
    assert info.value.path == tmp_path / "out" / "cam1.mp4"
    assert info.value.frames_lost == 3
    sink.close()


def test_output_lost_survives_pickling():
    exc = OutputLost(Path("/x/cam1.mp4"), "/x/cam1.mp4 was deleted", 7)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.path, back.reason, back.frames_lost) == (exc.path, exc.reason, 7)
    assert str(back) == str(exc) == "/x/cam1.mp4 was deleted; 7 frames lost"


def test_open_sinks_count_frames_written(tmp_path: Path):
    specs = [VideoSinkSpec(type="video", draw_masks=False), JsonlSinkSpec(type="jsonl")]
    sinks = open_sinks(specs, tmp_path, "run-1", "cam1", fps=10.0)
    for k in range(4):
        for sink in sinks:
            sink.write(frame(k), result(k))
    assert [s.frames_written for s in sinks] == [4, 4]
    assert [s.missing() for s in sinks] == [None, None]
    for sink in sinks:
        sink.close()


def test_lost_checks_now_and_reports_once(tmp_path: Path):
    """``lost()``: after one sink raised, the stream asks the others, whatever their clock."""
    clock = Clock()
    jsonl, video = jsonl_sink(tmp_path, clock), video_sink(tmp_path, clock)
    for k in range(3):
        jsonl.write(frame(k), result(k))
        video.write(frame(k), result(k))
    assert jsonl.lost() is None and video.lost() is None
    shutil.rmtree(tmp_path / "out")
    found = video.lost()  # no interval to wait for
    assert found is not None and found.frames_lost == 3
    assert found.reason == f"{video.path} was deleted"
    assert video.lost() is found  # the same answer every time
    assert video.frames_lost == 3
    video.close()  # already reported: quiet
    with pytest.raises(OutputLost) as info:
        video.write(frame(3), result(3))
    assert info.value.frames_lost == 0
    # the other sink still raises its own loss, once, at its next check
    clock.t += CHECK_INTERVAL_S
    with pytest.raises(OutputLost) as info:
        jsonl.write(frame(3), result(3))
    assert info.value.frames_lost == 3
    assert jsonl.lost() is not None and jsonl.lost().frames_lost == 3
    jsonl.close()


def test_a_hard_link_or_a_fifo_at_an_output_name_is_refused_untouched(tmp_path):
    """O_NOFOLLOW stops symbolic links only: a planted hard link would truncate its victim,
    a FIFO would block the stream."""
    import os

    from vsa.sinks.jsonl import JsonlWriter
    from vsa.sinks.video import VideoWriter

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.link(victim, tmp_path / "cam1.jsonl")
    with pytest.raises(PermissionError, match="another name"):
        JsonlWriter(tmp_path / "cam1.jsonl")
    os.link(victim, tmp_path / "cam1.mp4")
    with pytest.raises(PermissionError, match="another name"):
        VideoWriter(tmp_path / "cam1.mp4").write(np.zeros((16, 16, 3), np.uint8))
    assert victim.read_text() == "precious"
    os.mkfifo(tmp_path / "cam2.jsonl")
    with pytest.raises(PermissionError, match="not a regular file"):
        JsonlWriter(tmp_path / "cam2.jsonl")
