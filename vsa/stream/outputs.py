"""A stream's outputs (its sinks): opened on the first connection, written in frame order,
closed once. A failure to open them is the outputs' (``SinkOpenFailed``), never the camera's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vsa.core.frames import Frame, FrameResult
from vsa.sinks import OutputLost, Sink
from vsa.stream.connection import SinkOpenFailed

log = logging.getLogger("vsa.stream")


class Outputs:
    def __init__(self, factory: Callable[[float | None], list[Sink]], name: str = "") -> None:
        self._factory, self.name = factory, name
        self.sinks: list[Sink] = []
        self.ready = threading.Event()  # opened, or never will be (the stream ended first)

    def open(self, fps: float | None) -> None:
        """Open the sinks once (the first connection knows the source's rate)."""
        if self.ready.is_set():
            return
        try:
            self.sinks = self._factory(fps)
        except Exception as exc:  # noqa: BLE001 - the outputs, not the camera
            raise SinkOpenFailed(exc) from exc
        self.ready.set()

    def write(self, frame: Frame, result: FrameResult) -> None:
        for sink in self.sinks:
            sink.write(frame, result)

    def frames_lost(self, exc: OutputLost) -> int:
        """The frames held by no file any more: when one output vanished (its directory
        deleted), the others are checked at once; the largest loss counts."""
        lost = exc.frames_lost
        for sink in self.sinks:
            check = getattr(sink, "lost", None)  # the file-backed sinks watch their paths
            other = check() if check is not None else None
            if other is not None:
                lost = max(lost, other.frames_lost)
        return lost

    def close(self, on_lost: Callable[[OutputLost], None]) -> None:
        """Close every sink; a file deleted or replaced after its last write is ``on_lost``."""
        self.ready.wait(timeout=5)
        for sink in self.sinks:
            try:
                sink.close()
            except OutputLost as exc:
                on_lost(exc)
            except Exception as exc:  # noqa: BLE001
                log.error("%s closing a sink failed: %s", self.name, exc)


@dataclass(frozen=True)
class EarlierOutputs:
    """A resumed stream's files as its earlier incarnations left them: ``paths``, the first
    file of each sink, and ``frames``, how many frames the carried counters say were written
    (``frames_emitted`` of the saved status)."""

    frames: int
    paths: Sequence[Path]

    def lost(self) -> OutputLost | None:
        """The loss when a file the counters say holds frames is gone (deleted while the
        engine was down, with its directory or alone): all ``frames``; None otherwise."""
        if self.frames <= 0:
            return None
        gone = [Path(p) for p in self.paths if not Path(p).exists()]
        if not gone:
            return None
        names = ", ".join(str(p) for p in gone)
        reason = f"{names} (written before the engine restart) was deleted while it was down"
        return OutputLost(gone[0], reason, self.frames)
