"""Runs that outlive the controller: recovery after a restart, drain and resume.

:class:`Recovery` loads the saved runs once (``load``), re-attaches the active ones to their
source actors or starts them again with ``resume`` (files continued), finishes a stop cut
short, and implements ``drain`` (stop every running run's sources for a restart without ending
the runs) and ``resume_drained`` (end a drain without an engine restart). A run comes back
with its latest target state: the spec of its last change, paused when it was paused,
PENDING when it was waiting for its model to fit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vsa import settings
from vsa.constants import REAP_LEFT_S
from vsa.errors import VsaError
from vsa.outputs import check_input_files, check_output_policy
from vsa.runstate import RunState
from vsa.supervision.context import Context
from vsa.supervision.engines import EngineManager
from vsa.supervision.runbook import RunRecord, why
from vsa.supervision.sources import SourceSupervisor
from vsa.uri import file_path as uri_file_path
from vsa.uri import scheme_of

log = logging.getLogger("vsa.controller")


class Recovery:
    def __init__(
        self,
        ctx: Context,
        engines: EngineManager,
        sources: SourceSupervisor,
        finish: Callable[..., Awaitable[None]],
        stop: Callable[[str], Awaitable[Any]],
    ) -> None:
        self.ctx = ctx
        self.engines = engines
        self.sources = sources
        self._finish = finish
        self._stop = stop

    async def load(self, restarted: bool, last_alive: float | None) -> None:
        """Read the saved runs and resume the active ones."""
        book = self.ctx.book
        book.load()
        active = book.active()
        # actors a finished run left (restart while reaping)
        for record in book.recently_finished(REAP_LEFT_S):
            self.sources.kill_left(record)
        if book.runs:
            log.info("loaded %d saved runs, %d active", len(book), len(active))
        # Ray restarted this controller's process, or a new controller started: after an
        # upgrade, `ray stop` / `ray start` or a reboot (the runs come from the disk)
        after = "controller restart" if restarted else "engine restart"
        await self.resume(active, after, last_alive)

    async def resume(self, active: list[RunRecord], after: str, last_alive: float | None) -> None:
        """Resume ``active`` runs (whose source actors may have outlived the controller):
        re-checked as a submit, model loaded, each stream's actor found or started again with
        ``resume`` (files continued), the event ``recovered``; ``last_alive``: when the engine
        last ran them (``down_s``). A paused run stays paused (its sources stopped), a
        PENDING one waits for its model to fit."""
        if not active:
            return
        down = {}
        if last_alive is not None:
            down["down_s"] = round(max(0.0, self.ctx.clock() - last_alive), 1)
        log.info("resuming %d runs after a %s %s", len(active), after, down)
        self.engines.adopt(list(await self.engines.refresh_slots()))
        for record in active:
            if not await self.still_allowed(record):
                continue
            if record.idle:  # paused or PENDING: nothing of it runs
                self.sources.kill_left(record)
                record.event("recovered", after=after, **down)
                self.ctx.book.save(record)
                continue
            try:
                await self.attach(record)
            except Exception as exc:  # noqa: BLE001
                record.error = f"could not reload the model after a controller restart: {exc}"
                await self._finish(record, RunState.FAILED)
                continue
            record.event("recovered", after=after, **down)
            if record.stop_requested:  # the stop was cut short by the restart: finish it
                record.stop_requested = False
                self.ctx.spawn(self._stop(record.id))
                continue
            self.sources.watch(record)
            self.ctx.book.save(record)  # a failure is logged: the run goes on
        self.engines.ensure_supervisor()

    async def attach(self, record: RunRecord) -> None:
        """Load the run's model and have each of its streams served: its source actor found
        (handed the inference actor) or started again with ``resume`` (files continued); a
        removed source's actor that outlived the controller is removed."""
        model, ready = await self.engines.ensure(record.spec)
        record.model = {**(record.model or {}), **model}
        record.engine_key = record.model.pop("key")
        # streams keep their slot; those of a slot that is gone (its node left the cluster,
        # with their source actors) or saved before slots are placed again
        gone = {sid for sid, slot in record.placement.items() if slot not in self.engines.slots}
        kept = {sid: slot for sid, slot in record.placement.items() if slot in ready}
        ids = [s.id for s in record.spec.sources]
        kept = {sid: slot for sid, slot in kept.items() if sid in ids}
        record.placement = kept | self.engines.place([sid for sid in ids if sid not in kept], ready)
        if gone:
            record.event("streams_moved", sources=sorted(gone), reason="its node left")
        for sid in record.removed:  # removed, but the controller went before its actor did
            actor = self.ctx.handles.get_source(record.id, sid)
            if actor is not None:
                actor.kill()
        for sid in ids:
            actor = self.ctx.handles.get_source(record.id, sid)
            if actor is not None and sid in gone:
                record.actors[sid] = actor  # on a node that left: replaced below
                await self.sources.recreate(record, sid)
                continue
            if actor is None:  # the actor is gone: start it again (files are appended)
                record.actors[sid] = self.sources.start(record, sid, resume=True, carry=True)
                record.event("source_recreated", source=sid)
                continue
            record.actors[sid] = actor
            actor.set_inference(self.engines.inference_of(record, sid), record.engine_key)

    async def still_allowed(self, record: RunRecord) -> bool:
        """Check a saved active run as a submit is checked (its output_dir against the system
        directories and ``VSA_OUTPUT_ROOTS`` now; its file sources against
        ``VSA_INPUT_ROOTS`` now) before it resumes. One that fails is not resumed: FAILED with
        ``not resumed: <why>``, an event, its source actors (if they outlived a controller
        restart) removed, no report written into its output_dir."""
        try:
            check_input_files(
                [
                    (src.id, uri_file_path(src.uri))
                    for src in record.spec.sources
                    if scheme_of(src.uri) == "file"
                ],
                settings.input_roots(),
            )
            # the host's policy only: an I/O error of a disk not back yet is the sinks' error
            await self.ctx.to_thread(
                check_output_policy, record.spec.output_dir, settings.output_roots()
            )
        except Exception as exc:  # noqa: BLE001 - a VsaError says why; anything else too
            reason = str(exc) if isinstance(exc, VsaError) else why(exc)
            record.error = f"not resumed: {reason}"
            record.event("not_resumed", reason=reason)
            self.sources.kill_left(record)
            await self._finish(record, RunState.FAILED, report=False)
            return False
        return True

    # --- drain ---------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> dict[str, Any]:
        """Stop every running run's sources as a stop does, without ending the runs (see
        :meth:`ControllerCore.drain`); paused and PENDING runs have none and stay as they
        are, saved."""
        book = self.ctx.book
        started = self.ctx.monotonic()
        runs = [r for r in book.active() if not r.stop_requested and not r.drained and not r.idle]
        # drained earlier, but their save failed: saved again
        retry = [r for r in book.active() if (r.drained or r.idle) and r.unsaved is not None]
        done = await asyncio.gather(*(self._drain_run(r, timeout_s) for r in runs))
        drained = [r for r, ok in zip(runs, done, strict=True) if ok]
        for record in retry:
            book.save(record)
        not_saved = [r.id for r in (*drained, *retry) if r.unsaved is not None]
        took = round(self.ctx.monotonic() - started, 2)
        log.info("drained %d runs in %.2f s: new runs are refused", len(drained), took)
        if not_saved:
            log.error("drained runs not saved (they would not resume): %s", ", ".join(not_saved))
        return {"drained": [r.id for r in drained], "not_saved": not_saved, "took_s": took}

    async def _drain_run(self, record: RunRecord, timeout_s: float) -> bool:
        """Stop the run's sources for a restart; False when the run ended meanwhile (a ``vsa
        stop``, a failure): it is left as it ended, not drained."""
        if record.idle:
            return False  # paused meanwhile: left as it is
        if record.monitor is not None:
            record.monitor.cancel()
            record.monitor = None
        record.stop_requested = True
        await self.sources.halt(record, timeout_s, wait_gone=False)
        if record.state.terminal:
            return False
        record.stop_requested = False
        record.drained = True
        record.event("drained", note="resumes when the engine starts again")
        self.ctx.book.save(record)
        return True

    async def resume_drained(
        self, wait_s: float, draining: bool, last_alive: float | None
    ) -> dict[str, Any]:
        """Resume every drained run on this engine (see :meth:`ControllerCore.resume_drained`);
        ``draining``: whether the engine was; ``last_alive``: when it last ran them, when no
        drain says."""
        book = self.ctx.book
        if not any(r.drained for r in book.active()):
            return {"draining": draining, "resumed": []}
        deadline = self.ctx.monotonic() + wait_s
        while busy := [
            r.id for r in book.active() if r.stop_requested or not (r.drained or r.idle)
        ]:
            if self.ctx.monotonic() > deadline:
                raise VsaError(
                    f"runs {', '.join(busy)} are still being stopped or drained: "
                    "resume the drained runs once they are done"
                )
            await self.ctx.sleep(0.1)
        drained = [r for r in book.active() if r.drained]
        for record in drained:  # their actors were killed: recovery must not take one up
            for source in record.spec.sources:
                lookup = lambda r=record.id, s=source.id: self.ctx.handles.get_source(r, s)  # noqa: E731
                if lookup() is not None:
                    await self.ctx.until_gone(lookup)
        last_ran = max(
            (e["t"] for r in drained for e in r.events if e["event"] == "drained"),
            default=last_alive,
        )
        for record in drained:
            record.drained = False
        await self.resume(drained, "service restart", last_ran)
        log.info("resumed %d drained runs: new runs are accepted", len(drained))
        return {"draining": draining, "resumed": [r.id for r in drained]}
