"""The controller: a detached, named actor that owns runs.

It is created by the first client that needs it and stays up, idle, waiting for runs. For each
run it starts one source actor per stream and makes sure the shared inference
actor has the run's model loaded; a monitor task per run polls the sources and
derives the run's state. State lives in memory for now (durable recovery is the
supervision issue's work).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from actors import INFERENCE_NAME, NAMESPACE, source_actor_name
from actors.inference import InferenceActor
from actors.source import SourceActor
from vsa import CODE_FINGERPRINT, __version__
from vsa.config import RunSpec
from vsa.errors import ConfigError, RunNotFound, VsaError
from vsa.runstate import RunState, derive_run_state, run_reason
from vsa.settings import inference_gpus
from vsa.uri import mask_uri

log = logging.getLogger("vsa.controller")
POLL_S = 0.5
STATUS_TIMEOUT_S = 10.0
ENGINE_TIMEOUT_S = 120.0
KEEP_FINISHED = 50


@dataclass
class _Run:
    id: str
    spec: RunSpec
    created_at: float = field(default_factory=time.time)
    state: RunState = RunState.WAITING
    finished_at: float | None = None
    error: str | None = None
    model: dict[str, Any] | None = None
    engine_key: str | None = None
    actors: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_requested: bool = False
    monitor: asyncio.Task | None = None
    transitions: list[dict[str, Any]] = field(default_factory=list)

    def enter(self, state: RunState) -> None:
        """Move to ``state``, log it with the reason, and keep the transition (bounded)."""
        reason = None if state.terminal else run_reason(self.sources.values())
        log.info(
            "run=%s %s -> %s%s",
            self.id,
            self.state.value,
            state.value,
            f" ({reason})" if reason else "",
        )
        self.state = state
        self.transitions.append(
            {"t": round(time.time(), 3), "state": state.value, "reason": reason}
        )
        del self.transitions[:-200]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.spec.name,
            "state": self.state.value,
            "reason": None if self.state.terminal else run_reason(self.sources.values()),
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "output_dir": self.spec.output_dir,
            "model": self.model,
            "sources": [self.sources[s.id] for s in self.spec.sources],
            "transitions": list(self.transitions),
        }


def _initial_source_status(source_id: str, uri: str) -> dict[str, Any]:
    return {
        "id": source_id,
        "uri": mask_uri(uri),
        "state": "CONNECTING",
        "code": None,
        "error": None,
        "attempt": 0,
        "next_retry_at": None,
        "reconnects": 0,
        "last_frame_age_s": None,
        "frames_decoded": 0,
        "frames_inferred": 0,
        "frames_emitted": 0,
        "frames_dropped": 0,
        "drops": {},
        "in_flight": 0,
        "fps": 0.0,
        "transitions": [],
    }


@ray.remote(num_cpus=0)
class Controller:
    def __init__(self, fingerprint: str | None = None) -> None:
        """``fingerprint`` overrides the code fingerprint it reports (tests use it to play an old controller)."""
        self._fingerprint = fingerprint or CODE_FINGERPRINT
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self._runs: dict[str, _Run] = {}
        self._inference: Any = None
        self._inference_gpus = 0
        self._started_at = time.time()
        self._submit_lock = asyncio.Lock()
        log.info("controller %s (code %s) up, pid %d", __version__, self._fingerprint, os.getpid())

    # --- queries -------------------------------------------------------------------------
    async def version(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "fingerprint": self._fingerprint,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "active_runs": [r.id for r in self._runs.values() if not r.state.terminal],
        }

    async def status(self, run: str | None = None) -> dict[str, Any]:
        runs = [self._find(run)] if run else sorted(self._runs.values(), key=lambda r: r.created_at)
        return {"runs": [r.summary() for r in runs]}

    # --- commands ------------------------------------------------------------------------
    async def submit(self, run: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = RunSpec.model_validate(run)
        except Exception as exc:  # the client validated already; this guards other callers
            raise ConfigError([str(exc)]) from None
        async with self._submit_lock:
            for other in self._runs.values():
                if other.spec.name == spec.name and not other.state.terminal:
                    raise VsaError(
                        f"a run named '{spec.name}' is already {other.state.value} as {other.id}: "
                        f"stop it first (vsa stop {other.id}) or choose another name"
                    )
            run_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
            record = _Run(run_id, spec)
            record.transitions.append({"t": round(time.time(), 3), "state": "WAITING"})
            record.sources = {s.id: _initial_source_status(s.id, s.uri) for s in spec.sources}
            record.model = await self._ensure_engine(spec)
            key = record.engine_key = record.model.pop("key")
            for source in spec.sources:
                record.actors[source.id] = SourceActor.options(
                    name=source_actor_name(run_id, source.id), namespace=NAMESPACE
                ).remote(run_id, spec.model_dump(), source.id, self._inference, key)
            self._runs[run_id] = record
            record.monitor = asyncio.get_running_loop().create_task(self._monitor(record))
            self._forget_old_runs()
        log.info(
            "run=%s submitted: %d sources, model %s on %s",
            run_id,
            len(spec.sources),
            record.model["model"],
            record.model["device"],
        )
        return {"run_id": run_id, "model": record.model}

    async def stop(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop a run: sources stop decoding, write what is in flight and close their files."""
        record = self._find(run)
        if record.state.terminal:
            return record.summary()
        record.stop_requested = True
        calls = {sid: actor.stop.remote(timeout_s) for sid, actor in record.actors.items()}
        for sid, ref in calls.items():
            try:
                record.sources[sid] = await asyncio.wait_for(ref, timeout_s + 10)
            except Exception as exc:  # noqa: BLE001 - a dead source is stopped too
                record.sources[sid]["state"] = "STOPPED"
                record.sources[sid]["error"] = f"stop failed: {type(exc).__name__}"
        await self._finish(record, RunState.STOPPED)
        return record.summary()

    # --- internals -----------------------------------------------------------------------
    def _find(self, run: str) -> _Run:
        if run in self._runs:
            return self._runs[run]
        named = [r for r in self._runs.values() if r.spec.name == run]
        if named:
            return max(named, key=lambda r: r.created_at)
        raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")

    async def _ensure_engine(self, spec: RunSpec) -> dict[str, Any]:
        """Have the inference actor load the run's model; (re)create the actor when needed."""
        for attempt in range(2):
            if self._inference is None:
                self._inference_gpus = inference_gpus(ray.cluster_resources().get("GPU", 0))
                self._inference = InferenceActor.options(
                    name=INFERENCE_NAME,
                    namespace=NAMESPACE,
                    num_gpus=self._inference_gpus,
                    max_concurrency=1000,
                ).remote()
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

    async def _poll(self, actor: Any) -> dict[str, Any] | BaseException | None:
        """A source's status; None when it did not answer in time (busy, still starting)."""
        try:
            return await asyncio.wait_for(actor.status.remote(), STATUS_TIMEOUT_S)
        except asyncio.TimeoutError:
            return None
        except ray.exceptions.RayActorError as exc:
            return exc

    async def _monitor(self, record: _Run) -> None:
        ended = ("FINISHED", "FAILED", "STOPPED")
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
                    record.sources[sid] = result
                elif isinstance(result, BaseException):
                    record.sources[sid]["state"] = "FAILED"
                    record.sources[sid]["error"] = f"source actor died: {type(result).__name__}"
            state = derive_run_state([s["state"] for s in record.sources.values()])
            if state.terminal:
                await self._finish(record, state)
                return
            if state != record.state:
                record.enter(state)
            await asyncio.sleep(POLL_S)

    async def _finish(self, record: _Run, state: RunState) -> None:
        if record.state.terminal:
            return
        if state is RunState.FAILED:
            errors = [f"{s['id']}: {s['error']}" for s in record.sources.values() if s.get("error")]
            record.error = "; ".join(errors) or "every source failed"
        record.enter(state)
        record.finished_at = time.time()
        for actor in record.actors.values():
            ray.kill(actor)
        record.actors.clear()
        async with self._submit_lock:  # a submit in progress may be about to use this model
            in_use = any(
                r.engine_key == record.engine_key
                for r in self._runs.values()
                if not r.state.terminal
            )
            if record.engine_key and not in_use and self._inference is not None:
                try:
                    await asyncio.wait_for(
                        self._inference.release_engine.remote(record.engine_key), 30
                    )
                except Exception as exc:  # noqa: BLE001 - a model left loaded is not worth failing a run
                    log.warning("run=%s could not unload its model: %s", record.id, exc)

    def _forget_old_runs(self) -> None:
        done = sorted(
            (r for r in self._runs.values() if r.state.terminal), key=lambda r: r.created_at
        )
        for r in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self._runs[r.id]
