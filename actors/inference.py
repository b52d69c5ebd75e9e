"""The inference actor: one per host (``num_gpus=1`` when the cluster has a GPU).

Sources on this host send frames through its channel (``channel``: frames in shared-memory
rings, calls on a Unix socket, ``vsa.transport``); elsewhere, or when the channel cannot be
used, they call ``infer`` with references to frames in the object store. The actor holds one
:class:`~vsa.inference.InferenceEngine` per model+batching config: each call's frames join
that engine's batch former, and its loop forms batches across all streams, runs the model in
the actor's model threads (the event loop never blocks; on a CPU, several batches may run at
once, ``vsa.inference.threads``) and resolves every call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from actors.metrics import InferenceMetrics
from vsa.batching import BatchFormer
from vsa.config import BatchingSpec, ModelSpec
from vsa.control.priority import lower_data_plane
from vsa.core.frames import FrameResult
from vsa.errors import ModelError
from vsa.inference import InferenceEngine, engine_key
from vsa.inference.threads import ThreadTuner
from vsa.settings import model_splits
from vsa.transport import ChannelServer, RingReader
from vsa.transport.channel import sweep_sockets
from vsa.transport.ring import sweep

log = logging.getLogger("vsa.inference")

__all__ = ["InferenceActor", "engine_key"]


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


@ray.remote(num_cpus=0)
class InferenceActor:
    def __init__(self) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # Model threads that wait for work passively: with the spinning default, threads that
        # outnumber the cores left by the source actors burn them and the model collapses
        # (measured: 2 threads beside 4 sources on 2 cores ran at 8 frames/s against 20).
        # Set before torch loads OpenMP; a value from the host's environment wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # batches at once x threads each, measured per model on the real work, each thread
        # count applied by the model thread that uses it (vsa.inference.threads); the settings
        # may pin them
        self._splits = model_splits()
        self._engines: dict[str, InferenceEngine] = {}
        self._model_thread = ThreadPoolExecutor(
            max(s.workers for s in self._splits), thread_name_prefix="model"
        )
        self._load_lock = asyncio.Lock()
        self._released: dict[str, dict[str, Any]] = {}  # totals of unloaded engines, by model name
        self._metrics = InferenceMetrics()
        self._rings = RingReader()
        self._channel: ChannelServer | None = None

    async def channel(self) -> dict[str, Any]:
        """This actor's same-host frame channel: its socket path and node (started once)."""
        if self._channel is None:
            # what an inference actor or source actors killed before could not remove
            removed, sockets = sweep(), sweep_sockets()
            if removed or sockets:
                log.info(
                    "removed %d frame rings and %d channel sockets of actors that are gone",
                    removed,
                    sockets,
                )
            self._channel = ChannelServer(self._channel_infer, self._channel_closed)
        path = await self._channel.start()
        return {"path": path, "node": ray.get_runtime_context().get_node_id()}

    async def _channel_infer(self, request: dict[str, Any]) -> list[FrameResult | None]:
        stream = request["stream"]
        owner = request["connection"]
        frames = [self._rings.view(owner, slot) for slot in request["slots"]]
        return await self._infer_frames(
            request["key"],
            stream,
            frames,
            request["indices"],
            request.get("deadlines"),
            request.get("priority", 0),
            request.get("credit"),
            request.get("behind"),
        )

    def _channel_closed(self, connection: int) -> None:
        self._rings.forget(connection)

    async def ensure_engine(
        self, model: dict[str, Any], batching: dict[str, Any]
    ) -> dict[str, Any]:
        """Load the model (once per model+batching config) and return what it is."""
        model_spec, batching_spec = (
            ModelSpec.model_validate(model),
            BatchingSpec.model_validate(batching),
        )
        key = engine_key(model_spec, batching_spec)
        # torch: imported here so that the controller, which imports this module to create the
        # actor, does not load it
        from vsa.models import BatchRunner, load_model

        async with self._load_lock:
            if key not in self._engines:
                loop = asyncio.get_running_loop()
                try:
                    loaded = await loop.run_in_executor(self._model_thread, load_model, model_spec)
                except ModelError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise ModelError(f"model '{model_spec.name}' failed to load: {exc}") from None
                engine = InferenceEngine(
                    key,
                    loaded,
                    BatchFormer(batching_spec.max_batch_size, batching_spec.max_wait_ms / 1000),
                    BatchRunner(loaded, batching_spec.max_batch_size),
                    self._model_thread,
                    on_batch=self._on_batch,
                    # on a GPU: one batch at a time, and the CPU threads only letterbox
                    threads=ThreadTuner(self._splits, time.monotonic, _set_torch_threads)
                    if str(loaded.device) == "cpu"
                    else None,
                )
                engine.start()
                self._engines[key] = engine
                log.info("loaded %s on %s", loaded.name, loaded.device)
        engine = self._engines[key]
        # the model loaded at the priority Ray started this actor with (a restart on a
        # saturated host gets going sooner); from here on the data plane's
        lower_data_plane()
        return {
            "key": key,
            "model": engine.model.name,
            "device": str(engine.model.device),
            "classes": list(engine.model.classes),
        }

    async def infer(
        self,
        key: str,
        stream: str,
        indices: list[int],
        refs: list[ray.ObjectRef],
        deadlines: list[float] | None = None,
        priority: int = 0,
        credit: int | None = None,
        behind: bool | None = None,
    ) -> list[FrameResult | None]:
        """Results in order; ``None`` for a frame past its ``deadline`` when its batch formed
        (dropped as stale instead of inferred late). ``credit``: the stream's frames in flight
        at most, when it is bounded that way (realtime); ``behind``: it lost frames for want
        of a free slot since its last send."""
        self._engine(key)  # fail before reading the frames
        # each reference holds one frame or a chunk's list of frames (zero-copy views)
        frames = [
            image
            for got in await asyncio.gather(*refs)
            for image in (got if isinstance(got, list) else [got])
        ]
        return await self._infer_frames(
            key, stream, frames, indices, deadlines, priority, credit, behind
        )

    def _engine(self, key: str) -> InferenceEngine:
        engine = self._engines.get(key)
        if engine is None:
            raise ModelError("no model loaded for this run (the inference actor restarted?)")
        if engine.fatal:
            raise ModelError(engine.fatal)
        return engine

    async def _infer_frames(
        self,
        key: str,
        stream: str,
        frames: list[Any],
        indices: list[int],
        deadlines: list[float] | None,
        priority: int,
        credit: int | None,
        behind: bool | None = None,
    ) -> list[FrameResult | None]:
        engine = self._engine(key)
        run = stream.split("/", 1)[0]  # streams are "<run id>/<source id>"
        # priority orders streams within a run; runs share the engine in turn
        return await engine.submit(
            stream, frames, indices, deadlines, priority, group=run, credit=credit, behind=behind
        )

    async def release_engine(self, key: str) -> bool:
        """Unload a model no run uses any more (frames still waiting fail with an error)."""
        engine = self._engines.pop(key, None)
        if engine is None:
            return False
        await engine.close()
        name = engine.model.name
        totals = self._released.setdefault(
            name, {"batches": 0, "frames": 0, "model_s": 0.0, "model_cpu_s": 0.0}
        )
        engine_totals = engine.totals()
        for field in ("batches", "frames", "model_s", "model_cpu_s"):
            totals[field] = totals.get(field, 0.0) + engine_totals[field]
        if engine.threads is not None:  # what it measured, for the benchmark
            totals["split"] = engine.threads.snapshot()
        del engine
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
        log.info("unloaded %s", name)
        return True

    async def health(self) -> dict[str, Any]:
        """Per engine: frames waiting and running, seconds since progress, a fatal reason."""
        if self._engines:  # a saturated host slows frames, not the control plane; threads
            lower_data_plane()  # started since the last check follow too
        return {key: e.health() for key, e in self._engines.items()}

    async def inject_fault(self, kind: str, seconds: float = 0.0) -> None:
        """Fault injection for tests and outage rehearsals (``vsa`` never calls it itself):
        ``oom`` makes every model call fail with a device out-of-memory error, ``hang`` blocks
        the next one for ``seconds`` (``vsa.testing.faults``)."""
        from vsa.testing.faults import FaultyModel

        for engine in self._engines.values():
            faulty = FaultyModel.around(engine.runner.model)
            faulty.inject(kind, seconds)
            engine.runner.model = faulty

    async def stats(self) -> dict[str, Any]:
        """Batches, frames, model seconds and the model threads' CPU seconds (``model_cpu_s``)
        per model name, since this actor started; the
        models loaded (``loaded``); per model on a CPU its ``split`` (batches at once x torch
        threads, what was measured); the splits tried (``torch_threads``)."""
        totals = {name: dict(t) for name, t in self._released.items()}
        for e in self._engines.values():
            t = totals.setdefault(
                e.model.name, {"batches": 0, "frames": 0, "model_s": 0.0, "model_cpu_s": 0.0}
            )
            et = e.totals()
            t["max_batch_size"] = et["max_batch_size"]
            t["oom_events"] = t.get("oom_events", 0) + et["oom_events"]
            if e.threads is not None:
                t["split"] = e.threads.snapshot()
            t["batches"] += et["batches"]
            t["frames"] += et["frames"]
            t["model_s"] += et["model_s"]
            t["model_cpu_s"] = t.get("model_cpu_s", 0.0) + et["model_cpu_s"]
        for t in totals.values():
            t["mean_batch"] = round(t["frames"] / t["batches"], 2) if t["batches"] else 0.0
            t["model_s"] = round(t["model_s"], 3)
            t["model_cpu_s"] = round(t.get("model_cpu_s", 0.0), 3)
        totals["loaded"] = len(self._engines)
        totals["torch_threads"] = {"candidates": [str(s) for s in self._splits]}
        return totals

    def _on_batch(self, model: str, seconds: float, size: int, stale: int) -> None:
        """Metrics of one batch (the engine logs any error; it never breaks inference)."""
        self._metrics.batch(model, seconds, size)
        if stale:
            self._metrics.stale.inc(stale, tags={"model": model})
        self._metrics.gpu()
