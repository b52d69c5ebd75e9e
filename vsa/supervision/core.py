"""The controller's brain as plain asyncio: runs, their monitors and the inference supervisor.

:class:`ControllerCore` is what ``actors/controller.py`` (a thin Ray actor) delegates to. It
sees the engine's actors only through :class:`vsa.supervision.handles.Handles` (on Ray:
``actors/handles.py``), keeps its runs in a :class:`vsa.supervision.runbook.RunBook` on a
:class:`vsa.supervision.store.RunStore` (on Ray: the GCS), and takes its clocks, its ``sleep``
and its ``to_thread`` injected, so the unit tests drive it with fakes.

What it does (the failure policy in docs/failure-policy.md):

- ``submit``: admission and output checks, the model loaded by the inference actor (created
  when needed), one source actor per stream, a monitor task per run;
- the monitor polls the sources every ``POLL_S``, absorbs their statuses (a new incarnation
  carries the counters over and is saved at once; a source actor that died is FAILED),
  derives the run's state and finishes the run when it is terminal;
- the supervisor asks the inference actor for its health every ``SUPERVISE_S`` and carries
  out :func:`vsa.supervision.watchdog.check_inference`'s decision (restart it, kill and
  restart it, fail the runs of a fatal engine); every ``STORE_CHECK_S`` it checks the object
  store for spilling;
- ``stop`` stops every source and finishes the run; finishing writes the report, releases the
  model when no other run uses it and removes the source actors ``METRICS_FLUSH_S`` later;
- recovery (``ready``, once): saved runs are loaded, the active ones re-attached to their
  source actors (a missing one is recreated with ``resume``) and a stop cut short is finished.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from vsa import settings
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
from vsa.supervision.handles import (
    ActorGone,
    Handles,
    InferenceHandle,
    SourceHandle,
    error_name,
)
from vsa.supervision.runbook import RunBook, RunRecord, seal_sources
from vsa.supervision.store import RunStore
from vsa.supervision.watchdog import (
    ActorDied,
    Health,
    NoActor,
    NoAnswer,
    WatchedRun,
    check_inference,
    spill_warning,
)
from vsa.uri import mask_uri

log = logging.getLogger("vsa.controller")

Sleep = Callable[[float], Awaitable[Any]]
ToThread = Callable[..., Awaitable[Any]]
Poll = dict[str, Any] | ActorGone | None


def available_memory() -> int | None:
    """The host's available memory in bytes, or None."""
    try:
        import psutil  # a dependency of ray[default]

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def check_stop_timeout(timeout_s: Any) -> None:
    """A stop's ``timeout_s`` must be a number of seconds in (0, 3600]."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or not 0 < timeout_s <= 3600
    ):
        raise VsaError(f"stop timeout must be a number of seconds in (0, 3600], got {timeout_s!r}")


def new_run_id(name: str, now: float) -> str:
    """``<name>-<local time YYYYmmdd-HHMMSS>-<4 hex digits>``."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{secrets.token_hex(2)}"


class ControllerCore:
    """The controller's runs and decisions; every actor is reached through ``handles``.

    ``restarted``: this controller replaces one that Ray restarted (the inference actor it
    finds is kept); otherwise an inference actor left by a predecessor is killed first.
    """

    def __init__(
        self,
        handles: Handles,
        store: RunStore,
        *,
        restarted: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        to_thread: ToThread = asyncio.to_thread,
        memory: Callable[[], int | None] = available_memory,
    ) -> None:
        self.handles = handles
        self.book = RunBook(store, clock=clock, monotonic=monotonic)
        self.restarted = restarted
        self.inference: InferenceHandle | None = None
        self.inference_gpus = 0
        self._clock, self._monotonic = clock, monotonic
        self._sleep, self._to_thread, self._memory = sleep, to_thread, memory
        self._submit_lock: asyncio.Lock | None = None
        self._recovered: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None
        self._spilled_seen: int | None = None
        self._tasks: set[asyncio.Task] = set()  # reaps, a stop resumed after a restart

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel every task (monitors, supervisor, reaps): for tests; the actor never ends."""
        tasks = [*self._tasks, *(r.monitor for r in self.book.runs.values() if r.monitor)]
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- recovery ------------------------------------------------------------------------
    async def ready(self) -> None:
        """Recover once (the first caller does it); every caller waits until it is done."""
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
        await self.ready()
        return {"runs": len(self.book)}

    async def _load_saved_runs(self) -> None:
        self.book.load()
        active = self.book.active()
        # actors a finished run left (restart while reaping)
        for record in self.book.recently_finished(REAP_LEFT_S):
            for source in record.spec.sources:
                try:
                    actor = self.handles.get_source(record.id, source.id)
                    if actor is not None:
                        actor.kill()
                except Exception:  # noqa: BLE001 - gone already
                    pass
        if self.book.runs:
            log.info("loaded %d saved runs, %d active", len(self.book), len(active))
        if not active:
            return
        self.inference = self.handles.get_inference()
        if self.inference is not None:
            self.inference_gpus = inference_gpus(self.handles.cluster_gpus())
        for record in active:
            try:
                record.model = {**(record.model or {}), **await self._ensure_engine(record.spec)}
                record.engine_key = record.model.pop("key")
            except Exception as exc:  # noqa: BLE001
                record.error = f"could not reload the model after a controller restart: {exc}"
                await self._finish(record, RunState.FAILED)
                continue
            for source in record.spec.sources:
                actor = self.handles.get_source(record.id, source.id)
                if actor is None:  # the actor is gone: start it again (files are appended)
                    record.actors[source.id] = self._start_source(record, source.id, resume=True)
                    record.event("source_recreated", source=source.id)
                    continue
                record.actors[source.id] = actor
                actor.set_inference(self.inference, record.engine_key)
            record.event("recovered", after="controller restart")
            if record.stop_requested:  # the stop was cut short by the restart: finish it
                record.stop_requested = False
                self._spawn(self.stop(record.id))
                continue
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self.book.save(record)  # a failure is logged: the run goes on
        self._ensure_supervisor()

    # --- queries -------------------------------------------------------------------------
    async def status(self, run: str | None = None) -> dict[str, Any]:
        await self.ready()
        runs = [self.book.find(run)] if run else self.book.ordered()
        return {"runs": [r.summary() for r in runs]}

    # --- commands ------------------------------------------------------------------------
    async def submit(self, run: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
        """Start a run. Refused (with what to do) when its name is active, it does not fit the
        admission limits, its output_dir is not allowed or writable, another active run writes
        there, or an earlier run's files are there and ``overwrite`` is not given."""
        await self.ready()
        try:
            spec = RunSpec.model_validate(run)
        except Exception as exc:  # the client validated already; this guards other callers
            raise ConfigError([str(exc)]) from None
        assert self._submit_lock is not None
        async with self._submit_lock:
            active = self.book.active()
            for other in active:
                if other.spec.name == spec.name:
                    raise VsaError(
                        f"a run named '{spec.name}' is already {other.state.value} as {other.id}: "
                        f"stop it first (vsa stop {other.id}) or choose another name"
                    )
            check_admission(
                len(spec.sources),
                sum(len(r.spec.sources) for r in active),
                self._memory(),
                per_run=settings.max_sources_per_run(),
                total=settings.max_sources(),
                source_mb=settings.source_memory_mb(),
            )
            directory = await self._to_thread(
                check_output_dir, spec.output_dir, settings.output_roots()
            )
            removed = await self._to_thread(
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
            run_id = new_run_id(spec.name, self._clock())
            record = RunRecord.submitted(
                run_id, spec, sealed, clock=self._clock, monotonic=self._monotonic
            )
            record.model = await self._ensure_engine(spec)
            record.engine_key = record.model.pop("key")
            for source in spec.sources:
                record.actors[source.id] = self._start_source(record, source.id)
            self.book.add(record)
            self.book.save(record)
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self.book.forget_old(KEEP_FINISHED)
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
        await self.ready()
        check_stop_timeout(timeout_s)
        record = self.book.find(run)
        if record.state.terminal:
            return record.summary()
        record.stop_requested = True
        self.book.save(record)
        await self._stop_sources(record, timeout_s)
        await self._finish(record, RunState.STOPPED)
        return record.summary()

    # --- the engine's actors -------------------------------------------------------------
    def _start_source(self, record: RunRecord, source_id: str, resume: bool = False) -> Any:
        return self.handles.start_source(
            record.id,
            record.spec.model_dump(),
            source_id,
            self.inference,
            record.engine_key,
            record.sealed.get(source_id),
            resume,
        )

    async def _kill_named_inference(self) -> None:
        """Kill the inference actor if there is one, and wait until its name is free."""
        for attempt in range(100):
            actor = self.handles.get_inference()
            if actor is None:
                return
            if attempt == 0:
                log.info("stopping the inference actor left by an earlier controller")
                actor.kill()
            await self._sleep(0.1)

    def _new_inference(self) -> InferenceHandle:
        self.inference_gpus = inference_gpus(self.handles.cluster_gpus())
        # detached, not restarted by Ray: the controller restarts it and reloads the models;
        # not restartable also makes it the last choice of Ray's memory monitor
        return self.handles.start_inference(self.inference_gpus)

    async def _ensure_engine(self, spec: RunSpec) -> dict[str, Any]:
        """Have the inference actor load the run's model; (re)create the actor when needed."""
        for attempt in range(2):
            if self.inference is None:
                await self._kill_named_inference()
                self.inference = self._new_inference()
            if spec.model.device == "cuda" and not self.inference_gpus:
                raise VsaError(
                    "model.device is 'cuda' but the Ray cluster has no GPU: use device: auto or cpu"
                )
            try:
                return await self.inference.ensure_engine(
                    spec.model.model_dump(), spec.batching.model_dump(), ENGINE_TIMEOUT_S
                )
            except asyncio.TimeoutError:
                raise VsaError(
                    f"the inference actor did not load the model within {ENGINE_TIMEOUT_S:.0f} s "
                    f"(it asks for {self.inference_gpus} GPU; see `ray status` for free resources)"
                ) from None
            except ActorGone:
                log.warning("inference actor is gone; starting a new one (attempt %d)", attempt + 1)
                self.inference = None
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
            await self._sleep(SUPERVISE_S)
            active = self.book.supervised()
            if not active:
                continue
            try:
                await self.check_inference(active)
                if self._monotonic() - last_store_check >= STORE_CHECK_S:
                    last_store_check = self._monotonic()
                    await self.check_store(active)
            except Exception:  # noqa: BLE001 - never let supervision die
                log.exception("supervisor error (continuing)")

    async def check_store(self, active: list[RunRecord]) -> None:
        """Spilling to disk means the object store is full: a warning on every active run."""
        stats = await self._to_thread(self.handles.store_stats)
        if stats is None:
            return
        used, spilled = stats
        text = spill_warning(self._spilled_seen, used, spilled, STORE_CHECK_S)
        if text:
            for record in active:
                record.warn("spilling", text, WARNING_HOLD_S)
        self._spilled_seen = spilled

    async def _health(self) -> Health:
        if self.inference is None:
            return NoActor()
        try:
            return await self.inference.health(STATUS_TIMEOUT_S)
        except ActorGone as exc:
            return ActorDied(exc.error)
        except asyncio.TimeoutError:
            return NoAnswer(STATUS_TIMEOUT_S)

    async def check_inference(self, active: list[RunRecord]) -> None:
        """Ask the inference actor for its health and carry out the watchdog's decision."""
        health = await self._health()
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
        started = self._monotonic()
        log.error("restarting the inference actor: %s", reason)
        if kill and self.inference is not None:
            self.inference.kill()
        self.inference = None
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
                actor.set_inference(self.inference, record.engine_key)
        took = round(self._monotonic() - started, 2)
        for record in active:
            if not record.state.terminal:
                record.event("inference_restarted", reason=reason, took_s=took)
                self.book.save(record)

    async def _stop_sources(self, record: RunRecord, timeout_s: float = 30.0) -> None:
        """Stop every source (all at once) and take their final statuses; files are closed."""
        record.stop_requested = True
        wait_s = timeout_s + max(stop_grace_s(s) for s in record.spec.sources) + 10
        calls = {sid: a.stop(timeout_s, wait_s) for sid, a in record.actors.items()}
        for sid, call in calls.items():
            try:
                status = await call
                self._absorb(record, sid, status)  # a restarted incarnation carries counts over
            except Exception as exc:  # noqa: BLE001 - a dead source is stopped too
                record.source_ended(
                    sid, SourceState.STOPPED.value, f"stop failed: {error_name(exc)}"
                )

    # --- per-run monitor -----------------------------------------------------------------
    async def _poll(self, actor: SourceHandle) -> Poll:
        """A source's status; None when it did not answer in time (busy, still starting)."""
        try:
            return await actor.status(STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            return None
        except ActorGone as exc:
            return exc

    def _absorb(self, record: RunRecord, sid: str, status: dict[str, Any]) -> None:
        """Take a polled status; a new incarnation (Ray restarted the actor) is saved at once."""
        if record.absorb(sid, status) is not None:
            self.book.save(record)

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
                elif isinstance(result, ActorGone) and result.died:
                    record.source_ended(
                        sid, SourceState.FAILED.value, f"source actor died: {result.error}"
                    )
                # not died for good: Ray is restarting it; the next poll sees it again
            state = record.assess()  # sampled, derived, degradation updated
            if state.terminal:
                await self._finish(record, state)
                return
            if state != record.state:
                record.enter(state)
                self.book.save(record)
            elif self._monotonic() - record.saved_at > SAVE_EVERY_S:
                self.book.save(record)
            await self._sleep(POLL_S)

    async def _finish(self, record: RunRecord, state: RunState) -> None:
        if record.state.terminal:
            return
        if state is RunState.FAILED and not record.error:
            record.error = record.sources_error()
        # the report is written before the run reads as ended, so whoever sees the final state
        # finds the report too
        finished_at = self._clock()
        try:
            report = build_report(record.final_summary(state, finished_at), record.series)
            paths = await self._to_thread(write_report, record.spec.output_dir, report)
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
        self._spawn(self._reap(list(record.actors.values())))
        record.actors.clear()
        self.book.save(record)
        assert self._submit_lock is not None
        async with self._submit_lock:  # a submit in progress may be about to use this model
            in_use = self.book.engine_in_use(record.engine_key)
            if record.engine_key and not in_use and self.inference is not None:
                try:
                    await self.inference.release_engine(record.engine_key, 30)
                except Exception as exc:  # noqa: BLE001 - a model left loaded is not worth failing a run
                    log.warning("run=%s could not unload its model: %s", record.id, exc)

    async def _reap(self, actors: list[SourceHandle]) -> None:
        await self._sleep(METRICS_FLUSH_S)
        for actor in actors:
            actor.kill()
