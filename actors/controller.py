"""The controller: a detached, named actor that owns runs and supervises the engine.

It is created by the first client that needs it and stays up, idle, waiting for runs. For each
run it starts one source actor per stream and makes sure the shared inference actor has the
run's model loaded; a monitor task per run polls the sources and derives the run's state.

Supervision (the failure policy in docs/failure-policy.md):

- every run is saved to the state directory on disk (``VSA_STATE_DIR/runs``, the truth) and
  to Ray's GCS key-value store (a copy); a controller that Ray restarts (its process died)
  reloads them, re-attaches to the source actors and the inference actor (both detached, so
  they outlive it) and goes on: runs keep their ids and files. A controller that starts on a
  new cluster (after ``vsa drain`` and ``ray stop``, an upgrade, a reboot, Ray killed) resumes
  the runs that were active from the disk, creating their actors again (files continued);
- a supervisor task polls the inference actor: when it is dead it is recreated, the models of
  the active runs are loaded again and the sources get the new handle; when it makes no
  progress for ``batching.stall_timeout_s`` while frames wait, it is killed and recreated;
  when its device cannot fit one frame (repeated out-of-memory), the runs on it fail;
- source actors are restarted by Ray (``max_restarts=-1``); the monitor notices the new
  incarnation and carries the counters over.

This module is a shell: the endpoints below delegate to
:class:`vsa.supervision.core.ControllerCore` (plain asyncio, no Ray, unit tested with fakes),
which reaches the actors through ``actors/handles.py`` (every Ray call the controller makes)
and keeps its runs in ``vsa.supervision.store`` (disk, mirrored to ``actors/store.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from typing import Any

import ray

from actors.handles import RayHandles, call_recover, cluster_paths, this_actor_restarted
from actors.store import GcsRunStore
from vsa import CODE_FINGERPRINT, __version__, settings
from vsa.constants import FRESH_S, HEARTBEAT_S, SNAPSHOT_S
from vsa.control.endpoint import StatusEndpoint, publish
from vsa.control.priority import raise_priority
from vsa.fsutil import UnsafeDirectory
from vsa.supervision.core import ControllerCore
from vsa.supervision.store import DiskRunStore, MirroredRunStore

log = logging.getLogger("vsa.controller")


def _own_state_dir(wait_s: float = 10.0) -> tuple[DiskRunStore | None, str]:
    """The state directory's run store, owned by this controller, and ``""``; ``(None, why)``
    (logged too; ``why`` is shown with every run as the reason it is not durable) when another
    engine on this host owns it: then runs live in this cluster's GCS only and do not
    survive it. A predecessor being replaced may hold it a moment longer: waited for.

    A state directory (or its ``runs/``) that other users can write to is refused, logged as
    an error naming the path and the ``chmod`` that makes it private: they could plant links
    there and make this engine overwrite other files with run records."""
    try:
        disk = DiskRunStore(settings.runs_dir())
        deadline = time.monotonic() + wait_s
        while not disk.lock():
            if time.monotonic() > deadline:
                why = (
                    f"another engine on this host owns {disk.directory} (set VSA_STATE_DIR "
                    "for this cluster)"
                )
                log.warning("%s: runs are kept in this cluster's GCS only", why)
                return None, why
            time.sleep(0.2)
        return disk, ""
    except UnsafeDirectory as exc:
        why = f"the state directory is refused: {exc}"
        log.error("%s; until then runs are kept in this cluster's GCS only", why)
        return None, why
    except Exception as exc:  # noqa: BLE001 - no state directory: runs in the GCS only
        why = f"the state directory cannot be used: {exc}"
        log.warning("%s: runs are kept in this cluster's GCS only", why)
        return None, why


def _log_level() -> str:
    try:
        return settings.log_level()
    except Exception as exc:  # noqa: BLE001 - a bad setting must not stop the controller
        log.error("%s; logging at INFO", exc)
        return "INFO"


@ray.remote(num_cpus=0)
class Controller:
    def __init__(self, fingerprint: str | None = None) -> None:
        """``fingerprint`` overrides the code fingerprint it reports (tests use it to play an old controller)."""
        self._fingerprint = fingerprint or CODE_FINGERPRINT
        logging.basicConfig(
            level=_log_level(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        self._started_at = time.time()
        # Ray starts workers at nice 15; the control plane goes first where it may
        prioritized = raise_priority(0)
        self.restarted = this_actor_restarted()
        self._disk, no_disk = _own_state_dir()
        store: Any = GcsRunStore()
        last_alive = None
        if self._disk is not None:
            last_alive = self._disk.last_beat()
            store = MirroredRunStore(self._disk, store)
        self._core = ControllerCore(
            RayHandles(),
            store,
            restarted=self.restarted,
            last_alive=last_alive,
            state_dir=None if self._disk is None else str(self._disk.directory),
            volatile=None
            if self._disk is not None
            else f"{no_disk}; kept in this cluster's GCS only, lost on ray stop",
        )
        log.info(
            "controller %s (code %s) %s, pid %d, nice %d%s",
            __version__,
            self._fingerprint,
            "restarted by Ray" if self.restarted else "up",
            os.getpid(),
            os.getpriority(os.PRIO_PROCESS, 0),
            ""
            if prioritized
            else " (not allowed to raise its priority; above the data plane still)",
        )
        self._endpoint: StatusEndpoint | None = None
        self._recovering = False
        # recovery runs as this actor's first task, on its event loop
        call_recover()

    async def recover(self) -> dict[str, Any]:
        """Serve the status endpoint, then reload saved runs and resume the active ones
        (called once, right after start)."""
        if not self._recovering:  # once, even if the call is delivered twice
            self._recovering = True
            loop = asyncio.get_running_loop()
            self._serve_status(loop)
            loop.create_task(self._heartbeat())
        return await self._core.recover()

    async def _heartbeat(self) -> None:
        """Mark this controller alive every ``HEARTBEAT_S`` in the state directory: the next
        one (after ``ray stop``, a reboot, a crash) says how long the engine was down."""
        warned = False
        while self._disk is not None:
            try:
                self._disk.beat()
            except OSError as exc:
                if not warned:
                    log.warning("cannot write the heartbeat in %s: %s", self._disk.directory, exc)
                    warned = True
            await asyncio.sleep(HEARTBEAT_S)

    def _serve_status(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer ``vsa status`` over HTTP on 127.0.0.1 from a thread of this process
        (``vsa.control.endpoint``): the event loop is asked first and the last snapshot is
        served when it does not answer within ``FRESH_S``."""
        session, gcs = cluster_paths()
        if session is None:
            log.warning("no Ray session directory: vsa status goes through Ray only")
            return

        def status(run: str | None) -> dict[str, Any]:
            future = asyncio.run_coroutine_threadsafe(self._core.status(run), loop)
            try:
                return future.result(timeout=FRESH_S)
            except concurrent.futures.TimeoutError:  # not the builtin one on Python 3.10
                future.cancel()
                raise TimeoutError from None

        try:
            self._endpoint = StatusEndpoint(status, host=settings.status_host())
            url = self._endpoint.start()
            # <session>/vsa/controller.json, and ~/.vsa/endpoints/<host>_<GCS port>.json for
            # a client whose RAY_TMPDIR is not this cluster's (ray start --temp-dir)
            path, unindexed = publish(
                {
                    "url": url,
                    "token": self._endpoint.token,
                    "pid": os.getpid(),
                    "gcs_address": gcs,
                    "version": __version__,
                    "fingerprint": self._fingerprint,
                },
                session,
            )
        except Exception as exc:  # noqa: BLE001 - status still goes through Ray
            log.warning(
                "the status endpoint could not start (%s): vsa status goes through Ray", exc
            )
            return
        log.info("status endpoint on %s (where and its token: %s)", url, path)
        if unindexed:
            log.warning(
                "%s: a client finds the status endpoint only with this cluster's RAY_TMPDIR",
                unindexed,
            )
        loop.create_task(self._keep_snapshot())

    async def _keep_snapshot(self) -> None:
        """Every run's status, taken every ``SNAPSHOT_S`` for the endpoint to serve when the
        event loop is too busy to answer it at once."""
        assert self._endpoint is not None
        while True:
            try:
                self._endpoint.answers.remember(await self._core.status())
            except Exception:  # noqa: BLE001 - never let the snapshot task die
                log.exception("status snapshot failed (continuing)")
            await asyncio.sleep(SNAPSHOT_S)

    async def version(self) -> dict[str, Any]:
        await self._core.ready()
        return {
            "version": __version__,
            "fingerprint": self._fingerprint,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "active_runs": [r.id for r in self._core.book.active()],
        }

    async def status(self, run: str | None = None) -> dict[str, Any]:
        """Every run (oldest first), or the one with id or name ``run``."""
        return await self._core.status(run)

    async def submit(
        self, run: dict[str, Any], overwrite: bool = False, dry_run: bool = False
    ) -> dict[str, Any]:
        """Start a run, or apply the difference to the active run of that name; ``dry_run``:
        only the plan (see ``ControllerCore.submit`` for when it is refused)."""
        return await self._core.submit(run, overwrite, dry_run=dry_run)

    async def add_source(
        self, run: str, source: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Add a source to an active run; ``dry_run``: only the plan of the change."""
        return await self._core.add_source(run, source, dry_run=dry_run)

    async def remove_source(
        self, run: str, source_id: str, timeout_s: float = 60.0, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove a source from an active run; ``timeout_s`` bounds the wait for its frames."""
        return await self._core.remove_source(run, source_id, timeout_s=timeout_s, dry_run=dry_run)

    async def drain(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Refuse new runs and stop every active run's sources for a restart; the runs resume
        when the engine starts again (see ``ControllerCore.drain``)."""
        return await self._core.drain(timeout_s)

    async def resume_drained(self) -> dict[str, Any]:
        """End a drain on this engine: new runs are accepted and the drained runs resume (see
        ``ControllerCore.resume_drained``)."""
        return await self._core.resume_drained()

    async def stop(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Stop a run; ``timeout_s`` bounds the wait for results in flight."""
        return await self._core.stop(run, timeout_s)

    async def pause(self, run: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Pause an active run until ``resume``; ``timeout_s`` bounds the wait for results."""
        return await self._core.pause(run, timeout_s=timeout_s)

    async def resume(self, run: str) -> dict[str, Any]:
        """Resume a paused run: same id, its files continued."""
        return await self._core.resume(run)
