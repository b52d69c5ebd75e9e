"""Which transport a source's frames take to its inference actor, decided without Ray.

:class:`FramePath` holds two :class:`~vsa.transport.base.FrameTransport`: the source's
same-host channel (``vsa.transport.sender.ChannelSender``, one per inference actor, opened
here) and the fallback, Ray's object store (``actors.frames.RayTransport``, given). It decides,
per send, which of them takes the frames, and every send returns the chosen one's ``Pending``:

- ``transport="ray"`` (``VSA_TRANSPORT``): always Ray.
- the inference actor is asked where its channel is (``locate``): on another node, Ray;
  on this one, the channel is opened and used until the actor changes.
- the actor is gone (``ActorGone`` from ``locate``): the source is told (``on_gone``), as when
  a Ray call to it fails, and the error goes up (the frames are counted as dropped).
- no answer in time (``TimeoutError``, a saturated host): Ray for ``retry_s``, then ask again.
- any other failure (``/dev/shm`` missing or full, a socket that refuses), asking, opening or
  sending: Ray from then on for this stream, said once in the log; frames whose send failed
  so go through Ray.
- the channel closed under a send (``ChannelClosed``): an error for those frames; the next
  send asks the actor again.
- a new handle of the same actor (a controller restart hands every source one): the channel
  stays; the calls on it are not disturbed.

The actor handles are opaque here; ``identity`` says which actor a handle names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from vsa.supervision.handles import ActorGone
from vsa.transport.base import FrameTransport, Pending, Request
from vsa.transport.channel import ChannelClosed
from vsa.transport.sender import ChannelSender

log = logging.getLogger("vsa.source")

RETRY_S = 30.0  # after an actor did not say where its channel is: Ray meanwhile, then ask again

Locate = Callable[[Any], dict[str, Any]]  # inference handle -> {"path": socket, "node": node id}


class FramePath:
    """A source's frame path: the same-host channel where it can be used, else ``fallback``."""

    def __init__(
        self,
        stream_key: str,
        max_in_flight: int,
        fallback: FrameTransport,
        locate: Locate,
        node: str,
        transport: str = "auto",
        identity: Callable[[Any], Hashable] = id,
        open_channel: Callable[[str, int], ChannelSender] = ChannelSender,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = RETRY_S,
    ) -> None:
        self.stream_key, self.max_in_flight = stream_key, max_in_flight
        self._fallback, self._locate, self._node = fallback, locate, node
        self._identity, self._open_channel = identity, open_channel
        self._clock, self._retry_s = clock, retry_s
        self._channel: ChannelSender | None = None
        self._actor: Hashable | None = None  # the actor the decision below belongs to
        self._local = False  # that actor runs on this node
        self._off: str | None = None if transport == "auto" else f"VSA_TRANSPORT={transport}"
        self._retry_at = 0.0
        self.used: str | None = None  # the last send's transport: "channel" or "ray"

    def _give_up(self, reason: str) -> None:
        self._off = reason
        log.warning("%s: frames go through Ray's object store (%s)", self.stream_key, reason)
        self._close_channel()

    def choose(self, inference: Any, on_gone: Callable[[], None]) -> FrameTransport:
        """The transport to send on now: the channel or the fallback; ``ActorGone`` when the
        actor is gone (``on_gone`` was called)."""
        if self._off is not None or self._clock() < self._retry_at:
            return self._fallback
        actor = self._identity(inference)
        if actor == self._actor:
            if not self._local:
                return self._fallback  # on another node
            if self._channel is not None and not self._channel.closed:
                return self._channel
        self._close_channel()
        try:
            where = self._locate(inference)
        except ActorGone:
            on_gone()
            raise
        except TimeoutError:
            self._retry_at = self._clock() + self._retry_s
            log.warning(
                "%s: the inference actor did not say where its channel is; frames go through "
                "Ray's object store for %.0f s",
                self.stream_key,
                self._retry_s,
            )
            return self._fallback
        except Exception as exc:  # noqa: BLE001 - the channel cannot be used: Ray's path
            self._give_up(f"{type(exc).__name__}: {exc}")
            return self._fallback
        self._actor, self._local = actor, where.get("node") == self._node
        if not self._local:
            return self._fallback
        try:
            self._channel = self._open_channel(where["path"], self.max_in_flight)
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"{type(exc).__name__}: {exc}")
            return self._fallback
        log.info("%s: frames go through the same-host channel %s", self.stream_key, where["path"])
        return self._channel

    def send(
        self,
        inference: Any,
        images: list[np.ndarray],
        request: Request,
        on_gone: Callable[[], None],
    ) -> Pending:
        """Send through the transport :meth:`choose` picks; its ``Pending`` comes back."""
        transport = self.choose(inference, on_gone)
        if transport is not self._fallback:
            try:
                pending = transport.send(inference, images, request, on_gone)
            except ChannelClosed:
                raise  # the next send asks the actor again (a dead one: on_gone)
            except OSError as exc:  # /dev/shm full: this stream goes through Ray from now on
                self._give_up(f"{type(exc).__name__}: {exc}")  # these frames too
            else:
                self.used = transport.name
                return pending
        pending = self._fallback.send(inference, images, request, on_gone)
        self.used = self._fallback.name
        return pending

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def close(self) -> None:
        """Close both transports (the channel's open calls fail as closed by this side)."""
        self._close_channel()
        self._fallback.close()
