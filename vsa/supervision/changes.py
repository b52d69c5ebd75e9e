"""A run's target changed while it runs: re-submit, add or remove a source, pause, resume.

:class:`ChangeManager` sets the run's new target (saved before anything of it runs) and
reconciles the run toward it along the plan of :func:`vsa.supervision.reconcile.plan_change`:
new sources start, removed ones stop, changed ones restart (continuing their files), untouched
ones are left alone; a model or batching change swaps the inference engine under them. Every
command of a run holds the run's lock, so commands from two clients apply one after the other,
each to the other's result. docs/runtime-control.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsa import settings
from vsa.analytics.chain import tracker_installed
from vsa.config import RunSpec, SourceSpec, class_problems
from vsa.errors import ConfigError, VsaError
from vsa.outputs import (
    REPORT_FILES,
    OutputConflict,
    check_admission,
    check_input_files,
    check_output_dir,
    run_files,
)
from vsa.runstate import RunState
from vsa.schema import SourceState
from vsa.secrets import unseal
from vsa.supervision.admission import Admission
from vsa.supervision.context import Context
from vsa.supervision.engines import EngineManager, out_of_memory
from vsa.supervision.reconcile import ADD, REMOVE, RESTART, Plan, plan_change
from vsa.supervision.runbook import RunRecord, initial_source_status, seal_sources
from vsa.supervision.sources import SourceSupervisor
from vsa.uri import file_path as uri_file_path
from vsa.uri import scheme_of

if TYPE_CHECKING:
    from vsa.supervision.core import ControllerCore

log = logging.getLogger("vsa.controller")

SWAP_SETTLE_S = 30.0  # an engine swapped out: how long its frames in flight may take


def check_stop_timeout(timeout_s: Any) -> None:
    """A stop's ``timeout_s`` must be a number of seconds in (0, 3600]."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or not 0 < timeout_s <= 3600
    ):
        raise VsaError(f"stop timeout must be a number of seconds in (0, 3600], got {timeout_s!r}")


def validate_run(run: dict[str, Any]) -> RunSpec:
    """A run's spec from its dict; ``ConfigError`` saying why not."""
    try:
        return RunSpec.model_validate(run)
    except Exception as exc:  # the client validated already; this guards other callers
        raise ConfigError([str(exc)]) from None


def check_tracker(spec: RunSpec) -> None:
    """Scene analytics needs the trackers package where the engine runs."""
    if any(src.tracked for src in spec.sources) and not tracker_installed():
        raise VsaError(
            "scene analytics (a source's tracking, lines or zones) needs the trackers "
            "package, which is not installed where the engine runs: pip install "
            "--no-deps -r images/no-deps.txt (images/install.sh and scripts/setup.sh do)"
        )


def check_inputs(spec: RunSpec) -> None:
    """A run's file sources must be readable under ``VSA_INPUT_ROOTS``."""
    check_input_files(
        [(src.id, uri_file_path(src.uri)) for src in spec.sources if scheme_of(src.uri) == "file"],
        settings.input_roots(),
    )


class ChangeManager:
    def __init__(
        self,
        ctx: Context,
        engines: EngineManager,
        sources: SourceSupervisor,
        admission: Admission,
        core: ControllerCore,
    ) -> None:
        self.ctx, self.book = ctx, ctx.book
        self.engines, self.sources, self.admission = engines, sources, admission
        self.core = core  # its submit lock, drain flag, readiness and validation

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
        await self.core.ready()
        self.core.refuse_while_draining()
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
            directory = await self.ctx.to_thread(
                check_output_dir, spec.output_dir, settings.output_roots()
            )
            spec = spec.model_copy(update={"output_dir": str(directory)})
            check_tracker(spec)
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
            check_admission(len(added), 0, self.core.memory(), **limits)
        check_inputs(spec)
        new = [s for s in spec.sources if s.id in added and s.id not in record.removed]
        if new:
            only = spec.model_copy(update={"sources": new})
            found = [
                p
                for p in await self.ctx.to_thread(run_files, only, Path(spec.output_dir))
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
            others = [r for r in self.admission.running() if r is not record]
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
        assert self.core.submit_lock is not None
        masked, sealed = seal_sources(spec)
        old_key, old_model = record.engine_key, record.model
        swap = plan.engine_swap and not record.idle
        if swap:  # the new engine first: a model that fails to load changes nothing
            async with self.core.submit_lock:
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
        assert self.core.submit_lock is not None
        async with self.core.submit_lock:
            await self.engines.release(key, "swapped out")
        self.admission.watch_pending()
        if any(r.pending for r in self.book.active()):
            self.ctx.spawn(self.admission.admit())

    async def add_source(
        self, run: str, source: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Add a source to the run's target (``vsa source add``)."""
        await self.core.ready()
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
            return validate_run(current)

        return await self.change(record.id, target, dry_run=dry_run)

    async def remove_source(
        self, run: str, source_id: str, timeout_s: float = 60.0, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove a source from the run's target (``vsa source remove``): it stops, its files
        closed; the run's other sources keep streaming."""
        await self.core.ready()
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
            return validate_run(current)

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
        await self.core.ready()
        check_stop_timeout(timeout_s)
        self.core.refuse_while_draining()
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
            assert self.core.submit_lock is not None
            async with self.core.submit_lock:
                await self.engines.release(record.engine_key, f"run={record.id}")
        self.ctx.spawn(self.admission.admit())
        return record.summary()

    async def resume(self, run: str) -> dict[str, Any]:
        """Resume a paused run: its sources start again and continue their files (frame
        numbers, counters, track ids); PENDING when its model does not fit now."""
        await self.core.ready()
        self.core.refuse_while_draining()
        record = self.book.find(run)
        async with record.lock:
            if not record.paused:
                raise VsaError(f"run {record.id} is not paused (it is {record.state.value})")
            record.paused = False
            record.event("resumed")
            assert self.core.submit_lock is not None
            async with self.core.submit_lock:
                reason = self.engines.fits(record.spec, self.admission.running())
                if reason is None:
                    try:
                        await self.admission.load(record)
                    except Exception as exc:
                        if not out_of_memory(exc):
                            record.paused = True
                            self.book.save(record)
                            raise
                        reason = f"its model does not fit in the device's memory now ({exc})"
                if reason is not None:
                    record.wait_pending(reason)
                    self.book.save(record)
                    self.admission.watch_pending()
                else:
                    record.enter(RunState.WAITING)
                    self.book.save(record)
                    self.admission.start(record)
        return record.summary()
