"""The controller's inference actors: placement, model loads and unloads, the supervisor.

:class:`EngineManager` keeps the pool (one inference actor per slot,
:mod:`vsa.supervision.pool`), has every slot load a run's model (``ensure``), unloads a model
no running run uses (``release``), says whether a new model fits beside the loaded ones
(``fits``: a run that does not waits PENDING) and supervises the actors: every
``SUPERVISE_S`` it asks each actor serving streams for its health and carries out
:func:`vsa.supervision.watchdog.check_inference`'s decision for that actor alone; streams of a
slot that is gone (its node left) or whose actor cannot be restarted move to the other slots;
every ``STORE_CHECK_S`` it checks the object store for spilling.

What it needs of the runs' sources (fail a run, recreate a source actor elsewhere) it gets as
two callbacks from :class:`vsa.supervision.core.ControllerCore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vsa import settings
from vsa.config import RunSpec
from vsa.constants import (
    ENGINE_TIMEOUT_S,
    STATUS_TIMEOUT_S,
    STORE_CHECK_S,
    SUPERVISE_S,
    WARNING_HOLD_S,
)
from vsa.errors import VsaError
from vsa.inference.engine import engine_key
from vsa.supervision.context import Context
from vsa.supervision.handles import DEFAULT_SLOT, ActorGone, InferenceHandle, Slot
from vsa.supervision.pool import place, rehome
from vsa.supervision.runbook import RunRecord
from vsa.supervision.watchdog import (
    ActorDied,
    Health,
    NoActor,
    NoAnswer,
    WatchedRun,
    check_inference,
    spill_warning,
)

log = logging.getLogger("vsa.controller")

OOM_WORDS = ("out of memory", "cuda error: out of memory", "cudaerrormemoryallocation")


def wanted_engine(spec: RunSpec) -> str:
    """The engine a run's spec asks for (one per model + batching config): runs that ask for
    the same one share it."""
    return engine_key(spec.model, spec.batching)


def out_of_memory(exc: BaseException) -> bool:
    """Whether a model failed to load for want of device memory (it may fit later)."""
    text = str(exc).lower()
    return any(word in text for word in OOM_WORDS)


class EngineManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pool: dict[str, InferenceHandle] = {}  # slot name -> its inference actor
        self.slots: dict[str, Slot] = {}  # the cluster's slots, the controller's node first
        self._spilled_seen: int | None = None
        self._supervisor: asyncio.Task | None = None
        # set by the core: fail a run for an inference reason; recreate a source actor
        self.fail: Callable[[RunRecord, str], Awaitable[None]] | None = None
        self.recreate: Callable[[RunRecord, str], Awaitable[None]] | None = None

    @property
    def first(self) -> InferenceHandle | None:
        """The first slot's inference actor (the only one on one host)."""
        return self.pool.get(next(iter(self.slots), DEFAULT_SLOT))

    async def refresh_slots(self) -> dict[str, Slot]:
        """The cluster's slots now (asks Ray for its live nodes: off the event loop)."""
        slots = await self.ctx.to_thread(self.ctx.handles.inference_slots)
        self.slots = {s.name: s for s in slots or [Slot()]}
        return self.slots

    def load(self) -> dict[str, int]:
        """Streams per slot over the running runs."""
        load: dict[str, int] = {}
        for record in self.ctx.book.active():
            for slot in record.placement.values() if not record.idle else ():
                load[slot] = load.get(slot, 0) + 1
        return load

    def inference_of(self, record: RunRecord, source_id: str) -> InferenceHandle | None:
        return self.pool.get(record.placement.get(source_id, DEFAULT_SLOT))

    def who(self, slot: str) -> str:
        return "the inference actor" + ("" if slot == DEFAULT_SLOT else f" {slot}")

    def adopt(self, names: list[str]) -> None:
        """Take up the live inference actors of ``names`` (after a controller restart)."""
        for name in names:
            actor = self.ctx.handles.get_inference(name)
            if actor is not None:
                self.pool[name] = actor

    # --- what fits -----------------------------------------------------------------------
    def fits(self, spec: RunSpec, running: list[RunRecord]) -> str | None:
        """None when ``spec``'s engine is loaded for a run of ``running`` already or fits
        beside theirs under ``VSA_MAX_ENGINES``; else why it does not (the run waits
        PENDING). A model too large for the device is found when it loads
        (:func:`out_of_memory`)."""
        limit = settings.max_engines()
        want = wanted_engine(spec)
        loaded = {wanted_engine(r.spec) for r in running}
        if not limit or want in loaded or len(loaded) < limit:
            return None
        names = sorted({r.spec.model.name for r in running})
        return (
            f"its model does not fit beside the {len(loaded)} loaded ({', '.join(names)}; "
            f"VSA_MAX_ENGINES={limit}): it starts when a run using one of them ends or pauses"
        )

    # --- loading and unloading -----------------------------------------------------------
    async def ensure(self, spec: RunSpec) -> tuple[dict[str, Any], list[str]]:
        """Have every slot's inference actor load the run's model (creating actors when needed).

        Returns the model as the first slot that loaded it says (with its ``key``) and the
        slots that loaded it, in slot order. A slot that fails is left out (logged); when every
        slot fails, the first slot's error is raised."""
        slots = await self.refresh_slots()
        if spec.model.device == "cuda" and not any(s.num_gpus for s in slots.values()):
            raise VsaError(
                "model.device is 'cuda' but the Ray cluster has no GPU: use device: auto or cpu"
            )
        results = await asyncio.gather(
            *(self.ensure_on(slot, spec) for slot in slots.values()), return_exceptions=True
        )
        ready = [name for name, r in zip(slots, results, strict=True) if isinstance(r, dict)]
        for name, result in zip(slots, results, strict=True):
            if isinstance(result, BaseException) and ready:
                log.warning(
                    "inference actor %s cannot serve model %s: %s", name, spec.model.name, result
                )
        if not ready:
            first = results[0]
            assert isinstance(first, BaseException)
            raise first
        model = results[list(slots).index(ready[0])]
        assert isinstance(model, dict)
        return model, ready

    async def ensure_on(self, slot: Slot, spec: RunSpec) -> dict[str, Any]:
        """Have ``slot``'s inference actor load the run's model; (re)create the actor when
        needed."""
        who = self.who(slot.name)
        for attempt in range(2):
            actor = self.pool.get(slot.name)
            if actor is None:
                await self.kill_named([slot.name])
                # detached, not restarted by Ray: the controller restarts it and reloads the
                # models; not restartable also makes it the last choice of Ray's memory monitor
                actor = self.pool[slot.name] = self.ctx.handles.start_inference(slot)
            try:
                return dict(
                    await actor.ensure_engine(
                        spec.model.model_dump(), spec.batching.model_dump(), ENGINE_TIMEOUT_S
                    )
                )
            except asyncio.TimeoutError:
                raise VsaError(
                    f"{who} did not load the model within {ENGINE_TIMEOUT_S:.0f} s "
                    f"(it asks for {slot.num_gpus} GPU; see `ray status` for free resources)"
                ) from None
            except ActorGone:
                log.warning("%s is gone; starting a new one (attempt %d)", who, attempt + 1)
                self.pool.pop(slot.name, None)
        raise VsaError(f"{who} could not be started; see its log (`ray logs actor --id ...`)")

    async def release(self, key: str | None, why: str) -> None:
        """Unload the engine ``key`` from every inference actor unless a running run uses it
        (called with the submit lock held); ``why``: for the log."""
        if not key or self.ctx.book.engine_in_use(key):
            return
        for actor in list(self.pool.values()):
            try:
                await actor.release_engine(key, 30)
            except Exception as exc:  # noqa: BLE001 - a model left loaded is not worth failing a run
                log.warning("%s: could not unload its model: %s", why, exc)

    async def kill_named(self, names: list[str]) -> None:
        """Kill the inference actors named ``names`` and wait until their names are free."""
        for name in names:
            actor = self.ctx.handles.get_inference(name)
            if actor is not None:
                log.info("stopping the inference actor %s left by an earlier controller", name)
                actor.kill()
                await self.ctx.until_gone(lambda name=name: self.ctx.handles.get_inference(name))

    async def settled(self, key: str, timeout_s: float) -> bool:
        """Wait (``timeout_s`` at most) until no inference actor holds frames of engine
        ``key`` (waiting or running): True when none does."""
        deadline = self.ctx.monotonic() + timeout_s
        while True:
            busy = 0
            for actor in list(self.pool.values()):
                try:
                    health = await actor.health(STATUS_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - a dead actor holds nothing
                    continue
                engine = health.get(key) or {}
                busy += int(engine.get("waiting") or 0) + int(engine.get("running") or 0)
            if not busy:
                return True
            if self.ctx.monotonic() > deadline:
                return False
            await self.ctx.sleep(0.2)

    # --- supervision ---------------------------------------------------------------------
    def ensure_supervisor(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    @property
    def supervisor(self) -> asyncio.Task | None:
        return self._supervisor

    async def _supervise(self) -> None:
        last_store_check = 0.0
        while True:
            await self.ctx.sleep(SUPERVISE_S)
            active = self.ctx.book.supervised()
            if not active:
                continue
            try:
                await self.check_inference(active)
                if self.ctx.monotonic() - last_store_check >= STORE_CHECK_S:
                    last_store_check = self.ctx.monotonic()
                    await self.check_store(active)
            except Exception:  # noqa: BLE001 - never let supervision die
                log.exception("supervisor error (continuing)")

    async def check_store(self, active: list[RunRecord]) -> None:
        """Spilling to disk means the object store is full: a warning on every active run."""
        stats = await self.ctx.to_thread(self.ctx.handles.store_stats)
        if stats is None:
            return
        used, spilled = stats
        text = spill_warning(self._spilled_seen, used, spilled, STORE_CHECK_S)
        if text:
            for record in active:
                record.warn("spilling", text, WARNING_HOLD_S)
        self._spilled_seen = spilled

    async def _health(self, slot: str) -> Health:
        actor = self.pool.get(slot)
        if actor is None:
            return NoActor()
        try:
            return await actor.health(STATUS_TIMEOUT_S)
        except ActorGone as exc:
            return ActorDied(exc.error)
        except asyncio.TimeoutError:
            return NoAnswer(STATUS_TIMEOUT_S)

    async def check_inference(self, active: list[RunRecord]) -> None:
        """Ask each inference actor that serves streams for its health and carry out the
        watchdog's decision for it; streams of a slot that is gone move to the others."""
        assert self.fail is not None
        slots = await self.refresh_slots()
        gone = {s for r in active for s in r.placement.values()} - set(slots)
        for slot in sorted(gone):
            self.pool.pop(slot, None)
            await self.move_streams(active, slot, "its node left the cluster", node_gone=True)
        serving = [s for s in slots if any(s in r.placement.values() for r in active)]
        healths = await asyncio.gather(*(self._health(s) for s in serving))
        for slot, health in zip(serving, healths, strict=True):
            runs = [r for r in active if slot in r.placement.values() and not r.state.terminal]
            watched = [
                WatchedRun(r.id, r.engine_key, r.spec.batching.stall_timeout_s) for r in runs
            ]
            decision = check_inference(health, watched)
            by_id = {r.id: r for r in runs}
            for failed in decision.fail:
                for run_id in failed.run_ids:
                    record = by_id[run_id]
                    record.event("fatal", reason=failed.reason)
                    await self.fail(record, f"inference: {failed.reason}")
            if decision.restart:
                runs = [r for r in runs if not r.state.terminal]
                await self.restart(slot, runs, decision.restart.reason, kill=decision.restart.kill)

    async def restart(
        self, slot: str, active: list[RunRecord], reason: str, kill: bool = False
    ) -> None:
        """Restart ``slot``'s inference actor for the runs with streams on it; when it cannot
        be, its streams move to the other slots (a run fails only when none can take them)."""
        assert self.fail is not None
        started = self.ctx.monotonic()
        who = self.who(slot)
        log.error("restarting %s: %s", who, reason)
        old = self.pool.pop(slot, None)
        if kill and old is not None:
            old.kill()
        await self.kill_named([slot])  # the name is free once the old actor is gone
        for record in active:
            try:
                model = await self.ensure_on(self.slots[slot], record.spec)
            except Exception as exc:  # noqa: BLE001
                self.pool.pop(slot, None)
                if await self.move_streams([record], slot, f"{who} could not be restarted: {exc}"):
                    continue
                await self.fail(record, f"{who} could not be restarted: {exc}")
                continue
            record.engine_key = model.pop("key")
            for sid, where in record.placement.items():
                if where == slot and sid in record.actors:
                    record.actors[sid].set_inference(self.pool[slot], record.engine_key)
        took = round(self.ctx.monotonic() - started, 2)
        for record in active:
            if not record.state.terminal and slot in record.placement.values():
                extra = {} if slot == DEFAULT_SLOT else {"inference": slot}
                record.event("inference_restarted", reason=reason, took_s=took, **extra)
                self.ctx.book.save(record)

    async def move_streams(
        self, runs: list[RunRecord], slot: str, reason: str, node_gone: bool = False
    ) -> bool:
        """Move the streams of ``runs`` on ``slot`` to the other slots that load their model;
        False when there is none. ``node_gone``: the slot's node left the cluster, taking its
        source actors with it: they are created again beside their new inference actor
        (continuing their files), otherwise they are handed the new actor."""
        assert self.recreate is not None
        moved_all = True
        for record in runs:
            targets = [s for s in self.slots if s != slot]
            ready = []
            for target in targets:
                try:
                    await self.ensure_on(self.slots[target], record.spec)
                    ready.append(target)
                except Exception as exc:  # noqa: BLE001 - that slot cannot take them either
                    log.warning("%s cannot take streams: %s", self.who(target), exc)
            if not ready:
                moved_all = False
                continue
            moves = rehome(
                {sid: s for sid, s in record.placement.items() if s == slot}, self.load(), ready
            )
            for sid, target in moves.items():
                record.placement[sid] = target
            if moves:
                log.warning(
                    "run=%s streams %s moved off %s: %s", record.id, sorted(moves), slot, reason
                )
                record.event("streams_moved", sources=sorted(moves), reason=reason)
            for sid in moves:
                if sid not in record.actors:
                    continue
                if node_gone:
                    await self.recreate(record, sid)
                else:
                    record.actors[sid].set_inference(self.pool[moves[sid]], record.engine_key)
            if moves:
                self.ctx.book.save(record)
        return moved_all

    def place(self, source_ids: list[str], ready: list[str]) -> dict[str, str]:
        """New streams to the ready slots serving the fewest streams."""
        return place(source_ids, self.load(), ready)
