"""A stream's outputs (its sinks): opened on the first connection, written in frame order,
closed once. A failure to open them is the outputs' (``SinkOpenFailed``), never the camera's."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsa.core.frames import Frame, FrameResult
from vsa.sinks import OutputLost, Sink
from vsa.stream.connection import SinkOpenFailed

log = logging.getLogger("vsa.stream")


LOG_EVERY = 100  # a failing best-effort sink is logged at its 1st lost frame, then every 100


class Outputs:
    """The stream's sinks, with their failure policy (``vsa.sinktypes``).

    A ``required`` sink that raises fails the stream (the caller counts it). A ``best_effort``
    sink that raises loses that frame only: ``lost[name][cause]`` (``sink_error``, or
    ``output_lost`` when its file was deleted, which also moves the frames written into that
    file from ``written`` to ``output_lost``), and the other sinks still get the frame. For
    every sink, once the stream has ended, ``written + sum(lost) == frames_emitted``.

    A sink may also say what it lost on its own (``losses()``: cumulative by cause, e.g. an
    outbox's ``overflow``, frames its ``write`` accepted) and what it made (``counts()``:
    snapshots written, messages published); ``status`` shows both. A frame an outbox
    overflowed was accepted by ``write`` and then lost: the status counts it as lost, not
    written, so ``written + sum(lost) == frames_emitted`` holds for such a sink too.
    """

    def __init__(self, factory: Callable[[float | None], list[Sink]], name: str = "") -> None:
        self._factory, self.name = factory, name
        self.sinks: list[Sink] = []
        self.ready = threading.Event()  # opened, or never will be (the stream ended first)
        self.written: Counter[str] = Counter()  # frames each named sink wrote
        self.lost: dict[str, Counter[str]] = {}  # best-effort sinks: frames lost by cause
        self._counts = threading.Lock()  # the counters are read by status() from another thread

    def open(self, fps: float | None) -> None:
        """Open the sinks once (the first connection knows the source's rate)."""
        if self.ready.is_set():
            return
        try:
            self.sinks = self._factory(fps)
        except Exception as exc:  # noqa: BLE001 - the outputs, not the camera
            raise SinkOpenFailed(exc) from exc
        for sink in self.sinks:
            if _policy(sink) == "best_effort":
                self.lost[_name(sink)] = Counter()
        self.ready.set()

    def write(self, frame: Frame, result: FrameResult) -> None:
        for sink in self.sinks:
            try:
                sink.write(frame, result)
            except Exception as exc:  # noqa: BLE001 - a best-effort sink loses this frame only
                if _policy(sink) != "best_effort":
                    raise
                self._lose(sink, exc)
                continue
            with self._counts:
                self.written[_name(sink)] += 1

    def _lose(self, sink: Sink, exc: Exception, this_frame: bool = True) -> None:
        name = _name(sink)
        lost = self.lost[name]
        with self._counts:
            if isinstance(exc, OutputLost):
                if exc.frames_lost:  # the frames in its vanished file are lost too
                    lost["output_lost"] += exc.frames_lost
                    self.written[name] -= exc.frames_lost
                if this_frame:
                    lost["output_lost"] += 1
            elif this_frame:
                lost["sink_error"] += 1
            count = sum(lost.values())
        if count == 1 or count % LOG_EVERY == 0 or not this_frame:
            log.error(
                "%s best-effort sink %s failed (%d frames lost to it so far; the stream and "
                "the other sinks go on): %s",
                self.name,
                name,
                count,
                exc,
            )

    def status(self) -> dict[str, dict[str, Any]]:
        """Each named sink's policy, frames written and (best effort) lost by cause."""
        out = {}
        with self._counts:
            for sink in self.sinks:
                name = getattr(sink, "sink_name", None)
                if name is None:
                    continue  # the stream's side files (events, truth)
                lost = Counter(self.lost.get(name, {}))
                own = getattr(sink, "losses", None)  # a sink's own losses (an outbox's overflow)
                own_lost = _safely(own) if own is not None else {}
                lost.update(own_lost)
                entry: dict[str, Any] = {
                    "policy": _policy(sink),
                    # accepted, less what it then lost on its own: written + lost == emitted
                    "written": self.written[name] - sum(own_lost.values()),
                    "lost": dict(lost),
                }
                counts = getattr(sink, "counts", None)  # what it made: snapshots, messages...
                if counts is not None:
                    entry.update(_safely(counts))
                out[name] = entry
        return out

    def frames_lost(self, exc: OutputLost) -> int:
        """The frames held by no file any more: when one output vanished (its directory
        deleted), the other required outputs are checked at once; the largest loss counts."""
        lost = exc.frames_lost
        for sink in self.sinks:
            if _policy(sink) == "best_effort":
                continue
            check = getattr(sink, "lost", None)  # the file-backed sinks watch their paths
            other = check() if check is not None else None
            if other is not None:
                lost = max(lost, other.frames_lost)
        return lost

    def close(self, on_lost: Callable[[OutputLost], None]) -> None:
        """Close every sink; a required one whose file was deleted or replaced after its last
        write is ``on_lost`` (a best-effort one: its own loss)."""
        self.ready.wait(timeout=5)
        for sink in self.sinks:
            try:
                sink.close()
            except OutputLost as exc:
                if _policy(sink) == "best_effort":
                    self._lose(sink, exc, this_frame=False)
                else:
                    on_lost(exc)
            except Exception as exc:  # noqa: BLE001
                log.error("%s closing a sink failed: %s", self.name, exc)


def _safely(read: Callable[[], dict[str, int]]) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in read().items()}
    except Exception:  # noqa: BLE001 - a sink's numbers never break the status
        log.exception("a sink's counts could not be read")
        return {}


def _name(sink: Sink) -> str:
    return getattr(sink, "sink_name", None) or type(sink).__name__


def _policy(sink: Sink) -> str:
    return getattr(sink, "policy", "required")


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
