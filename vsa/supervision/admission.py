"""Runs waiting for their model, and starting a run whose model is loaded.

:class:`Admission` loads a run's model (checking its lines' and zones' classes), places its
streams and starts its sources (one that ran before continues its files), and keeps the
PENDING runs: a run whose model does not fit beside the loaded ones
(:meth:`vsa.supervision.engines.EngineManager.fits`, or out of device memory on load) waits,
and is tried again every ``PENDING_RETRY_S`` and whenever an engine is freed, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from vsa.config import class_problems
from vsa.errors import ConfigError
from vsa.runstate import RunState
from vsa.supervision.context import Context
from vsa.supervision.engines import EngineManager, out_of_memory
from vsa.supervision.runbook import RunRecord
from vsa.supervision.sources import SourceSupervisor

if TYPE_CHECKING:
    from vsa.supervision.core import ControllerCore

log = logging.getLogger("vsa.controller")

PENDING_RETRY_S = 10.0  # how often a PENDING run tries again without an engine freed


class Admission:
    def __init__(
        self,
        ctx: Context,
        engines: EngineManager,
        sources: SourceSupervisor,
        core: ControllerCore,
    ) -> None:
        self.ctx, self.book = ctx, ctx.book
        self.engines, self.sources = engines, sources
        self.core = core  # its submit lock, drain flag and finish
        self.task: asyncio.Task | None = None  # the PENDING runs' loop

    def running(self) -> list[RunRecord]:
        """The active runs whose engines are loaded (not paused, not PENDING)."""
        return [r for r in self.book.active() if not r.idle]

    async def load(self, record: RunRecord) -> list[str]:
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

    def place(self, record: RunRecord) -> None:
        """Each of the run's streams to a slot that loaded its model."""
        ready = record.ready_slots or list(self.engines.slots)
        record.placement = self.engines.place([s.id for s in record.spec.sources], ready)

    def start(self, record: RunRecord) -> None:
        """Start every source of a run whose model is loaded (placed first unless it is),
        and watch it; a source that ran before continues its files."""
        if set(record.placement) != {s.id for s in record.spec.sources}:
            self.place(record)
        for source in record.spec.sources:
            ran = (record.sources.get(source.id) or {}).get("incarnation") is not None
            record.actors[source.id] = self.sources.start(record, source.id, resume=ran, carry=ran)
        self.book.add(record)
        self.sources.watch(record)
        self.engines.ensure_supervisor()

    # --- PENDING runs ------------------------------------------------------------------
    def watch_pending(self) -> None:
        """Try the PENDING runs now and every ``PENDING_RETRY_S`` while there are any."""
        if any(r.pending for r in self.book.active()):
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._pending_loop())

    async def _pending_loop(self) -> None:
        while any(r.pending for r in self.book.active()):
            try:
                await self.admit()
            except Exception:  # noqa: BLE001 - never let admission die
                log.exception("admitting PENDING runs failed (continuing)")
            await self.ctx.sleep(PENDING_RETRY_S)

    async def admit(self) -> None:
        """Start the PENDING runs that fit now, oldest first."""
        assert self.core.submit_lock is not None
        for record in sorted(
            (r for r in self.book.active() if r.pending), key=lambda r: r.created_at
        ):
            if self.core.draining:
                return
            async with record.lock, self.core.submit_lock:
                if not record.pending or record.state.terminal or self.core.draining:
                    continue
                if self.engines.fits(record.spec, self.running()) is not None:
                    continue
                try:
                    await self.load(record)
                except Exception as exc:  # noqa: BLE001
                    if out_of_memory(exc):
                        record.pending = (
                            f"its model does not fit in the device's memory now ({exc})"
                        )
                        continue
                    record.pending = None
                    record.error = f"could not start: {exc}"
                    await self.core.finish(record, RunState.FAILED, locked=True)
                    continue
                waited = round(self.ctx.clock() - record.pending_since, 1)
                record.pending = None
                record.event("started", waited_s=waited)
                record.enter(RunState.WAITING)
                self.book.save(record)
                self.start(record)
