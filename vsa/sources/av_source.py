"""Files and network streams decoded with PyAV."""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import numpy as np

from vsa import uri as uri_mod
from vsa.sources.base import Frame

OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0


class AvSource:
    """Decodes the first video stream of a file or URL to BGR frames."""

    def __init__(self, uri: str) -> None:
        scheme = uri_mod.scheme_of(uri)
        self.live = scheme in uri_mod.NETWORK_SCHEMES
        target = str(uri_mod.file_path(uri)) if scheme == "file" else uri
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
        self._container = av.open(target, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"{uri_mod.mask_uri(uri)}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None

    def frames(self) -> Iterator[Frame]:
        for k, frame in enumerate(self._container.decode(self._stream)):
            image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
            yield Frame(index=k, pts=frame.time, wall_time=time.time(), image=image)

    def close(self) -> None:
        self._container.close()
