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
import math
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vsa import settings
from vsa.analytics.chain import tracker_installed
from vsa.config import RunSpec, SourceSpec, class_problems
from vsa.constants import KEEP_FINISHED, METRICS_FLUSH_S
from vsa.errors import ConfigError, VsaError
from vsa.outputs import (
    REPORT_FILES,
    OutputConflict,
    check_admission,
    check_input_files,
    check_output_dir,
    claim_outputs,
    run_files,
)
from vsa.report import build_report, write_report
from vsa.runstate import RunState
from vsa.schema import SourceState
from vsa.secrets import unseal
from vsa.supervision.context import Context, Sleep, ToThread
from vsa.supervision.engines import EngineManager, out_of_memory
from vsa.supervision.handles import Handles, InferenceHandle, SourceHandle
from vsa.supervision.reconcile import ADD, REMOVE, RESTART, Plan, plan_change
from vsa.supervision.recovery import Recovery
from vsa.supervision.runbook import (
    RunBook,
    RunRecord,
    initial_source_status,
    seal_sources,
    why,
)
from vsa.supervision.sources import SourceSupervisor
from vsa.supervision.store import RunStore
from vsa.uri import file_path as uri_file_path
from vsa.uri import mask_uri, scheme_of

log = logging.getLogger("vsa.controller")

PENDING_RETRY_S = 10.0  # how often a PENDING run tries again without an engine freed
SWAP_SETTLE_S = 30.0  # an engine swapped out: how long its frames in flight may take

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


def _validate(run: dict[str, Any]) -> RunSpec:
    try:
        return RunSpec.model_validate(run)
    except Exception as exc:  # the client validated already; this guards other callers
        raise ConfigError([str(exc)]) from None


def _check_tracker(spec: RunSpec) -> None:
    if any(src.tracked for src in spec.sources) and not tracker_installed():
        raise VsaError(
            "scene analytics (a source's tracking, lines or zones) needs the trackers "
            "package, which is not installed where the engine runs: pip install "
            "--no-deps -r images/no-deps.txt (images/install.sh and scripts/setup.sh do)"
        )


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
        self.sources = SourceSupervisor(self.ctx, self.engines, self._finish)
        self.recovery = Recovery(self.ctx, self.engines, self.sources, self._finish, self.stop)
        self.engines.fail = self._fail
        self.engines.recreate = self.sources.recreate
        self.restarted = restarted
        self.last_alive = last_alive  # when a controller was last alive before this one
        self.draining = False
        self._clock, self._monotonic = clock, monotonic
        self._sleep, self._to_thread, self._memory = sleep, to_thread, memory
        self._submit_lock: asyncio.Lock | None = None
        self._resume_lock: asyncio.Lock | None = None  # resume_drained: one at a time
        self._recovered: asyncio.Event | None = None
        self._pending: asyncio.Task | None = None

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
        for task in (self.engines.supervisor, self._pending):
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
            self._watch_pending()
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
    def _refuse_while_draining(self) -> None:
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
        self._refuse_while_draining()
        spec = _validate(run)
        _check_tracker(spec)
        running = next((r for r in self.book.active() if r.spec.name == spec.name), None)
        if running is not None:
            return await self.change(running.id, spec, overwrite=overwrite, dry_run=dry_run)
        if dry_run:
            return {"run_id": None, "plan": plan_change(None, spec).to_dict(), "applied": False}
        assert self._submit_lock is not None
        async with self._submit_lock:
            self._refuse_while_draining()  # a drain took the lock while this submit waited
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
                self._memory(),
                per_run=settings.max_sources_per_run(),
                total=settings.max_sources(),
                source_mb=settings.source_memory_mb(),
            )
            self._check_inputs(spec)
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
            reason = self.engines.fits(spec, self._running())
            if reason is None:
                try:
                    await self._load(record)
                except Exception as exc:
                    if not out_of_memory(exc):
                        raise
                    reason = f"its model does not fit in the device's memory now ({exc})"
            if reason is not None:
                record.wait_pending(reason)
                await self._save_new(record)
                self.book.add(record)
                self._watch_pending()
            else:
                self._place(record)
                # durable before anything of it runs: a run that could not resume is refused
                await self._save_new(record)
                self._start(record)
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

    def _check_inputs(self, spec: RunSpec) -> None:
        check_input_files(
            [
                (src.id, uri_file_path(src.uri))
                for src in spec.sources
                if scheme_of(src.uri) == "file"
            ],
            settings.input_roots(),
        )

    def _running(self) -> list[RunRecord]:
        """The active runs whose engines are loaded (not paused, not PENDING)."""
        return [r for r in self.book.active() if not r.idle]

    async def _load(self, record: RunRecord) -> list[str]:
        """Have the run's model loaded and its classes checked (a line or zone counting a
        class the model does not have is refused, the model released); the slots that loaded
        it. Called with the submit lock held."""
        record.model, ready = await self.engines.ensure(record.spec)
        record.engine_key = record.model.pop("key")
        problems = class_problems(record.spec, record.model.get("classes") or [])
        if problems:
            await self.engines.release(record.engine_key, f"run={record.id}")
            raise ConfigError(problems)
        record.ready_slots = ready
        return ready

    def _place(self, record: RunRecord) -> None:
        """Each of the run's streams to a slot that loaded its model."""
        ready = record.ready_slots or list(self.engines.slots)
        record.placement = self.engines.place([s.id for s in record.spec.sources], ready)

    def _start(self, record: RunRecord) -> None:
        """Start every source of a run whose model is loaded (placed first unless it is),
        and watch it; a source that ran before continues its files."""
        if set(record.placement) != {s.id for s in record.spec.sources}:
            self._place(record)
        for source in record.spec.sources:
            ran = (record.sources.get(source.id) or {}).get("incarnation") is not None
            record.actors[source.id] = self.sources.start(record, source.id, resume=ran, carry=ran)
        self.book.add(record)
        self.sources.watch(record)
        self.engines.ensure_supervisor()

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

    # --- PENDING runs --------------------------------------------------------------------
    def _watch_pending(self) -> None:
        """Try the PENDING runs now and every ``PENDING_RETRY_S`` while there are any."""
        if any(r.pending for r in self.book.active()):
            if self._pending is None or self._pending.done():
                self._pending = asyncio.get_running_loop().create_task(self._pending_loop())

    async def _pending_loop(self) -> None:
        while any(r.pending for r in self.book.active()):
            try:
                await self._admit()
            except Exception:  # noqa: BLE001 - never let admission die
                log.exception("admitting PENDING runs failed (continuing)")
            await self._sleep(PENDING_RETRY_S)

    async def _admit(self) -> None:
        """Start the PENDING runs that fit now, oldest first."""
        assert self._submit_lock is not None
        for record in sorted(
            (r for r in self.book.active() if r.pending), key=lambda r: r.created_at
        ):
            if self.draining:
                return
            async with record.lock, self._submit_lock:
                if not record.pending or record.state.terminal or self.draining:
                    continue
                if self.engines.fits(record.spec, self._running()) is not None:
                    continue
                try:
                    await self._load(record)
                except Exception as exc:  # noqa: BLE001
                    if out_of_memory(exc):
                        record.pending = (
                            f"its model does not fit in the device's memory now ({exc})"
                        )
                        continue
                    record.pending = None
                    record.error = f"could not start: {exc}"
                    await self._finish(record, RunState.FAILED, locked=True)
                    continue
                waited = round(self._clock() - record.pending_since, 1)
                record.pending = None
                record.event("started", waited_s=waited)
                record.enter(RunState.WAITING)
                self.book.save(record)
                self._start(record)

    # --- target changes ------------------------------------------------------------------
    async def change(
        self,
        run: str,
        spec: RunSpec | Callable[[RunRecord], RunSpec],
        overwrite: bool = False,
        dry_run: bool = False,
        timeout_s: float = 60.0,
    ) -> dict[str, Any]:
        """Set ``spec`` as the run's target and reconcile the run toward it: new sources start
        (continuing their files when they were in the run before), removed ones stop (files
        closed), changed ones restart (continuing their files), the others keep streaming
        untouched; a model or batching change swaps the inference engine under the untouched
        sources (frames in flight finish on the old one before it is unloaded). ``dry_run``:
        only the plan. An invalid change changes nothing and says why.

        ``spec`` may be a function of the run that gives its new target (``add_source``,
        ``remove_source``): it is called with the run's lock held, so that changes from two
        clients at once each apply to the other's result."""
        await self.ready()
        self._refuse_while_draining()
        check_stop_timeout(timeout_s)
        record = self.book.find(run)
        async with record.lock:
            if record.state.terminal:
                raise VsaError(
                    f"run {record.id} has ended ({record.state.value}): submit its run file "
                    "to start it again"
                )
            if record.stop_requested:
                raise VsaError(f"run {record.id} is being stopped: submit it again once it ends")
            if callable(spec):
                spec = spec(record)
            directory = await self._to_thread(
                check_output_dir, spec.output_dir, settings.output_roots()
            )
            spec = spec.model_copy(update={"output_dir": str(directory)})
            _check_tracker(spec)
            plan = plan_change(record.spec, spec, record.id, self._real_uris(record))
            if not plan.noop:  # a dry run says what a change would refuse too
                replace = await self._check_change(record, spec, plan, overwrite)
            if dry_run or plan.noop:
                return {
                    "run_id": record.id,
                    "model": record.model,
                    "plan": plan.to_dict(),
                    "applied": False,
                }
            await self._apply(record, spec, plan, timeout_s, replace)
        return {"run_id": record.id, "model": record.model, "plan": plan.to_dict(), "applied": True}

    def _real_uris(self, record: RunRecord) -> dict[str, str]:
        out = {}
        for sid, sealed in record.sealed.items():
            try:
                out[sid] = unseal(sealed)
            except VsaError:  # cannot be read: it reads as changed
                out[sid] = ""
        return out

    async def _check_change(
        self, record: RunRecord, spec: RunSpec, plan: Plan, overwrite: bool
    ) -> list[Path]:
        """What a submit checks, for what the change adds: admission, input files, a new
        engine that must fit beside the others, and the added sources' outputs (their files of
        an earlier run need ``overwrite``: returned, removed once the change applies; a source
        that was in this run before continues its own)."""
        added = plan.ids(ADD)
        others = sum(len(r.spec.sources) for r in self.book.active() if r is not record)
        limits = {
            "per_run": settings.max_sources_per_run(),
            "total": settings.max_sources(),
            "source_mb": settings.source_memory_mb(),
        }
        check_admission(len(spec.sources), others, None, **limits)  # the run's size
        if added:  # the host's memory, for the sources that start
            check_admission(len(added), 0, self._memory(), **limits)
        self._check_inputs(spec)
        new = [s for s in spec.sources if s.id in added and s.id not in record.removed]
        if new:
            only = spec.model_copy(update={"sources": new})
            found = [
                p
                for p in await self._to_thread(run_files, only, Path(spec.output_dir))
                if p.name not in REPORT_FILES
            ]
            if found and not overwrite:
                names = ", ".join(p.name for p in found[:5])
                raise OutputConflict(
                    f"output_dir {spec.output_dir} already holds outputs of an earlier run for "
                    f"the new sources ({names}): submit with --overwrite to replace them, or "
                    "give the sources other ids"
                )
        else:
            found = []
        if plan.engine_swap and not record.idle:
            others = [r for r in self._running() if r is not record]
            reason = self.engines.fits(spec, others)
            if reason is not None:
                raise VsaError(
                    f"the run's new model does not fit: {reason.split(': it starts')[0]}: "
                    "pause or stop another run first, or raise VSA_MAX_ENGINES"
                )
        if not plan.engine_swap and record.model:
            problems = class_problems(spec, record.model.get("classes") or [])
            if problems:
                raise ConfigError(problems)
        return found

    async def _apply(
        self,
        record: RunRecord,
        spec: RunSpec,
        plan: Plan,
        timeout_s: float,
        replace: list[Path] | None = None,
    ) -> None:
        """Reconcile ``record`` toward ``spec`` along ``plan`` (with the run's lock held);
        ``replace``: files of an earlier run the added sources replace (``--overwrite``),
        removed once nothing can refuse the change any more."""
        assert self._submit_lock is not None
        masked, sealed = seal_sources(spec)
        old_key, old_model = record.engine_key, record.model
        swap = plan.engine_swap and not record.idle
        if swap:  # the new engine first: a model that fails to load changes nothing
            async with self._submit_lock:
                model, ready = await self.engines.ensure(masked)
                key = model.pop("key")
                problems = class_problems(masked, model.get("classes") or [])
                if problems:
                    await self.engines.release(key, f"run={record.id}")
                    raise ConfigError(problems)
        for path in replace or []:
            path.unlink(missing_ok=True)  # a symbolic link is removed, never followed
        record.changing = True
        try:
            # the target, durable before anything of it runs
            record.spec, record.sealed = masked, sealed
            record.degradation.limits = masked.degradation
            record.event("changed", plan=plan.summary())
            self.book.save(record)
            if swap:
                record.model, record.engine_key = model, key
                record.ready_slots = ready
                for sid, actor in record.actors.items():
                    if sid in plan.ids("keep"):
                        actor.set_inference(self.engines.inference_of(record, sid), key)
                record.event(
                    "engine_swapped", **(plan.engine or {}), sources=sorted(plan.ids("keep"))
                )
            elif plan.engine_swap:  # paused or PENDING: loaded when it starts again
                record.engine_key, record.model = None, None
            gone = [sid for sid in plan.ids(REMOVE) if sid in record.actors]
            changed = [sid for sid in plan.ids(RESTART) if sid in record.actors]
            await self.sources.halt(record, timeout_s, only=gone + changed)
            for sid in plan.ids(REMOVE):
                status = record.sources.pop(sid)
                status.update(state=SourceState.STOPPED.value, fps=0.0)
                record.removed[sid] = status
                record.removed_base[sid] = record.base.pop(sid, None)
                record.placement.pop(sid, None)
                record.event("source_removed", source=sid)
            for change in plan.sources:
                if change.action == RESTART:
                    record.event("source_changed", source=change.id, changed=list(change.changed))
            for sid in plan.ids(ADD):
                self._target_source(record, spec.sources, sid)
            if not record.idle:
                ready = record.ready_slots or list(self.engines.slots)
                record.placement.update(self.engines.place([sid for sid in plan.ids(ADD)], ready))
                for sid in changed + plan.ids(ADD):
                    ran = record.sources[sid].get("incarnation") is not None
                    record.actors[sid] = self.sources.start(record, sid, resume=ran, carry=ran)
        finally:
            record.changing = False
            self.book.save(record)
        log.info("run=%s changed: %s", record.id, plan.summary())
        if swap and old_key != record.engine_key:
            self.ctx.spawn(self._retire(old_key, old_model))

    def _target_source(self, record: RunRecord, specs: list[SourceSpec], sid: str) -> None:
        """A source added to the run's target: its status (one removed before comes back with
        its counters and continues its files)."""
        if sid in record.removed:
            record.sources[sid] = {**record.removed.pop(sid), "state": "CONNECTING"}
            base = record.removed_base.pop(sid, None)
            if base:
                record.base[sid] = base
        else:
            uri = next(s.uri for s in specs if s.id == sid)
            record.sources[sid] = initial_source_status(sid, uri)
        record.event("source_added", source=sid)

    async def _retire(self, key: str | None, model: dict[str, Any] | None) -> None:
        """An engine swapped out: once its frames in flight are done (``SWAP_SETTLE_S`` at
        most), unloaded unless a running run uses it; a PENDING run may fit then."""
        settled = await self.engines.settled(key or "", SWAP_SETTLE_S)
        if not settled:
            log.warning(
                "engine %s still had frames after %.0f s", (model or {}).get("model"), SWAP_SETTLE_S
            )
        assert self._submit_lock is not None
        async with self._submit_lock:
            await self.engines.release(key, "swapped out")
        self._watch_pending()
        if any(r.pending for r in self.book.active()):
            self.ctx.spawn(self._admit())

    async def add_source(
        self, run: str, source: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Add a source to the run's target (``vsa source add``)."""
        await self.ready()
        record = self.book.find(run)
        sid = source.get("id") if isinstance(source, dict) else None

        def target(record: RunRecord) -> RunSpec:
            current = self._target_dict(record)
            if any(s["id"] == sid for s in current["sources"]):
                raise VsaError(
                    f"run {record.id} already has a source '{sid}': remove it first or choose "
                    "another id"
                )
            current["sources"].append(source)
            return _validate(current)

        return await self.change(record.id, target, dry_run=dry_run)

    async def remove_source(
        self, run: str, source_id: str, timeout_s: float = 60.0, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove a source from the run's target (``vsa source remove``): it stops, its files
        closed; the run's other sources keep streaming."""
        await self.ready()
        record = self.book.find(run)

        def target(record: RunRecord) -> RunSpec:
            current = self._target_dict(record)
            ids = [s["id"] for s in current["sources"]]
            if source_id not in ids:
                raise VsaError(
                    f"run {record.id} has no source '{source_id}' (its sources: {', '.join(ids)})"
                )
            if len(ids) == 1:
                raise VsaError(
                    f"'{source_id}' is the last source of run {record.id}: a run needs one; "
                    f"stop the run instead (vsa stop {record.id})"
                )
            current["sources"] = [s for s in current["sources"] if s["id"] != source_id]
            return _validate(current)

        return await self.change(record.id, target, dry_run=dry_run, timeout_s=timeout_s)

    def _target_dict(self, record: RunRecord) -> dict[str, Any]:
        """The run's target as a run file would give it (real URIs, unsealed)."""
        current = record.spec.model_dump()
        uris = self._real_uris(record)
        for source in current["sources"]:
            if source["id"] in uris:
                source["uri"] = uris[source["id"]]
        return current

    async def pause(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Pause a run: its sources stop (frames in flight written, files closed, decoders
        released) and its share of the inference engine is released (the model unloaded
        unless another run uses it); its state, counters and files are kept, and
        :meth:`resume` continues them."""
        await self.ready()
        check_stop_timeout(timeout_s)
        self._refuse_while_draining()
        record = self.book.find(run)
        async with record.lock:
            if record.state.terminal:
                raise VsaError(
                    f"run {record.id} has ended ({record.state.value}): nothing to pause"
                )
            if record.paused:
                return record.summary()
            if record.stop_requested:
                raise VsaError(f"run {record.id} is being stopped")
            if record.drained:
                raise VsaError(
                    f"run {record.id} is drained for a restart: pause it once it is back"
                )
            record.changing = True
            try:
                if record.monitor is not None:
                    record.monitor.cancel()
                    record.monitor = None
                await self.sources.halt(record, timeout_s)
                record.paused = True
                record.pending = None
                record.placement = {}
                record.enter(RunState.PAUSED)
                record.event("paused")
                self.book.save(record)
            finally:
                record.changing = False
            assert self._submit_lock is not None
            async with self._submit_lock:
                await self.engines.release(record.engine_key, f"run={record.id}")
        self.ctx.spawn(self._admit())
        return record.summary()

    async def resume(self, run: str) -> dict[str, Any]:
        """Resume a paused run: its sources start again and continue their files (frame
        numbers, counters, track ids); PENDING when its model does not fit now."""
        await self.ready()
        self._refuse_while_draining()
        record = self.book.find(run)
        async with record.lock:
            if not record.paused:
                raise VsaError(f"run {record.id} is not paused (it is {record.state.value})")
            record.paused = False
            record.event("resumed")
            assert self._submit_lock is not None
            async with self._submit_lock:
                reason = self.engines.fits(record.spec, self._running())
                if reason is None:
                    try:
                        await self._load(record)
                    except Exception as exc:
                        if not out_of_memory(exc):
                            record.paused = True
                            self.book.save(record)
                            raise
                        reason = f"its model does not fit in the device's memory now ({exc})"
                if reason is not None:
                    record.wait_pending(reason)
                    self.book.save(record)
                    self._watch_pending()
                else:
                    record.enter(RunState.WAITING)
                    self.book.save(record)
                    self._start(record)
        return record.summary()

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
            await self._finish(record, RunState.STOPPED)
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
                raise
            self.draining = False
            if answer["resumed"]:
                log.info("new runs are accepted")
            self._watch_pending()
            return answer

    # --- ending a run --------------------------------------------------------------------
    async def _fail(self, record: RunRecord, error: str) -> None:
        """Fail a run for an inference reason: its sources stopped, FAILED with ``error``."""
        record.error = error
        await self.sources.stop(record)
        await self._finish(record, RunState.FAILED)

    async def _finish(
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
                self.ctx.spawn(self._admit())

    async def _reap(self, actors: list[SourceHandle]) -> None:
        await self._sleep(METRICS_FLUSH_S)
        for actor in actors:
            actor.kill()
