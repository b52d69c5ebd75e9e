"""The controller's source actors: start, stop, replace, and the per-run monitor.

:class:`SourceSupervisor` starts a run's source actors where their inference actor is, stops
all or some of them (their sinks closed, their final statuses taken), replaces one (a changed
setting, a node that left: the new actor continues the stream's files) and runs each run's
monitor: every ``POLL_S`` it polls the sources, absorbs their statuses (a new incarnation
carries the counters over and is saved at once; a source actor that died is FAILED), derives
the run's state and has the run finished when it is terminal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vsa.constants import POLL_S, SAVE_EVERY_S, STATUS_TIMEOUT_S
from vsa.runstate import RunState
from vsa.schema import SourceState
from vsa.stream import stop_grace_s
from vsa.supervision.context import Context
from vsa.supervision.engines import EngineManager
from vsa.supervision.handles import DEFAULT_SLOT, ActorGone, SourceHandle, error_name
from vsa.supervision.runbook import RunRecord

log = logging.getLogger("vsa.controller")

Poll = dict[str, Any] | ActorGone | None


class SourceSupervisor:
    def __init__(
        self,
        ctx: Context,
        engines: EngineManager,
        finish: Callable[[RunRecord, RunState], Awaitable[None]],
    ) -> None:
        self.ctx = ctx
        self.engines = engines
        self._finish = finish

    # --- actors --------------------------------------------------------------------------
    def start(
        self, record: RunRecord, source_id: str, resume: bool = False, carry: bool = False
    ) -> Any:
        """Start a source actor; ``resume``: continue its files; ``carry``: it also gets its
        last saved status (counters, its input file's identity) to check what it resumes from
        after the engine was down. Not for a stream moved to another node: its earlier files
        are on the node that left."""
        slot = self.engines.slots.get(record.placement.get(source_id, DEFAULT_SLOT))
        return self.ctx.handles.start_source(
            record.id,
            record.spec.model_dump(),
            source_id,
            self.engines.inference_of(record, source_id),
            record.engine_key,
            record.sealed.get(source_id),
            resume,
            None if slot is None else slot.node,
            # what it resumes from: its last saved status (counters, its input file's identity)
            record.sources.get(source_id) if resume and carry else None,
        )

    async def recreate(self, record: RunRecord, sid: str) -> None:
        """Replace a source actor (its node is gone) by a new one beside its inference actor;
        it continues the stream's files like a restarted one."""
        record.actors[sid].kill()
        await self.ctx.until_gone(lambda: self.ctx.handles.get_source(record.id, sid))
        record.actors[sid] = self.start(record, sid, resume=True)
        record.event("source_recreated", source=sid)

    def kill_left(self, record: RunRecord) -> None:
        """Kill the source actors of ``record`` that are still there (left by an earlier
        controller, a removed source's included); those gone already are skipped."""
        for sid in [*(s.id for s in record.spec.sources), *record.removed]:
            try:
                actor = self.ctx.handles.get_source(record.id, sid)
                if actor is not None:
                    actor.kill()
            except Exception:  # noqa: BLE001 - gone already
                pass

    async def stop(
        self, record: RunRecord, timeout_s: float = 30.0, only: list[str] | None = None
    ) -> None:
        """Stop the run's sources (``only``: those; all at once) and take their final
        statuses; their files are closed. Stopping them all marks the run as being stopped."""
        if only is None:
            record.stop_requested = True
        sids = [sid for sid in record.actors if only is None or sid in only]
        if not sids:
            return
        specs = {s.id: s for s in record.spec.sources}
        grace = max((stop_grace_s(specs[sid]) for sid in sids if sid in specs), default=0.0)
        wait_s = timeout_s + grace + 10
        calls = {sid: record.actors[sid].stop(timeout_s, wait_s) for sid in sids}
        for sid, call in calls.items():
            try:
                status = await call
                self.absorb(record, sid, status)  # a restarted incarnation carries counts over
            except Exception as exc:  # noqa: BLE001 - a dead source is stopped too
                record.source_ended(
                    sid, SourceState.STOPPED.value, f"stop failed: {error_name(exc)}"
                )

    async def halt(
        self,
        record: RunRecord,
        timeout_s: float,
        only: list[str] | None = None,
        wait_gone: bool = True,
    ) -> None:
        """Stop sources to start them again later (a drain, a pause, a changed setting): their
        files are closed, their actors removed (``wait_gone``: and their names free); those
        that had not ended read CONNECTING (0 fps) until started again with ``resume``."""
        sids = [sid for sid in record.actors if only is None or sid in only]
        ended = {sid: record.status(sid).terminal for sid in sids if sid in record.sources}
        await self.stop(record, timeout_s, only=sids)
        if record.state.terminal:
            return  # ended meanwhile (a stop, a failure): left as it ended
        for sid in sids:
            status = record.sources.get(sid)
            if status is not None and not ended.get(sid, False):
                status["state"] = SourceState.CONNECTING.value
                status["fps"] = 0.0  # not the last rate seen: nothing flows until it resumes
        for sid in sids:
            actor = record.actors.pop(sid, None)
            if actor is not None:
                actor.kill()
        for sid in sids if wait_gone else []:
            await self.ctx.until_gone(lambda sid=sid: self.ctx.handles.get_source(record.id, sid))

    # --- the monitor ---------------------------------------------------------------------
    def watch(self, record: RunRecord) -> None:
        """Start the run's monitor (one per run)."""
        if record.monitor is None or record.monitor.done():
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))

    async def _poll(self, actor: SourceHandle) -> Poll:
        """A source's status; None when it did not answer in time (busy, still starting)."""
        try:
            return await actor.status(STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            return None
        except ActorGone as exc:
            return exc

    def absorb(self, record: RunRecord, sid: str, status: dict[str, Any]) -> None:
        """Take a polled status; a new incarnation (Ray restarted the actor) is saved at once."""
        if record.absorb(sid, status) is not None:
            self.ctx.book.save(record)

    async def _monitor(self, record: RunRecord) -> None:
        while not record.state.terminal and not record.stop_requested and not record.idle:
            try:
                if await self.monitor_once(record):
                    return
            except Exception:  # noqa: BLE001 - never let a run's monitor die
                log.exception("run=%s monitor error (continuing)", record.id)
            await self.ctx.sleep(POLL_S)

    async def monitor_once(self, record: RunRecord) -> bool:
        """Poll the run's sources once and take what they say; True when the monitor is done."""
        live = {sid: a for sid, a in record.actors.items() if not record.status(sid).terminal}
        results = await asyncio.gather(*(self._poll(a) for a in live.values()))
        if record.stop_requested or record.state.terminal or record.idle:
            return True  # stop() owns the final statuses
        for (sid, actor), result in zip(live.items(), results, strict=True):
            if record.actors.get(sid) is not actor:
                continue  # replaced or removed meanwhile: the new one is polled next
            if isinstance(result, dict):
                self.absorb(record, sid, result)
            elif isinstance(result, ActorGone) and result.died:
                if await self._node_left(record, sid):
                    continue  # created again on another node
                record.source_ended(
                    sid, SourceState.FAILED.value, f"source actor died: {result.error}"
                )
            # not died for good: Ray is restarting it; the next poll sees it again
        if record.changing:
            return False  # a change is under way: the state is assessed once it is done
        state = record.assess()  # sampled, derived, degradation updated
        if state.terminal:
            await self._finish(record, state)
            return True
        if state != record.state:
            record.enter(state)
            self.ctx.book.save(record)
        elif self.ctx.monotonic() - record.saved_at > SAVE_EVERY_S:
            self.ctx.book.save(record)
        return False

    async def _node_left(self, record: RunRecord, sid: str) -> bool:
        """A source actor died for good: when its slot's node left the cluster, its streams
        move to another slot and it is created again there (True)."""
        slot = record.placement.get(sid)
        if slot is None or slot in await self.engines.refresh_slots():
            return False
        self.engines.pool.pop(slot, None)
        await self.engines.move_streams([record], slot, "its node left the cluster", node_gone=True)
        return record.placement.get(sid) != slot
