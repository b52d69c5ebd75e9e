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

**Credit does not buy a larger share.** Round-robin is over the frames *waiting*: a lossless
stream always has several waiting, a realtime camera (``credit`` 1: it sends its next frame
when its result came back) at most one, so without more the camera gets one place per
batch and the file fills the rest, which also makes every batch, and so the camera's
round trip, longer (measured: 25 of 450 frames beside a file). So every stream and group
counts the frames it was *served* (taken into a batch), and a stream that asks for more
than its credit lets through (a *credit-bound* one: finite credit, and *eager*: it said it
lost frames for want of a slot, ``behind``, in the last ``eager_hold_s``; a caller that
does not say is judged by timing: its frame came within ``patience_s`` of its previous
result) caps its peers: a peer with a larger credit (or none) may take a frame only while
it stays within that credit of the credit-bound stream's count (weighted, for groups). The
file then gets one frame per camera frame, the batch holding the camera's frame stays
short, and the camera's latency stays about one batch time. The cap holds while the
credit-bound stream is *active* (frames waiting or running, or its result came back less
than ``patience_s`` ago); a camera that gets every frame it captures is not eager and caps
nothing, so it gets all it asks for and the file the rest: max-min fair. Priorities keep their meaning: a
stream is capped only by peers of its own group at its level or above. A stream (group)
that becomes active or eager again starts level with the peers it caps: no credit is
saved up while idle. While a cap holds and the capped peer's frame is on its way, a batch
waits for it up to ``patience_s`` (``time_until_ready``), so the two go in one batch.

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

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

EAGER_HOLD_S = 1.0  # a stream that lost frames for want of credit caps its peers this long


@dataclass
class _Waiting(Generic[T]):
    item: T
    arrived: float


@dataclass
class _Sender:
    credit: int | None  # frames it may have in flight (None: unknown, lossless)
    seen: float  # when it last sent
    priority: int
    served: int = 0  # frames of it taken into batches
    eager: bool = False  # it asks for more than its credit lets through (see ``add``)
    behind_at: float = -math.inf  # when it last said it lost frames for want of credit

    @property
    def limit(self) -> float:
        return math.inf if self.credit is None else self.credit


@dataclass
class _Caps:
    """Who caps whom now (see the module), derived once per change of the former: which
    credit-bound peers cap each stream, which credit-bound groups cap each group (with their
    credit over weight), and each group's streams. Counts served are read live."""

    streams: dict[tuple[Hashable, Hashable], list[tuple[Hashable, Hashable]]]
    groups: dict[Hashable, list[tuple[Hashable, float]]]
    members: dict[Hashable, list[tuple[Hashable, Hashable]]]


@dataclass
class _Group(Generic[T]):
    # streams in least-recently-served order; a stream with nothing waiting is removed
    queues: OrderedDict[Hashable, deque[_Waiting[T]]] = field(default_factory=OrderedDict)
    priority: dict[Hashable, int] = field(default_factory=dict)
    size: int = 0
    turns: int = 0  # turns taken in the current round (< the group's weight)

    def pick(self, allowed: Callable[[Hashable], bool]) -> Hashable | None:
        """The stream to serve next: of the highest priority level with a stream ``allowed``
        to take a frame, the least recently served; None when none is allowed."""
        levels = sorted(set(self.priority.values()), reverse=True)
        for level in levels:
            for stream in self.queues:
                if self.priority[stream] == level and allowed(stream):
                    return stream
        return None

    def pop(self, stream: Hashable) -> T:
        """The oldest frame of ``stream``, which moves behind the others of the group."""
        queue = self.queues[stream]
        waiting = queue.popleft()
        self.size -= 1
        if queue:
            self.queues.move_to_end(stream)
        else:
            del self.queues[stream]
            del self.priority[stream]
        return waiting.item


def max_min_shares(demand: dict[Hashable, float], capacity: float) -> dict[Hashable, float]:
    """The max-min fair shares of ``capacity`` (water-filling): each gets min(its demand, an
    equal split of what the smaller demands leave). What the former aims for among streams of
    one priority, and runs; the tests and ``scripts/bench_mixed.py`` measure against it."""
    share: dict[Hashable, float] = {}
    left, todo = capacity, dict(demand)
    while todo:
        even = left / len(todo)
        small = {k: d for k, d in todo.items() if d <= even}
        if not small:
            share.update(dict.fromkeys(todo, even))
            break
        for k, d in small.items():
            share[k], left = d, left - d
            del todo[k]
    return share


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
        # (group, stream) -> who sent in the last horizon_s: credit, frames served, eager
        self._senders: dict[tuple[Hashable, Hashable], _Sender] = {}
        # frames served per group, each divided by the group's weight (``set_weight``)
        self._group_served: dict[Hashable, float] = {}
        # frames of the batches taken and not done yet, and of the batch taken last
        self._running: dict[tuple[Hashable, Hashable], int] = {}
        # when a stream's frames last came back (batch_done) and it has sent none since
        self._returned: dict[tuple[Hashable, Hashable], float] = {}
        self.last_taken: dict[tuple[Hashable, Hashable], int] = {}
        self.horizon_s = horizon_s
        # how long after its result a credit-bound stream's next frame counts as on its way
        # (the engine sets it from its batch time: ``FAIR_WAIT`` batch times, capped)
        self.patience_s = 0.0
        # how long a stream that said it lost frames (``behind``) stays eager
        self.eager_hold_s = EAGER_HOLD_S
        self._version = 0  # bumped by every change the caps derive from (``_caps``)
        self._caps_of: tuple[tuple[int, float, float], _Caps] | None = None

    def __len__(self) -> int:
        return self._size

    def add(
        self,
        stream: Hashable,
        item: T,
        priority: int = 0,
        group: Hashable | None = None,
        credit: int | None = None,
        behind: bool | None = None,
    ) -> None:
        """Queue ``item`` of ``stream`` in ``group`` (the run; ``None``: the default group).

        ``priority`` orders the streams of one group (higher first; the latest value given
        for a stream holds); it has no effect across groups. ``credit``: the most frames this
        stream has in flight at once (None: unknown, it may send more at any time).
        ``behind``: the stream says whether it lost frames for want of credit since its last
        frame (a realtime camera's ``queue_full``): it asks for more than it gets, so it is
        eager (see the module); None: judged by when the frame came (right after a result).
        """
        now = self._clock()
        key = (group, stream)
        sender = self._senders.get(key)
        if sender is None:
            sender = self._senders[key] = _Sender(credit, now, priority)
        was_active, was_eager = self._active(key, now), sender.eager
        group_was = self._group_state(group, now)
        returned = self._returned.pop(key, None)
        sender.credit, sender.seen, sender.priority = credit, now, priority
        # it lost frames for want of credit; or, when it does not say, it sent as soon as it
        # could: right after its result, or with frames still in flight
        if behind is not None:
            if behind:
                sender.behind_at = now
            # it stays eager a while after its last loss: a camera whose own round trip is
            # about its frame interval loses a frame every other round, and a cap that came
            # and went with each loss would let the peers lengthen every other round
            sender.eager = credit is not None and now - sender.behind_at < self.eager_hold_s
        else:
            sender.eager = credit is not None and (
                (returned is not None and now - returned < self.patience_s)
                or bool(self._running.get(key) or self._waiting(key))
            )
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = _Group()
        g.queues.setdefault(stream, deque()).append(_Waiting(item, now))
        g.priority[stream] = priority
        g.size += 1
        self._size += 1
        if not was_active or sender.eager != was_eager:
            self._version += 1  # who caps whom may change (``_caps``)
        if not was_active or (sender.eager and not was_eager):
            self._catch_up(key, now)
        if group_was != self._group_state(group, now):
            self._catch_up_group(group, now)

    def set_weight(self, group: Hashable | None, weight: int) -> None:
        """Give ``group`` ``weight`` turns in a row per round (default 1); kept until changed."""
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError("weight must be an integer >= 1")
        self._version += 1
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

    # --- the credit-aware share (see the module) -----------------------------------------
    def _waiting(self, key: tuple[Hashable, Hashable]) -> int:
        g = self._groups.get(key[0])
        queue = None if g is None else g.queues.get(key[1])
        return 0 if queue is None else len(queue)

    def _coming(self, key: tuple[Hashable, Hashable], now: float) -> bool:
        """Its result came back less than ``patience_s`` ago: its next frame is on its way."""
        returned = self._returned.get(key)
        return returned is not None and now - returned < self.patience_s

    def _active(self, key: tuple[Hashable, Hashable], now: float) -> bool:
        return bool(self._waiting(key) or self._running.get(key)) or self._coming(key, now)

    def _bound(self, key: tuple[Hashable, Hashable], now: float) -> bool:
        """A credit-bound stream: eager, and active (so it caps its peers)."""
        sender = self._senders.get(key)
        return sender is not None and sender.eager and self._active(key, now)

    def _group_credit(self, group: Hashable, now: float) -> tuple[float, bool]:
        """The credits of a group's active streams (inf if one has none) and whether one of
        them is credit-bound."""
        total, bound = 0.0, False
        for key, sender in self._senders.items():
            if key[0] != group or not self._active(key, now):
                continue
            total += sender.limit
            bound = bound or self._bound(key, now)
        return total, bound

    def _group_state(self, group: Hashable, now: float) -> tuple[bool, bool]:
        credit, bound = self._group_credit(group, now)
        return credit > 0, bound

    def _caps(self, now: float) -> _Caps:
        """The caps in force now: derived again only after a change (frames added, taken or
        back, a sender forgotten, a weight) or at another time or patience, so that choosing
        a frame costs what it did before the caps, plus its cappers."""
        stamp = (self._version, now, self.patience_s)
        if self._caps_of is not None and self._caps_of[0] == stamp:
            return self._caps_of[1]
        members: dict[Hashable, list[tuple[Hashable, Hashable]]] = {}
        bound: dict[Hashable, list[tuple[Hashable, Hashable]]] = {}
        credit: dict[Hashable, float] = {}
        for key, sender in self._senders.items():
            group = key[0]
            members.setdefault(group, []).append(key)
            credit.setdefault(group, 0.0)
            if not self._active(key, now):
                continue
            credit[group] += sender.limit
            if sender.eager:
                bound.setdefault(group, []).append(key)
        streams = {}
        for group, keys in bound.items():
            for key in members[group]:
                sender = self._senders[key]
                streams[key] = [
                    peer
                    for peer in keys
                    if peer != key
                    and self._senders[peer].limit < sender.limit
                    and self._senders[peer].priority >= sender.priority
                ]
        groups = {
            group: [
                (other, credit[other] / self._weights.get(other, 1))
                for other in bound
                if other != group and credit[other] < credit[group]
            ]
            for group in members
        }
        caps = _Caps(streams, groups, members)
        self._caps_of = (stamp, caps)
        return caps

    def _capping(
        self, key: tuple[Hashable, Hashable], now: float
    ) -> list[tuple[Hashable, Hashable]]:
        """The credit-bound peers that cap ``key``: its group, its priority level or above,
        a smaller credit."""
        return self._caps(now).streams.get(key, [])

    def _room(self, key: tuple[Hashable, Hashable], now: float) -> float:
        """Frames ``key`` may take now before a credit-bound peer of its group caps it."""
        sender = self._senders.get(key)
        if sender is None:
            return math.inf
        served, room = sender.served, math.inf
        for peer in self._capping(key, now):
            other = self._senders[peer]
            room = min(room, other.served + other.limit - served)
        return room

    def _group_caps(self, group: Hashable, now: float) -> list[tuple[Hashable, float]]:
        """The credit-bound groups that cap ``group``: (group, credit / weight)."""
        return self._caps(now).groups.get(group, [])

    def _group_room(self, group: Hashable, now: float) -> float:
        """Frames ``group`` may take now before a credit-bound group caps it (weighted)."""
        served, weight = self._group_served.get(group, 0.0), self._weights.get(group, 1)
        room = math.inf
        for other, ahead in self._group_caps(group, now):
            room = min(room, (self._group_served.get(other, 0.0) + ahead - served) * weight)
        return room

    def _catch_up(self, key: tuple[Hashable, Hashable], now: float) -> None:
        """A stream (re)joining, or turning credit-bound, starts level with the peers it caps
        (the active ones of its group, a larger credit, its level or below): it saved up no
        share while it was idle or slower than the model."""
        sender = self._senders.get(key)
        if sender is None:
            return
        levels = [
            other.served
            for peer, other in self._senders.items()
            if peer[0] == key[0]
            and peer != key
            and other.limit > sender.limit
            and other.priority <= sender.priority
            and self._active(peer, now)
        ]
        if levels:
            sender.served = max(sender.served, min(levels))

    def _catch_up_group(self, group: Hashable, now: float) -> None:
        credit, _ = self._group_credit(group, now)
        levels = []
        for other in {key[0] for key in self._senders}:
            if other == group:
                continue
            other_credit, _ = self._group_credit(other, now)
            if other_credit > credit:
                levels.append(self._group_served.get(other, 0.0))
        if levels:
            served = self._group_served.get(group, 0.0)
            self._group_served[group] = max(served, min(levels))

    def capped(self) -> bool:
        """Whether a credit-bound stream now caps a peer that has frames waiting."""
        now = self._clock()
        return any(
            self._room((group, stream), now) < len(queue)
            for group, g in self._groups.items()
            for stream, queue in g.queues.items()
        ) or any(self._group_room(group, now) < g.size for group, g in self._groups.items())

    def takeable(self) -> int:
        """How many of the waiting frames the caps let into a batch now (a lower bound: a
        credit-bound stream's frame taken first makes room for one more of its peers')."""
        now = self._clock()
        total = 0
        for group, g in self._groups.items():
            room = sum(
                min(len(queue), max(0.0, self._room((group, stream), now)))
                for stream, queue in g.queues.items()
            )
            total += int(min(room, max(0.0, self._group_room(group, now))))
        return total

    def _awaited(self, now: float) -> list[float]:
        """When the results came back of the credit-bound streams and groups that cap a
        waiting peer and have no frame waiting or running: their next frame is on its way."""
        times = set()
        for group, g in self._groups.items():
            for stream in g.queues:
                for peer in self._capping((group, stream), now):
                    if self._coming(peer, now) and not self._waiting(peer):
                        times.add(self._returned[peer])
            for other, _ in self._group_caps(group, now):
                for key in self._caps(now).members.get(other, []):
                    if self._coming(key, now) and not self._waiting(key):
                        times.add(self._returned[key])
        return sorted(times)

    # --- when a batch is ready ----------------------------------------------------------
    def all_in(self) -> bool:
        """Whether every stream that may still send has sent all it can (see the module); a
        stream the caps hold back is in (more of its frames would not be taken)."""
        now = self._clock()
        cutoff = now - self.horizon_s
        for key, sender in list(self._senders.items()):
            if sender.seen < cutoff:
                self._forget(key)
                continue
            waiting = self._waiting(key)
            if waiting and self._room(key, now) < waiting + 1:
                continue  # held back by a cap
            if sender.credit is None:
                return False
            if waiting + self._running.get(key, 0) < sender.credit:
                return False
        return True

    def _forget(self, key: tuple[Hashable, Hashable]) -> None:
        """A stream quiet past the horizon (stopped, or slower than the horizon)."""
        del self._senders[key]  # it starts level again when it comes back (_catch_up)
        self._version += 1
        self._returned.pop(key, None)
        if not any(k[0] == key[0] for k in self._senders):
            self._group_served.pop(key[0], None)

    def senders(self) -> int:
        """Streams that sent in the last ``horizon_s`` (the load the model serves)."""
        cutoff = self._clock() - self.horizon_s
        return sum(1 for sender in self._senders.values() if sender.seen >= cutoff)

    def fair_share(self, batches: int) -> int | None:
        """With ``batches`` batches running at once: frames per batch that split the realtime
        streams' frames evenly (ceil(credits / batches)), so that every camera waits for a
        batch of the same size; None when a stream has no credit (lossless: fill batches)."""
        cutoff = self._clock() - self.horizon_s
        credits = 0
        for sender in self._senders.values():
            if sender.seen < cutoff:
                continue
            if sender.credit is None:
                return None
            credits += sender.credit
        return max(1, -(-credits // max(1, batches))) if credits else None

    def round_size(self) -> int | None:
        """Frames in one round of the live streams when realtime and lossless ones mix: each
        credit-bound stream's credit plus one per stream without credit; None otherwise.

        On a CPU a batch's time grows with its size (batching gains nothing there), so a
        camera whose frame arrives while a full batch of a file runs waits that whole batch and
        then its own: a camera slower than the model then gets less than it asks for (15 fps
        cameras beside a file got 11.8). Batches of one round keep every wait short at no cost
        in throughput; on a GPU, where a batch costs about what one frame does, the engine
        does not ask for it."""
        cutoff = self._clock() - self.horizon_s
        credits, lossless, eager = 0, 0, False
        for sender in self._senders.values():
            if sender.seen < cutoff:
                continue
            if sender.credit is None:
                lossless += 1
            else:
                credits += sender.credit
                eager = eager or sender.eager
        return credits + lossless if credits and lossless and eager else None

    def batch_done(self, taken: dict[tuple[Hashable, Hashable], int] | None = None) -> None:
        """A batch has finished: its streams may send again. ``taken``: that batch's
        ``last_taken`` where several run at once; None: every batch taken so far."""
        now = self._clock()
        self._version += 1
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
        than ``patience_s`` ago (a camera slower than the model, or gone) is not waited for.

        While a credit-bound stream caps a peer (see the module), the same wait applies for
        its next frame (up to ``self.patience_s`` after its result), so that the two go in one
        batch; and when the caps hold back every waiting frame, the batch waits for that
        frame or until the cap lapses (a frame added or a batch done ends the wait earlier)."""
        waited = self.oldest_wait()
        if waited is None:
            return None
        now = self._clock()
        capped = self.capped()
        takeable = self.takeable() if capped else self._size
        awaited = self._awaited(now) if capped else []
        if not takeable:
            # nothing may go now: the cap lapses when the awaited frame is late, or at the
            # latest when a running batch ends (batch_done) and then after patience_s
            if awaited:
                return max(1e-6, awaited[0] + self.patience_s - now)
            return max(self.max_wait_s, self.patience_s, 1e-3)
        if (
            takeable >= self.max_batch_size
            or (fill is not None and takeable >= fill)
            or (self.all_in() and not awaited)
        ):
            return 0.0
        wait_s = max(0.0, self.max_wait_s - waited)
        if awaited:
            wait_s = max(wait_s, awaited[-1] + self.patience_s - now)
        if fill is not None and patience_s > 0:
            coming = [t for t in self._returned.values() if now - t < patience_s]
            if coming:
                wait_s = max(wait_s, max(coming) + patience_s - now)
        return wait_s

    def ready(self) -> bool:
        return self.time_until_ready() == 0.0

    def take(self) -> list[T]:
        """Up to ``max_batch_size`` items: round-robin across groups, then by priority and
        round-robin across the streams of the group, oldest first within a stream; streams
        and groups a credit-bound peer caps (see the module) only within their room.

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
        now = self._clock()
        while len(batch) < size and self._size:
            chosen = None
            for key, g in self._groups.items():  # the least recently served group first
                if self._group_room(key, now) < 1:
                    continue
                stream = g.pick(lambda s, key=key: self._room((key, s), now) >= 1)
                if stream is not None:
                    chosen = key, g, stream
                    break
            if chosen is None:
                break  # the rest is capped: it waits for the credit-bound streams' frames
            key, g, stream = chosen
            item = g.pop(stream)
            self._size -= 1
            if is_stale(item):
                self._version += 1  # gone, not running: its stream may be idle now
                stale.append(item)
                if not g.size:
                    del self._groups[key]
                continue
            batch.append(item)
            self._running[(key, stream)] = self._running.get((key, stream), 0) + 1
            taken[(key, stream)] = taken.get((key, stream), 0) + 1
            sender = self._senders.get((key, stream))
            weight = self._weights.get(key, 1)
            if sender is not None:
                sender.served += 1
            self._group_served[key] = self._group_served.get(key, 0.0) + 1 / weight
            g.turns += 1
            if not g.size:
                del self._groups[key]  # it starts a fresh round when it comes back
            elif g.turns >= weight:
                g.turns = 0
                self._groups.move_to_end(key)
        return batch, stale

    def drain(self) -> list[T]:
        """Everything still waiting (for shutdown)."""
        items = [w.item for g in self._groups.values() for q in g.queues.values() for w in q]
        self._groups.clear()
        self._size = 0
        self._version += 1
        return items
