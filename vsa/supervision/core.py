"""The controller's brain as plain asyncio: runs, their monitors and the inference supervisor.

:class:`ControllerCore` is what ``actors/controller.py`` (a thin Ray actor) delegates to. It
sees the engine's actors only through :class:`vsa.supervision.handles.Handles` (on Ray:
``actors/handles.py``), keeps its runs in a :class:`vsa.supervision.runbook.RunBook` on a
:class:`vsa.supervision.store.RunStore` (on Ray: the GCS), and takes its clocks, its ``sleep``
and its ``to_thread`` injected, so the unit tests drive it with fakes.

What it does (the failure policy in docs/failure-policy.md):

- ``submit``: admission and output checks, the model loaded by every inference actor of the
  pool (:mod:`vsa.supervision.pool`: one per slot, created when needed), one source actor per
  stream placed with the slot serving the fewest streams, a monitor task per run;
- the monitor polls the sources every ``POLL_S``, absorbs their statuses (a new incarnation
  carries the counters over and is saved at once; a source actor that died is FAILED),
  derives the run's state and finishes the run when it is terminal;
- the supervisor asks each inference actor serving streams for its health every
  ``SUPERVISE_S`` and carries out :func:`vsa.supervision.watchdog.check_inference`'s decision
  for that actor alone (restart it, kill and restart it, fail the runs of a fatal engine):
  the streams of the other actors are not touched. Streams of a slot that is gone (its node
  left) or whose actor cannot be restarted move to the other slots; every ``STORE_CHECK_S`` it
  checks the object store for spilling;
- ``stop`` stops every source and finishes the run; finishing writes the report, releases the
  model when no other run uses it and removes the source actors ``METRICS_FLUSH_S`` later;
- recovery (``ready``, once): saved runs are loaded, the active ones re-attached to their
  source actors (a missing one is recreated with ``resume``) and a stop cut short is finished.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from vsa import settings
from vsa.analytics.chain import tracker_installed
from vsa.config import RunSpec, class_problems
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
from vsa.outputs import (
    check_admission,
    check_input_files,
    check_output_dir,
    check_output_policy,
    claim_outputs,
)
from vsa.report import build_report, write_report
from vsa.runstate import RunState
from vsa.schema import SourceState
from vsa.stream import stop_grace_s
from vsa.supervision.handles import (
    DEFAULT_SLOT,
    ActorGone,
    Handles,
    InferenceHandle,
    Slot,
    SourceHandle,
    error_name,
)
from vsa.supervision.pool import place, rehome
from vsa.supervision.runbook import RunBook, RunRecord, seal_sources, why
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
from vsa.uri import file_path as uri_file_path
from vsa.uri import mask_uri, scheme_of

log = logging.getLogger("vsa.controller")

Sleep = Callable[[float], Awaitable[Any]]
ToThread = Callable[..., Awaitable[Any]]
Poll = dict[str, Any] | ActorGone | None


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
        self.restarted = restarted
        self.last_alive = last_alive  # when a controller was last alive before this one
        self.draining = False
        self.pool: dict[str, InferenceHandle] = {}  # slot name -> its inference actor
        self.slots: dict[str, Slot] = {}  # the cluster's slots, the controller's node first
        self._clock, self._monotonic = clock, monotonic
        self._sleep, self._to_thread, self._memory = sleep, to_thread, memory
        self._submit_lock: asyncio.Lock | None = None
        self._resume_lock: asyncio.Lock | None = None  # resume_drained: one at a time
        self._recovered: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None
        self._spilled_seen: int | None = None
        self._tasks: set[asyncio.Task] = set()  # reaps, a stop resumed after a restart

    @property
    def inference(self) -> InferenceHandle | None:
        """The first slot's inference actor (the only one on one host)."""
        return self.pool.get(next(iter(self.slots), DEFAULT_SLOT))

    async def _refresh_slots(self) -> dict[str, Slot]:
        """The cluster's slots now (asks Ray for its live nodes: off the event loop)."""
        slots = await self._to_thread(self.handles.inference_slots)
        self.slots = {s.name: s for s in slots or [Slot()]}
        return self.slots

    def _load(self) -> dict[str, int]:
        """Streams per slot over the active runs."""
        load: dict[str, int] = {}
        for record in self.book.active():
            for slot in record.placement.values():
                load[slot] = load.get(slot, 0) + 1
        return load

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
                # a new controller (first start, or replacing one that ran other code): the
                # inference actors left by its predecessor may run old code; start afresh
                await self._kill_named_inference(list(await self._refresh_slots()))
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
            self._kill_sources(record)
        if self.book.runs:
            log.info("loaded %d saved runs, %d active", len(self.book), len(active))
        # Ray restarted this controller's process, or a new controller started: after an
        # upgrade, `ray stop` / `ray start` or a reboot (the runs come from the disk)
        after = "controller restart" if self.restarted else "engine restart"
        await self._resume(active, after, self.last_alive)

    async def _resume(self, active: list[RunRecord], after: str, last_alive: float | None) -> None:
        """Resume ``active`` runs (whose source actors may have outlived the controller):
        re-checked as a submit, model loaded, each stream's actor found or started again with
        ``resume`` (files continued), the event ``recovered``; ``last_alive``: when the engine
        last ran them (``down_s``)."""
        if not active:
            return
        down = {}
        if last_alive is not None:
            down["down_s"] = round(max(0.0, self._clock() - last_alive), 1)
        log.info("resuming %d runs after a %s %s", len(active), after, down)
        for name in await self._refresh_slots():
            actor = self.handles.get_inference(name)
            if actor is not None:
                self.pool[name] = actor
        for record in active:
            if not await self._still_allowed(record):
                continue
            try:
                model, ready = await self._ensure_engine(record.spec)
                record.model = {**(record.model or {}), **model}
                record.engine_key = record.model.pop("key")
            except Exception as exc:  # noqa: BLE001
                record.error = f"could not reload the model after a controller restart: {exc}"
                await self._finish(record, RunState.FAILED)
                continue
            # streams keep their slot; those of a slot that is gone (its node left the cluster,
            # with their source actors) or saved before slots are placed again
            gone = {sid for sid, slot in record.placement.items() if slot not in self.slots}
            kept = {sid: slot for sid, slot in record.placement.items() if slot in ready}
            record.placement = kept | place(
                [s.id for s in record.spec.sources if s.id not in kept], self._load(), ready
            )
            if gone:
                record.event("streams_moved", sources=sorted(gone), reason="its node left")
            for source in record.spec.sources:
                actor = self.handles.get_source(record.id, source.id)
                if actor is not None and source.id in gone:
                    record.actors[source.id] = actor  # on a node that left: replaced below
                    await self._recreate_source(record, source.id)
                    continue
                if actor is None:  # the actor is gone: start it again (files are appended)
                    record.actors[source.id] = self._start_source(
                        record, source.id, resume=True, carry=True
                    )
                    record.event("source_recreated", source=source.id)
                    continue
                record.actors[source.id] = actor
                actor.set_inference(self._inference_of(record, source.id), record.engine_key)
            record.event("recovered", after=after, **down)
            if record.stop_requested:  # the stop was cut short by the restart: finish it
                record.stop_requested = False
                self._spawn(self.stop(record.id))
                continue
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self.book.save(record)  # a failure is logged: the run goes on
        self._ensure_supervisor()

    def _kill_sources(self, record: RunRecord) -> None:
        """Kill the source actors of ``record`` that are still there (left by an earlier
        controller); those gone already are skipped."""
        for source in record.spec.sources:
            try:
                actor = self.handles.get_source(record.id, source.id)
                if actor is not None:
                    actor.kill()
            except Exception:  # noqa: BLE001 - gone already
                pass

    async def _still_allowed(self, record: RunRecord) -> bool:
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
            await self._to_thread(
                check_output_policy, record.spec.output_dir, settings.output_roots()
            )
        except Exception as exc:  # noqa: BLE001 - a VsaError says why; anything else too
            reason = str(exc) if isinstance(exc, VsaError) else why(exc)
            record.error = f"not resumed: {reason}"
            record.event("not_resumed", reason=reason)
            self._kill_sources(record)
            await self._finish(record, RunState.FAILED, report=False)
            return False
        return True

    # --- queries -------------------------------------------------------------------------
    async def status(self, run: str | None = None) -> dict[str, Any]:
        await self.ready()
        runs = [self.book.find(run)] if run else self.book.ordered()
        # the saved records that could not be loaded (vsa list and vsa status show them)
        return {"runs": [r.summary() for r in runs], "problems": list(self.book.problems)}

    # --- commands ------------------------------------------------------------------------
    async def submit(self, run: dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
        """Start a run. Refused (with what to do) when its name is active, it does not fit the
        admission limits, its output_dir is not allowed or writable, another active run writes
        there, or an earlier run's files are there and ``overwrite`` is not given."""
        await self.ready()
        if self.draining:
            raise VsaError(
                "the engine is draining for a restart or an upgrade: submit again once it is "
                "back (its runs resume by themselves)"
            )
        try:
            spec = RunSpec.model_validate(run)
        except Exception as exc:  # the client validated already; this guards other callers
            raise ConfigError([str(exc)]) from None
        if any(src.tracked for src in spec.sources) and not tracker_installed():
            raise VsaError(
                "scene analytics (a source's tracking, lines or zones) needs the trackers "
                "package, which is not installed where the engine runs: pip install "
                "--no-deps -r images/no-deps.txt (images/install.sh and scripts/setup.sh do)"
            )
        assert self._submit_lock is not None
        async with self._submit_lock:
            if self.draining:  # a drain that took the lock while this submit waited for it
                raise VsaError(
                    "the engine is draining for a restart or an upgrade: submit again once it "
                    "is back (its runs resume by themselves)"
                )
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
            check_input_files(
                [
                    (src.id, uri_file_path(src.uri))
                    for src in spec.sources
                    if scheme_of(src.uri) == "file"
                ],
                settings.input_roots(),
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
            record.model, ready = await self._ensure_engine(spec)
            record.engine_key = record.model.pop("key")
            problems = class_problems(spec, record.model.get("classes") or [])
            if problems:  # a line or zone counts a class the model does not have
                await self._release_engine(record)
                raise ConfigError(problems)
            record.placement = place([s.id for s in spec.sources], self._load(), ready)
            # durable before anything of it runs: a run that could not resume is refused
            await self._save_new(record)
            for source in spec.sources:
                record.actors[source.id] = self._start_source(record, source.id)
            self.book.add(record)
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
            await self._release_engine(record)
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

    async def _release_engine(self, record: RunRecord) -> None:
        """Unload the run's model from every inference actor unless an active run uses it
        (called with the submit lock held)."""
        if not record.engine_key or self.book.engine_in_use(record.engine_key):
            return
        for actor in list(self.pool.values()):
            try:
                await actor.release_engine(record.engine_key, 30)
            except Exception as exc:  # noqa: BLE001 - a model left loaded is not worth failing a run
                log.warning("run=%s could not unload its model: %s", record.id, exc)

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

    async def drain(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Get ready for a restart: refuse new runs, then stop every active run's sources as a
        stop does (frames in flight written, files closed, each MP4 segment finalized) and
        release them, **without ending the runs**: they stay active in the store and resume,
        same ids, files continued, when the engine starts again (``ray stop`` / ``ray start``,
        an upgrade, a reboot). Returns the drained run ids, ``not_saved``: the drained runs
        that could not be saved (they would not resume; a drain again retries their save) and
        the seconds it took."""
        await self.ready()
        check_stop_timeout(timeout_s)
        assert self._submit_lock is not None
        async with self._submit_lock:  # a submit under way is in the book, and drained, first
            self.draining = True
        started = self._monotonic()
        runs = [r for r in self.book.active() if not r.stop_requested and not r.drained]
        # drained earlier, but their save failed: saved again
        retry = [r for r in self.book.active() if r.drained and r.unsaved is not None]
        done = await asyncio.gather(*(self._drain_run(r, timeout_s) for r in runs))
        drained = [r for r, ok in zip(runs, done, strict=True) if ok]
        for record in retry:
            self.book.save(record)
        not_saved = [r.id for r in (*drained, *retry) if r.unsaved is not None]
        took = round(self._monotonic() - started, 2)
        log.info("drained %d runs in %.2f s: new runs are refused", len(drained), took)
        if not_saved:
            log.error("drained runs not saved (they would not resume): %s", ", ".join(not_saved))
        return {"drained": [r.id for r in drained], "not_saved": not_saved, "took_s": took}

    async def _drain_run(self, record: RunRecord, timeout_s: float) -> bool:
        """Stop the run's sources for a restart; False when the run ended meanwhile (a ``vsa
        stop``, a failure): it is left as it ended, not drained."""
        if record.monitor is not None:
            record.monitor.cancel()
        ended = {sid: status.terminal for sid, status in record.statuses().items()}
        await self._stop_sources(record, timeout_s)
        if record.state.terminal:
            return False
        record.stop_requested = False
        for sid, status in record.sources.items():
            if not ended.get(sid, False):
                # stopped for the restart, not ended: the resumed source starts again
                status["state"] = SourceState.CONNECTING.value
                status["fps"] = 0.0  # not the last rate seen: nothing flows until it resumes
        for actor in record.actors.values():
            actor.kill()
        record.actors.clear()
        record.drained = True
        record.event("drained", note="resumes when the engine starts again")
        self.book.save(record)
        return True

    async def resume_drained(self, wait_s: float = 120.0) -> dict[str, Any]:
        """End a drain without an engine restart: new runs are accepted again and every drained
        run resumes as recovery resumes the runs of a new engine (:meth:`_resume`, on the
        records in memory): same ids, re-checked as a submit, source actors started again with
        ``resume`` (files continued), counters carried over, the event ``recovered`` (``after:
        service restart``) with ``down_s`` counted from the drain. For ``vsa serve`` started
        again on a Ray head it did not start, where this controller (detached) outlived the
        service that drained it.

        A stop or a drain still under way ends first (``wait_s`` at most, else refused), and
        the drained runs' old source actors are gone before new ones start. Nothing drained:
        only the refusal of new runs ends. ``{"draining": whether it was, "resumed": [run
        ids]}``."""
        await self.ready()
        # one at a time (two services starting at once): the second finds nothing drained
        if self._resume_lock is None:
            self._resume_lock = asyncio.Lock()
        async with self._resume_lock:
            return await self._resume_drained(wait_s)

    async def _resume_drained(self, wait_s: float) -> dict[str, Any]:
        was = self.draining
        if not any(r.drained for r in self.book.active()):
            self.draining = False
            return {"draining": was, "resumed": []}
        deadline = self._monotonic() + wait_s
        while busy := [r.id for r in self.book.active() if r.stop_requested or not r.drained]:
            if self._monotonic() > deadline:
                raise VsaError(
                    f"runs {', '.join(busy)} are still being stopped or drained: "
                    "resume the drained runs once they are done"
                )
            await self._sleep(0.1)
        drained = self.book.active()  # each one drained
        for record in drained:  # their actors were killed: recovery must not take one up
            for source in record.spec.sources:
                lookup = lambda r=record.id, s=source.id: self.handles.get_source(r, s)  # noqa: E731
                if lookup() is not None:
                    await self._until_gone(lookup)
        ids = {r.id for r in drained}
        last_ran = max(
            (e["t"] for r in drained for e in r.events if e["event"] == "drained"),
            default=self.last_alive,
        )
        for record in drained:
            record.drained = False
        try:
            await self._resume(drained, "service restart", last_ran)
        finally:
            self.draining = False
        log.info("resumed %d drained runs: new runs are accepted", len(ids))
        return {"draining": was, "resumed": [r.id for r in drained]}

    # --- the engine's actors -------------------------------------------------------------
    def _inference_of(self, record: RunRecord, source_id: str) -> InferenceHandle | None:
        return self.pool.get(record.placement.get(source_id, DEFAULT_SLOT))

    def _start_source(
        self, record: RunRecord, source_id: str, resume: bool = False, carry: bool = False
    ) -> Any:
        """Start a source actor; ``resume``: continue its files; ``carry``: it also gets its
        last saved status (counters, its input file's identity) to check what it resumes from
        after the engine was down. Not for a stream moved to another node: its earlier files
        are on the node that left."""
        slot = self.slots.get(record.placement.get(source_id, DEFAULT_SLOT))
        return self.handles.start_source(
            record.id,
            record.spec.model_dump(),
            source_id,
            self._inference_of(record, source_id),
            record.engine_key,
            record.sealed.get(source_id),
            resume,
            None if slot is None else slot.node,
            # what it resumes from: its last saved status (counters, its input file's identity)
            record.sources.get(source_id) if resume and carry else None,
        )

    async def _kill_named_inference(self, names: list[str]) -> None:
        """Kill the inference actors named ``names`` and wait until their names are free."""
        for name in names:
            actor = self.handles.get_inference(name)
            if actor is not None:
                log.info("stopping the inference actor %s left by an earlier controller", name)
                actor.kill()
                await self._until_gone(lambda name=name: self.handles.get_inference(name))

    async def _until_gone(self, lookup: Callable[[], Any]) -> None:
        """Wait (10 s at most) until ``lookup`` finds no actor: a killed actor's name is free
        once Ray has it dead."""
        for _ in range(100):
            await self._sleep(0.1)
            if lookup() is None:
                return

    async def _ensure_engine(self, spec: RunSpec) -> tuple[dict[str, Any], list[str]]:
        """Have every slot's inference actor load the run's model (creating actors when needed).

        Returns the model as the first slot that loaded it says (with its ``key``) and the
        slots that loaded it, in slot order. A slot that fails is left out (logged); when every
        slot fails, the first slot's error is raised."""
        slots = await self._refresh_slots()
        if spec.model.device == "cuda" and not any(s.num_gpus for s in slots.values()):
            raise VsaError(
                "model.device is 'cuda' but the Ray cluster has no GPU: use device: auto or cpu"
            )
        results = await asyncio.gather(
            *(self._ensure_on(slot, spec) for slot in slots.values()), return_exceptions=True
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

    def _who(self, slot: str) -> str:
        return "the inference actor" + ("" if slot == DEFAULT_SLOT else f" {slot}")

    async def _ensure_on(self, slot: Slot, spec: RunSpec) -> dict[str, Any]:
        """Have ``slot``'s inference actor load the run's model; (re)create the actor when
        needed."""
        who = self._who(slot.name)
        for attempt in range(2):
            actor = self.pool.get(slot.name)
            if actor is None:
                await self._kill_named_inference([slot.name])
                # detached, not restarted by Ray: the controller restarts it and reloads the
                # models; not restartable also makes it the last choice of Ray's memory monitor
                actor = self.pool[slot.name] = self.handles.start_inference(slot)
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

    # --- supervision of the inference actors ---------------------------------------------
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
        slots = await self._refresh_slots()
        gone = {s for r in active for s in r.placement.values()} - set(slots)
        for slot in sorted(gone):
            self.pool.pop(slot, None)
            await self._move_streams(active, slot, "its node left the cluster", node_gone=True)
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
                    record.error = f"inference: {failed.reason}"
                    record.event("fatal", reason=failed.reason)
                    await self._stop_sources(record)
                    await self._finish(record, RunState.FAILED)
            if decision.restart:
                runs = [r for r in runs if not r.state.terminal]
                await self._restart_inference(
                    slot, runs, decision.restart.reason, kill=decision.restart.kill
                )

    async def _restart_inference(
        self, slot: str, active: list[RunRecord], reason: str, kill: bool = False
    ) -> None:
        """Restart ``slot``'s inference actor for the runs with streams on it; when it cannot
        be, its streams move to the other slots (a run fails only when none can take them)."""
        started = self._monotonic()
        who = self._who(slot)
        log.error("restarting %s: %s", who, reason)
        old = self.pool.pop(slot, None)
        if kill and old is not None:
            old.kill()
        await self._kill_named_inference([slot])  # the name is free once the old actor is gone
        for record in active:
            try:
                model = await self._ensure_on(self.slots[slot], record.spec)
            except Exception as exc:  # noqa: BLE001
                self.pool.pop(slot, None)
                if await self._move_streams([record], slot, f"{who} could not be restarted: {exc}"):
                    continue
                record.error = f"{who} could not be restarted: {exc}"
                await self._stop_sources(record)
                await self._finish(record, RunState.FAILED)
                continue
            record.engine_key = model.pop("key")
            for sid, where in record.placement.items():
                if where == slot and sid in record.actors:
                    record.actors[sid].set_inference(self.pool[slot], record.engine_key)
        took = round(self._monotonic() - started, 2)
        for record in active:
            if not record.state.terminal and slot in record.placement.values():
                extra = {} if slot == DEFAULT_SLOT else {"inference": slot}
                record.event("inference_restarted", reason=reason, took_s=took, **extra)
                self.book.save(record)

    async def _move_streams(
        self, runs: list[RunRecord], slot: str, reason: str, node_gone: bool = False
    ) -> bool:
        """Move the streams of ``runs`` on ``slot`` to the other slots that load their model;
        False when there is none. ``node_gone``: the slot's node left the cluster, taking its
        source actors with it: they are created again beside their new inference actor
        (continuing their files), otherwise they are handed the new actor."""
        moved_all = True
        for record in runs:
            targets = [s for s in self.slots if s != slot]
            ready = []
            for target in targets:
                try:
                    await self._ensure_on(self.slots[target], record.spec)
                    ready.append(target)
                except Exception as exc:  # noqa: BLE001 - that slot cannot take them either
                    log.warning("%s cannot take streams: %s", self._who(target), exc)
            if not ready:
                moved_all = False
                continue
            moves = rehome(
                {sid: s for sid, s in record.placement.items() if s == slot}, self._load(), ready
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
                    await self._recreate_source(record, sid)
                else:
                    record.actors[sid].set_inference(self.pool[moves[sid]], record.engine_key)
            if moves:
                self.book.save(record)
        return moved_all

    async def _recreate_source(self, record: RunRecord, sid: str) -> None:
        """Replace a source actor (its node is gone) by a new one beside its inference actor;
        it continues the stream's files like a restarted one."""
        record.actors[sid].kill()
        await self._until_gone(lambda: self.handles.get_source(record.id, sid))
        record.actors[sid] = self._start_source(record, sid, resume=True)
        record.event("source_recreated", source=sid)

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
        while not record.state.terminal and not record.stop_requested:
            try:
                if await self._monitor_once(record):
                    return
            except Exception:  # noqa: BLE001 - never let a run's monitor die
                log.exception("run=%s monitor error (continuing)", record.id)
            await self._sleep(POLL_S)

    async def _monitor_once(self, record: RunRecord) -> bool:
        """Poll the run's sources once and take what they say; True when the monitor is done."""
        live = {sid: a for sid, a in record.actors.items() if not record.status(sid).terminal}
        results = await asyncio.gather(*(self._poll(a) for a in live.values()))
        if record.stop_requested or record.state.terminal:
            return True  # stop() owns the final statuses
        for (sid, actor), result in zip(live.items(), results, strict=True):
            if record.actors.get(sid) is not actor:
                continue  # replaced meanwhile (its node left): the new one is polled next
            if isinstance(result, dict):
                self._absorb(record, sid, result)
            elif isinstance(result, ActorGone) and result.died:
                if await self._node_left(record, sid):
                    continue  # created again on another node
                record.source_ended(
                    sid, SourceState.FAILED.value, f"source actor died: {result.error}"
                )
            # not died for good: Ray is restarting it; the next poll sees it again
        state = record.assess()  # sampled, derived, degradation updated
        if state.terminal:
            await self._finish(record, state)
            return True
        if state != record.state:
            record.enter(state)
            self.book.save(record)
        elif self._monotonic() - record.saved_at > SAVE_EVERY_S:
            self.book.save(record)
        return False

    async def _node_left(self, record: RunRecord, sid: str) -> bool:
        """A source actor died for good: when its slot's node left the cluster, its streams
        move to another slot and it is created again there (True)."""
        slot = record.placement.get(sid)
        if slot is None or slot in await self._refresh_slots():
            return False
        self.pool.pop(slot, None)
        await self._move_streams([record], slot, "its node left the cluster", node_gone=True)
        return record.placement.get(sid) != slot

    async def _finish(self, record: RunRecord, state: RunState, report: bool = True) -> None:
        """End the run in ``state``: its report (unless ``report`` is False: its output_dir is
        not to be written), every source terminal, its actors reaped, its model unloaded
        unless another run uses it."""
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
        record.enter(state)
        record.finished_at = finished_at
        # the source actors' last metrics reach Ray's agent on its next report: let them live
        # that long (they are idle), then remove them
        self._spawn(self._reap(list(record.actors.values())))
        record.actors.clear()
        self.book.save(record)
        assert self._submit_lock is not None
        async with self._submit_lock:  # a submit in progress may be about to use this model
            await self._release_engine(record)

    async def _reap(self, actors: list[SourceHandle]) -> None:
        await self._sleep(METRICS_FLUSH_S)
        for actor in actors:
            actor.kill()
