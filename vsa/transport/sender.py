"""A source's side of the same-host frame path: frames into its ring, the call on the channel
(the ``channel`` :class:`~vsa.transport.base.FrameTransport`)."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vsa.core.frames import FrameResult
from vsa.transport.base import Request
from vsa.transport.channel import ChannelClient, ChannelClosed
from vsa.transport.ring import SHM_DIR, FrameRing, RingWriter, Slot


class ChannelCall:
    """The results of one call (``vsa.stream.Pending``); frees or retires its ring slots."""

    def __init__(
        self,
        client: ChannelClient,
        call: int,
        future: concurrent.futures.Future,
        ring: FrameRing,
        slots: list[Slot],
        on_gone: Callable[[], None],
    ) -> None:
        self._client, self._call, self._future = client, call, future
        self.ring, self.slots, self._on_gone = ring, slots, on_gone
        self._settled = False
        self._lock = threading.Lock()

    def _settle(self, ok: bool) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
        # a call that did not end well may leave its frames queued in the engine: the ring
        # is retired rather than written under a reader
        self.ring.settle(self.slots, ok)

    def result(self, timeout: float) -> Sequence[FrameResult | None]:
        try:
            value = self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no result within {timeout:.1f} s") from None
        except ChannelClosed as exc:
            self._settle(False)
            if not exc.local:  # the inference actor died: wait for the controller's new one
                self._on_gone()
            raise
        except BaseException:
            self._settle(False)
            raise
        self._settle(True)
        return value

    def cancel(self) -> None:
        """Withdraw the frames from the engine (they were counted as dropped)."""
        self._client.cancel(self._call)
        self._settle(False)


class ChannelSender:
    """One source's connection to its inference actor's channel and its frame rings: the
    same-host :class:`~vsa.transport.base.FrameTransport`, bound to that one actor.

    ``max_in_flight``: the most frames the source has between submit and result (its ring has
    one slot more). Raises ``OSError`` when the channel or ``/dev/shm`` cannot be used (opening
    or sending); ``FramePath`` then sends through Ray instead.
    """

    name = "channel"

    def __init__(self, path: str, max_in_flight: int, shm_dir: str = SHM_DIR) -> None:
        self.rings = RingWriter(max_in_flight, shm_dir)
        self.client = ChannelClient(path)

    @property
    def closed(self) -> bool:
        return self.client.closed is not None

    def send(
        self,
        inference: Any,
        images: list[np.ndarray],
        request: Request,
        on_gone: Callable[[], None],
    ) -> ChannelCall:
        """Copy ``images`` into the ring and call; ``request`` holds the other arguments.
        ``inference`` is not used: the channel is its actor's already."""
        ring, slots = self.rings.put(images)
        try:
            call, future = self.client.call({**request, "slots": [s.as_tuple() for s in slots]})
        except BaseException:
            ring.settle(slots, False)
            raise
        return ChannelCall(self.client, call, future, ring, slots, on_gone)

    def close(self) -> None:
        self.client.close()
        self.rings.close()
