"""Opening a source URI: synthetic generator, files and network streams (PyAV)."""

from __future__ import annotations

import time

from vsa import uri as uri_mod
from vsa.core.frames import Frame
from vsa.sources.base import FrameSource, SourceOptions
from vsa.sources.errors import SourceError, classify


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Open ``uri``; failures raise :class:`SourceError` with a stable code and a masked message."""
    options = options or SourceOptions()
    if uri_mod.scheme_of(uri) == "synthetic":
        from vsa.sources.synthetic import SyntheticSource

        return SyntheticSource(uri, options)
    from vsa.sources.av_source import AvSource

    started = time.monotonic()
    try:
        return AvSource(uri, options)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one classified error
        err = classify(exc, uri)
        took = time.monotonic() - started
        if (
            err.code == "CORRUPT_DATA"
            and uri_mod.scheme_of(uri) in uri_mod.NETWORK_SCHEMES
            and took >= 0.9 * options.open_timeout_s
        ):
            # FFmpeg reports an open cut short by the timeout as "invalid data"
            err = SourceError(
                "TIMEOUT", f"no answer within open_timeout_s ({options.open_timeout_s:g} s)"
            )
        raise err from None


__all__ = ["Frame", "FrameSource", "SourceError", "SourceOptions", "open_source"]
