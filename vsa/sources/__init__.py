"""Opening a source URI: synthetic generator, files and network streams (PyAV)."""

from __future__ import annotations

from vsa import uri as uri_mod
from vsa.sources.base import Frame, FrameSource


def open_source(uri: str) -> FrameSource:
    """Open ``uri``; raises OSError/ValueError (messages carry the masked URI)."""
    if uri_mod.scheme_of(uri) == "synthetic":
        from vsa.sources.synthetic import SyntheticSource

        return SyntheticSource(uri)
    from vsa.sources.av_source import AvSource

    return AvSource(uri)


__all__ = ["Frame", "FrameSource", "open_source"]
