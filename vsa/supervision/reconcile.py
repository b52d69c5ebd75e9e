"""A run's change as a plan: what happens to each source and to the inference engine.

A run keeps a target state (its spec, and whether it is paused); a re-submit, ``vsa source
add`` / ``remove``, ``vsa pause`` / ``resume`` each set a new target, and the controller
reconciles the run toward it (:meth:`vsa.supervision.core.ControllerCore.change`).
:func:`plan_change` is the pure part: the difference between the current spec and the new one.

| what changed | what happens |
|---|---|
| a source is new | it starts (continuing its files when it was in the run before) |
| a source is gone | it stops: its frames in flight written, its sinks closed |
| a source's settings (its own, or the inherited ``reconnect``) | that source restarts, continuing its files |
| ``sinks`` | every source restarts |
| ``model`` or ``batching`` (all but ``stall_timeout_s``) | the inference engine is swapped; untouched sources keep streaming |
| ``degradation``, ``batching.stall_timeout_s`` | applied in place |
| ``output_dir`` | refused: stop the run and submit it again |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vsa.config import RunSpec
from vsa.errors import VsaError
from vsa.inference.engine import engine_key

KEEP, ADD, REMOVE, RESTART = "keep", "add", "remove", "restart"
# run-level fields that apply without touching a source or the engine
IN_PLACE = ("degradation",)


@dataclass(frozen=True)
class SourceChange:
    id: str
    action: str  # keep | add | remove | restart
    changed: tuple[str, ...] = ()  # for a restart: what changed

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "changed": list(self.changed)}


@dataclass(frozen=True)
class Plan:
    run: str | None  # the run's id; None for a run not submitted yet
    name: str
    sources: tuple[SourceChange, ...]
    engine_swap: bool = False
    engine: dict[str, str] | None = None  # {"from": model name, "to": model name}
    run_changes: tuple[str, ...] = field(default=())

    def ids(self, action: str) -> list[str]:
        return [s.id for s in self.sources if s.action == action]

    @property
    def noop(self) -> bool:
        return (
            all(s.action == KEEP for s in self.sources)
            and not self.engine_swap
            and not self.run_changes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "name": self.name,
            "sources": [s.to_dict() for s in self.sources],
            "engine_swap": self.engine_swap,
            "engine": self.engine,
            "run_changes": list(self.run_changes),
            "noop": self.noop,
        }

    def summary(self) -> str:
        """One line for an event and the log."""
        parts = [f"{a} {', '.join(self.ids(a))}" for a in (ADD, REMOVE, RESTART) if self.ids(a)]
        if self.engine_swap and self.engine:
            parts.append(f"engine {self.engine['from']} -> {self.engine['to']}")
        if self.run_changes:
            parts.append(f"in place: {', '.join(self.run_changes)}")
        return "; ".join(parts) or "no changes"


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The top-level keys whose values differ."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def plan_change(
    old: RunSpec | None,
    new: RunSpec,
    run_id: str | None = None,
    old_uris: Mapping[str, str] | None = None,
) -> Plan:
    """The plan that takes a run from ``old`` (None: not running) to ``new``.

    ``old_uris``: the current sources' real URIs where the spec holds masked ones (sealed
    credentials), so that an unchanged URI with a password reads as unchanged. Raises
    ``VsaError`` for a change a running run cannot take (its ``output_dir``)."""
    if old is None:
        return Plan(run_id, new.name, tuple(SourceChange(s.id, ADD) for s in new.sources))
    if old.output_dir != new.output_dir:
        raise VsaError(
            f"output_dir cannot change on a running run ({old.output_dir} -> "
            f"{new.output_dir}): stop run {run_id or old.name} and submit it again"
        )
    uris = dict(old_uris or {})
    before = {s.id: {**s.model_dump(), "uri": uris.get(s.id, s.uri)} for s in old.sources}
    after = {s.id: s.model_dump() for s in new.sources}
    sinks_changed = [s.model_dump() for s in old.sinks] != [s.model_dump() for s in new.sinks]
    changes = []
    for sid, spec in after.items():
        if sid not in before:
            changes.append(SourceChange(sid, ADD))
            continue
        changed = _differs(before[sid], spec) + (["sinks"] if sinks_changed else [])
        changes.append(
            SourceChange(sid, RESTART, tuple(changed)) if changed else SourceChange(sid, KEEP)
        )
    changes += [SourceChange(sid, REMOVE) for sid in before if sid not in after]
    swap = engine_key(old.model, old.batching) != engine_key(new.model, new.batching)
    run_changes = [f for f in IN_PLACE if getattr(old, f) != getattr(new, f)]
    if old.batching.stall_timeout_s != new.batching.stall_timeout_s:
        run_changes.append("batching.stall_timeout_s")
    known = {"name", "output_dir", "sources", "reconnect", "sinks", "model", "batching", *IN_PLACE}
    others = [
        f for f in RunSpec.model_fields if f not in known and getattr(old, f) != getattr(new, f)
    ]
    if others:  # a run-level setting the sources read: every one restarts
        changes = [
            SourceChange(c.id, RESTART, tuple(sorted({*c.changed, *others})))
            if c.action in (KEEP, RESTART)
            else c
            for c in changes
        ]
    engine = {"from": old.model.name, "to": new.model.name} if swap else None
    return Plan(run_id, new.name, tuple(changes), swap, engine, tuple(run_changes))
