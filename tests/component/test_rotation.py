"""A video's display matrix (phone clips: rotate 90) is applied at the source, so the frames,
their size and everything drawn from them are upright.

FFmpeg's convention (and PyAV's ``VideoFrame.rotation``): the display matrix rotation is the
angle a player turns the coded picture *counter-clockwise*. ``media.rotated_clip`` paints a
bright block in the coded top-left corner, so a rotation of 90 must show it bottom-left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import media
from vsa.sources import SourceError, SourceOptions, open_source

W, H = media.ROTATED_SIZE
# where the coded top-left block is displayed, per counter-clockwise rotation
CORNER = {0: "top-left", 90: "bottom-left", 180: "bottom-right", 270: "top-right"}


def frames_of(path: Path, **options) -> list:
    source = open_source(f"file://{path}", SourceOptions(**options))
    try:
        return list(source.frames())
    finally:
        source.close()


def corner(image: np.ndarray) -> str:
    """Which corner the bright block is in."""
    ys, xs = np.nonzero(image.mean(axis=2) > 135)
    assert len(ys), "no bright block"
    h, w = image.shape[:2]
    vertical = "top" if ys.mean() < h / 2 else "bottom"
    return vertical + "-" + ("left" if xs.mean() < w / 2 else "right")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("rotation")
    plain = d / "plain"
    plain.mkdir()
    made = {0: media._write_mp4_frames(plain / "plain.mp4", [media.marked_image()] * 3, 10, 10)}
    for degrees in (90, 180, 270):
        made[degrees] = media.rotated_clip(d, degrees)
    return made


def test_unrotated_clip_is_as_coded(clips: dict[int, Path]):
    frames = frames_of(clips[0])
    assert len(frames) == 3
    assert frames[0].image.shape == (H, W, 3)
    assert corner(frames[0].image) == "top-left"


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_clip_comes_out_upright(clips: dict[int, Path], degrees: int):
    plain = frames_of(clips[0])
    frames = frames_of(clips[degrees])
    assert len(frames) == 3
    for frame, coded in zip(frames, plain, strict=True):
        image = frame.image
        expected_shape = (W, H, 3) if degrees in (90, 270) else (H, W, 3)
        assert image.shape == expected_shape
        assert image.dtype == np.uint8 and image.flags.c_contiguous
        assert corner(image) == CORNER[degrees]
        # exactly the coded picture turned counter-clockwise (same decoder, same pixels)
        assert np.array_equal(image, np.rot90(coded.image, degrees // 90))
        assert frame.pts == coded.pts


@pytest.mark.parametrize("degrees", [90, 270])
def test_max_frame_pixels_is_unaffected_by_rotation(clips: dict[int, Path], degrees: int):
    assert len(frames_of(clips[degrees], max_frame_pixels=W * H)) == 3
    with pytest.raises(SourceError) as info:
        frames_of(clips[degrees], max_frame_pixels=W * H - 1)
    assert info.value.code == "FRAME_TOO_LARGE"
    assert f"{W}x{H}" in str(info.value)


@pytest.mark.parametrize("degrees", [90, 180, 270])
@pytest.mark.parametrize("made_by", ["pyav", "ffmpeg-tag"])
def test_frames_match_what_ffmpeg_displays(
    clips: dict[int, Path], tmp_path: Path, degrees: int, made_by: str
):
    """Whatever direction a tool writes, the source shows what ffmpeg's own player shows."""
    media.ffmpeg_or_skip()
    if made_by == "pyav":
        path = clips[degrees]
    else:
        path = media.ffmpeg_rotate_tag(clips[0], degrees, tmp_path / f"tag{degrees}.mp4")
    ours = frames_of(path)[0].image
    theirs = media.ffmpeg_displayed(path)
    assert ours.shape == theirs.shape
    assert corner(ours) == corner(theirs)
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 4
