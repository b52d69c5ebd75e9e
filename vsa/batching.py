"""The batch former: which frames go into the next model call, and when.

One former serves one model engine, and an engine is shared by every run that uses
the same model config, so the policy has two levels:

* **Across groups** (a group is a run: callers pass the run id) the engine is shared
  fairly. Batches are filled round-robin across the groups that have frames waiting,
  the group served least recently first, one frame per group per turn. A group of
  weight ``w`` (``set_weight``, default 1) takes ``w`` turns in a row per round. The
  rotation carries over from one batch to the next, so with ``n`` saturated groups
  of weight 1 each group gets ``1/n`` of the slots: exactly that over every ``n``
  consecutive slots, whatever the batch size. What one group asks for never changes
  what another gets, whatever its streams' priorities.
* **Within a group** streams are ordered by ``priority``: the highest level present
  is served first, round-robin (one frame per stream per turn, least recently served
  first) among the streams of that level; lower levels only get the turns the higher
  ones leave, so under saturation their frames wait, go stale and are dropped first.

Streams added without a group all share one default group (``None``): a caller that
never passes a group gets the single-level behaviour of priority and round-robin
across all its streams. A stream is identified by ``(group, stream)``.

A batch is ready when ``max_batch_size`` frames wait (the attribute may be changed
between calls), when the oldest waiting frame has waited ``max_wait_s``, or when nothing
more can come: every stream seen in the last ``horizon_s`` declared a ``credit`` (how many
frames it may have in flight; a realtime stream sends its next frame only when a result
came back) and has that many frames waiting or in a batch still running (``batch_done``
ends it; several batches may run at once). Then waiting longer only delays the batch, and the model does not idle for
``max_wait_s`` between the batches of realtime cameras; and cameras whose frames are in the
running batch are waited for, so they stay in one batch instead of splitting into cohorts
that take turns with half-full batches.
Choosing one frame costs O(streams of its group + 1). The clock is injected; this module
knows nothing of Ray or torch.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    arrived: float


@dataclass
class _Group(Generic[T]):
    # streams in least-recently-served order; a stream with nothing waiting is removed
    queues: OrderedDict[Hashable, deque[_Waiting[T]]] = field(default_factory=OrderedDict)
    priority: dict[Hashable, int] = field(default_factory=dict)
    size: int = 0
    turns: int = 0  # turns taken in the current round (< the group's weight)

    def pop(self) -> tuple[Hashable, T]:
        """The next frame of this group and its stream: the highest priority level,
        round-robin within it."""
        top = max(self.priority.values())
        stream = next(s for s in self.queues if self.priority[s] == top)
        queue = self.queues[stream]
        waiting = queue.popleft()
        self.size -= 1
        if queue:
            self.queues.move_to_end(stream)
        else:
            del self.queues[stream]
            del self.priority[stream]
        return stream, waiting.item


class BatchFormer(Generic[T]):
    def __init__(
        self,
        max_batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        horizon_s: float = 2.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._clock = clock
        # groups in least-recently-served order; a group with nothing waiting is removed
        self._groups: OrderedDict[Hashable, _Group[T]] = OrderedDict()
        self._weights: dict[Hashable, int] = {}
        self._size = 0
        # (group, stream) -> (credit or None, when it last sent): who may still send frames
        self._senders: dict[tuple[Hashable, Hashable], tuple[int | None, float]] = {}
        # frames of the batches taken and not done yet, and of the batch taken last
        self._running: dict[tuple[Hashable, Hashable], int] = {}
        # when a stream's frames last came back (batch_done) and it has sent none since
        self._returned: dict[tuple[Hashable, Hashable], float] = {}
        self.last_taken: dict[tuple[Hashable, Hashable], int] = {}
        self.horizon_s = horizon_s

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        stream: Hashable,
        item: T,
        priority: int = 0,
        group: Hashable | None = None,
        credit: int | None = None,
    ) -> None:
        """Queue ``item`` of ``stream`` in ``group`` (the run; ``None``: the default group).

        ``priority`` orders the streams of one group (higher first; the latest value given
        for a stream holds); it has no effect across groups. ``credit``: the most frames this
        stream has in flight at once (None: unknown, it may send more at any time).
        """
        self._senders[(group, stream)] = (credit, self._clock())
        self._returned.pop((group, stream), None)
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
        g.queues.setdefault(stream, deque()).append(_Waiting(item, self._clock()))
        g.priority[stream] = priority
        g.size += 1
        self._size += 1

    def set_weight(self, group: Hashable | None, weight: int) -> None:
        """Give ``group`` ``weight`` turns in a row per round (default 1); kept until changed."""
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError("weight must be an integer >= 1")
        if weight == 1:
            self._weights.pop(group, None)
        else:
            self._weights[group] = weight

    def weight(self, group: Hashable | None) -> int:
        return self._weights.get(group, 1)

    def oldest_wait(self) -> float | None:
        """Seconds the oldest waiting frame has waited, or None when empty."""
        if not self._size:
            return None
        oldest = min(q[0].arrived for g in self._groups.values() for q in g.queues.values())
        return self._clock() - oldest

    def all_in(self) -> bool:
        """Whether every stream that may still send has sent all it can (see the module)."""
        cutoff = self._clock() - self.horizon_s
        for key, (credit, seen) in list(self._senders.items()):
            if seen < cutoff:
                del self._senders[key]  # gone quiet: stopped, or slower than the horizon
                self._returned.pop(key, None)
                continue
            if credit is None:
                return False
            group, stream = key
            g = self._groups.get(group)
            queue = None if g is None else g.queues.get(stream)
            if (0 if queue is None else len(queue)) + self._running.get(key, 0) < credit:
                return False
        return True

    def senders(self) -> int:
        """Streams that sent in the last ``horizon_s`` (the load the model serves)."""
        cutoff = self._clock() - self.horizon_s
        return sum(1 for _, seen in self._senders.values() if seen >= cutoff)

    def fair_share(self, batches: int) -> int | None:
        """With ``batches`` batches running at once: frames per batch that split the realtime
        streams' frames evenly (ceil(credits / batches)), so that every camera waits for a
        batch of the same size; None when a stream has no credit (lossless: fill batches)."""
        cutoff = self._clock() - self.horizon_s
        credits = 0
        for credit, seen in self._senders.values():
            if seen < cutoff:
                continue
            if credit is None:
                return None
            credits += credit
        return max(1, -(-credits // max(1, batches))) if credits else None

    def batch_done(self, taken: dict[tuple[Hashable, Hashable], int] | None = None) -> None:
        """A batch has finished: its streams may send again. ``taken``: that batch's
        ``last_taken`` where several run at once; None: every batch taken so far."""
        now = self._clock()
        for key in [k for k, t in self._returned.items() if now - t > self.horizon_s]:
            del self._returned[key]
        if taken is None:
            for key in self._running:
                self._returned[key] = now
            self._running.clear()
            return
        for key, n in taken.items():
            self._returned[key] = now
            left = self._running.get(key, 0) - n
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)

    def time_until_ready(self, fill: int | None = None, patience_s: float = 0.0) -> float | None:
        """0 when a batch is ready now, the seconds until one will be, or None when empty.

        ``fill`` (``fair_share`` with several batches at once): a batch of that many frames is
        ready at once, and one short of it waits, beyond ``max_wait_s``, up to ``patience_s``
        after their results came back for the streams whose results just came back and that
        have not sent since (their next frame is on its way). Closed without them, the batch
        would be smaller, end sooner and bring its cameras round more often than the others
        (on a CPU a batch's time grows with its size). A stream whose result came back longer
        than ``patience_s`` ago (a camera slower than the model, or gone) is not waited for."""
        waited = self.oldest_wait()
        if waited is None:
            return None
        if (
            self._size >= self.max_batch_size
            or (fill is not None and self._size >= fill)
            or self.all_in()
        ):
            return 0.0
        wait_s = max(0.0, self.max_wait_s - waited)
        if fill is not None and patience_s > 0:
            now = self._clock()
            coming = [t for t in self._returned.values() if now - t < patience_s]
            if coming:
                wait_s = max(wait_s, max(coming) + patience_s - now)
        return wait_s

    def ready(self) -> bool:
        return self.time_until_ready() == 0.0

    def take(self) -> list[T]:
        """Up to ``max_batch_size`` items: round-robin across groups, then by priority and
        round-robin across the streams of the group, oldest first within a stream.

        Groups and streams that were served move behind the ones that were not, so the next
        batch starts with whoever was left out of this one.
        """
        return self.take_fresh(lambda item: False)[0]

    def take_fresh(
        self, is_stale: Callable[[T], bool], limit: int | None = None
    ) -> tuple[list[T], list[T]]:
        """``take()``, except that items ``is_stale`` says are too old (or no longer wanted)
        are removed without using a place in the batch or their group's turn: a group whose
        frames went stale while waiting still gets its share of the frames that did not.
        ``limit`` caps the batch below ``max_batch_size`` (``fair_share``).
        Returns (batch, stale items)."""
        batch: list[T] = []
        stale: list[T] = []
        size = self.max_batch_size if limit is None else min(limit, self.max_batch_size)
        self.last_taken = taken = {}  # (group, stream) -> frames, for batch_done
        while len(batch) < size and self._size:
            key, g = next(iter(self._groups.items()))  # the least recently served group
            stream, item = g.pop()
            self._size -= 1
            if is_stale(item):
                stale.append(item)
                if not g.size:
                    del self._groups[key]
                continue
            batch.append(item)
            self._running[(key, stream)] = self._running.get((key, stream), 0) + 1
            taken[(key, stream)] = taken.get((key, stream), 0) + 1
            g.turns += 1
            if not g.size:
                del self._groups[key]  # it starts a fresh round when it comes back
            elif g.turns >= self._weights.get(key, 1):
                g.turns = 0
                self._groups.move_to_end(key)
        return batch, stale

    def drain(self) -> list[T]:
        """Everything still waiting (for shutdown)."""
        items = [w.item for g in self._groups.values() for q in g.queues.values() for w in q]
        self._groups.clear()
        self._size = 0
        return items
