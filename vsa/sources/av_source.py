"""Files and network streams decoded with PyAV, packet by packet.

Decoding packet by packet (instead of ``container.decode()``) lets one damaged packet
cost only the frames up to the next keyframe: a decode error, or a frame the decoder
marks corrupt, is counted (``decode_error``) and packets are skipped until a keyframe.
A stream that starts mid-GOP is skipped the same way until its first keyframe.

Timeouts are always set: ``open_timeout_s`` bounds connecting and reading the header,
and ``min(read_timeout_s, stall_timeout_s)`` every later read, so a dead camera raises
instead of hanging the thread. A connection that keeps sending packets but no frame
for ``stall_timeout_s`` raises ``STALLED``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import numpy as np

from vsa import uri as uri_mod
from vsa.flow import Decimator
from vsa.sources.base import Frame, SourceOptions
from vsa.sources.errors import SourceError, classify

# A keyframe wait longer than this many packets means the keyframe flags cannot be trusted
# (some streams never set them): decode anyway rather than drop the stream forever.
KEYFRAME_WAIT_PACKETS = 600


def _too_large(width: int, height: int, limit: int) -> SourceError:
    return SourceError(
        "FRAME_TOO_LARGE",
        f"frame {width}x{height} ({width * height} pixels) is larger than max_frame_pixels "
        f"{limit}; raise the source's max_frame_pixels to accept it",
    )


class AvSource:
    """Decodes the first video stream of a file or URL to BGR frames."""

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        self.uri = uri
        self.options = options = options or SourceOptions()
        scheme = uri_mod.scheme_of(uri)
        self.live = scheme in uri_mod.NETWORK_SCHEMES
        target = str(uri_mod.file_path(uri)) if scheme == "file" else uri
        av_options: dict[str, str] = {}
        if scheme.startswith("rtsp"):
            av_options["rtsp_transport"] = options.rtsp_transport
            # The SDP already describes the stream: probing 0.5 s instead of FFmpeg's 5 s opens
            # a camera in 0.7 s instead of 2 s and avoids a 2 s burst of stale frames.
            av_options["analyzeduration"] = "500000"
        # FFmpeg gives up on a silent connection after two timed-out reads (the first one
        # still returns a held-back packet): half the wanted time each, measured on RTSP.
        read_timeout = min(options.read_timeout_s, options.stall_timeout_s) / 2
        self._container = av.open(
            target, options=av_options, timeout=(options.open_timeout_s, read_timeout)
        )
        try:
            if not self._container.streams.video:
                raise SourceError("NO_VIDEO", f"{uri_mod.mask_uri(uri)}: no video stream")
            self._stream = stream = self._container.streams.video[0]
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise SourceError(
                    "UNSUPPORTED_CODEC", f"{uri_mod.mask_uri(uri)}: no decoder for this video codec"
                )
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > options.max_frame_pixels:
                raise _too_large(width, height, options.max_frame_pixels)
            # FFmpeg's default (slice threads) on purpose: frame threads add a frame of latency
            # per thread and report decode errors packets late, so the wrong packets get skipped
        except BaseException:
            self._container.close()
            raise
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        # a camera or a live HTTP stream is reconnected when it ends; a file over HTTP finishes
        if options.on_end == "auto":
            self.endless = self.live and (
                scheme.startswith(("rtsp", "rtmp")) or self._container.duration is None
            )
        else:
            self.endless = self.live and options.on_end == "reconnect"

    decimates = True  # frames over ``max_fps`` are dropped before their BGR conversion

    def frames(self) -> Iterator[Frame]:
        opts = self.options
        decimator = Decimator(opts.max_fps) if opts.max_fps else None
        k = 0
        waiting_key, waited = True, 0
        last_frame = time.monotonic()
        demux = self._container.demux(self._stream)
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
            if packet.size and waiting_key and not packet.is_keyframe:
                waited += 1
                if waited <= KEYFRAME_WAIT_PACKETS:
                    opts.on_skip("decode_error", 1)
                    continue
            if packet.is_keyframe:
                waiting_key = False
            started = time.perf_counter()
            try:
                decoded = packet.decode()
            except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
                opts.on_skip("decode_error", 1)
                waiting_key, waited = True, 0
                del exc
                continue
            for frame in decoded:
                if getattr(frame, "is_corrupt", False):
                    opts.on_skip("decode_error", 1)
                    waiting_key, waited = True, 0
                    continue
                if frame.width * frame.height > opts.max_frame_pixels:
                    raise _too_large(frame.width, frame.height, opts.max_frame_pixels)
                wall = time.time()
                if decimator is not None and not decimator.keep(
                    wall if frame.time is None else frame.time
                ):
                    opts.on_skip("decimated", 1)
                    last_frame = time.monotonic()
                    continue
                image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
                took = time.perf_counter() - started
                yield Frame(index=k, pts=frame.time, wall_time=wall, image=image, decode_s=took)
                started = time.perf_counter()
                k += 1
                last_frame = time.monotonic()
            if packet.size and time.monotonic() - last_frame > opts.stall_timeout_s:
                raise SourceError("STALLED", f"packets but no frame for {opts.stall_timeout_s:g} s")

    def close(self) -> None:
        self._container.close()
