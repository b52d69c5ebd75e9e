"""A stream's result processors: an ordered chain between inference results and the sinks.

The sink thread (``results.ResultWriter``) is the one point where a stream's results are in
frame order (a stream's frames can be in concurrent batches that complete out of order): it
runs the chain on each inferred frame just before the sinks, so each processor sees every
frame it is given in frame order, and the sinks receive the enriched result. The tracker and
the line/zone counters are meant to be processors.

A processor (``Processor``) has a ``name`` (unique in its chain, the key of its saved state)
and:

- ``process(frame, result) -> result``: the result to pass on; a processor returns a new
  ``FrameResult`` (``dataclasses.replace``) or the one it was given, unchanged: it never
  changes the one it was given in place (so a failure leaves it as it was);
- ``close()``: once, when the stream's sinks are closed (its last frame was written);
- ``state()`` / ``restore(state)``: a small JSON-able dict, what it needs to go on after its
  source actor restarts (a tracker's high-water mark of ids, a counter's totals);
- optionally ``status()``: a JSON-able dict of live values for the stream's status.

A processor that raises on a frame (or returns something other than a ``FrameResult``): the
frame is still written, with the result as it was before that processor; the processors after
it are skipped for that frame (none sees a result that missed an earlier processor); the
failure is counted per processor (``ProcessorChain.errors``) and logged at the first and then
once every ``LOG_EVERY``; the stream goes on. Frames are never lost to a processor, so the
ledger is the same with or without a chain.

State across a source-actor restart: ``StreamWorker.processor_state()`` is the chain's state
(``ProcessorChain.state``: a dict keyed by processor name) taken between two frames; a stream
restored with ``StreamSettings.processor_state`` goes on from it. A restarted or resumed
source actor finds that state in its files (``vsa.analytics.resume``: what was written is
what counts), so nothing has to be saved elsewhere before a crash.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from vsa.core.frames import Frame, FrameResult

log = logging.getLogger("vsa.stream")

LOG_EVERY = 100  # a failing processor is logged at its 1st failure, then every LOG_EVERY


class Processor(Protocol):
    name: str

    def process(self, frame: Frame, result: FrameResult) -> FrameResult: ...

    def close(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


class ProcessorChain:
    """Processors applied in order on the sink thread (see the module docstring).

    ``process`` and ``state`` hold one lock: a state is always taken between two frames.
    """

    def __init__(self, processors: Sequence[Processor] = (), name: str = "") -> None:
        self.processors = list(processors)
        self.name = name  # the stream, for the log
        names = [p.name for p in self.processors]
        dupes = sorted(n for n, k in Counter(names).items() if k > 1)
        if dupes:
            raise ValueError(
                f"processor names must be unique in a stream, got {dupes} more than once"
            )
        self.errors: Counter[str] = Counter()  # failed frames per processor name
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        return len(self.processors)

    def process(self, frame: Frame, result: FrameResult) -> FrameResult:
        """``result`` through each processor in order; at a failure, as it was before it."""
        if not self.processors:
            return result
        with self._lock:
            for p in self.processors:
                try:
                    out = p.process(frame, result)
                    if not isinstance(out, FrameResult):
                        raise TypeError(f"returned {type(out).__name__}, not a FrameResult")
                except Exception as exc:  # noqa: BLE001 - a processor never loses a frame
                    self._failed(p.name, frame, exc)
                    return result
                result = out
        return result

    def _failed(self, name: str, frame: Frame, exc: Exception) -> None:
        self.errors[name] += 1
        count = self.errors[name]
        if count == 1 or count % LOG_EVERY == 0:
            log.error(
                "%s processor %s failed on frame %d (%d frames so far; written without it): %r",
                self.name,
                name,
                frame.index,
                count,
                exc,
            )

    def close(self) -> None:
        """Close every processor once; one that fails is logged and the others still close."""
        if self._closed:
            return
        self._closed = True
        for p in self.processors:
            try:
                p.close()
            except Exception:  # noqa: BLE001 - the others still close
                log.exception("%s closing processor %s failed", self.name, p.name)

    def state(self) -> dict[str, dict[str, Any]]:
        """Each processor's state by name, between two frames. One whose state fails or is not
        JSON-able is logged and left out (restored, it starts afresh)."""
        saved: dict[str, dict[str, Any]] = {}
        with self._lock:
            for p in self.processors:
                try:
                    state = p.state()
                    json.dumps(state)
                except Exception:  # noqa: BLE001 - the others' states are still saved
                    log.exception("%s processor %s: its state cannot be saved", self.name, p.name)
                    continue
                saved[p.name] = state
        return saved

    def status(self) -> dict[str, dict[str, Any]]:
        """What each processor that has a ``status()`` says about itself now (live counts),
        by name; one that fails is logged and left out."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for p in self.processors:
                status = getattr(p, "status", None)
                if status is None:
                    continue
                try:
                    out[p.name] = status()
                except Exception:  # noqa: BLE001 - the status of the others still shows
                    log.exception("%s processor %s: its status failed", self.name, p.name)
        return out

    def restore(self, saved: dict[str, dict[str, Any]]) -> None:
        """Hand each processor its saved state (before the first frame). A name no processor
        has any more is logged and ignored; a processor without a saved state starts afresh;
        one whose ``restore`` raises is logged and goes on as it is."""
        by_name = {p.name: p for p in self.processors}
        unknown = sorted(set(saved) - set(by_name))
        if unknown:
            log.warning(
                "%s no processor named %s: their saved state is ignored", self.name, unknown
            )
        with self._lock:
            for name, state in saved.items():
                if name not in by_name:
                    continue
                try:
                    by_name[name].restore(state)
                except Exception:  # noqa: BLE001 - the stream goes on; this one as it is
                    log.exception(
                        "%s processor %s: its saved state cannot be restored", self.name, name
                    )


__all__ = ["LOG_EVERY", "Processor", "ProcessorChain"]
