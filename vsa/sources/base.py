"""What every source yields, and the options every source is opened with."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vsa import uri as uri_mod
from vsa.core.frames import Frame  # noqa: F401 - re-exported: sources yield it
from vsa.sources.errors import SourceError


def _ignore(cause: str, count: int) -> None:
    pass


@dataclass
class SourceOptions:
    """Per-source limits (from the run file's source entry) and a callback for skipped frames."""

    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    stall_timeout_s: float = 10.0
    rtsp_transport: str = "tcp"
    max_frame_pixels: int = 3840 * 2160
    on_end: str = "auto"  # auto | reconnect | finish (network streams)
    max_fps: float | None = None  # decimate to this rate (sources that can do it before a copy)
    # called with ("decode_error", n) for frames lost to damaged data, so they are accounted for
    on_skip: Callable[[str, int], None] = _ignore
    # Set by the stream layer when a restarted source must go on after the last frame written
    # (never from the run file). Only frames whose pts is greater than this (by more than a
    # quarter of a frame period, see ``resume_threshold``) are yielded; the earlier ones are
    # neither yielded nor reported to ``on_skip``. Files and synthetic sources honour it;
    # network streams ignore it. A frame with no pts cannot be compared and is always yielded.
    resume_after_pts: float | None = None
    # Set by the stream layer when a resumed file source must still be the file the run read
    # before the engine went down: its ``input_identity`` then. A local file whose identity
    # differs fails to open with ``SOURCE_CHANGED`` (other sources ignore it).
    expect_input: Mapping[str, Any] | None = None

    @classmethod
    def from_spec(
        cls, spec: Any, on_skip: Callable[[str, int], None] | None = None
    ) -> SourceOptions:
        """From a ``vsa.config.SourceSpec``."""
        return cls(
            open_timeout_s=spec.open_timeout_s,
            read_timeout_s=spec.read_timeout_s,
            stall_timeout_s=spec.stall_timeout_s,
            rtsp_transport=spec.rtsp_transport,
            max_frame_pixels=spec.max_frame_pixels,
            on_end=spec.on_end,
            on_skip=on_skip or _ignore,
        )


def resume_threshold(resume_after_pts: float, fps: float | None) -> float:
    """The pts at or below which a resumed source discards frames.

    ``resume_after_pts`` plus a quarter of a frame period (1 ms when the rate is unknown), so
    that the last frame written is not yielded again because of float rounding.
    """
    return resume_after_pts + (0.25 / fps if fps else 0.001)


IDENTITY_BYTES = 64 * 1024  # hashed from the start of an input file


def input_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What says a local input file is still the same one: its size, its modification time
    (ns) and the SHA-256 of its first 64 KiB. Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        head = f.read(IDENTITY_BYTES)
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": hashlib.sha256(head).hexdigest(),
    }


def check_input(path: str | os.PathLike[str], expected: Mapping[str, Any], shown: str) -> None:
    """Raise ``SOURCE_CHANGED`` when the file at ``path`` is no longer the one ``expected``
    describes (an ``input_identity``); ``shown``: the path as messages may show it."""
    try:
        now: dict[str, Any] = input_identity(path)
    except FileNotFoundError:
        raise SourceError(
            "SOURCE_CHANGED",
            f"the input file {shown} was removed while its stream was stopped (an engine "
            "restart, a pause, a change); the run's outputs hold its frames up to then: "
            "submit a new run for a new file",
        ) from None
    changes = [
        f"{key} {str(expected[key])[:16]} -> {str(now[key])[:16]}"  # a hash: its start
        for key in ("size", "mtime_ns", "sha256")
        if key in expected and expected[key] != now[key]
    ]
    if changes:
        raise SourceError(
            "SOURCE_CHANGED",
            f"the input file {shown} changed while its stream was stopped "
            f"({', '.join(changes)}); resuming would append another file's frames to the run's outputs: submit a new "
            "run for the new file",
        )


def frame_too_large(width: int, height: int, limit: int) -> SourceError:
    """The ``FRAME_TOO_LARGE`` error every source raises for a frame over ``max_frame_pixels``."""
    return SourceError(
        "FRAME_TOO_LARGE",
        f"frame {width}x{height} ({width * height} pixels) is larger than max_frame_pixels "
        f"{limit}; raise the source's max_frame_pixels to accept it",
    )


# Network schemes whose streams never have a known end (cameras, pushed live streams).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp")


def has_known_end(scheme: str, duration: Any) -> bool:
    """Whether a stream has a known end: the rule behind both ``on_end: auto`` (finish or
    reconnect) and ``mode: auto`` of a network source (lossless or realtime).

    Local files do; ``rtsp``/``rtmp`` streams never do; an ``http(s)`` stream does when its
    container reports a ``duration`` once opened (a file over HTTP, an HLS VOD playlist with
    ``#EXT-X-ENDLIST``), not when it is live (MJPEG, live TS, a live HLS playlist).
    """
    if scheme not in uri_mod.NETWORK_SCHEMES:
        return True
    return scheme not in LIVE_SCHEMES and duration is not None


class FrameSource(Protocol):
    """An opened stream.

    ``live`` sources are paced by the camera (or the synthetic clock). ``finite`` ones have a
    known end (``has_known_end``; a synthetic source when it has ``frames=N``): a network
    stream that does is read lossless in ``mode: auto`` and finishes at its end in
    ``on_end: auto``. ``endless`` ones (a camera, a live HTTP stream) are reconnected when
    they end; the others finish.
    ``decimates``: the source drops frames over ``options.max_fps`` itself, before it spends
    anything on them (reporting each to ``options.on_skip`` as ``decimated``); for a source
    that does not, the stream decimates what it yields.
    """

    live: bool
    finite: bool
    endless: bool
    decimates: bool
    fps: float | None  # nominal rate, when known

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
