"""The engine's actors as the controller sees them: small protocols, no Ray.

``actors/handles.py`` implements them on Ray; it is the one module of the controller that
makes Ray calls (the model is Ray Serve's ``ActorReplicaWrapper``). The unit tests implement
them with in-memory fakes. Ray's errors arrive translated:

- :class:`ActorGone` when a call failed because its actor is gone (Ray's ``RayActorError``):
  ``died`` is True when the actor died (``ActorDiedError``), False while Ray is restarting it
  (``ActorUnavailableError`` and the like);
- ``asyncio.TimeoutError`` when a call got no answer within its timeout;
- any other error (one the actor itself raised) passes through as it came.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_SLOT = "inference"  # the first inference actor's name (the only one on one host)


@dataclass(frozen=True)
class Slot:
    """A place for one inference actor: its actor ``name``, the ``node`` it is pinned to (None:
    anywhere) and the GPUs it asks for. On one host there is one slot, ``inference``; a
    cluster has one per GPU of each node (or ``VSA_INFERENCE_ACTORS`` per CPU node)."""

    name: str = DEFAULT_SLOT
    node: str | None = None
    num_gpus: int = 0


class ActorGone(Exception):
    """A call failed because its actor is gone. ``error``: the name of the error that said so
    (it reads in events and messages as the Ray exception did); ``died``: False while the
    actor is being restarted."""

    def __init__(self, error: str, died: bool = True, message: str = "") -> None:
        super().__init__(message or error)
        self.error = error
        self.died = died


def error_name(exc: BaseException) -> str:
    """The name an error reads as in events: the original Ray exception's for an
    :class:`ActorGone`, the type's otherwise."""
    return exc.error if isinstance(exc, ActorGone) else type(exc).__name__


class InferenceHandle(Protocol):
    """An inference actor (one per slot), shared by the streams placed on it."""

    async def ensure_engine(
        self, model: dict[str, Any], batching: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        """Load the model once per model+batching config; what it is, with its ``key``."""
        ...

    async def release_engine(self, key: str, timeout_s: float) -> bool:
        """Unload the engine ``key``."""
        ...

    async def health(self, timeout_s: float) -> Mapping[str, Mapping[str, Any]]:
        """Per engine: ``waiting``, ``running``, ``since_progress_s``, ``fatal``."""
        ...

    def kill(self) -> None:
        """Kill the actor (not restarted); never raises."""
        ...


class SourceHandle(Protocol):
    """One source actor."""

    async def status(self, timeout_s: float) -> dict[str, Any]:
        """The source's status (``SourceActor.status``)."""
        ...

    def stop(self, timeout_s: float, wait_s: float) -> Awaitable[dict[str, Any]]:
        """Ask the source to stop now (drain for at most ``timeout_s``); the awaitable gives its
        final status, waiting at most ``wait_s`` once awaited."""
        ...

    def set_inference(self, inference: InferenceHandle | None, engine_key: str | None) -> None:
        """Hand the source the (new) inference actor; fire and forget."""
        ...

    def kill(self) -> None:
        """Kill the actor (not restarted); never raises."""
        ...


class Handles(Protocol):
    """The engine's actors, found by name, created and inspected."""

    def get_source(self, run_id: str, source_id: str) -> SourceHandle | None:
        """The live source actor of ``run_id``/``source_id``; None when there is none."""
        ...

    def start_source(
        self,
        run_id: str,
        spec: dict[str, Any],
        source_id: str,
        inference: InferenceHandle | None,
        engine_key: str | None,
        sealed_uri: str | None,
        resume: bool,
        node: str | None = None,
        carried: dict[str, Any] | None = None,
    ) -> SourceHandle:
        """Create the (detached, restartable) source actor of ``run_id``/``source_id``, on
        ``node`` when it can (its inference actor's: frames stay on their node); ``resume``:
        continue the run's files; ``carried``: then, the source's last saved status."""
        ...

    def get_inference(self, name: str = DEFAULT_SLOT) -> InferenceHandle | None:
        """The live inference actor named ``name``; None when there is none."""
        ...

    def start_inference(self, slot: Slot) -> InferenceHandle:
        """Create the (detached, not restartable) inference actor of ``slot``."""
        ...

    def inference_slots(self) -> list[Slot]:
        """The slots of the cluster's live nodes, the head node first; blocking (run it in a
        thread)."""
        ...

    def store_stats(self) -> tuple[int, int] | None:
        """(bytes in the object store, bytes spilled so far), or None; blocking (run it in a
        thread)."""
        ...
