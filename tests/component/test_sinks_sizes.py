"""Tiny and odd frame sizes: padded up to even (yuv420p), never cropped to nothing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vsa.config import VideoSinkSpec
from vsa.models.base import Detection
from vsa.sinks import FrameResult, VideoSink
from vsa.sinks.video import VideoWriter
from vsa.sources.base import Frame

SIZES = [(1, 64), (64, 1), (1, 1), (3, 5), (2, 1), (97, 65)]


def decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def padded(w: int, h: int) -> tuple[int, int]:
    return w + w % 2, h + h % 2


def flat(w: int, h: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


@pytest.mark.parametrize(("w", "h"), SIZES)
def test_video_writer_pads_odd_sizes(tmp_path: Path, w: int, h: int):
    path = tmp_path / "tiny.mp4"
    writer = VideoWriter(path, fps=10, crf=0)
    for k in range(6):
        writer.write(flat(w, h, (20 + 30 * k, 120, 200 - 20 * k)), k / 10)
    assert writer.frames_written == 6
    writer.close()
    frames = decode(path)
    assert len(frames) == 6
    assert {(f.width, f.height) for f in frames} == {padded(w, h)}
    # the padding repeats the edge: a flat frame stays flat (give or take chroma rounding)
    last = frames[-1].to_ndarray(format="bgr24").astype(int)
    assert np.abs(last - np.array((170, 120, 100))).max() <= 12


def test_padding_repeats_the_last_row_and_column(tmp_path: Path):
    path = tmp_path / "edge.mp4"
    img = np.zeros((15, 17, 3), np.uint8)
    img[:, -1] = 255  # last column white
    img[-1, :] = 255  # last row white
    writer = VideoWriter(path, fps=10, crf=0)
    writer.write(img, 0.0)
    writer.close()
    [f] = decode(path)
    back = f.to_ndarray(format="bgr24").astype(int)
    assert back.shape == (16, 18, 3)
    assert back[:, -2:].mean() > 230 and back[-2:, :].mean() > 230  # white, not black
    assert back[:12, :14].mean() < 25


def test_odd_size_after_even_that_pads_to_it_is_the_same_size(tmp_path: Path):
    writer = VideoWriter(tmp_path / "cam7.mp4", fps=10)
    writer.write(flat(96, 64, (0, 0, 0)), 0.0)
    writer.write(flat(95, 63, (0, 0, 0)), 0.1)  # pads to 96x64: the same stream
    with pytest.raises(ValueError) as info:
        writer.write(flat(97, 65, (0, 0, 0)), 0.2)
    assert str(info.value) == "cam7.mp4: frame size changed from 96x64 to 98x66"
    writer.close()
    assert len(decode(tmp_path / "cam7.mp4")) == 2


@pytest.mark.parametrize(("w", "h"), SIZES)
def test_video_sink_draws_and_encodes_tiny_frames(tmp_path: Path, w: int, h: int):
    """``draw_detections`` runs on the unpadded frame first; boxes and masks larger than it."""
    sink = VideoSink(VideoSinkSpec(type="video", draw_masks=True), tmp_path / "cam1.mp4", 10.0)
    mask = np.ones((4, 4), bool)
    dets = [
        Detection("circle", 0, 0.9, (0.0, 0.0, float(w), float(h))),
        Detection("square", 1, 0.5, (-2.0, -2.0, 2.0, 2.0), mask),
    ]
    for k in range(5):
        f = Frame(index=k, pts=k / 10, wall_time=0.0, image=flat(w, h, (90, 90, 90)))
        f.image.setflags(write=False)  # as it arrives from the object store
        sink.write(f, FrameResult(k, dets if k % 2 else [], 1.0, 1))
    sink.close()
    frames = decode(tmp_path / "cam1.mp4")
    assert len(frames) == 5
    assert {(f.width, f.height) for f in frames} == {padded(w, h)}
    assert sink.frames_written == 5
