"""Generators of good and bad media files for tests (PyAV only; no ffmpeg CLI needed).

Each function takes a directory and returns the path of the file it wrote. Output is
deterministic (fixed seeds, single-threaded libx264), small and quick to make.

- ``good_clip``: a plain H.264 MP4 (gradient + moving rectangle, GOP 10, no B-frames).
- ``empty_file``: a 0-byte ``.mp4``.
- ``not_video``: a text file named ``.mp4``.
- ``truncated_mp4``: a normal MP4 (moov at the end) cut to half its size, so the moov is lost.
- ``truncated_faststart_mp4``: a faststart MP4 (moov first) cut mid-mdat; the first part decodes.
- ``corrupt_packets``: MPEG-TS H.264 whose non-key packets ``CORRUPT_PACKETS`` carry random bytes.
- ``unsupported_codec``: an AVI whose video fourcc (``ZZZZ``) maps to no codec at all.
- ``resolution_change``: MPEG-TS H.264, 320x240 then 160x120 (new SPS in-band) in one stream.
- ``huge_frame``: a valid 3-frame 7680x4320 H.264 MP4 of solid colours.
- ``timestamp_jumps``: MPEG-TS H.264 whose pts go back ``TS_JUMP_BACK_S`` once, then ahead
  ``TS_JUMP_FORWARD_S`` (1 hour) once; every segment starts with a keyframe.
- ``mid_gop``: MPEG-TS H.264 that starts with 9 P-frames: the leading IDR packet is dropped.
- ``gop_clip``: a longer plain H.264 MP4 (120 frames, GOP 12) for seeking and resuming.
- ``rotated_clip``: an MP4 with a display matrix (rotation) whose frames mark their top-left.

Only the ffmpeg CLI helpers (``ffmpeg_rotate_tag``, ``ffmpeg_displayed``) need ``ffmpeg``:
they skip the test when it is missing, or fail it when ``VSA_REQUIRE_FFPROBE=1``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

GOP = 10
# Packet indices (decode order) that corrupt_packets overwrites; none is a keyframe (GOP 10).
CORRUPT_PACKETS: tuple[int, ...] = (12, 13, 17)
CORRUPT_FRAMES = 30
# timestamp_jumps: 3 segments of GOP frames each at 10 fps; pts go back then forward.
TS_JUMP_BACK_S = 0.5
TS_JUMP_FORWARD_S = 3600.0
TS_SEGMENT_STARTS_S: tuple[float, ...] = (0.0, 1.0 - TS_JUMP_BACK_S, 1.5 + TS_JUMP_FORWARD_S)
# resolution_change: frames per part and the two sizes.
RES_CHANGE_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (160, 120))
RES_CHANGE_FRAMES = 15
MID_GOP_FRAMES = 25
HUGE_SIZE = (7680, 4320)


def _image(k: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """BGR frame ``k``: a fixed colour gradient, a little seeded texture, a moving box."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xs * 0.8 + ys * 0.2).astype(np.uint8)
    img[..., 1] = (ys * 0.7 + 40).astype(np.uint8)
    img[..., 2] = (255 - xs * 0.6).astype(np.uint8)
    # Coarse 8x8-block texture so P-frames are not empty (cheap: same every frame).
    tex = rng.integers(0, 24, size=(height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    img = np.clip(img + np.kron(tex, np.ones((8, 8), np.uint8))[:height, :width, None], 0, 255)
    bw, bh = max(8, width // 6), max(8, height // 5)
    x = (k * max(2, width // 40)) % max(1, width - bw)
    y = (height - bh) // 2 + int((height // 4) * np.sin(k / 5.0))
    img[y : y + bh, x : x + bw] = (30 + (k * 7) % 200, 220, 60)
    return img.astype(np.uint8)


def _encoder(width: int, height: int, fps: int) -> av.video.codeccontext.VideoCodecContext:
    """A standalone libx264 context emitting Annex-B (in-band SPS/PPS on every IDR)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.gop_size = GOP
    ctx.max_b_frames = 0
    ctx.thread_count = 1  # deterministic output
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
    }
    return ctx


def _encode_packets(
    n: int, width: int, height: int, fps: int, start: int = 0, seed: int = 0
) -> list[av.Packet]:
    """Encode ``n`` generated frames; packets in decode order, pts in 1/fps units."""
    ctx = _encoder(width, height, fps)
    packets: list[av.Packet] = []
    for k in range(n):
        frame = av.VideoFrame.from_ndarray(_image(start + k, width, height, seed), format="bgr24")
        frame.pts, frame.time_base = k, Fraction(1, fps)
        packets.extend(ctx.encode(frame))
    packets.extend(ctx.encode(None))
    return packets


def _mux_ts(
    packets: list[tuple[bytes, int, bool]],
    fps: int,
    size: tuple[int, int],
    pts_offset: int = 0,
) -> bytes:
    """MPEG-TS bytes of one H.264 stream from (payload, pts in 1/fps, keyframe) triples."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts", options={"mpegts_copyts": "1"}) as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height = size
        stream.time_base = Fraction(1, 90000)
        tick = 90000 // fps
        for payload, pts, key in packets:
            pkt = av.Packet(payload)
            pkt.stream = stream
            pkt.time_base = stream.time_base
            pkt.pts = pkt.dts = pts_offset + pts * tick
            pkt.duration = tick
            pkt.is_keyframe = key
            out.mux(pkt)
    return buf.getvalue()


def _triples(packets: list[av.Packet]) -> list[tuple[bytes, int, bool]]:
    return [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in packets]


def _renumber_continuity(data: bytes) -> bytes:
    """Make TS continuity counters run on across concatenated TS files (per PID).

    Without this the demuxer sees a counter reset at each join and flags a packet corrupt.
    """
    out = bytearray(data)
    counters: dict[int, int] = {}
    for off in range(0, len(out) - 187, 188):
        assert out[off] == 0x47, "lost TS sync"
        pid = ((out[off + 1] & 0x1F) << 8) | out[off + 2]
        if out[off + 3] & 0x10:  # has payload: the counter advances
            cc = (counters.get(pid, -1) + 1) & 0x0F
            counters[pid] = cc
            out[off + 3] = (out[off + 3] & 0xF0) | cc
    return bytes(out)


def _write_mp4(path: Path, frames: int, size: tuple[int, int], fps: int, options: dict) -> Path:
    width, height = size
    with av.open(str(path), "w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.max_b_frames = 0
        stream.codec_context.thread_count = 1
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
        }
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(_image(k, width, height), format="bgr24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def good_clip(
    dir: Path,
    frames: int = 30,
    size: tuple[int, int] = (320, 240),
    fps: int = 15,
    name: str = "good.mp4",
) -> Path:
    """A plain H.264 MP4 (moov at the end), GOP 10, no B-frames."""
    return _write_mp4(Path(dir) / name, frames, size, fps, {})


def empty_file(dir: Path) -> Path:
    """A 0-byte file named ``.mp4``."""
    path = Path(dir) / "empty.mp4"
    path.write_bytes(b"")
    return path


def not_video(dir: Path) -> Path:
    """A text file named ``.mp4``."""
    path = Path(dir) / "not_video.mp4"
    path.write_text("this is not a video file\n" * 20)
    return path


def truncated_mp4(dir: Path) -> Path:
    """A non-fragmented MP4 (moov after mdat) cut to half its size: the moov is gone."""
    path = Path(dir) / "truncated.mp4"
    _write_mp4(path, 30, (320, 240), 15, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_faststart_mp4(dir: Path) -> Path:
    """A faststart MP4 (moov before mdat) cut in the middle of the mdat (~55% kept)."""
    path = Path(dir) / "truncated_faststart.mp4"
    _write_mp4(path, 30, (320, 240), 15, {"movflags": "faststart"})
    data = path.read_bytes()
    mdat = data.find(b"mdat")
    assert mdat > data.find(b"moov") > 0, "faststart did not move the moov first"
    path.write_bytes(data[: mdat + (len(data) - mdat) * 55 // 100])
    return path


def corrupt_packets(dir: Path, damaged: tuple[int, ...] = CORRUPT_PACKETS, seed: int = 1) -> Path:
    """MPEG-TS H.264 (30 frames, 320x240, 15 fps, GOP 10) with packets ``damaged`` garbled.

    In each damaged (non-key) packet the Annex-B start code, NAL header and first slice-header
    byte are kept and the rest is random non-zero bytes (so no fake start codes appear and the
    demuxer's parser keeps packet boundaries). Keyframes are intact.
    """
    rng = np.random.default_rng(seed)
    packets = _triples(_encode_packets(CORRUPT_FRAMES, 320, 240, 15))
    for i in damaged:
        payload, pts, key = packets[i]
        if key:
            raise ValueError(f"packet {i} is a keyframe")
        start = payload.find(b"\x00\x00\x01") + 3 + 2  # start code, NAL header, 1 byte
        noise = rng.integers(1, 256, size=len(payload) - start, dtype=np.uint8).tobytes()
        packets[i] = (payload[:start] + noise, pts, key)
    path = Path(dir) / "corrupt_packets.ts"
    path.write_bytes(_mux_ts(packets, 15, (320, 240)))
    return path


def unsupported_codec(dir: Path) -> Path:
    """An AVI of MPEG-4 Part 2 packets whose fourcc is patched to ``ZZZZ``: codec id NONE.

    Both the ``strh`` fccHandler and the ``strf`` BITMAPINFOHEADER biCompression are patched,
    so the demuxer finds a video stream with no codec (no decoder can be opened for it).
    """
    path = Path(dir) / "unsupported_codec.avi"
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.thread_count = 1
        for k in range(10):
            frame = av.VideoFrame.from_ndarray(_image(k, 160, 120), format="bgr24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = bytearray(path.read_bytes())
    strh, strf = data.find(b"strh"), data.find(b"strf")
    assert data[strh + 8 : strh + 12] == b"vids" and strf > strh, "unexpected AVI layout"
    data[strh + 12 : strh + 16] = b"ZZZZ"  # strh.fccHandler
    data[strf + 8 + 16 : strf + 8 + 20] = b"ZZZZ"  # BITMAPINFOHEADER.biCompression
    path.write_bytes(bytes(data))
    return path


def resolution_change(dir: Path) -> Path:
    """MPEG-TS H.264 at 10 fps: 15 frames of 320x240 then 15 of 160x120, one stream.

    Both parts are separate encodes (each starting with an IDR carrying its SPS/PPS),
    muxed with continuous timestamps; the stream header says 320x240.
    """
    fps = 10
    packets: list[tuple[bytes, int, bool]] = []
    for part, (w, h) in enumerate(RES_CHANGE_SIZES):
        start = part * RES_CHANGE_FRAMES
        for payload, pts, key in _triples(_encode_packets(RES_CHANGE_FRAMES, w, h, fps, start)):
            packets.append((payload, start + pts, key))
    path = Path(dir) / "resolution_change.ts"
    path.write_bytes(_mux_ts(packets, fps, RES_CHANGE_SIZES[0]))
    return path


def huge_frame(dir: Path) -> Path:
    """A valid 3-frame 7680x4320 H.264 MP4 (1 fps) of solid colours (small, quick)."""
    width, height = HUGE_SIZE
    path = Path(dir) / "huge_frame.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 2
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for k, (y, u, v) in enumerate(((41, 240, 110), (145, 54, 34), (82, 90, 240))):
            yuv = np.empty((height * 3 // 2, width), np.uint8)
            yuv[:height] = y
            yuv[height : height + height // 4] = u
            yuv[height + height // 4 :] = v
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def timestamp_jumps(dir: Path) -> Path:
    """MPEG-TS H.264, 320x240 at 10 fps: 3 segments of 10 frames, each led by an IDR.

    Segment starts (seconds, pts in 1/90000): ``TS_SEGMENT_STARTS_S`` = 0.0, 0.5, 3601.5:
    after 0.9 s pts go back to 0.5 s, after 1.4 s they leap forward by an hour. Muxers refuse
    non-monotonic dts, so each segment is muxed on its own and the TS files are concatenated
    (continuity counters renumbered so no packet is flagged corrupt).
    """
    fps = 10
    packets = _triples(_encode_packets(3 * GOP, 320, 240, fps))
    data = b""
    for seg, start_s in enumerate(TS_SEGMENT_STARTS_S):
        part = [(p, pts - seg * GOP, k) for p, pts, k in packets[seg * GOP : (seg + 1) * GOP]]
        data += _mux_ts(part, fps, (320, 240), pts_offset=round(start_s * 90000))
    path = Path(dir) / "timestamp_jumps.ts"
    path.write_bytes(_renumber_continuity(data))
    return path


def mid_gop(dir: Path) -> Path:
    """MPEG-TS H.264 (320x240, 15 fps, GOP 10, 25 frames) whose first (IDR) packet is dropped.

    The stream starts with 9 P-frames (pts 1..9 in 1/15 s), then IDRs at packets 9 and 19 of
    24. The first SPS/PPS are in the first IDR (the TS demuxer copies them to extradata while
    probing, so the decoder is opened before the P-frames arrive).
    """
    packets = _triples(_encode_packets(MID_GOP_FRAMES, 320, 240, 15))
    assert packets[0][2] and not any(k for _, _, k in packets[1:GOP])
    path = Path(dir) / "mid_gop.ts"
    path.write_bytes(_mux_ts(packets[1:], 15, (320, 240)))
    return path


# gop_clip: a longer MP4 whose GOP does not divide the resume points used by the tests.
RESUME_FRAMES = 120
RESUME_GOP = 12
# rotated_clip: frame size (as coded) and the marker block painted in its top-left corner.
ROTATED_SIZE = (64, 48)
ROTATED_MARK = (16, 12)  # width, height of the bright top-left block


def _write_mp4_frames(
    path: Path,
    images: list[np.ndarray],
    fps: int,
    gop: int,
    rotation: int | None = None,
) -> Path:
    """An H.264 MP4 of ``images`` (BGR), GOP ``gop``, no B-frames, optional display rotation.

    ``rotation`` is written as the stream's display matrix, in FFmpeg's convention: degrees
    the player rotates the coded picture *counter-clockwise* for display (what ``ffprobe``
    reports as the side data's ``rotation``, and PyAV as ``VideoFrame.rotation``).
    """
    height, width = images[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 0
        stream.codec_context.thread_count = 1
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for k, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def gop_clip(
    dir: Path,
    frames: int = RESUME_FRAMES,
    gop: int = RESUME_GOP,
    size: tuple[int, int] = (160, 120),
    fps: int = 15,
) -> Path:
    """A plain H.264 MP4 like ``good_clip`` but with ``frames`` frames and GOP ``gop``."""
    width, height = size
    images = [_image(k, width, height) for k in range(frames)]
    return _write_mp4_frames(Path(dir) / f"gop{gop}_{frames}.mp4", images, fps, gop)


def marked_image(size: tuple[int, int] = ROTATED_SIZE) -> np.ndarray:
    """A dark BGR frame with one bright block (``ROTATED_MARK``) in its top-left corner."""
    width, height = size
    image = np.full((height, width, 3), 40, np.uint8)
    mark_w, mark_h = ROTATED_MARK
    image[:mark_h, :mark_w] = 230
    return image


def rotated_clip(dir: Path, degrees: int, frames: int = 3, fps: int = 10) -> Path:
    """A ``ROTATED_SIZE`` H.264 MP4 of ``marked_image`` frames with a display rotation.

    ``degrees`` is counter-clockwise (FFmpeg's display-matrix convention, see
    ``_write_mp4_frames``): 90 means a player shows the top-left block at the bottom left.
    Written with PyAV (``VideoStream.set_display_rotation``), no ffmpeg CLI needed.
    """
    images = [marked_image() for _ in range(frames)]
    path = Path(dir) / f"rotated_{degrees % 360}.mp4"
    return _write_mp4_frames(path, images, fps, GOP, rotation=degrees)


def ffmpeg_or_skip() -> str:
    """The ffmpeg CLI's path; skips the test when it is missing (fails if VSA_REQUIRE_FFPROBE=1)."""
    found = shutil.which("ffmpeg")
    if found is None:
        if os.environ.get("VSA_REQUIRE_FFPROBE") == "1":
            pytest.fail("ffmpeg is required (VSA_REQUIRE_FFPROBE=1) but not installed")
        pytest.skip("ffmpeg CLI not installed (set VSA_REQUIRE_FFPROBE=1 to make this a failure)")
    return found


def vod_hls(path: Path, seconds: int, size: str = "160x96", fps: int = 10) -> Path:
    """An HLS VOD playlist (``#EXT-X-ENDLIST``, 1 s segments beside it) of ``seconds`` of
    ffmpeg's test pattern, ``fps`` * ``seconds`` frames; skips without the ffmpeg CLI."""
    ffmpeg = ffmpeg_or_skip()
    args = [ffmpeg, "-loglevel", "error", "-nostdin", "-f", "lavfi"]
    args += ["-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds)]
    args += ["-c:v", "libx264", "-g", str(fps), "-f", "hls", "-hls_time", "1"]
    subprocess.run([*args, "-hls_list_size", "0", str(path)], check=True, timeout=60)
    return path


def ffmpeg_rotate_tag(src: Path, degrees: int, dst: Path) -> Path:
    """Copy ``src`` with the ffmpeg CLI's ``-metadata:s:v:0 rotate=degrees`` (stream copy).

    How the tag becomes a display matrix depends on the ffmpeg version (ffmpeg >= 6 also has
    ``-display_rotation``); compare with ``ffmpeg_displayed`` rather than assume a direction.
    """
    ffmpeg = ffmpeg_or_skip()
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-i", str(src), "-c", "copy"]
        + ["-metadata:s:v:0", f"rotate={degrees}", str(dst)],
        check=True,
    )
    return dst


def ffmpeg_displayed(path: Path) -> np.ndarray:
    """The first frame of ``path`` as the ffmpeg CLI shows it (autorotated), as BGR."""
    ffmpeg = ffmpeg_or_skip()
    png = subprocess.run(
        [ffmpeg, "-loglevel", "error", "-i", str(path), "-frames:v", "1"]
        + ["-f", "image2pipe", "-c:v", "png", "-"],
        check=True,
        capture_output=True,
    ).stdout
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "ffmpeg produced no image"
    return image
