"""The batch former: which frames go into the next model call, and when.

Policy: a batch is ready when ``max_batch_size`` frames wait, or when the oldest
waiting frame has waited ``max_wait_s``. Frames are taken round-robin across
streams (one per stream per turn), so a stream with many waiting frames cannot
fill every batch while another stream waits. Streams with a higher ``priority``
are served first; lower ones get the places left over, so under saturation their
frames wait, go stale and are dropped first. The clock is injected; this module
knows nothing of Ray or torch.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiting(Generic[T]):
    item: T
    arrived: float


class BatchFormer(Generic[T]):
    def __init__(
        self, max_batch_size: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._queues: OrderedDict[Hashable, deque[_Waiting[T]]] = OrderedDict()
        self._priority: dict[Hashable, int] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, stream: Hashable, item: T, priority: int = 0) -> None:
        """Queue ``item`` of ``stream``; streams of higher ``priority`` are served first."""
        self._queues.setdefault(stream, deque()).append(_Waiting(item, self._clock()))
        self._priority[stream] = priority
        self._size += 1

    def oldest_wait(self) -> float | None:
        """Seconds the oldest waiting frame has waited, or None when empty."""
        if not self._size:
            return None
        return self._clock() - min(q[0].arrived for q in self._queues.values() if q)

    def time_until_ready(self) -> float | None:
        """0 when a batch is ready now, the seconds until one will be, or None when empty."""
        waited = self.oldest_wait()
        if waited is None:
            return None
        if self._size >= self.max_batch_size:
            return 0.0
        return max(0.0, self.max_wait_s - waited)

    def ready(self) -> bool:
        return self.time_until_ready() == 0.0

    def take(self) -> list[T]:
        """Up to ``max_batch_size`` items, round-robin across streams, oldest first within one.

        Streams that were served move behind the ones that were not, so the next batch
        starts with whoever was left out of this one.
        """
        batch: list[T] = []
        while len(batch) < self.max_batch_size and self._size:
            # higher priority first; round-robin (least recently served first) within a level
            order = sorted(self._queues, key=lambda s: -self._priority.get(s, 0))
            top = self._priority.get(order[0], 0)
            for stream in order:
                if self._priority.get(stream, 0) < top:
                    break  # lower levels only get what the higher ones leave over
                queue = self._queues[stream]
                batch.append(queue.popleft().item)
                self._size -= 1
                self._queues.move_to_end(stream)
                if not queue:
                    del self._queues[stream]
                    self._priority.pop(stream, None)
                if len(batch) == self.max_batch_size:
                    break
        return batch

    def drain(self) -> list[T]:
        """Everything still waiting (for shutdown)."""
        items = [w.item for q in self._queues.values() for w in q]
        self._queues.clear()
        self._priority.clear()
        self._size = 0
        return items
