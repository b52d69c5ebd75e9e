"""The controller's runs: one :class:`RunRecord` per run, kept in a :class:`RunBook`.

A record holds what the controller knows of a run: its state and transitions, its events
(recoveries, failures), each source's last polled status with the counters of the source's
earlier incarnations carried over, the degradation tracker, the series for ``report.png``
and the source URIs sealed for the source actors. ``to_json``/``from_json`` are the durable
form (format ``KV_VERSION``); a :class:`RunBook` saves records to a
:class:`vsa.supervision.store.RunStore` and reads them back after a controller restart.

Nothing here knows Ray: the controller keeps the source actors' handles and the monitor task
on the record (``actors``, ``monitor``) as opaque values that are never serialized. The
clocks are injected (``clock``: wall time, ``monotonic``: for durations).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vsa.config import RunSpec
from vsa.constants import KEEP_FINISHED
from vsa.degradation import DegradationTracker
from vsa.errors import RunNotFound
from vsa.runstate import RunState, carry_over, derive_run_state, run_reason
from vsa.schema import DropCause, SourceState, SourceStatus
from vsa.secrets import needs_sealing, seal
from vsa.stream.ledger import FrameLedger
from vsa.supervision.store import RunStore
from vsa.uri import mask_source_uri, mask_uri

# the controller's logger: the lines a record logs read as they did when it lived there
log = logging.getLogger("vsa.controller")
KV_VERSION = 1
UNSAVED = "unsaved"  # the kind of the warning of a run whose last save failed


def seal_sources(spec: RunSpec) -> tuple[RunSpec, dict[str, str]]:
    """The spec with masked URIs (what is stored, shown and passed around) and, per source that
    has credentials, its URI sealed for the source actor alone."""
    sealed: dict[str, str] = {}
    sources = []
    for source in spec.sources:
        if needs_sealing(source.uri):
            sealed[source.id] = seal(source.uri)
            source = source.model_copy(update={"uri": mask_source_uri(source.uri)})
        sources.append(source)
    return spec.model_copy(update={"sources": sources}), sealed


def initial_source_status(source_id: str, uri: str) -> dict[str, Any]:
    """A source's status before its actor first answers."""
    return {
        "id": source_id,
        "uri": mask_source_uri(uri),
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
        "incarnation": None,
        "restarts": 0,
    }


def merge(
    base: Mapping[str, Any] | None,
    status: Mapping[str, Any],
    polled: SourceStatus | None = None,
) -> dict[str, Any]:
    """A source's status with the counters of its earlier incarnations added
    (``FrameLedger.merge``). ``base``: those counters (``FrameLedger.fields()``'s keys and
    ``restarts``, as saved); ``polled``: ``status`` already read (``SourceStatus.from_dict``).
    The status keeps its own keys in their order, and its ``in_flight``."""
    if not base:
        return {**status, "restarts": 0}
    now = FrameLedger.of(SourceStatus.from_dict(status) if polled is None else polled)
    total = now.merge(FrameLedger.from_fields(base))
    sinks = status.get("sinks")
    if isinstance(sinks, Mapping) and base.get("sinks"):
        sinks = merge_sinks(base["sinks"], sinks)
    return {
        **status,
        **({} if sinks is None else {"sinks": sinks}),
        "frames_decoded": total.decoded,
        "frames_inferred": total.inferred,
        "frames_emitted": total.emitted,
        "drops": dict(total.drops),
        "frames_dropped": total.dropped,
        "restarts": base.get("restarts", 0),
    }


def merge_sinks(
    earlier: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per-sink counts of earlier incarnations added to the current one's (a sink of an
    earlier one that the current one lacks is kept as it was)."""
    out: dict[str, dict[str, Any]] = {k: dict(v) for k, v in earlier.items()}
    for name, counts in now.items():
        before = out.get(name) or {}
        lost = dict(before.get("lost") or {})
        for cause, n in (counts.get("lost") or {}).items():
            lost[cause] = lost.get(cause, 0) + n
        out[name] = {
            **counts,
            "written": int(before.get("written") or 0) + int(counts.get("written") or 0),
            "lost": lost,
        }
    return out


@dataclass
class RunRecord:
    id: str
    spec: RunSpec
    created_at: float = field(default_factory=time.time)
    state: RunState = RunState.WAITING
    finished_at: float | None = None
    error: str | None = None
    model: dict[str, Any] | None = None
    engine_key: str | None = None
    # source id -> its actor handle: owned by the controller, opaque here, never serialized
    actors: dict[str, Any] = field(default_factory=dict)
    # source id -> the slot (inference actor) serving it (vsa.supervision.pool)
    placement: dict[str, str] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # counters of earlier incarnations of each source actor (a restarted actor counts from 0)
    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_requested: bool = False
    # its sources were stopped by a drain: nothing watches it until the engine starts again
    drained: bool = False
    monitor: Any = None  # the controller's monitor task: opaque here, never serialized
    transitions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # recoveries and failures
    # why the run is DEGRADED for its performance (an event when the conditions change)
    degradation: DegradationTracker = field(init=False)
    warnings: dict[str, tuple[float, str]] = field(default_factory=dict)  # kind -> (until, text)
    saved_at: float = 0.0  # monotonic
    # why its last save failed (it would not resume after an engine restart); None once saved
    unsaved: str | None = None
    # its target says paused: its sources are stopped, its engine share released
    paused: bool = False
    # why it waits for its model to fit beside the loaded ones (PENDING); None otherwise
    pending: str | None = None
    pending_since: float = 0.0
    # sources removed from the run by a change: their last statuses and earlier counters
    # (one added again continues from them)
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_base: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # not saved: a change is being applied (the monitor does not assess the run meanwhile),
    # the slots that loaded its model, and the lock that orders the run's changes
    changing: bool = False
    ready_slots: list[str] = field(default_factory=list)
    _lock: Any = field(default=None, repr=False, compare=False)
    series: dict[str, list[list[float]]] = field(default_factory=dict)  # for report.png
    # per source with analytics, its cumulative counts over time ({"line:door:in": [[t, n],
    # ...], "zone:lobby:entered": ...}), for the report; like ``series``, not saved
    counts: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    sampled_at: float = 0.0
    report: list[str] = field(default_factory=list)  # the report files, once written
    # source id -> its URI with credentials, sealed (vsa.secrets); the spec holds masked URIs
    sealed: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = field(default=time.time, kw_only=True, repr=False, compare=False)
    monotonic: Callable[[], float] = field(
        default=time.monotonic, kw_only=True, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.degradation = DegradationTracker(self.spec.degradation, clock=self.monotonic)

    @classmethod
    def submitted(
        cls,
        run_id: str,
        spec: RunSpec,
        sealed: dict[str, str],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> RunRecord:
        """A new run: WAITING, every source CONNECTING (``spec`` holds masked URIs)."""
        record = cls(run_id, spec, clock(), sealed=sealed, clock=clock, monotonic=monotonic)
        record.transitions.append({"t": round(clock(), 3), "state": "WAITING"})
        record.sources = {s.id: initial_source_status(s.id, s.uri) for s in spec.sources}
        return record

    @property
    def idle(self) -> bool:
        """Paused or PENDING: none of its sources runs and it holds no engine."""
        return self.paused or self.pending is not None

    @property
    def lock(self) -> Any:
        """The lock that orders the run's changes (pause, resume, a new target, stop)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def wait_pending(self, reason: str) -> None:
        """Wait PENDING for its model to fit, with why (an event)."""
        self.pending = reason
        self.pending_since = self.clock()
        if self.state is not RunState.PENDING:
            self.enter(RunState.PENDING)
        self.event("pending", reason=reason)

    # --- what the monitor feeds in -------------------------------------------------------
    def absorb(self, sid: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Take a polled status. A new incarnation (Ray restarted the actor) carries the
        counters over: a ``source_restarted`` event, whose details are returned (the record
        changed in a way worth saving at once); None otherwise."""
        polled = SourceStatus.from_dict(status)
        previous = self.status(sid) if sid in self.sources else None
        old = None if previous is None else previous.incarnation
        new = polled.incarnation
        restarted = None
        if previous is not None and old is not None and new is not None and old != new:
            base = self.base.setdefault(sid, {})
            counts = FrameLedger.of(previous)
            emitted, decoded, lost = carry_over(previous, polled.resumed)
            if lost > 0:
                counts.drop(DropCause.SOURCE_LOST, lost)
            base.update(
                frames_decoded=decoded,
                frames_inferred=emitted,
                frames_emitted=emitted,
                drops=dict(counts.drops),
                restarts=previous.restarts + 1,
            )
            if self.sources[sid].get("sinks"):  # per-sink counts, earlier ones' included
                base["sinks"] = self.sources[sid]["sinks"]
            restarted = {"source": sid, "lost": max(0, lost)}
            self.event("source_restarted", **restarted)
        self.sources[sid] = merge(self.base.get(sid), status, polled)
        return restarted

    def status(self, sid: str) -> SourceStatus:
        """Source ``sid``'s status, typed (``sources`` keeps the dicts as polled and saved)."""
        return SourceStatus.from_dict(self.sources[sid])

    def statuses(self) -> dict[str, SourceStatus]:
        """Every source's status, typed, by id."""
        return {sid: SourceStatus.from_dict(s) for sid, s in self.sources.items()}

    def source_ended(self, sid: str, state: str, error: str) -> None:
        """A source whose actor cannot tell: ``FAILED`` (it died) or ``STOPPED`` (its stop
        call failed), with why."""
        self.sources[sid]["state"] = state
        self.sources[sid]["error"] = error

    def end_sources(self, state: RunState) -> None:
        """The run ends in ``state``: each source not in a terminal state gets one (FAILED for
        a failed run, else STOPPED: a drained run stopped, a run failed before its sources
        ran), and no source shows its last rate as live (fps 0)."""
        ended = SourceState.FAILED if state is RunState.FAILED else SourceState.STOPPED
        for sid, status in self.sources.items():
            if not self.status(sid).terminal:
                transition = {"t": round(self.clock(), 3), "state": ended.value}
                self.sources[sid] = status = {
                    **status,
                    "state": ended.value,
                    "transitions": [*status.get("transitions", []), transition],
                }
            status["fps"] = 0.0

    def assess(self) -> RunState:
        """After a poll: sample the series, derive the run's state from its sources and, unless
        that state is terminal, update the degradation (an event when its set of conditions
        changes); UP reads DEGRADED while degraded. The caller enters the state or finishes."""
        self.sample()
        statuses = self.statuses()
        state = derive_run_state([s.state.value for s in statuses.values()])
        if state.terminal:
            return state
        change = self.degradation.update(statuses)
        if change:  # the set of conditions changed, not merely their numbers
            self.event("degraded" if change.reason else "degradation_ended", **change.as_event())
        if self.degradation.reason and state is RunState.UP:
            state = RunState.DEGRADED
        return state

    def sample(self) -> None:
        """One row per source per second: [t, fps, p50 ms, p99 ms] in ``series``, and for a
        source with analytics one [t, n] row per cumulative count in ``counts`` (bounded:
        halved when full)."""
        now = self.clock()
        if now - self.sampled_at < 1.0:
            return
        self.sampled_at = now
        t = round(now, 3)
        for sid, s in self.statuses().items():
            lat = s.latency_ms
            _append(self.series.setdefault(sid, []), [t, s.fps, lat.p50, lat.p99])
            if s.analytics is None:
                continue
            named = self.counts.setdefault(sid, {})
            for name, n in analytics_counts(s).items():
                _append(named.setdefault(name, []), [t, n])

    def warn(self, kind: str, text: str, hold_s: float) -> None:
        """Show ``text`` in the status for ``hold_s`` from now; an event unless it is shown
        already."""
        if kind not in self.warnings or self.warnings[kind][0] < self.clock():
            self.event("warning", reason=text)
        self.warnings[kind] = (self.clock() + hold_s, text)

    def save_failed(self, reason: str, what: str = "save_failed") -> None:
        """Its last save failed (``what``: or the store does not outlive the engine,
        ``not_durable``): an event (when it was durable until now) and a warning in the status
        until a save succeeds (:meth:`saved`)."""
        if self.unsaved is None:
            self.event(what, reason=reason)
        self.unsaved = reason
        why_not = reason if what == "not_durable" else f"the run could not be saved ({reason})"
        text = f"not durable: {why_not}; it would not resume after an engine restart"
        self.warnings[UNSAVED] = (math.inf, text)

    def saved(self) -> None:
        """A save succeeded: durable again (an event when it was not)."""
        if self.unsaved is not None:
            self.event("saved", note="durable again")
        self.unsaved = None
        self.warnings.pop(UNSAVED, None)

    # --- state, events -------------------------------------------------------------------
    def enter(self, state: RunState) -> None:
        """Move to ``state``, log it with the reason, and keep the transition (bounded)."""
        reason = None if state.terminal else self.reason()
        log.info(
            "run=%s %s -> %s%s",
            self.id,
            self.state.value,
            state.value,
            f" ({reason})" if reason else "",
        )
        self.state = state
        self.transitions.append(
            {"t": round(self.clock(), 3), "state": state.value, "reason": reason}
        )
        del self.transitions[:-200]

    def event(self, what: str, **details: Any) -> None:
        entry = {"t": round(self.clock(), 3), "event": what, **details}
        self.events.append(entry)
        del self.events[:-100]
        log.warning("run=%s %s %s", self.id, what, json.dumps(details) if details else "")

    def reason(self) -> str | None:
        if self.pending is not None:
            return self.pending
        if self.paused:
            return "paused: `vsa resume` continues it"
        statuses = self.statuses().values()
        parts = [p for p in (run_reason(statuses), self.degradation.reason) if p]
        return "; ".join(parts) or None

    def sources_error(self) -> str:
        """The error of a run whose sources all failed: theirs, or a generic one."""
        errors = [f"{s.id}: {s.error}" for s in self.statuses().values() if s.error]
        return "; ".join(errors) or "every source failed"

    # --- views ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.spec.name,
            "state": self.state.value,
            "reason": None if self.state.terminal else self.reason(),
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "output_dir": self.spec.output_dir,
            "model": self.model,
            "sources": [self._source(s.id) for s in self.spec.sources],
            "removed": list(self.removed.values()),
            "transitions": list(self.transitions),
            "events": list(self.events),
            "warnings": [text for until, text in self.warnings.values() if until > self.clock()],
            "report": list(self.report),
        }

    def _source(self, sid: str) -> dict[str, Any]:
        slot = self.placement.get(sid)
        return self.sources[sid] if slot is None else {**self.sources[sid], "inference": slot}

    def final_summary(self, state: RunState, finished_at: float) -> dict[str, Any]:
        """The summary as it will read once the run is in ``state`` (for the report, which is
        written before the run reads as ended)."""
        summary = self.summary()
        summary.update(state=state.value, finished_at=finished_at, error=self.error)
        summary["transitions"].append({"t": round(finished_at, 3), "state": state.value})
        return summary

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": KV_VERSION,
                "id": self.id,
                "spec": self.spec.model_dump(),
                "created_at": self.created_at,
                "state": self.state.value,
                "finished_at": self.finished_at,
                "error": self.error,
                "model": self.model,
                "engine_key": self.engine_key,
                "placement": self.placement,
                "sources": self.sources,
                "base": self.base,
                "stop_requested": self.stop_requested,
                "paused": self.paused,
                "pending": self.pending,
                "pending_since": self.pending_since,
                "removed": self.removed,
                "removed_base": self.removed_base,
                "sealed": self.sealed,
                "transitions": self.transitions,
                "events": self.events,
            }
        )

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> RunRecord:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"not a run record (a JSON {type(d).__name__}, not an object)")
        if d.get("v") != KV_VERSION:
            raise ValueError(f"saved run format {d.get('v')} (this controller reads {KV_VERSION})")
        record = cls(
            d["id"],
            RunSpec.model_validate(d["spec"]),
            d["created_at"],
            clock=clock,
            monotonic=monotonic,
        )
        record.state = RunState(d["state"])
        record.finished_at, record.error = d["finished_at"], d["error"]
        record.model, record.engine_key = d["model"], d["engine_key"]
        record.sources, record.base = d["sources"], d.get("base", {})
        record.placement = d.get("placement", {})  # saved before slots: placed again
        record.stop_requested = d.get("stop_requested", False)
        record.sealed = d.get("sealed", {})
        record.paused, record.pending = d.get("paused", False), d.get("pending")
        record.pending_since = d.get("pending_since", 0.0)
        record.removed, record.removed_base = d.get("removed", {}), d.get("removed_base", {})
        if "sealed" not in d:  # saved before credentials were sealed: seal them now
            record.spec, record.sealed = seal_sources(record.spec)
        record.transitions, record.events = d["transitions"], d.get("events", [])
        return record


def analytics_counts(status: SourceStatus) -> dict[str, int]:
    """A source's cumulative analytics counts by name: ``line:<id>:in``, ``line:<id>:out``,
    ``zone:<id>:entered``, ``zone:<id>:left`` (ids never hold a colon); none without
    analytics."""
    analytics = status.analytics
    if analytics is None:
        return {}
    out: dict[str, int] = {}
    for line_id, line in analytics.lines.items():
        out[f"line:{line_id}:in"] = line.in_
        out[f"line:{line_id}:out"] = line.out
    for zone_id, zone in analytics.zones.items():
        out[f"zone:{zone_id}:entered"] = zone.entered
        out[f"zone:{zone_id}:left"] = zone.left
    return out


def _append(rows: list[list[Any]], row: list[Any], limit: int = 4000) -> None:
    """Add ``row``; past ``limit`` rows, every other one goes (the series keeps its span)."""
    rows.append(row)
    if len(rows) > limit:
        del rows[::2]


def why(exc: BaseException) -> str:
    """One line saying why a record could not be read or written."""
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}" if exc.args else "a key is missing"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc})"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return mask_uri(text if len(text) <= 400 else text[:397] + "...")


class RunBook:
    """The controller's runs by id (in the order they were added or loaded), each saved to a
    :class:`RunStore` under its id."""

    def __init__(
        self,
        store: RunStore,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        volatile: str | None = None,
    ) -> None:
        self.store = store
        # why ``store`` does not outlive the engine (no state directory), else None: every
        # record saved is then not durable
        self.volatile = volatile
        self.runs: dict[str, RunRecord] = {}
        # the saved records :meth:`load` could not read: {"record": run id (None: the store
        # itself), "reason": why}, for the status
        self.problems: list[dict[str, str | None]] = []
        self._clock = clock
        self._monotonic = monotonic

    def __len__(self) -> int:
        return len(self.runs)

    def load(self) -> list[RunRecord]:
        """Read every saved record into the book and return them. A record this version cannot
        read is skipped, logged and kept in ``problems`` with why (shown by ``vsa list`` and
        ``vsa status``); an unreadable store reads as empty (logged, a problem too)."""
        self.problems = []
        try:
            ids = self.store.list()
        except Exception as exc:  # noqa: BLE001 - no durable state: start empty
            log.warning("cannot read saved runs: %s", exc)
            self.problems.append({"record": None, "reason": f"cannot read saved runs: {why(exc)}"})
            return []
        loaded = []
        for run_id in ids:
            try:
                text = self.store.get(run_id)
                if text is None:
                    raise LookupError("listed by the store, but gone when it was read")
                record = RunRecord.from_json(text, clock=self._clock, monotonic=self._monotonic)
                if record.id != run_id:
                    raise ValueError(f"it holds run {record.id!r}, not {run_id!r}")
            except Exception as exc:  # noqa: BLE001 - skip what this version cannot read
                log.warning("skipping saved run %s: %s", run_id, why(exc))
                self.problems.append({"record": run_id, "reason": why(exc)})
                continue
            self.runs[record.id] = record
            loaded.append(record)
        return loaded

    def add(self, record: RunRecord) -> None:
        self.runs[record.id] = record

    def put(self, record: RunRecord) -> None:
        """Save ``record`` or raise why it could not be (a submit refuses the run then)."""
        record.saved_at = record.monotonic()
        self.store.put(record.id, record.to_json())
        if self.volatile is None:
            record.saved()
        else:
            record.save_failed(self.volatile, "not_durable")

    def save(self, record: RunRecord) -> bool:
        """Save ``record`` (its ``saved_at`` is set first); False, logged, when it could not be
        saved: the run goes on, but it is not durable: a ``save_failed`` event and a warning in
        its status until a later save succeeds."""
        try:
            self.put(record)
        except Exception as exc:  # noqa: BLE001
            log.warning("run=%s could not be saved: %s", record.id, why(exc))
            record.save_failed(why(exc))
            return False
        return True

    def find(self, run: str) -> RunRecord:
        """The run with id ``run``, else the latest one named ``run``."""
        if run in self.runs:
            return self.runs[run]
        named = [r for r in self.runs.values() if r.spec.name == run]
        if named:
            return max(named, key=lambda r: r.created_at)
        raise RunNotFound(f"no run with id or name '{run}' (see `vsa list`)")

    def ordered(self) -> list[RunRecord]:
        """Every run, oldest first."""
        return sorted(self.runs.values(), key=lambda r: r.created_at)

    def active(self) -> list[RunRecord]:
        """The runs that have not ended."""
        return [r for r in self.runs.values() if not r.state.terminal]

    def supervised(self) -> list[RunRecord]:
        """The runs the supervisor watches: not ended, not being stopped, not drained, not
        paused or PENDING."""
        return [
            r
            for r in self.runs.values()
            if not r.state.terminal and not r.stop_requested and not r.drained and not r.idle
        ]

    def engine_in_use(self, engine_key: str | None) -> bool:
        """Whether a run that has not ended, and is not paused or PENDING, uses the engine
        ``engine_key``."""
        return any(
            r.engine_key == engine_key
            for r in self.runs.values()
            if not r.state.terminal and not r.idle
        )

    def recently_finished(self, within_s: float) -> list[RunRecord]:
        """The ended runs that finished less than ``within_s`` ago."""
        now = self._clock()
        return [
            r
            for r in self.runs.values()
            if r.state.terminal and now - (r.finished_at or 0) < within_s
        ]

    def forget_old(self, keep: int = KEEP_FINISHED) -> list[str]:
        """Forget all but the ``keep`` newest ended runs (also from the store); their ids."""
        done = sorted(
            (r for r in self.runs.values() if r.state.terminal), key=lambda r: r.created_at
        )
        forgotten = []
        for r in done[: max(0, len(done) - keep)]:
            del self.runs[r.id]
            forgotten.append(r.id)
            try:
                self.store.delete(r.id)
            except Exception:  # noqa: BLE001
                pass
        return forgotten
