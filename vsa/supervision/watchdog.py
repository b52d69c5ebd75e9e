"""The supervisor's decisions about the shared inference actor (docs/failure-policy.md).

Every ``SUPERVISE_S`` the controller asks the inference actor for its ``health`` (per engine:
frames ``waiting`` and ``running``, ``since_progress_s``, a ``fatal`` reason) and hands the
answer, or what stood in for one (:class:`NoActor`, :class:`ActorDied`, :class:`NoAnswer`),
with the runs it watches to :func:`check_inference`:

| what the controller sees | decision |
|---|---|
| no inference actor | restart |
| the actor died | restart |
| no answer within ``STATUS_TIMEOUT_S`` | restart |
| an engine has a fatal error (its device cannot fit one frame) | its runs fail |
| frames wait and no batch finished for longer than the smallest ``batching.stall_timeout_s`` of the runs on that engine | kill and restart |
| an engine busy and progressing, or idle | nothing |
| a run's engine is missing from the health | kill and restart |

Engines are taken in the order of the health dict: runs on fatal engines met before a stalled
one fail, then the actor is restarted (engines after it are looked at next time). Nothing
here knows Ray; the controller carries the decision out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from vsa.constants import STATUS_TIMEOUT_S


@dataclass(frozen=True)
class NoActor:
    """The controller holds no inference actor."""


@dataclass(frozen=True)
class ActorDied:
    """The health call failed because the actor died; ``error``: the exception's type name."""

    error: str


@dataclass(frozen=True)
class NoAnswer:
    """The health call did not return within ``timeout_s``."""

    timeout_s: float = STATUS_TIMEOUT_S


Health = Mapping[str, Mapping[str, Any]] | NoActor | ActorDied | NoAnswer


class WatchedRun(NamedTuple):
    """What the watchdog needs of an active run."""

    id: str
    engine_key: str | None
    stall_timeout_s: float  # batching.stall_timeout_s


@dataclass(frozen=True)
class Restart:
    """Restart the inference actor (killing it first when ``kill``) and reload the models."""

    reason: str
    kill: bool = False


@dataclass(frozen=True)
class FailRuns:
    """The engine ``engine_key`` failed for good: its runs ``run_ids`` fail with ``reason``."""

    engine_key: str
    run_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do, in this order: fail the runs of ``fail``, then ``restart`` if set."""

    fail: tuple[FailRuns, ...] = ()
    restart: Restart | None = None

    @property
    def ok(self) -> bool:
        return not self.fail and self.restart is None


OK = Decision()


def check_inference(health: Health, runs: Sequence[WatchedRun]) -> Decision:
    """The decision about the inference actor, given its ``health`` and the watched ``runs``."""
    if isinstance(health, NoActor):
        return Decision(restart=Restart("no inference actor"))
    if isinstance(health, ActorDied):
        return Decision(restart=Restart(f"inference actor died ({health.error})"))
    if isinstance(health, NoAnswer):
        return Decision(
            restart=Restart(f"inference actor did not answer within {health.timeout_s:.0f} s")
        )
    fail: list[FailRuns] = []
    for key, engine in health.items():
        on_engine = [r for r in runs if r.engine_key == key]
        if not on_engine:
            continue
        if engine["fatal"]:
            fail.append(FailRuns(key, tuple(r.id for r in on_engine), engine["fatal"]))
            continue
        limit = min(r.stall_timeout_s for r in on_engine)
        busy = engine["waiting"] or engine["running"]
        if busy and engine["since_progress_s"] > limit:
            reason = (
                f"pipeline blocked: no batch finished for {engine['since_progress_s']:.0f} s "
                f"with {engine['waiting'] + engine['running']} frames waiting"
            )
            return Decision(tuple(fail), Restart(reason, kill=True))
    missing = {r.engine_key for r in runs} - set(health)
    if missing:
        return Decision(tuple(fail), Restart("the inference actor lost a model", kill=True))
    return Decision(tuple(fail))


def spill_warning(seen: int | None, used: int, spilled: int, every_s: float) -> str | None:
    """The warning when the object store spilled to disk since the last check (``seen``: the
    bytes spilled then, None at the first check), else None. ``used``: bytes in memory."""
    if seen is None or spilled <= seen:
        return None
    return (
        f"object store spilling to disk: {(spilled - seen) >> 20} MiB in "
        f"the last {every_s:.0f} s ({used >> 20} MiB in memory); the engine holds "
        "at most max_in_flight frames per source, so another workload fills the store"
    )
