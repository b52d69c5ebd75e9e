"""Files and network streams decoded with PyAV, packet by packet.

Decoding packet by packet (instead of ``container.decode()``) lets one damaged packet
cost only the frames up to the next keyframe: a decode error, or a frame the decoder
marks corrupt, is counted (``decode_error``) and packets are skipped until a keyframe.
A stream that starts mid-GOP is skipped the same way until its first keyframe.

Timeouts are always set: ``open_timeout_s`` bounds connecting and reading the header,
and ``min(read_timeout_s, stall_timeout_s)`` every later read, so a dead camera raises
instead of hanging the thread. A connection that keeps sending packets but no frame
for ``stall_timeout_s`` raises ``STALLED``.

Rotation: a display matrix (phone clips) is applied to every frame, so the frames, their size
and everything drawn from them are upright. FFmpeg's convention, read through PyAV's
``VideoFrame.rotation``: the angle a player turns the coded picture counter-clockwise (what
``ffprobe`` shows as the side data's ``rotation``; an iPhone portrait clip reads -90, shown
turned 90 degrees clockwise). Only multiples of 90 degrees are applied, and mirroring is not.

Resuming (``SourceOptions.resume_after_pts``, finite inputs: files, also over HTTP; endless
streams such as cameras ignore it): the
source seeks to the keyframe at or before that pts and decodes from there, silently
discarding frames up to it. A seek that fails, lands on a non-keyframe (MPEG-TS has no index)
or past the point makes it decode from the start instead, still discarding.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import cv2
import numpy as np

from vsa import uri as uri_mod
from vsa.core.frames import Frame
from vsa.flow import Decimator
from vsa.sources.base import (
    SourceOptions,
    check_input,
    frame_too_large,
    has_known_end,
    resume_threshold,
)
from vsa.sources.errors import SourceError, classify

# A keyframe wait longer than this many packets means the keyframe flags cannot be trusted
# (some streams never set them): decode anyway rather than drop the stream forever.
KEYFRAME_WAIT_PACKETS = 600


# counter-clockwise quarter turns (display matrix rotation // 90 % 4) -> cv2.rotate code
_TURNS = {
    1: cv2.ROTATE_90_COUNTERCLOCKWISE,
    2: cv2.ROTATE_180,
    3: cv2.ROTATE_90_CLOCKWISE,
}


def upright(image: np.ndarray, rotation: float | None) -> np.ndarray:
    """``image`` turned ``rotation`` degrees counter-clockwise (a multiple of 90; others and
    0/None leave it as it is), C-contiguous."""
    if not rotation or rotation % 90:
        return image
    code = _TURNS.get(int(rotation) // 90 % 4)
    return image if code is None else np.ascontiguousarray(cv2.rotate(image, code))


def _bgr(picture: av.VideoFrame) -> Callable[[Frame], np.ndarray]:
    def convert(_: Frame) -> np.ndarray:
        return np.ascontiguousarray(upright(picture.to_ndarray(format="bgr24"), picture.rotation))

    return convert


class AvSource:
    """Decodes the first video stream of a file or URL to BGR frames."""

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        self.uri = uri
        self.options = options = options or SourceOptions()
        scheme = uri_mod.scheme_of(uri)
        self.live = scheme in uri_mod.NETWORK_SCHEMES
        self._target = target = str(uri_mod.file_path(uri)) if scheme == "file" else uri
        av_options: dict[str, str] = {}
        if scheme.startswith("rtsp"):
            av_options["rtsp_transport"] = options.rtsp_transport
            # The SDP already describes the stream: probing 0.5 s instead of FFmpeg's 5 s opens
            # a camera in 0.7 s instead of 2 s and avoids a 2 s burst of stale frames.
            av_options["analyzeduration"] = "500000"
        # FFmpeg gives up on a silent connection after two timed-out reads (the first one
        # still returns a held-back packet): half the wanted time each, measured on RTSP.
        read_timeout = min(options.read_timeout_s, options.stall_timeout_s) / 2
        self._open_args: tuple[dict[str, str], tuple[float, float]] = (
            av_options,
            (options.open_timeout_s, read_timeout),
        )
        if scheme == "file" and options.expect_input is not None:  # a resumed local file
            check_input(target, options.expect_input, target)
        self._container = av.open(target, options=av_options, timeout=self._open_args[1])
        try:
            if not self._container.streams.video:
                raise SourceError("NO_VIDEO", f"{uri_mod.mask_source_uri(uri)}: no video stream")
            self._stream = stream = self._container.streams.video[0]
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise SourceError(
                    "UNSUPPORTED_CODEC",
                    f"{uri_mod.mask_source_uri(uri)}: no decoder for this video codec",
                )
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > options.max_frame_pixels:
                raise frame_too_large(width, height, options.max_frame_pixels)
            # FFmpeg's default (slice threads) on purpose: frame threads add a frame of latency
            # per thread and report decode errors packets late, so the wrong packets get skipped
        except BaseException:
            self._container.close()
            raise
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.finite = has_known_end(scheme, self._container.duration)
        # a camera or a live HTTP stream is reconnected when it ends; a file over HTTP finishes
        if options.on_end == "auto":
            self.endless = self.live and not self.finite
        else:
            self.endless = self.live and options.on_end == "reconnect"

    decimates = True  # frames over ``max_fps`` are dropped before their BGR conversion

    def _demux_from(self, resume: float, threshold: float) -> Iterator[Any]:
        """Packets from the keyframe at or before ``resume`` (or from the start, see above)."""
        container, stream = self._container, self._stream
        tb = stream.time_base
        start = stream.start_time or 0
        target = int(resume / tb)
        if target <= start:  # nothing before it: decode from the start
            return container.demux(stream)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except Exception:  # noqa: BLE001 - unseekable: nothing moved, decode from the start
            return container.demux(stream)
        demux = container.demux(stream)
        try:
            first = next(demux, None)
        except Exception:  # noqa: BLE001 - let the decode loop meet (and classify) it again
            first = None
        if (
            first is not None
            and first.is_keyframe
            and first.pts is not None
            and first.pts * tb <= threshold
        ):
            return itertools.chain([first], demux)
        # a seek onto a non-keyframe or past the point: decode the file again from its start
        container.close()
        av_options, timeout = self._open_args
        self._container = av.open(self._target, options=av_options, timeout=timeout)
        self._stream = self._container.streams.video[0]
        return self._container.demux(self._stream)

    def frames(self) -> Iterator[Frame]:
        """Decoded frames, upright. With ``resume_after_pts`` (files only), the first frame's
        ``index`` is its position estimated from its pts and the nominal rate (exact for a
        constant-rate file; without rate or pts, the count of frames decoded before it)."""
        opts = self.options
        decimator = Decimator(opts.max_fps) if opts.max_fps else None
        k = 0
        waiting_key, waited = True, 0
        last_frame = time.monotonic()
        resume = None if self.endless else opts.resume_after_pts  # a file, also over HTTP
        if resume is None:
            threshold = None
            demux = self._container.demux(self._stream)
        else:
            threshold = resume_threshold(resume, self.fps)
            demux = self._demux_from(resume, threshold)
        renumber, discarded = threshold is not None, 0
        tb = self._stream.time_base
        start_s = float((self._stream.start_time or 0) * tb)

        def early(t: float | None) -> bool:
            """Before the resume point: accounted by the earlier process, not reported again."""
            return threshold is not None and t is not None and t <= threshold

        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - classify; a timeout here is a stall
                err = classify(exc, self.uri)
                if err.code == "TIMEOUT":  # connected, then silent
                    raise SourceError(
                        "STALLED",
                        f"no data for {min(opts.read_timeout_s, opts.stall_timeout_s):g} s",
                    ) from None
                if err.code == "ENDED":
                    return
                raise err from None
            packet_early = early(None if packet.pts is None else float(packet.pts * tb))
            if packet.size and waiting_key and not packet.is_keyframe:
                waited += 1
                if waited <= KEYFRAME_WAIT_PACKETS:
                    if not packet_early:
                        opts.on_skip("decode_error", 1)
                    continue
            if packet.is_keyframe:
                waiting_key = False
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                decoded = packet.decode()
            except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
                if not packet_early:
                    opts.on_skip("decode_error", 1)
                waiting_key, waited = True, 0
                del exc
                continue
            for frame in decoded:
                if getattr(frame, "is_corrupt", False):
                    if not early(frame.time):
                        opts.on_skip("decode_error", 1)
                    waiting_key, waited = True, 0
                    continue
                if early(frame.time):
                    discarded += 1
                    last_frame = time.monotonic()
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    continue
                if frame.width * frame.height > opts.max_frame_pixels:
                    raise frame_too_large(frame.width, frame.height, opts.max_frame_pixels)
                if renumber:
                    renumber = False
                    if frame.time is not None and self.fps:
                        k = max(0, round((frame.time - start_s) * self.fps))
                    else:
                        k = discarded
                wall = time.time()
                if decimator is not None and not decimator.keep(
                    wall if frame.time is None else frame.time
                ):
                    opts.on_skip("decimated", 1)
                    last_frame = time.monotonic()
                    continue
                took, took_cpu = time.perf_counter() - started, time.thread_time() - started_cpu
                # converted to BGR when first read: a realtime stream never converts the
                # frames a newer one replaced
                yield Frame(
                    k, frame.time, wall, decode_s=took, decode_cpu_s=took_cpu, convert=_bgr(frame)
                )
                started, started_cpu = time.perf_counter(), time.thread_time()
                k += 1
                last_frame = time.monotonic()
            if packet.size and time.monotonic() - last_frame > opts.stall_timeout_s:
                raise SourceError("STALLED", f"packets but no frame for {opts.stall_timeout_s:g} s")

    def close(self) -> None:
        self._container.close()
