"""The controller's brain as plain asyncio: runs, their target states and the managers.

:class:`ControllerCore` is what ``actors/controller.py`` (a thin Ray actor) delegates to. It
sees the engine's actors only through :class:`vsa.supervision.handles.Handles` (on Ray:
``actors/handles.py``), keeps its runs in a :class:`vsa.supervision.runbook.RunBook` on a
:class:`vsa.supervision.store.RunStore` (on Ray: the GCS), and takes its clocks, its ``sleep``
and its ``to_thread`` injected, so the unit tests drive it with fakes. Its concerns live in
managers over the same book (:class:`vsa.supervision.context.Context`):

- :class:`~vsa.supervision.engines.EngineManager`: the inference actors (one per slot), model
  loads and unloads, what fits, and the supervisor that restarts a failing actor or moves its
  streams;
- :class:`~vsa.supervision.sources.SourceSupervisor`: the source actors (start, stop,
  replace) and each run's monitor;
- :class:`~vsa.supervision.recovery.Recovery`: runs resumed after a restart, drain and resume.

Every command sets a run's **target state** and reconciles the run toward it
(:meth:`change`): ``submit`` (a new run, or the difference for a name that is running),
``add_source``, ``remove_source``, ``pause``, ``resume``; ``stop`` ends it. The target is saved
before anything of it runs, so a run resumed after a restart comes back with its latest one.
A run whose model does not fit beside the loaded ones waits PENDING and starts when one is
freed (:meth:`_admit`). The failure policy is in docs/failure-policy.md, the runtime control
in docs/runtime-control.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from vsa import settings
from vsa.constants import KEEP_FINISHED, METRICS_FLUSH_S
from vsa.errors import VsaError
from vsa.outputs import (
    check_admission,
    check_output_dir,
    claim_outputs,
)
from vsa.report import build_report, write_report
from vsa.runstate import RunState
from vsa.supervision.admission import Admission
from vsa.supervision.changes import (
    ChangeManager,
    check_inputs,
    check_stop_timeout,
    check_tracker,
    validate_run,
)
from vsa.supervision.context import Context, Sleep, ToThread
from vsa.supervision.engines import EngineManager, out_of_memory
from vsa.supervision.handles import Handles, InferenceHandle, SourceHandle
from vsa.supervision.reconcile import plan_change
from vsa.supervision.recovery import Recovery
from vsa.supervision.runbook import (
    RunBook,
    RunRecord,
    seal_sources,
    why,
)
from vsa.supervision.sources import SourceSupervisor
from vsa.supervision.store import RunStore
from vsa.uri import mask_uri

log = logging.getLogger("vsa.controller")


DRAINING = (
    "the engine is draining for a restart or an upgrade: submit again once it is back (its "
    "runs resume by themselves)"
)


def available_memory() -> int | None:
    """The host's available memory in bytes, or None."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def new_run_id(name: str, now: float) -> str:
    """``<name>-<local time YYYYmmdd-HHMMSS>-<4 hex digits>``."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{secrets.token_hex(2)}"


class ControllerCore:
    """The controller's runs and decisions; every actor is reached through ``handles``.

    ``restarted``: this controller replaces one that Ray restarted (the inference actors it
    finds are kept); otherwise inference actors left by a predecessor are killed first.
    """

    def __init__(
        self,
        handles: Handles,
        store: RunStore,
        *,
        restarted: bool = False,
        last_alive: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        to_thread: ToThread = asyncio.to_thread,
        memory: Callable[[], int | None] = available_memory,
        state_dir: str | None = None,
        volatile: str | None = None,
    ) -> None:
        self.handles = handles
        # where the store keeps its truth (the state directory's runs/), for messages
        self.state_dir = state_dir
        # volatile: why the store does not outlive the engine (no state directory): runs are
        # accepted, each shown as not durable
        self.book = RunBook(store, clock=clock, monotonic=monotonic, volatile=volatile)
        self.ctx = Context(handles, self.book, clock, monotonic, sleep, to_thread)
        self.engines = EngineManager(self.ctx)
        self.sources = SourceSupervisor(self.ctx, self.engines, self.finish)
        self.recovery = Recovery(self.ctx, self.engines, self.sources, self.finish, self.stop)
        self.admission = Admission(self.ctx, self.engines, self.sources, self)
        self.changes = ChangeManager(self.ctx, self.engines, self.sources, self.admission, self)
        self.engines.fail = self._fail
        self.engines.recreate = self.sources.recreate
        self.restarted = restarted
        self.last_alive = last_alive  # when a controller was last alive before this one
        self.draining = False
        self._clock, self._monotonic = clock, monotonic
        self._sleep, self._to_thread = sleep, to_thread
        self.memory = memory  # the host's available memory (admission)
        self._submit_lock: asyncio.Lock | None = None  # model loads, admission, new runs
        self._resume_lock: asyncio.Lock | None = None  # resume_drained: one at a time
        self._recovered: asyncio.Event | None = None

    @property
    def submit_lock(self) -> asyncio.Lock:
        """Held while models are loaded or released and new runs admitted."""
        assert self._submit_lock is not None, "ready() first"
        return self._submit_lock

    # the pool and the slots live in the engine manager; kept here for callers and tests
    @property
    def pool(self) -> dict[str, InferenceHandle]:
        return self.engines.pool

    @property
    def slots(self) -> dict:
        return self.engines.slots

    @property
    def inference(self) -> InferenceHandle | None:
        """The first slot's inference actor (the only one on one host)."""
        return self.engines.first

    async def check_inference(self, active: list[RunRecord]) -> None:
        await self.engines.check_inference(active)

    async def check_store(self, active: list[RunRecord]) -> None:
        await self.engines.check_store(active)

    async def close(self) -> None:
        """Cancel every task (monitors, supervisor, reaps): for tests; the actor never ends."""
        tasks = [*self.ctx.tasks, *(r.monitor for r in self.book.runs.values() if r.monitor)]
        for task in (self.engines.supervisor, self.admission.task):
            if task is not None:
                tasks.append(task)
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
                # a new controller (first start, or replacing one that ran other code): the
                # inference actors left by its predecessor may run old code; start afresh
                await self.engines.kill_named(list(await self.engines.refresh_slots()))
            await self.recovery.load(self.restarted, self.last_alive)
            self.admission.watch_pending()
            self._recovered.set()
        await self._recovered.wait()

    async def recover(self) -> dict[str, Any]:
        """Reload saved runs and resume the active ones (called once, right after start)."""
        await self.ready()
        return {"runs": len(self.book)}

    # --- queries -------------------------------------------------------------------------
    async def status(self, run: str | None = None) -> dict[str, Any]:
        await self.ready()
        runs = [self.book.find(run)] if run else self.book.ordered()
        # the saved records that could not be loaded (vsa list and vsa status show them)
        return {"runs": [r.summary() for r in runs], "problems": list(self.book.problems)}

    # --- commands ------------------------------------------------------------------------
    def refuse_while_draining(self) -> None:
        if self.draining:
            raise VsaError(DRAINING)

    async def submit(
        self, run: dict[str, Any], overwrite: bool = False, dry_run: bool = False
    ) -> dict[str, Any]:
        """Start a run, or, for a name that is running (or paused, or PENDING), apply the
        difference (:meth:`change`). ``dry_run``: only the plan, nothing changes.

        A new run is refused (with what to do) when it does not fit the admission limits, its
        output_dir is not allowed or writable, another active run writes there, or an earlier
        run's files are there and ``overwrite`` is not given. One whose model does not fit
        beside the loaded ones is accepted PENDING."""
        await self.ready()
        self.refuse_while_draining()
        spec = validate_run(run)
        check_tracker(spec)
        running = next((r for r in self.book.active() if r.spec.name == spec.name), None)
        if running is not None:
            return await self.change(running.id, spec, overwrite=overwrite, dry_run=dry_run)
        if dry_run:
            return {"run_id": None, "plan": plan_change(None, spec).to_dict(), "applied": False}
        assert self._submit_lock is not None
        async with self._submit_lock:
            self.refuse_while_draining()  # a drain took the lock while this submit waited
            active = self.book.active()
            for other in active:
                if other.spec.name == spec.name:  # submitted while this one waited
                    raise VsaError(
                        f"a run named '{spec.name}' was submitted meanwhile as {other.id}: "
                        "submit again to apply the difference"
                    )
            check_admission(
                len(spec.sources),
                sum(len(r.spec.sources) for r in active),
                self.memory(),
                per_run=settings.max_sources_per_run(),
                total=settings.max_sources(),
                source_mb=settings.source_memory_mb(),
            )
            check_inputs(spec)
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
            reason = self.engines.fits(spec, self.admission.running())
            if reason is None:
                try:
                    await self.admission.load(record)
                except Exception as exc:
                    if not out_of_memory(exc):
                        raise
                    reason = f"its model does not fit in the device's memory now ({exc})"
            if reason is not None:
                record.wait_pending(reason)
                await self._save_new(record)
                self.book.add(record)
                self.admission.watch_pending()
            else:
                self.admission.place(record)
                # durable before anything of it runs: a run that could not resume is refused
                await self._save_new(record)
                self.admission.start(record)
            self.book.forget_old(KEEP_FINISHED)
        log.info(
            "run=%s submitted: %d sources, model %s%s",
            run_id,
            len(spec.sources),
            spec.model.name,
            f" PENDING: {record.pending}" if record.pending else f" on {record.model['device']}",
        )
        return {
            "run_id": run_id,
            "model": record.model or {"model": spec.model.name, "device": None},
            "state": record.state.value,
            "reason": record.pending,
        }

    async def _save_new(self, record: RunRecord) -> None:
        """Save a submitted run before its sources start; when it cannot be saved, nothing of it
        is left (its copy, if one store took it, is deleted; its model is unloaded unless
        another run uses it) and the submit is refused with the store's error and what to do."""
        try:
            self.book.put(record)
        except Exception as exc:  # noqa: BLE001 - refused below, with why
            try:
                self.book.store.delete(record.id)
            except Exception:  # noqa: BLE001 - the copy that took it, if any, is best effort
                pass
            await self.engines.release(record.engine_key, f"run={record.id}")
            code = getattr(exc, "errno", None)
            todo = (
                "make it writable or set VSA_STATE_DIR"
                if code in (errno.EROFS, errno.EACCES, errno.EPERM)
                else "free space or set VSA_STATE_DIR"
            )
            where = self.state_dir or "the run store"
            log.error("run=%s refused: cannot be saved to %s: %s", record.id, where, why(exc))
            raise VsaError(
                f"cannot save the run to {where}: {why(exc)}: {todo} (nothing of the run was "
                "started: a run that could not resume after a restart is refused)"
            ) from None

    # --- target changes (vsa.supervision.changes) ----------------------------------------
    async def change(self, run: str, spec: Any, **kw: Any) -> dict[str, Any]:
        """Set a run's new target and reconcile it (:meth:`ChangeManager.change`)."""
        return await self.changes.change(run, spec, **kw)

    async def add_source(
        self, run: str, source: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Add a source to a run (``vsa source add``)."""
        return await self.changes.add_source(run, source, dry_run)

    async def remove_source(
        self, run: str, source_id: str, timeout_s: float = 60.0, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove a source from a run (``vsa source remove``); the others go on."""
        return await self.changes.remove_source(run, source_id, timeout_s, dry_run)

    async def pause(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Pause a run (``vsa pause``): sources stopped, engine share released, state kept."""
        return await self.changes.pause(run, timeout_s)

    async def resume(self, run: str) -> dict[str, Any]:
        """Resume a paused run (``vsa resume``): its files continued."""
        return await self.changes.resume(run)

    # --- stop, drain ---------------------------------------------------------------------
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
        async with record.lock:  # a change under way ends first
            if record.state.terminal:
                return record.summary()
            await self.sources.stop(record, timeout_s)
            await self.finish(record, RunState.STOPPED)
        return record.summary()

    async def drain(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Get ready for a restart: refuse new runs, then stop every active run's sources as a
        stop does (frames in flight written, files closed, each MP4 segment finalized) and
        release them, **without ending the runs**: they stay active in the store and resume,
        same ids, files continued, when the engine starts again (``ray stop`` / ``ray start``,
        an upgrade, a reboot); a paused run resumes paused, a PENDING one PENDING. Returns the
        drained run ids, ``not_saved``: the drained runs that could not be saved (they would
        not resume; a drain again retries their save) and the seconds it took."""
        await self.ready()
        check_stop_timeout(timeout_s)
        assert self._submit_lock is not None
        async with self._submit_lock:  # a submit under way is in the book, and drained, first
            self.draining = True
        return await self.recovery.drain(timeout_s)

    async def resume_drained(self, wait_s: float = 120.0) -> dict[str, Any]:
        """End a drain without an engine restart: new runs are accepted again and every drained
        run resumes as recovery resumes the runs of a new engine (on the records in memory):
        same ids, re-checked as a submit, source actors started again with ``resume`` (files
        continued), counters carried over, the event ``recovered`` (``after: service
        restart``) with ``down_s`` counted from the drain. For ``vsa serve`` started again on
        a Ray head it did not start, where this controller (detached) outlived the service
        that drained it.

        A stop or a drain still under way ends first (``wait_s`` at most, else refused), and
        the drained runs' old source actors are gone before new ones start. Nothing drained:
        only the refusal of new runs ends. ``{"draining": whether it was, "resumed": [run
        ids]}``."""
        await self.ready()
        # one at a time (two services starting at once): the second finds nothing drained
        if self._resume_lock is None:
            self._resume_lock = asyncio.Lock()
        async with self._resume_lock:
            was = self.draining
            try:
                answer = await self.recovery.resume_drained(wait_s, was, self.last_alive)
            except VsaError:
                raise  # a stop or a drain still under way: the drain stays, nothing resumed
            except BaseException:
                self.draining = False  # resuming began: new runs are accepted, as before
                raise
            self.draining = False
            if answer["resumed"]:
                log.info("new runs are accepted")
            self.admission.watch_pending()
            return answer

    # --- ending a run --------------------------------------------------------------------
    async def _fail(self, record: RunRecord, error: str) -> None:
        """Fail a run for an inference reason: its sources stopped, FAILED with ``error``."""
        record.error = error
        await self.sources.stop(record)
        await self.finish(record, RunState.FAILED)

    async def finish(
        self, record: RunRecord, state: RunState, report: bool = True, locked: bool = False
    ) -> None:
        """End the run in ``state``: its report (unless ``report`` is False: its output_dir is
        not to be written), every source terminal, its actors reaped, its model unloaded
        unless another run uses it (``locked``: the caller holds the submit lock)."""
        if record.state.terminal:
            return
        if state is RunState.FAILED and not record.error:
            record.error = record.sources_error()
        record.end_sources(state)  # a terminal run has terminal sources, no live rates
        # the report is written before the run reads as ended, so whoever sees the final state
        # finds the report too
        finished_at = self._clock()
        try:
            if report:
                summary = record.final_summary(state, finished_at)
                built = build_report(summary, record.series, record.counts)
                paths = await self._to_thread(write_report, record.spec.output_dir, built)
                record.report = [str(p) for p in paths]
                log.info("run=%s report: %s", record.id, ", ".join(record.report))
        except Exception as exc:  # noqa: BLE001 - a report is not worth failing the run over
            # written atomically: an earlier report.json stays whole
            record.event("report_failed", reason=mask_uri(f"{type(exc).__name__}: {exc}"))
        if record.state.terminal:
            return  # finished by another path while the report was written
        record.pending = None
        record.paused = False
        record.enter(state)
        record.finished_at = finished_at
        # the source actors' last metrics reach Ray's agent on its next report: let them live
        # that long (they are idle), then remove them
        self.ctx.spawn(self._reap(list(record.actors.values())))
        record.actors.clear()
        self.book.save(record)
        if locked:
            await self.engines.release(record.engine_key, f"run={record.id}")
        else:
            assert self._submit_lock is not None
            async with self._submit_lock:  # a submit in progress may be about to use this model
                await self.engines.release(record.engine_key, f"run={record.id}")
            if any(r.pending for r in self.book.active()):
                self.ctx.spawn(self.admission.admit())

    async def _reap(self, actors: list[SourceHandle]) -> None:
        await self._sleep(METRICS_FLUSH_S)
        for actor in actors:
            actor.kill()
