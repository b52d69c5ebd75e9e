"""``SourceOptions.resume_after_pts``: a restarted source goes on right after the last frame
written, without yielding (or counting) the frames before it again.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests import media
from vsa.sources import SourceOptions, open_source
from vsa.sources.av_source import AvSource
from vsa.sources.synthetic import ShapesScene, SyntheticParams, SyntheticSource

FPS = 15


class Skips:
    """An ``on_skip`` that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, cause: str, count: int) -> None:
        self.calls.append((cause, count))


def decode(path: Path, **options) -> tuple[list, Skips]:
    skips = Skips()
    source = AvSource(f"file://{path}", SourceOptions(on_skip=skips, **options))
    try:
        return list(source.frames()), skips
    finally:
        source.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.gop_clip(tmp_path_factory.mktemp("resume"), fps=FPS)


@pytest.fixture(scope="module")
def full(clip: Path) -> list:
    frames, skips = decode(clip)
    assert len(frames) == media.RESUME_FRAMES and skips.calls == []
    return frames


def test_options_default_to_no_resume():
    assert SourceOptions().resume_after_pts is None

    class Spec:
        open_timeout_s = read_timeout_s = stall_timeout_s = 1.0
        rtsp_transport, max_frame_pixels, on_end = "tcp", 100, "auto"

    assert SourceOptions.from_spec(Spec()).resume_after_pts is None


def assert_resumed(got: list, full: list, first: int) -> None:
    assert len(got) == len(full) - first
    assert got[0].pts == full[first].pts
    for a, b in zip(got, full[first:], strict=True):
        assert a.pts == b.pts
        assert np.array_equal(a.image, b.image), f"frame at pts {a.pts} differs"
    assert [f.index for f in got] == list(range(first, len(full)))  # real positions


def test_file_resumes_right_after_the_given_pts(clip: Path, full: list):
    got, skips = decode(clip, resume_after_pts=full[57].pts)
    assert len(got) == 62
    assert_resumed(got, full, 58)
    assert skips.calls == []  # the frames before were accounted by the earlier process


def test_file_resume_seeks_instead_of_decoding_from_the_start(
    clip: Path, full: list, monkeypatch: pytest.MonkeyPatch
):
    seeks: list[tuple] = []
    real_seek = av.container.InputContainer.seek

    def seek(self, offset, **kwargs):
        stream = kwargs.get("stream")  # read while the container is open
        facts = {k: v for k, v in kwargs.items() if k != "stream"}
        facts["stream"] = None if stream is None else (stream.type, stream.time_base)
        seeks.append((offset, facts))
        return real_seek(self, offset, **kwargs)

    monkeypatch.setattr(av.container.InputContainer, "seek", seek)
    demuxed = 0
    real_demux = av.container.InputContainer.demux

    def demux(self, *args, **kwargs):
        nonlocal demuxed
        for packet in real_demux(self, *args, **kwargs):
            demuxed += 1
            yield packet

    monkeypatch.setattr(av.container.InputContainer, "demux", demux)
    source = AvSource(f"file://{clip}", SourceOptions(resume_after_pts=full[57].pts))
    got = list(source.frames())
    source.close()
    assert_resumed(got, full, 58)
    assert len(seeks) == 1
    offset, kwargs = seeks[0]
    kind, time_base = kwargs.pop("stream")
    assert kind == "video"  # by the video stream's timestamps
    assert offset == int(full[57].pts / time_base)
    assert kwargs == {"backward": True, "any_frame": False}
    # the seek lands on the keyframe at or before frame 57 (frame 48, GOP 12): 48..119 + flush
    key = 57 // media.RESUME_GOP * media.RESUME_GOP
    assert demuxed <= media.RESUME_FRAMES - key + 1


def test_file_resume_falls_back_to_decoding_from_the_start_when_seeking_fails(
    clip: Path, full: list, monkeypatch: pytest.MonkeyPatch
):
    def seek(self, offset, **kwargs):
        raise av.error.ValueError(22, "not seekable")

    monkeypatch.setattr(av.container.InputContainer, "seek", seek)
    got, skips = decode(clip, resume_after_pts=full[57].pts)
    assert_resumed(got, full, 58)
    assert skips.calls == []


@pytest.mark.parametrize("offset_periods", [-0.2, 0.0, 0.2])
def test_file_resume_tolerates_a_quarter_frame_of_rounding(
    clip: Path, full: list, offset_periods: float
):
    got, _ = decode(clip, resume_after_pts=full[57].pts + offset_periods / FPS)
    assert got[0].pts == full[58].pts and len(got) == 62


@pytest.mark.parametrize(
    ("after", "first"),
    [(-1.0, 0), (0.0, 1), (media.RESUME_GOP - 1, media.RESUME_GOP), (media.RESUME_GOP, 13)],
)
def test_file_resume_at_edges_and_keyframes(clip: Path, full: list, after: float, first: int):
    pts = after if after < 0 else full[int(after)].pts
    got, skips = decode(clip, resume_after_pts=pts)
    assert_resumed(got, full, first)
    assert skips.calls == []


def test_file_resume_after_the_last_frame_yields_nothing(clip: Path, full: list):
    got, skips = decode(clip, resume_after_pts=full[-1].pts)
    assert got == [] and skips.calls == []


def test_resume_does_not_count_damage_before_the_resume_point(tmp_path: Path):
    path = media.corrupt_packets(tmp_path)
    everything, skips = decode(path)
    assert skips.calls  # the damaged packets are counted in a normal run
    resume_at = 20  # the keyframe after the damage (packets 12, 13, 17 lose frames 12..19)
    times = {round(f.pts * FPS): f for f in everything}
    got, skips = decode(path, resume_after_pts=times[resume_at].pts)
    assert skips.calls == []
    assert [round(f.pts * FPS) for f in got] == list(range(resume_at + 1, media.CORRUPT_FRAMES))
    for frame in got:
        assert np.array_equal(frame.image, times[round(frame.pts * FPS)].image)


def test_resume_does_not_count_a_mid_gop_start_before_the_resume_point(tmp_path: Path):
    path = media.mid_gop(tmp_path)
    everything = {round(f.pts * FPS): f for f in decode(path)[0]}
    # MPEG-TS has no index: this seek lands on a P-frame, so the source decodes from the start
    got, skips = decode(path, resume_after_pts=12 / FPS)
    assert skips.calls == []
    assert [round(f.pts * FPS) for f in got] == list(range(13, media.MID_GOP_FRAMES))
    for frame in got:
        assert np.array_equal(frame.image, everything[round(frame.pts * FPS)].image)
    assert [f.index for f in got] == list(range(12, media.MID_GOP_FRAMES - 1))  # pts 1 is 0


def test_endless_sources_ignore_resume(clip: Path):
    source = AvSource(f"file://{clip}", SourceOptions(resume_after_pts=5.0))
    source.live = source.endless = True  # a camera: resuming is for finite inputs only
    frames = list(source.frames())
    source.close()
    assert len(frames) == media.RESUME_FRAMES


# --- synthetic ------------------------------------------------------------------------------

SYN = "synthetic://shapes?seed=7&width=96&height=64&pace=0&fps=15&frames=400"


def test_synthetic_resumes_after_the_given_pts():
    options = SourceOptions(resume_after_pts=199 / 15)
    frames = list(open_source(SYN, options).frames())
    assert [f.index for f in frames] == list(range(200, 400))
    scene = ShapesScene(SyntheticParams.from_uri(SYN))
    for frame in frames[::37] + frames[-1:]:
        assert frame.pts == frame.index / 15
        image, truth = scene.render(frame.index)
        assert np.array_equal(frame.image, image)
        assert [t["box"] for t in frame.truth] == [t["box"] for t in truth]


def test_synthetic_resume_renders_no_skipped_frame(monkeypatch: pytest.MonkeyPatch):
    rendered: list[int] = []
    real = ShapesScene.render

    def render(self, k):
        rendered.append(k)
        return real(self, k)

    monkeypatch.setattr(ShapesScene, "render", render)
    source = SyntheticSource(SYN, SourceOptions(resume_after_pts=199 / 15))
    first = next(source.frames())
    assert first.index == 200 and rendered == []  # rendered when its pixels are read
    assert first.image.shape[2] == 3 and rendered == [200]


@pytest.mark.parametrize(
    ("pts", "first"),
    [(199 / 15 + 0.2 / 15, 200), (199 / 15 - 0.2 / 15, 200), (-1.0, 0), (0.0, 1), (399 / 15, None)],
)
def test_synthetic_resume_rounding_and_edges(pts: float, first: int | None):
    source = SyntheticSource(SYN, SourceOptions(resume_after_pts=pts))
    got = next(iter(source.frames()), None)
    assert (got.index if got else None) == first


def test_synthetic_resume_paces_from_the_resumed_frame():
    class FakeTime:
        now = 100.0
        sleeps: list[float] = []

        def clock(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            self.now += seconds

    t = FakeTime()
    source = SyntheticSource(
        "synthetic://shapes?fps=10&frames=8&width=64&height=32",
        SourceOptions(resume_after_pts=0.4),
        clock=t.clock,
        sleep=t.sleep,
    )
    frames = list(source.frames())
    assert [f.index for f in frames] == [5, 6, 7]
    assert t.sleeps == pytest.approx([0.1, 0.1])  # no catch-up burst, no wait for frame 5
