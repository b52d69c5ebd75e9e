"""The inference actor: one per host (``num_gpus=1`` when the cluster has a GPU).

Sources call ``infer`` with references to frames in the object store. Each call's
frames join the engine's batch former; one loop per engine forms batches across
all streams (max size, max wait, round-robin), runs the model in a single model
thread (the event loop never blocks) and resolves every call with its results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from actors.metrics import InferenceMetrics
from vsa.batching import BatchFormer
from vsa.config import BatchingSpec, ModelSpec
from vsa.errors import ModelError
from vsa.models import BatchRunner, Model, load_model
from vsa.settings import torch_threads
from vsa.sinks import FrameResult

log = logging.getLogger("vsa.inference")


@dataclass
class _Item:
    frame: np.ndarray
    index: int
    future: asyncio.Future
    deadline: float | None = None  # wall time after which the frame is stale (realtime)


@dataclass
class _Engine:
    key: str
    model: Model
    former: BatchFormer[_Item]
    runner: BatchRunner
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    batches: int = 0
    frames: int = 0
    model_s: float = 0.0
    stale: int = 0
    running: int = 0  # frames in the batch the model is working on
    last_progress: float = field(default_factory=time.monotonic)  # batch done, or work arrived


def engine_key(model: ModelSpec, batching: BatchingSpec) -> str:
    return json.dumps(
        {
            "model": model.model_dump(),
            "batching": batching.model_dump(exclude={"stall_timeout_s"}),  # not the engine's
        },
        sort_keys=True,
    )


@ray.remote(num_cpus=0)
class InferenceActor:
    def __init__(self) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            import torch

            torch.set_num_threads(torch_threads())
        except Exception:  # noqa: BLE001
            pass
        self._engines: dict[str, _Engine] = {}
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._load_lock = asyncio.Lock()
        self._released: dict[str, dict[str, Any]] = {}  # totals of unloaded engines, by model name
        self._metrics = InferenceMetrics()

    async def ensure_engine(
        self, model: dict[str, Any], batching: dict[str, Any]
    ) -> dict[str, Any]:
        """Load the model (once per model+batching config) and return what it is."""
        model_spec, batching_spec = (
            ModelSpec.model_validate(model),
            BatchingSpec.model_validate(batching),
        )
        key = engine_key(model_spec, batching_spec)
        async with self._load_lock:
            if key not in self._engines:
                loop = asyncio.get_running_loop()
                try:
                    loaded = await loop.run_in_executor(self._model_thread, load_model, model_spec)
                except ModelError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    raise ModelError(f"model '{model_spec.name}' failed to load: {exc}") from None
                engine = _Engine(
                    key,
                    loaded,
                    BatchFormer(batching_spec.max_batch_size, batching_spec.max_wait_ms / 1000),
                    BatchRunner(loaded, batching_spec.max_batch_size),
                )
                engine.task = asyncio.get_running_loop().create_task(self._batch_loop(engine))
                self._engines[key] = engine
                log.info("loaded %s on %s", loaded.name, loaded.device)
        engine = self._engines[key]
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
    ) -> list[FrameResult | None]:
        """Results in order; ``None`` for a frame past its ``deadline`` when its batch formed
        (dropped as stale instead of inferred late)."""
        engine = self._engines.get(key)
        if engine is None:
            raise ModelError("no model loaded for this run (the inference actor restarted?)")
        if engine.runner.fatal:
            raise ModelError(engine.runner.fatal)
        frames = await asyncio.gather(*refs)
        if not len(engine.former) and not engine.running:
            engine.last_progress = time.monotonic()  # idle until now: the stall clock starts here
        loop = asyncio.get_running_loop()
        items = [
            _Item(frame, index, loop.create_future(), None if deadlines is None else deadlines[i])
            for i, (frame, index) in enumerate(zip(frames, indices, strict=True))
        ]
        run = stream.split("/", 1)[0]  # streams are "<run id>/<source id>"
        for item in items:
            # priority orders streams within a run; runs share the engine in turn
            engine.former.add(stream, item, priority, group=run)
        engine.wake.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def release_engine(self, key: str) -> bool:
        """Unload a model no run uses any more (frames still waiting fail with an error)."""
        engine = self._engines.pop(key, None)
        if engine is None:
            return False
        if engine.task is not None:
            engine.task.cancel()
        for item in engine.former.drain():
            if not item.future.done():
                item.future.set_exception(RuntimeError("model unloaded"))
        name = engine.model.name
        totals = self._released.setdefault(name, {"batches": 0, "frames": 0, "model_s": 0.0})
        totals["batches"] += engine.batches
        totals["frames"] += engine.frames
        totals["model_s"] += engine.model_s
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
        now = time.monotonic()
        return {
            key: {
                "model": e.model.name,
                "waiting": len(e.former),
                "running": e.running,
                "since_progress_s": round(now - e.last_progress, 3),
                "fatal": e.runner.fatal,
                "max_batch_size": e.runner.max_batch_size,
            }
            for key, e in self._engines.items()
        }

    async def inject_fault(self, kind: str, seconds: float = 0.0) -> None:
        """Fault injection for tests and outage rehearsals (``vsa`` never calls it itself).

        ``oom``: every model call from now on fails with a device out-of-memory error raised
        from the model wrapper. ``hang``: the next model call blocks for ``seconds`` (a hung
        kernel or driver).
        """
        import torch

        for engine in self._engines.values():
            model = engine.model
            forward = model.forward
            if kind == "oom":

                def oom(batch: Any) -> Any:
                    raise torch.OutOfMemoryError("CUDA out of memory (injected by inject_fault)")

                model.forward = oom  # type: ignore[method-assign]
            elif kind == "hang":
                state = {"armed": True}

                def hang(batch: Any, forward: Any = forward, state: dict = state) -> Any:
                    if state.pop("armed", False):
                        time.sleep(seconds)
                    return forward(batch)

                model.forward = hang  # type: ignore[method-assign]
            else:
                raise ValueError(f"unknown fault {kind!r} (oom, hang)")

    async def stats(self) -> dict[str, Any]:
        """Batches, frames and model seconds per model name, since this actor started."""
        totals = {name: dict(t) for name, t in self._released.items()}
        for e in self._engines.values():
            t = totals.setdefault(e.model.name, {"batches": 0, "frames": 0, "model_s": 0.0})
            t["max_batch_size"] = e.runner.max_batch_size
            t["oom_events"] = t.get("oom_events", 0) + e.runner.oom_events
            t["batches"] += e.batches
            t["frames"] += e.frames
            t["model_s"] += e.model_s
        for t in totals.values():
            t["mean_batch"] = round(t["frames"] / t["batches"], 2) if t["batches"] else 0.0
            t["model_s"] = round(t["model_s"], 3)
        totals["loaded"] = len(self._engines)
        return totals

    async def _batch_loop(self, engine: _Engine) -> None:
        while True:
            try:
                await self._next_batch(engine)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let one bad batch end the loop
                log.exception("batch loop error (continuing)")

    async def _next_batch(self, engine: _Engine) -> None:
        delay = engine.former.time_until_ready()
        if delay is None or delay > 0:
            engine.wake.clear()
            try:
                await asyncio.wait_for(engine.wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            return
        # callers that gave up (cancelled) and frames past their deadline are skipped without
        # taking a place in the batch (nor their run's turn), not computed
        now = time.time()
        batch, skipped = engine.former.take_fresh(
            lambda i: i.future.done() or (i.deadline is not None and i.deadline < now)
        )
        stale = [i for i in skipped if not i.future.done()]
        for item in stale:
            item.future.set_result(None)
        engine.stale += len(stale)
        if not batch:
            return
        started = time.perf_counter()
        engine.running = len(batch)
        try:
            detections = await asyncio.get_running_loop().run_in_executor(
                self._model_thread, engine.runner.run, [item.frame for item in batch]
            )
            if len(detections) != len(batch):
                raise RuntimeError(
                    f"model returned {len(detections)} results for {len(batch)} frames"
                )
        except Exception as exc:  # noqa: BLE001 - fail these frames, keep serving
            engine.running = 0
            engine.last_progress = time.monotonic()
            log.error("batch of %d failed: %s", len(batch), exc)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RuntimeError(f"inference failed: {exc}"))
            if engine.runner.fatal:
                log.error("%s: %s", engine.model.name, engine.runner.fatal)
                for item in engine.former.drain():
                    if not item.future.done():
                        item.future.set_exception(ModelError(engine.runner.fatal))
            return
        engine.running = 0
        engine.last_progress = time.monotonic()
        elapsed = time.perf_counter() - started
        if engine.runner.max_batch_size < engine.former.max_batch_size:
            log.warning(
                "%s: device out of memory, max batch size lowered %d -> %d",
                engine.model.name,
                engine.former.max_batch_size,
                engine.runner.max_batch_size,
            )
            engine.former.max_batch_size = engine.runner.max_batch_size
        engine.batches += 1
        engine.frames += len(batch)
        engine.model_s += elapsed
        try:
            self._metrics.batch(engine.model.name, elapsed, len(batch))
            if stale:
                self._metrics.stale.inc(len(stale), tags={"model": engine.model.name})
            self._metrics.gpu()
        except Exception:  # noqa: BLE001 - metrics never break inference
            log.exception("metrics failed")
        for item, dets in zip(batch, detections, strict=True):
            if not item.future.done():
                item.future.set_result(
                    FrameResult(item.index, dets, elapsed * 1000, len(batch), engine.batches)
                )
