"""The controller's Ray calls: its view of the actors behind the protocols of
``vsa.supervision.handles`` (as Ray Serve's ``ActorReplicaWrapper``: every Ray API call is made
here, so what decides is tested with fakes). A source actor's own Ray calls (its frames to the
inference actor through the object store, whether Ray restarted it) are in ``actors.frames``.

Ray's errors are translated: ``RayActorError`` becomes ``ActorGone`` (``died`` for
``ActorDiedError``), a call without an answer in time raises ``asyncio.TimeoutError``; an error
the actor raised passes through. The source and inference actors' modules are imported when an
actor is created: they pull in the stream, sink and model code (torch, PyAV) that the
controller never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import NAMESPACE, source_actor_name
from actors.frames import actor_gone, this_actor_restarted
from vsa.supervision.handles import DEFAULT_SLOT, Slot
from vsa.supervision.pool import plan_slots

__all__ = [
    "RayHandles",
    "RayInference",
    "RaySource",
    "call_recover",
    "cluster_paths",
    "this_actor_restarted",  # the controller's too; defined beside the source's other calls
]


async def _answer(ref: Any, timeout_s: float) -> Any:
    """The result of ``ref`` within ``timeout_s`` (``asyncio.TimeoutError`` otherwise)."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except ray.exceptions.RayActorError as exc:
        raise actor_gone(exc) from None


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
