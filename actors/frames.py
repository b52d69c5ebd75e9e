"""A source actor's Ray calls: its frames to the inference actor and whether Ray restarted it.

:class:`RayTransport` is the ``vsa.transport.base.FrameTransport`` through Ray's object store
(``ray.put``, ``infer.remote``, ``ray.get``, ``ray.cancel``); :class:`FrameSender` is a source's
frame path, ``vsa.transport.path.FramePath`` with its node, its way to ask the inference actor
where its channel is, and this transport as the fallback of the same-host channel.

``RayActorError`` becomes ``ActorGone`` here as in ``actors.handles`` (which takes
:func:`actor_gone` from here). This module imports no other of ``actors``' modules but the
package: ``actors.source`` imports it, ``actors.handles`` imports ``actors.source``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import ray

from vsa.core.frames import Frame, FrameResult
from vsa.supervision.handles import ActorGone
from vsa.transport.base import Pending, Request
from vsa.transport.path import FramePath

CHANNEL_ASK_S = 30.0  # how long a source waits for its inference actor to name its channel


def actor_gone(exc: ray.exceptions.RayActorError) -> ActorGone:
    """Ray's error for an actor that is gone, as ``vsa.supervision.handles`` has it."""
    return ActorGone(type(exc).__name__, isinstance(exc, ray.exceptions.ActorDiedError), str(exc))


def this_actor_restarted() -> bool:
    """Whether Ray restarted the calling actor (its process died)."""
    return ray.get_runtime_context().was_current_actor_reconstructed


class FramesInFlight:
    """The results of one ``infer`` call (``vsa.transport.base.Pending``)."""

    def __init__(self, ref: Any, on_gone: Callable[[], None]) -> None:
        self.ref, self._on_gone = ref, on_gone

    def result(self, timeout: float) -> Sequence[FrameResult | None]:
        try:
            return ray.get(self.ref, timeout=timeout)
        except ray.exceptions.RayActorError:
            self._on_gone()  # the inference actor died: wait for the controller's new one
            raise

    def cancel(self) -> None:
        """Withdraw the frames from the inference queue (they were counted as dropped)."""
        try:
            ray.cancel(self.ref)
        except Exception:  # noqa: BLE001 - already finished or the actor is gone
            pass


class RayTransport:
    """Frames through Ray's object store and an ``InferenceActor.infer`` call: works between
    any two actors of the cluster, the fallback of the same-host channel."""

    name = "ray"

    def send(
        self,
        inference: Any,
        images: list[np.ndarray],
        request: Request,
        on_gone: Callable[[], None],
    ) -> FramesInFlight:
        """Put the images in the object store as one object (this actor owns it: one store
        round trip per chunk, each image still a zero-copy view for the reader) and pass its
        reference, inside a list so that Ray does not resolve it here, to the inference
        actor's ``infer``."""
        refs = [ray.put(images)]
        ref = inference.infer.options(enable_task_events=False).remote(
            request["key"],
            request["stream"],
            request["indices"],
            refs,
            request.get("deadlines"),
            request.get("priority", 0),
            request.get("credit"),
            request.get("behind"),
        )
        return FramesInFlight(ref, on_gone)

    def close(self) -> None:
        """Nothing to release: each send's objects go with their references."""


class FrameSender:
    """A source actor's path to its inference actor (``vsa.transport.path.FramePath`` decides):
    the same-host channel, or Ray's object store and ``infer`` calls (:class:`RayTransport`)."""

    def __init__(self, stream_key: str, max_in_flight: int, transport: str = "auto") -> None:
        self.stream_key = stream_key
        self.path = FramePath(
            stream_key,
            max_in_flight,
            RayTransport(),
            _locate_channel,
            ray.get_runtime_context().get_node_id(),
            transport,
            identity=_actor_id,
        )

    @property
    def transport(self) -> str | None:
        """The transport of the last frames sent (``channel`` or ``ray``); None before any."""
        return self.path.used

    def send(
        self,
        inference: Any,
        engine_key: str,
        frames: list[Frame],
        deadlines: list[float] | None,
        priority: int,
        on_gone: Callable[[], None],
        credit: int | None = None,
        behind: bool | None = None,
    ) -> Pending:
        """Send ``frames`` to ``inference`` through the transport the path picks."""
        request = {
            "key": engine_key,
            "stream": self.stream_key,
            "indices": [f.index for f in frames],
            "deadlines": deadlines,
            "priority": priority,
            "credit": credit,
            "behind": behind,
        }
        return self.path.send(inference, [f.image for f in frames], request, on_gone)

    def close(self) -> None:
        self.path.close()


def _actor_id(inference: Any) -> Any:
    return getattr(inference, "_actor_id", None) or id(inference)


def _locate_channel(inference: Any) -> dict[str, Any]:
    """Where the inference actor's channel is (``ActorGone``, ``TimeoutError`` as FramePath
    expects them)."""
    try:
        return ray.get(inference.channel.remote(), timeout=CHANNEL_ASK_S)
    except ray.exceptions.RayActorError as exc:
        raise actor_gone(exc) from None
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"no answer in {CHANNEL_ASK_S:.0f} s") from None
