"""The controller: a detached, named actor that owns runs and supervises the engine.

It is created by the first client that needs it and stays up, idle, waiting for runs. For each
run it starts one source actor per stream and makes sure the shared inference actor has the
run's model loaded; a monitor task per run polls the sources and derives the run's state.

Supervision (the failure policy in docs/failure-policy.md):

- every run is saved in Ray's GCS key-value store; a controller that Ray restarts (its
  process died) reloads them, re-attaches to the source actors and the inference actor (both
  detached, so they outlive it) and goes on: runs keep their ids and files;
- a supervisor task polls the inference actor: when it is dead it is recreated, the models of
  the active runs are loaded again and the sources get the new handle; when it makes no
  progress for ``batching.stall_timeout_s`` while frames wait, it is killed and recreated;
  when its device cannot fit one frame (repeated out-of-memory), the runs on it fail;
- source actors are restarted by Ray (``max_restarts=-1``); the monitor notices the new
  incarnation and carries the counters over.

This module makes the Ray calls; what they decide lives in ``vsa.supervision`` (no Ray, unit
tested): the run records and their durable form (``runbook``), the inference watchdog
(``watchdog``) and the record store interface (``store``; the GCS one is ``actors/store.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import time
from typing import Any

import ray

from actors import INFERENCE_NAME, NAMESPACE, source_actor_name
from actors.store import GcsRunStore
from vsa import CODE_FINGERPRINT, __version__, settings
from vsa.config import RunSpec
from vsa.constants import (
    ENGINE_TIMEOUT_S,
    KEEP_FINISHED,
    METRICS_FLUSH_S,
    POLL_S,
    REAP_LEFT_S,
    SAVE_EVERY_S,
    STATUS_TIMEOUT_S,
    STORE_CHECK_S,
    SUPERVISE_S,
    WARNING_HOLD_S,
)
from vsa.errors import ConfigError, VsaError
from vsa.outputs import check_admission, check_output_dir, claim_outputs
from vsa.report import build_report, write_report
from vsa.runstate import ENDED, RunState
from vsa.schema import SourceState
from vsa.settings import inference_gpus
from vsa.stream import stop_grace_s
from vsa.supervision.runbook import RunBook, RunRecord, seal_sources
from vsa.supervision.watchdog import (
    ActorDied,
    NoActor,
    NoAnswer,
    WatchedRun,
    check_inference,
    spill_warning,
)
from vsa.uri import mask_uri

log = logging.getLogger("vsa.controller")


def _store_stats() -> tuple[int, int] | None:
    """(bytes in the object store, bytes spilled to disk so far) for the cluster, or None."""
    try:  # Ray's own `ray memory --stats-only` source: private, so guarded
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        stats = get_memory_info_reply(get_state_from_address(None), timeout_seconds=10).store_stats
        return int(stats.object_store_bytes_used), int(stats.spilled_bytes_total)
    except Exception:  # noqa: BLE001
        return None


def _available_memory() -> int | None:
    try:
        import psutil  # a dependency of ray[default]

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def _check_timeout(timeout_s: Any) -> None:
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or not 0 < timeout_s <= 3600
    ):
        raise VsaError(f"stop timeout must be a number of seconds in (0, 3600], got {timeout_s!r}")


@ray.remote(num_cpus=0)
class Controller:
    def __init__(self, fingerprint: str | None = None) -> None:
        """``fingerprint`` overrides the code fingerprint it reports (tests use it to play an old controller)."""
        self._fingerprint = fingerprint or CODE_FINGERPRINT
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self._book = RunBook(GcsRunStore())
        self._inference: Any = None
        self._inference_gpus = 0
        self._started_at = time.time()
        self._submit_lock: asyncio.Lock | None = None
        self._recovered: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None
        self._spilled_seen: int | None = None
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        log.info(
            "controller %s (code %s) %s, pid %d",
            __version__,
            self._fingerprint,
            "restarted by Ray" if self.restarted else "up",
            os.getpid(),
        )
        # recovery runs as this actor's first task, on its event loop
        ray.get_runtime_context().current_actor.recover.remote()

    # --- recovery ------------------------------------------------------------------------
    async def _ready(self) -> None:
        if self._recovered is None:
            self._recovered = asyncio.Event()
            self._submit_lock = asyncio.Lock()
            if not self.restarted:
                # a new controller (first start, or replacing one that ran other code): an
                # inference actor left by its predecessor may run old code; start afresh
                await self._kill_named_inference()
            await self._load_saved_runs()
            self._recovered.set()
        await self._recovered.wait()

    async def recover(self) -> dict[str, Any]:
        """Reload saved runs and resume the active ones (called once, right after start)."""
        await self._ready()
        return {"runs": len(self._book)}

    async def _load_saved_runs(self) -> None:
        self._book.load()
        active = self._book.active()
        # actors a finished run left (restart while reaping)
        for record in self._book.recently_finished(REAP_LEFT_S):
            for source in record.spec.sources:
                try:
                    name = source_actor_name(record.id, source.id)
                    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
                except Exception:  # noqa: BLE001 - gone already
                    pass
        if self._book.runs:
            log.info("loaded %d saved runs, %d active", len(self._book), len(active))
        if not active:
            return
        try:
            self._inference = ray.get_actor(INFERENCE_NAME, namespace=NAMESPACE)
            self._inference_gpus = inference_gpus(ray.cluster_resources().get("GPU", 0))
        except ValueError:
            self._inference = None
        for record in active:
            try:
                record.model = {**(record.model or {}), **await self._ensure_engine(record.spec)}
                record.engine_key = record.model.pop("key")
            except Exception as exc:  # noqa: BLE001
                record.error = f"could not reload the model after a controller restart: {exc}"
                await self._finish(record, RunState.FAILED)
                continue
            for source in record.spec.sources:
                name = source_actor_name(record.id, source.id)
                try:
                    record.actors[source.id] = ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:  # the actor is gone: start it again (files are appended)
                    record.actors[source.id] = self._start_source(record, source.id, resume=True)
                    record.event("source_recreated", source=source.id)
                    continue
                record.actors[source.id].set_inference.remote(self._inference, record.engine_key)
            record.event("recovered", after="controller restart")
            if record.stop_requested:  # the stop was cut short by the restart: finish it
                record.stop_requested = False
                asyncio.get_running_loop().create_task(self.stop(record.id))
                continue
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self._save(record)
        self._ensure_supervisor()

    def _save(self, record: RunRecord) -> None:
        self._book.save(record)  # a failure is logged: the run goes on

    # --- queries -------------------------------------------------------------------------
    async def version(self) -> dict[str, Any]:
        await self._ready()
        return {
            "version": __version__,
            "fingerprint": self._fingerprint,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "active_runs": [r.id for r in self._book.active()],
        }

    async def status(self, run: str | None = None) -> dict[str, Any]:
        await self._ready()
        runs = [self._book.find(run)] if run else self._book.ordered()
        return {"runs": [r.summary() for r in runs]}

    # --- commands ------------------------------------------------------------------------
    async def submit(self, run: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
        """Start a run. Refused (with what to do) when its name is active, it does not fit the
        admission limits, its output_dir is not allowed or writable, another active run writes
        there, or an earlier run's files are there and ``overwrite`` is not given."""
        await self._ready()
        try:
            spec = RunSpec.model_validate(run)
        except Exception as exc:  # the client validated already; this guards other callers
            raise ConfigError([str(exc)]) from None
        assert self._submit_lock is not None
        async with self._submit_lock:
            active = self._book.active()
            for other in active:
                if other.spec.name == spec.name:
                    raise VsaError(
                        f"a run named '{spec.name}' is already {other.state.value} as {other.id}: "
                        f"stop it first (vsa stop {other.id}) or choose another name"
                    )
            check_admission(
                len(spec.sources),
                sum(len(r.spec.sources) for r in active),
                _available_memory(),
                per_run=settings.max_sources_per_run(),
                total=settings.max_sources(),
                source_mb=settings.source_memory_mb(),
            )
            directory = await asyncio.to_thread(
                check_output_dir, spec.output_dir, settings.output_roots()
            )
            removed = await asyncio.to_thread(
                claim_outputs,
                spec,
                directory,
                [(r.id, r.spec.output_dir) for r in active],
                overwrite,
            )
            if removed:
                log.info(
                    "run %s: --overwrite removed %d files of an earlier run in %s",
                    spec.name,
                    len(removed),
                    directory,
                )
            spec, sealed = seal_sources(spec.model_copy(update={"output_dir": str(directory)}))
            run_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            record = RunRecord.submitted(run_id, spec, sealed)
            record.model = await self._ensure_engine(spec)
            record.engine_key = record.model.pop("key")
            for source in spec.sources:
                record.actors[source.id] = self._start_source(record, source.id)
            self._book.add(record)
            self._save(record)
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self._book.forget_old(KEEP_FINISHED)
            self._ensure_supervisor()
        log.info(
            "run=%s submitted: %d sources, model %s on %s",
            run_id,
            len(spec.sources),
            record.model["model"],
            record.model["device"],
        )
        return {"run_id": run_id, "model": record.model}

    async def stop(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop a run: sources stop decoding, write what is in flight and close their files.

        ``timeout_s`` bounds the wait for results in flight (then they count as ``shutdown``);
        each source then ends in a terminal state with exact counts.
        """
        await self._ready()
        _check_timeout(timeout_s)
        record = self._book.find(run)
        if record.state.terminal:
            return record.summary()
        record.stop_requested = True
        self._save(record)
        await self._stop_sources(record, timeout_s)
        await self._finish(record, RunState.STOPPED)
        return record.summary()

    # --- internals -----------------------------------------------------------------------
    def _start_source(self, record: RunRecord, source_id: str, resume: bool = False) -> Any:
        # imported here, not at module level: the source actor's module pulls in the stream
        # and sink code that the controller itself never runs
        from actors.source import SourceActor

        # detached: a source outlives a controller restart; max_restarts: Ray restarts a source
        # actor whose process died (the memory monitor picks restartable actors first)
        return SourceActor.options(
            name=source_actor_name(record.id, source_id),
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
        ).remote(
            record.id,
            record.spec.model_dump(),
            source_id,
            self._inference,
            record.engine_key,
            record.sealed.get(source_id),
            resume,
        )

    async def _kill_named_inference(self) -> None:
        """Kill the actor named ``inference`` if there is one, and wait until the name is free."""
        for attempt in range(100):
            try:
                actor = ray.get_actor(INFERENCE_NAME, namespace=NAMESPACE)
            except ValueError:
                return
            if attempt == 0:
                log.info("stopping the inference actor left by an earlier controller")
                ray.kill(actor, no_restart=True)
            await asyncio.sleep(0.1)

    def _new_inference(self) -> Any:
        # imported here, not at module level: the inference actor's module imports torch
        from actors.inference import InferenceActor

        self._inference_gpus = inference_gpus(ray.cluster_resources().get("GPU", 0))
        # detached, not restarted by Ray: the controller restarts it and reloads the models;
        # not restartable also makes it the last choice of Ray's memory monitor
        return InferenceActor.options(
            name=INFERENCE_NAME,
            namespace=NAMESPACE,
            num_gpus=self._inference_gpus,
            max_concurrency=1000,
            lifetime="detached",
        ).remote()

    async def _ensure_engine(self, spec: RunSpec) -> dict[str, Any]:
        """Have the inference actor load the run's model; (re)create the actor when needed."""
        for attempt in range(2):
            if self._inference is None:
                await self._kill_named_inference()
                self._inference = self._new_inference()
            if spec.model.device == "cuda" and not self._inference_gpus:
                raise VsaError(
                    "model.device is 'cuda' but the Ray cluster has no GPU: use device: auto or cpu"
                )
            try:
                return await asyncio.wait_for(
                    self._inference.ensure_engine.remote(
                        spec.model.model_dump(), spec.batching.model_dump()
                    ),
                    ENGINE_TIMEOUT_S,
                )
            except asyncio.TimeoutError:
                raise VsaError(
                    f"the inference actor did not load the model within {ENGINE_TIMEOUT_S:.0f} s "
                    f"(it asks for {self._inference_gpus} GPU; see `ray status` for free resources)"
                ) from None
            except ray.exceptions.RayActorError:
                log.warning("inference actor is gone; starting a new one (attempt %d)", attempt + 1)
                self._inference = None
        raise VsaError(
            "the inference actor could not be started; see its log (`ray logs actor --id ...`)"
        )

    # --- supervision of the inference actor ----------------------------------------------
    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        last_store_check = 0.0
        while True:
            await asyncio.sleep(SUPERVISE_S)
            active = self._book.supervised()
            if not active:
                continue
            try:
                await self._check_inference(active)
                if time.monotonic() - last_store_check >= STORE_CHECK_S:
                    last_store_check = time.monotonic()
                    await self._check_store(active)
            except Exception:  # noqa: BLE001 - never let supervision die
                log.exception("supervisor error (continuing)")

    async def _check_store(self, active: list[RunRecord]) -> None:
        """Spilling to disk means the object store is full: a warning on every active run."""
        stats = await asyncio.to_thread(_store_stats)
        if stats is None:
            return
        used, spilled = stats
        text = spill_warning(self._spilled_seen, used, spilled, STORE_CHECK_S)
        if text:
            for record in active:
                record.warn("spilling", text, WARNING_HOLD_S)
        self._spilled_seen = spilled

    async def _check_inference(self, active: list[RunRecord]) -> None:
        """Ask the inference actor for its health and carry out the watchdog's decision."""
        health: Any
        if self._inference is None:
            health = NoActor()
        else:
            try:
                health = await asyncio.wait_for(self._inference.health.remote(), STATUS_TIMEOUT_S)
            except ray.exceptions.RayActorError as exc:
                health = ActorDied(type(exc).__name__)
            except asyncio.TimeoutError:
                health = NoAnswer(STATUS_TIMEOUT_S)
        watched = [WatchedRun(r.id, r.engine_key, r.spec.batching.stall_timeout_s) for r in active]
        decision = check_inference(health, watched)
        by_id = {r.id: r for r in active}
        for failed in decision.fail:
            for run_id in failed.run_ids:
                record = by_id[run_id]
                record.error = f"inference: {failed.reason}"
                record.event("fatal", reason=failed.reason)
                await self._stop_sources(record)
                await self._finish(record, RunState.FAILED)
        if decision.restart:
            await self._restart_inference(
                active, decision.restart.reason, kill=decision.restart.kill
            )

    async def _restart_inference(
        self, active: list[RunRecord], reason: str, kill: bool = False
    ) -> None:
        started = time.monotonic()
        log.error("restarting the inference actor: %s", reason)
        if kill and self._inference is not None:
            try:
                ray.kill(self._inference, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._inference = None
        await self._kill_named_inference()  # the name is free once the old actor is gone
        for record in active:
            try:
                model = await self._ensure_engine(record.spec)
            except Exception as exc:  # noqa: BLE001
                record.error = f"the inference actor could not be restarted: {exc}"
                await self._stop_sources(record)
                await self._finish(record, RunState.FAILED)
                continue
            record.engine_key = model.pop("key")
            for actor in record.actors.values():
                actor.set_inference.remote(self._inference, record.engine_key)
        took = round(time.monotonic() - started, 2)
        for record in active:
            if not record.state.terminal:
                record.event("inference_restarted", reason=reason, took_s=took)
                self._save(record)

    async def _stop_sources(self, record: RunRecord, timeout_s: float = 30.0) -> None:
        """Stop every source (all at once) and take their final statuses; files are closed."""
        record.stop_requested = True
        calls = {sid: a.stop.remote(timeout_s) for sid, a in record.actors.items()}
        wait_s = timeout_s + max(stop_grace_s(s) for s in record.spec.sources) + 10
        for sid, ref in calls.items():
            try:
                status = await asyncio.wait_for(ref, wait_s)
                self._absorb(record, sid, status)  # a restarted incarnation carries counts over
            except Exception as exc:  # noqa: BLE001 - a dead source is stopped too
                record.source_ended(
                    sid, SourceState.STOPPED.value, f"stop failed: {type(exc).__name__}"
                )

    # --- per-run monitor -----------------------------------------------------------------
    async def _poll(self, actor: Any) -> dict[str, Any] | BaseException | None:
        """A source's status; None when it did not answer in time (busy, still starting)."""
        try:
            return await asyncio.wait_for(actor.status.remote(), STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            return None
        except ray.exceptions.RayActorError as exc:
            return exc

    def _absorb(self, record: RunRecord, sid: str, status: dict[str, Any]) -> None:
        """Take a polled status; a new incarnation (Ray restarted the actor) is saved at once."""
        if record.absorb(sid, status) is not None:
            self._save(record)

    async def _monitor(self, record: RunRecord) -> None:
        ended = ENDED  # a polled source's state is a string
        while not record.state.terminal and not record.stop_requested:
            live = {
                sid: a
                for sid, a in record.actors.items()
                if record.sources[sid]["state"] not in ended
            }
            results = await asyncio.gather(*(self._poll(a) for a in live.values()))
            if record.stop_requested or record.state.terminal:
                return  # stop() owns the final statuses
            for sid, result in zip(live, results, strict=True):
                if isinstance(result, dict):
                    self._absorb(record, sid, result)
                elif isinstance(result, ray.exceptions.ActorDiedError):
                    record.source_ended(
                        sid, SourceState.FAILED.value, f"source actor died: {type(result).__name__}"
                    )
                # ActorUnavailableError: Ray is restarting it; the next poll sees it again
            state = record.assess()  # sampled, derived, degradation updated
            if state.terminal:
                await self._finish(record, state)
                return
            if state != record.state:
                record.enter(state)
                self._save(record)
            elif time.monotonic() - record.saved_at > SAVE_EVERY_S:
                self._save(record)
            await asyncio.sleep(POLL_S)

    async def _finish(self, record: RunRecord, state: RunState) -> None:
        if record.state.terminal:
            return
        if state is RunState.FAILED and not record.error:
            record.error = record.sources_error()
        # the report is written before the run reads as ended, so whoever sees the final state
        # finds the report too
        finished_at = time.time()
        try:
            report = build_report(record.final_summary(state, finished_at), record.series)
            paths = await asyncio.to_thread(write_report, record.spec.output_dir, report)
            record.report = [str(p) for p in paths]
            log.info("run=%s report: %s", record.id, ", ".join(record.report))
        except Exception as exc:  # noqa: BLE001 - a report is not worth failing the run over
            # written atomically: an earlier report.json stays whole
            record.event("report_failed", reason=mask_uri(f"{type(exc).__name__}: {exc}"))
        if record.state.terminal:
            return  # finished by another path while the report was written
        record.enter(state)
        record.finished_at = finished_at
        # the source actors' last metrics reach Ray's agent on its next report: let them live
        # that long (they are idle), then remove them
        asyncio.get_running_loop().create_task(self._reap(list(record.actors.values())))
        record.actors.clear()
        self._save(record)
        assert self._submit_lock is not None
        async with self._submit_lock:  # a submit in progress may be about to use this model
            in_use = self._book.engine_in_use(record.engine_key)
            if record.engine_key and not in_use and self._inference is not None:
                try:
                    await asyncio.wait_for(
                        self._inference.release_engine.remote(record.engine_key), 30
                    )
                except Exception as exc:  # noqa: BLE001 - a model left loaded is not worth failing a run
                    log.warning("run=%s could not unload its model: %s", record.id, exc)

    async def _reap(self, actors: list[Any]) -> None:
        await asyncio.sleep(METRICS_FLUSH_S)
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
