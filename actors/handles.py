"""The engine's Ray calls, all of them: the controller's view of the actors behind the protocols
of ``vsa.supervision.handles`` (as Ray Serve's ``ActorReplicaWrapper``: every Ray API call is
made here, so what decides is tested with fakes), and a source actor's frames sent to the
inference actor (``send_frames``: ``ray.put``, ``infer.remote``, ``ray.get``, ``ray.cancel``).

Ray's errors are translated: ``RayActorError`` becomes ``ActorGone`` (``died`` for
``ActorDiedError``), a call without an answer in time raises ``asyncio.TimeoutError``; an error
the actor raised passes through. The source and inference actors' modules are imported when an
actor is created: they pull in the stream, sink and model code (torch, PyAV) that the
controller never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import NAMESPACE, source_actor_name
from vsa.core.frames import Frame, FrameResult
from vsa.supervision.handles import DEFAULT_SLOT, ActorGone, Slot
from vsa.supervision.pool import plan_slots
from vsa.transport.path import FramePath

CHANNEL_ASK_S = 30.0  # how long a source waits for its inference actor to name its channel


def _gone(exc: ray.exceptions.RayActorError) -> ActorGone:
    return ActorGone(type(exc).__name__, isinstance(exc, ray.exceptions.ActorDiedError), str(exc))


async def _answer(ref: Any, timeout_s: float) -> Any:
    """The result of ``ref`` within ``timeout_s`` (``asyncio.TimeoutError`` otherwise)."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except ray.exceptions.RayActorError as exc:
        raise _gone(exc) from None


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


class RayInference:
    """The inference actor (``actors.inference.InferenceActor``)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def ensure_engine(
        self, model: dict[str, Any], batching: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        return await _answer(self.actor.ensure_engine.remote(model, batching), timeout_s)

    async def release_engine(self, key: str, timeout_s: float) -> bool:
        return await _answer(self.actor.release_engine.remote(key), timeout_s)

    async def health(self, timeout_s: float) -> Mapping[str, Mapping[str, Any]]:
        return await _answer(self.actor.health.remote(), timeout_s)

    def kill(self) -> None:
        _kill(self.actor)


class RaySource:
    """A source actor (``actors.source.SourceActor``)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def status(self, timeout_s: float) -> dict[str, Any]:
        return await _answer(self.actor.status.remote(), timeout_s)

    def stop(self, timeout_s: float, wait_s: float) -> Awaitable[dict[str, Any]]:
        return _answer(self.actor.stop.remote(timeout_s), wait_s)  # sent now, awaited later

    def set_inference(self, inference: RayInference | None, engine_key: str | None) -> None:
        self.actor.set_inference.remote(_actor(inference), engine_key)

    def kill(self) -> None:
        _kill(self.actor)


def _actor(inference: RayInference | None) -> Any:
    return None if inference is None else inference.actor


class RayHandles:
    """The engine's named, detached actors in ``namespace``."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace

    def _get(self, name: str) -> Any:
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return None

    def get_source(self, run_id: str, source_id: str) -> RaySource | None:
        actor = self._get(source_actor_name(run_id, source_id))
        return None if actor is None else RaySource(actor)

    def start_source(
        self,
        run_id: str,
        spec: dict[str, Any],
        source_id: str,
        inference: RayInference | None,
        engine_key: str | None,
        sealed_uri: str | None,
        resume: bool,
        node: str | None = None,
        carried: dict[str, Any] | None = None,
    ) -> RaySource:
        from actors.source import SourceActor

        # detached: a source outlives a controller restart; max_restarts: Ray restarts a source
        # actor whose process died (the memory monitor picks restartable actors first). On its
        # inference actor's node, hard (soft affinity placed sources on the other node when
        # several started at once); when that node leaves, the controller recreates the source
        # beside another inference actor
        options: dict[str, Any] = {}
        if node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return RaySource(
            SourceActor.options(
                name=source_actor_name(run_id, source_id),
                namespace=self.namespace,
                lifetime="detached",
                max_restarts=-1,
                **options,
            ).remote(
                run_id,
                spec,
                source_id,
                _actor(inference),
                engine_key,
                sealed_uri,
                resume,
                carried,
            )
        )

    def get_inference(self, name: str = DEFAULT_SLOT) -> RayInference | None:
        actor = self._get(name)
        return None if actor is None else RayInference(actor)

    def start_inference(self, slot: Slot) -> RayInference:
        from actors.inference import InferenceActor

        # detached, not restarted by Ray: the controller restarts it and reloads the models;
        # pinned to its node (hard: an actor of a node that left is not recreated elsewhere,
        # its streams move to the other actors instead)
        options: dict[str, Any] = {}
        if slot.node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(slot.node, soft=False)
        return RayInference(
            InferenceActor.options(
                name=slot.name,
                namespace=self.namespace,
                num_gpus=slot.num_gpus,
                max_concurrency=1000,
                lifetime="detached",
                **options,
            ).remote()
        )

    def inference_slots(self) -> list[Slot]:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        nodes = [(n["NodeID"], float(n.get("Resources", {}).get("GPU", 0))) for n in alive]
        # the head node (Ray gives it this resource) comes first: it lives as long as the
        # cluster, so its first slot keeps the name `inference` wherever the controller runs
        head = next(
            (n["NodeID"] for n in alive if "node:__internal_head__" in n.get("Resources", {})),
            ray.get_runtime_context().get_node_id(),
        )
        return plan_slots(nodes, head)

    def store_stats(self) -> tuple[int, int] | None:
        """(bytes in the object store, bytes spilled to disk so far) for the cluster, or None."""
        try:  # Ray's own `ray memory --stats-only` source: private, so guarded
            from ray._private.internal_api import get_memory_info_reply, get_state_from_address

            # this cluster's address: with None, Ray refuses when the host runs several clusters
            address = ray.get_runtime_context().gcs_address
            reply = get_memory_info_reply(get_state_from_address(address), timeout_seconds=10)
            stats = reply.store_stats
            return int(stats.object_store_bytes_used), int(stats.spilled_bytes_total)
        except Exception:  # noqa: BLE001
            return None


def this_actor_restarted() -> bool:
    """Whether Ray restarted the calling actor (its process died)."""
    return ray.get_runtime_context().was_current_actor_reconstructed


def cluster_paths() -> tuple[str | None, str | None]:
    """(this node's Ray session directory, the cluster's GCS address); None where Ray does not
    say (internal attributes: best effort)."""
    context = ray.get_runtime_context()
    gcs = getattr(context, "gcs_address", None)
    try:
        node = ray._private.worker.global_worker.node
        return node.get_session_dir_path(), gcs
    except Exception:  # noqa: BLE001 - then the controller serves no endpoint
        return None, gcs


def call_recover() -> None:
    """Queue ``recover`` on the calling actor: it runs as the actor's first task, on its loop.

    Sent from ``__init__``, the call may reach the actor while Ray still has it as restarting
    (seen here after a SIGKILL: "ACTOR_UNAVAILABLE: The actor is restarting"), and an actor
    task is not retried by default: then nothing recovered until some client called. Retried
    until it runs (``recover`` is idempotent)."""
    ray.get_runtime_context().current_actor.recover.options(max_task_retries=-1).remote()


# --- a source actor's side -------------------------------------------------------------------
class FramesInFlight:
    """The results of one ``infer`` call (``vsa.stream.Pending``)."""

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


def send_frames(
    inference: Any,
    engine_key: str,
    stream_key: str,
    frames: list[Frame],
    deadlines: list[float] | None,
    priority: int,
    on_gone: Callable[[], None],
    credit: int | None = None,
) -> FramesInFlight:
    """Put the frames in the object store as one object (this actor owns it: one store
    round trip per chunk, each image still a zero-copy view for the reader) and pass its
    reference, inside a list so that Ray does not resolve it here, to the inference actor's
    ``infer``."""
    refs = [ray.put([frame.image for frame in frames])]
    ref = inference.infer.options(enable_task_events=False).remote(
        engine_key, stream_key, [f.index for f in frames], refs, deadlines, priority, credit
    )
    return FramesInFlight(ref, on_gone)


class FrameSender:
    """A source actor's path to its inference actor (``vsa.transport.path.FramePath`` decides):
    the same-host channel, or Ray's object store and ``infer`` calls."""

    def __init__(self, stream_key: str, max_in_flight: int, transport: str = "auto") -> None:
        self.stream_key = stream_key
        self.path = FramePath(
            stream_key,
            max_in_flight,
            _locate_channel,
            ray.get_runtime_context().get_node_id(),
            transport,
            identity=_actor_id,
        )

    @property
    def transport(self) -> str | None:
        """The path of the last frames sent (``channel`` or ``ray``); None before any."""
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
    ) -> Any:
        """Send ``frames`` to ``inference``; the answer is a ``vsa.stream.Pending``."""
        request = {
            "key": engine_key,
            "stream": self.stream_key,
            "indices": [f.index for f in frames],
            "deadlines": deadlines,
            "priority": priority,
            "credit": credit,
        }
        sent = self.path.send(inference, [f.image for f in frames], request, on_gone)
        if sent is not None:
            return sent
        sent = send_frames(
            inference, engine_key, self.stream_key, frames, deadlines, priority, on_gone, credit
        )
        self.path.used = "ray"
        return sent

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
        raise _gone(exc) from None
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"no answer in {CHANNEL_ASK_S:.0f} s") from None
