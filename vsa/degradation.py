"""Sustained performance degradation of a run: which sources are too slow or drop too much.

The controller polls its sources every half second and hands their statuses
(``vsa.schema.SourceStatus``) to ``DegradationTracker.update``. Per source, and only while it is ``STREAMING``:

* ``drops``: frames dropped / frames decoded over the last ``window_s`` seconds (``decimated``
  drops count in neither: they were asked for), once 80% of the window is covered, above
  ``max_drop_ratio``;
* ``latency``: the source's p99 capture-to-result latency above ``max_p99_latency_ms``.

A *condition* is ``(source, kind)``. One measured above its threshold starts only once it
has been so at every update for ``hold_s`` seconds, and an active one ends only once it has
been under its threshold for ``hold_s`` seconds, so a value hovering at a threshold does not
flap. A source that stops ``STREAMING`` (or leaves ``sources``) ends its conditions at once:
they are no longer measured, and the source's own state says what happened to it.

``update`` returns a ``DegradationChange`` only when the *set* of active conditions changes;
the numbers moving while the same conditions hold are not a change. ``reason`` always has the
latest numbers. The clock is injected; this module knows nothing of Ray.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from vsa.config import DegradationSpec
from vsa.schema import DropCause, SourceState, SourceStatus

KINDS = ("drops", "latency")  # the order they are named in, per source


class Condition(NamedTuple):
    source: str
    kind: str  # "drops" or "latency"


@dataclass(frozen=True)
class DegradationChange:
    """What one ``update`` changed: conditions that started and ended, and the reason now."""

    started: tuple[Condition, ...]
    ended: tuple[Condition, ...]
    reason: str | None  # None: nothing is degraded any more

    def as_event(self) -> dict[str, Any]:
        """JSON-ready details for the run's event list."""
        return {
            "reason": self.reason,
            "started": [c._asdict() for c in self.started],
            "ended": [c._asdict() for c in self.ended],
        }


class DegradationTracker:
    def __init__(
        self,
        limits: DegradationSpec,
        clock: Callable[[], float] = time.monotonic,
        hold_s: float = 3.0,
    ) -> None:
        if hold_s < 0:
            raise ValueError("hold_s must be >= 0")
        self.limits = limits
        self.hold_s = hold_s
        self._clock = clock
        # per source: (time, decoded, dropped) samples over limits.window_s
        self.window: dict[str, deque[tuple[float, int, int]]] = {}
        self._active: set[Condition] = set()
        self._pending: dict[Condition, float] = {}  # measured unlike its state since then
        self._text: dict[Condition, str] = {}  # the latest words of each active condition
        self.reason: str | None = None  # the active conditions with their latest numbers

    @property
    def active(self) -> frozenset[Condition]:
        return frozenset(self._active)

    def _measure(self, sid: str, status: SourceStatus, now: float) -> dict[str, tuple[str, bool]]:
        """Per kind that can be measured now: (its words, above the threshold)."""
        limits = self.limits
        counted = status.drops
        decimated = DropCause.DECIMATED.value
        drops = sum(v for k, v in counted.items() if k != decimated)
        decoded = status.frames_decoded - counted.get(decimated, 0)
        samples = self.window.setdefault(sid, deque())
        samples.append((now, decoded, drops))
        while samples and now - samples[0][0] > limits.window_s:
            samples.popleft()
        t0, d0, x0 = samples[0]
        found: dict[str, tuple[str, bool]] = {}
        if now - t0 >= 0.8 * limits.window_s and decoded - d0 > 0:
            ratio = (drops - x0) / (decoded - d0)
            found["drops"] = (f"{sid} drops {ratio:.0%} of frames", ratio > limits.max_drop_ratio)
        p99 = status.latency_ms.p99
        if p99 is not None:
            found["latency"] = (f"{sid} p99 latency {p99:.0f} ms", p99 > limits.max_p99_latency_ms)
        return found

    def update(self, sources: Mapping[str, SourceStatus]) -> DegradationChange | None:
        """Measure ``sources`` (source id -> its status) now; the change, if the set of
        active conditions changed."""
        now = self._clock()
        for sid in [s for s in self.window if s not in sources]:
            del self.window[sid]
        started: list[Condition] = []
        ended: list[Condition] = []
        order: list[Condition] = []
        for sid, status in sources.items():
            streaming = status.state is SourceState.STREAMING
            found = self._measure(sid, status, now) if streaming else {}
            for kind in KINDS:
                cond = Condition(sid, kind)
                order.append(cond)
                words, above = found.get(kind, (None, False))
                was = cond in self._active
                if was and words is not None:
                    self._text[cond] = words  # fresh numbers, even while it is clearing
                if above == was:
                    self._pending.pop(cond, None)
                    continue
                # measured unlike its state: it flips once that has lasted hold_s (a source
                # that is not streaming is not measured any more: its conditions end now)
                since = self._pending.setdefault(cond, now)
                if streaming and now - since < self.hold_s:
                    continue
                del self._pending[cond]
                if above:
                    self._active.add(cond)
                    self._text[cond] = words or f"{sid} {kind}"
                    started.append(cond)
                else:
                    self._active.discard(cond)
                    self._text.pop(cond, None)
                    ended.append(cond)
        for cond in [c for c in self._active if c.source not in sources]:
            self._active.discard(cond)
            self._text.pop(cond, None)
            ended.append(cond)
        for cond in [c for c in self._pending if c.source not in sources]:
            del self._pending[cond]
        self.reason = ", ".join(self._text[c] for c in order if c in self._active) or None
        if not started and not ended:
            return None
        return DegradationChange(tuple(started), tuple(ended), self.reason)
