"""Opening a source URI: synthetic generator, files and network streams (PyAV)."""

from __future__ import annotations

from vsa import uri as uri_mod
from vsa.sources.base import Frame, FrameSource, SourceOptions
from vsa.sources.errors import SourceError, classify


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Open ``uri``; failures raise :class:`SourceError` with a stable code and a masked message."""
    options = options or SourceOptions()
    if uri_mod.scheme_of(uri) == "synthetic":
        from vsa.sources.synthetic import SyntheticSource

        return SyntheticSource(uri)
    from vsa.sources.av_source import AvSource

    try:
        return AvSource(uri, options)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one classified error
        raise classify(exc, uri) from None


__all__ = ["Frame", "FrameSource", "SourceError", "SourceOptions", "open_source"]
