"""The states and the drop causes that go on the wire, in files and in status, in one place.

Pure Python (no torch, av, cv2 or Ray): the client, the CLI, the controller and the stream
all spell states and causes through these enums. Each member's value is the exact string
written to status, JSONL, reports and metrics; the enums subclass ``str`` so that a member
compares equal to its string (``SourceState.FAILED == "FAILED"``).

The source state machine (docs/states.md)::

    CONNECTING -> STREAMING -> FINISHED            (a file or finite source reached its end)
        |  ^          |
        v  |          v
    RECONNECTING <----+  (network sources: error, stall or end; waits by the reconnect policy)
        |
        v
      FAILED  (a file/synthetic source failed, or max_attempts ran out)
    any non-terminal state -> STOPPED (stop requested)

The status contracts (``STATUS_VERSION``): :class:`RunStatus` and :class:`SourceStatus` (with
:class:`LatencyMs`, :class:`Arrival`, :class:`Analytics` (:class:`LineCounts`,
:class:`Crossings`, :class:`ZoneCounts`), :class:`SourceTransition`, :class:`RunTransition` and
:class:`Event`) type the dicts that the controller answers (``RunRecord.summary()``, a source
actor's status) and that ``vsa status --json`` prints. ``from_dict`` reads today's dicts (no ``"v"``: version 1),
keeps unknown keys in ``extra`` and refuses a newer version; ``to_dict`` writes the same dict
back (a run with ``"v"``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, TypeVar


class SourceState(str, Enum):
    CONNECTING = "CONNECTING"  # opening the URI; STREAMING only once a frame arrived
    STREAMING = "STREAMING"  # frames are decoded, inferred and written
    RECONNECTING = "RECONNECTING"  # down; waiting ``next_retry_at`` for attempt ``attempt``
    # a finite source reached its end; every frame emitted or counted as dropped
    FINISHED = "FINISHED"
    FAILED = "FAILED"  # gave up: ``code`` and ``error`` say why
    STOPPED = "STOPPED"  # a stop was requested

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_SOURCE_STATES


TERMINAL_SOURCE_STATES: frozenset[SourceState] = frozenset(
    {SourceState.FINISHED, SourceState.FAILED, SourceState.STOPPED}
)

# Every transition a stream makes (``vsa.stream.machine.SourceMachine.enter``); a state not
# listed as a target of itself is never re-entered. The first entry of a source's transitions, the initial
# CONNECTING, is not a transition.
SOURCE_TRANSITIONS: dict[SourceState, frozenset[SourceState]] = {
    # a frame arrived / the open or the first read failed (network source: retry) / failed for
    # good (file, synthetic, permanent sink error, attempts used up) / a finite source with no
    # frames ended / stop
    SourceState.CONNECTING: frozenset(
        {
            SourceState.STREAMING,
            SourceState.RECONNECTING,
            SourceState.FAILED,
            SourceState.FINISHED,
            SourceState.STOPPED,
        }
    ),
    # error, stall or end of a live stream / end of a file / failed for good / stop
    SourceState.STREAMING: frozenset(
        {
            SourceState.RECONNECTING,
            SourceState.FINISHED,
            SourceState.FAILED,
            SourceState.STOPPED,
        }
    ),
    # the wait is over / a sink failed meanwhile / stop (ends the wait at once)
    SourceState.RECONNECTING: frozenset(
        {SourceState.CONNECTING, SourceState.FAILED, SourceState.STOPPED}
    ),
    SourceState.FINISHED: frozenset(),
    SourceState.FAILED: frozenset(),
    SourceState.STOPPED: frozenset(),
}


def check_source_transition(old: SourceState, new: SourceState) -> None:
    """Raise ``ValueError`` unless a source may go from ``old`` to ``new``."""
    if new not in SOURCE_TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in SOURCE_TRANSITIONS[old])) or "nothing"
        kind = " (a terminal state)" if old in TERMINAL_SOURCE_STATES else ""
        raise ValueError(
            f"illegal source transition {old.value} -> {new.value}: "
            f"{old.value}{kind} may go to {allowed}"
        )


class RunState(str, Enum):
    WAITING = "WAITING"  # no source delivers frames (at start, or every live source is down)
    UP = "UP"  # at least one source streams and none is down
    DEGRADED = "DEGRADED"  # a source streams while others are RECONNECTING or FAILED
    FINISHED = "FINISHED"  # every source ended and at least one reached its end
    FAILED = "FAILED"  # every source failed
    STOPPED = "STOPPED"  # a user stopped it, or its sources ended stopped
    PAUSED = "PAUSED"  # a user paused it: no source runs, its files wait for `vsa resume`
    PENDING = "PENDING"  # its model does not fit beside the loaded ones yet

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES: frozenset[RunState] = frozenset(
    {RunState.FINISHED, RunState.FAILED, RunState.STOPPED}
)


class DropCause(str, Enum):
    """Why a decoded frame was not emitted (docs/failure-policy.md, "Frame accounting")."""

    DECIMATED = "decimated"  # over the source's fps cap, dropped before any copy
    QUEUE_FULL = "queue_full"  # realtime: a newer frame arrived before this one could be sent
    STALE = "stale"  # realtime: older than max_age_ms when a slot freed or its batch formed
    DECODE_ERROR = "decode_error"  # damaged data: the packet and the rest of its GOP
    INFERENCE_ERROR = "inference_error"  # the inference call failed or gave no result in time
    SHUTDOWN = "shutdown"  # the run stopped before its result arrived
    SINK_ERROR = "sink_error"  # a sink failed; the rest of the stream's frames
    OUTPUT_LOST = "output_lost"  # written into an output file then deleted or replaced
    SOURCE_LOST = "source_lost"  # decoded by a source actor process that died before writing


# --- status contracts -------------------------------------------------------------------------

STATUS_VERSION = 1
"""The version of the status dicts: the ``"v"`` of ``RunStatus.to_dict()``. ``from_dict``
refuses a newer one and reads a dict without ``"v"`` as version 1. Adding a key is not a new
version (readers keep unknown keys in ``extra``); removing or redefining one is."""

_W = TypeVar("_W", bound="_Wire")
_LOCAL = frozenset({"extra", "omitted"})  # fields of the objects, never wire keys


def _wire(
    *,
    parse: Callable[[Any, str], Any] | None = None,
    dump: Callable[[Any], Any] | None = None,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    key: str | None = None,
) -> Any:
    """A field read by ``parse(value, where)`` and written by ``dump(value)`` (both default
    to a deep copy), under the wire key ``key`` (default: the field's name; for a key that
    is no Python name, such as ``"in"``). A field without a default is a required key."""
    return field(
        default=default,
        default_factory=default_factory,
        metadata={"parse": parse, "dump": dump, "key": key},
    )


def _key(f: Any) -> str:
    """A field's wire key."""
    return f.metadata.get("key") or f.name


def _default_of(f: Any) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _enum(kind: type[Enum], what: str) -> Callable[[Any, str], Any]:
    def parse(value: Any, where: str) -> Any:
        try:
            return kind(value)
        except (ValueError, TypeError):
            allowed = ", ".join(m.value for m in kind)
            raise ValueError(f"{where}: {value!r} is not a {what} (one of {allowed})") from None

    return parse


def _enum_value(member: Enum) -> Any:
    return member.value


def _mapping(optional: bool = False) -> Callable[[Any, str], Any]:
    def parse(value: Any, where: str) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(value).__name__}")
        return copy.deepcopy(dict(value))

    return parse


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    return [copy.deepcopy(v) for v in value]


def _nested(kind: Any, optional: bool = False) -> Callable[[Any, str], Any]:
    def parse(value: Any, where: str) -> Any:
        if value is None and optional:
            return None
        return kind.from_dict(value, where=where)

    return parse


def _dict_of(kind: Any) -> Callable[[Any, str], dict[str, Any]]:
    """A dict of ``kind`` by name (a line's id, a class name)."""

    def parse(value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(value).__name__}")
        return {
            name: kind.from_dict(item, where=f"{where}[{name!r}]") for name, item in value.items()
        }

    return parse


def _list_of(kind: Any) -> Callable[[Any, str], list[Any]]:
    def parse(value: Any, where: str) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            label = f"{where}[{i}]"
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                label += f" ({item['id']!r})"
            out.append(kind.from_dict(item, where=label))
        return out

    return parse


def _to_dict(value: Any) -> Any:
    return value.to_dict()


def _optional_to_dict(value: Any) -> Any:
    return None if value is None else value.to_dict()


def _list_to_dicts(values: list[Any]) -> list[Any]:
    return [v.to_dict() for v in values]


def _dict_to_dicts(values: dict[str, Any]) -> dict[str, Any]:
    return {name: v.to_dict() for name, v in values.items()}


def _check_version(v: Any, where: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where}: status version {v!r} is not a whole number")
    if v > STATUS_VERSION:
        raise ValueError(
            f"{where}: status version {v} is newer than this vsa reads (up to "
            f"{STATUS_VERSION}): upgrade vsa on this side"
        )
    if v < 1:
        raise ValueError(f"{where}: status version {v} does not exist (the first is 1)")


class _Wire:
    """``from_dict``/``to_dict`` for the status dataclasses, whose fields are named like their
    wire keys. Every one also has ``extra`` (the keys this version does not know, written back
    by ``to_dict``) and ``omitted`` (the known keys the producer did not send: ``to_dict``
    leaves them out while they hold their defaults, so a dict round-trips exactly)."""

    _WHAT: ClassVar[str] = "status"
    _RESERVED: ClassVar[frozenset[str]] = frozenset()  # wire keys read by the class itself

    @classmethod
    def from_dict(cls: type[_W], d: Mapping[str, Any], *, where: str | None = None) -> _W:
        """Read a wire dict; ``ValueError`` (naming ``where`` and the key) when it is not one."""
        if where is None:
            where = cls._WHAT
            if isinstance(d, Mapping) and isinstance(d.get("id"), str):
                where += f" {d['id']!r}"
        return cls(**cls._read(d, where))

    @classmethod
    def _read(cls, d: Any, where: str) -> dict[str, Any]:
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
        wire = [f for f in fields(cls) if f.name not in _LOCAL]  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        omitted = set()
        for f in wire:
            key = _key(f)
            if key not in d:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ValueError(f"{where}: missing required key {key!r}")
                omitted.add(key)
                continue
            parse = f.metadata.get("parse")
            value = d[key]
            kwargs[f.name] = parse(value, f"{where}: {key}") if parse else copy.deepcopy(value)
        known = {_key(f) for f in wire} | cls._RESERVED
        kwargs["extra"] = {k: copy.deepcopy(v) for k, v in d.items() if k not in known}
        kwargs["omitted"] = frozenset(omitted)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        """The wire dict: a fresh one (nothing shared with this object)."""
        out: dict[str, Any] = {}
        omitted: frozenset[str] = getattr(self, "omitted", frozenset())
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in _LOCAL:
                continue
            value = getattr(self, f.name)
            key = _key(f)
            if key in omitted and value == _default_of(f):
                continue
            dump = f.metadata.get("dump")
            out[key] = dump(value) if dump else copy.deepcopy(value)
        for key, value in getattr(self, "extra", {}).items():
            out.setdefault(key, copy.deepcopy(value))
        return out


def _extra() -> Any:
    return field(default_factory=dict)


def _omitted() -> Any:
    return field(default=frozenset(), repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class LatencyMs(_Wire):
    """A source's recent capture-to-result latency, in ms (None: no samples yet)."""

    _WHAT = "latency_ms"
    p50: float | None = None
    p99: float | None = None
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class Arrival(_Wire):
    """How a live realtime source's frames arrived over the recent window
    (``degradation.window_s``); None (``bursty`` False) before its first frame, and for
    lossless or non-live sources. Keys: docs/states.md."""

    _WHAT = "arrival"
    bursty: bool = False  # bursts hold 3 frames or more on average (HLS, DASH, a proxy)
    burst_frames: float | None = None  # mean frames per burst (1.0: a smooth source)
    jitter_ms: float | None = None  # mean |arrival step - timestamp step| between frames
    hold_ms: float | None = None  # the longest a frame was held by the jitter buffer
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class Crossings(_Wire):
    """Crossings of a counting line, by direction (cumulative over the run): one class's, in
    :attr:`LineCounts.classes`. ``in`` on the wire is ``in_`` here (a Python keyword)."""

    _WHAT = "crossings"
    in_: int = _wire(key="in", default=0)  # crossed in its "in" direction
    out: int = 0
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()

    @property
    def total(self) -> int:
        """Crossings either way."""
        return self.in_ + self.out


@dataclass(frozen=True, kw_only=True)
class LineCounts(Crossings):
    """A counting line's crossings (cumulative over the run), with those of each model class
    (``classes``: class name -> :class:`Crossings`)."""

    _WHAT = "line"
    classes: dict[str, Crossings] = _wire(
        parse=_dict_of(Crossings), dump=_dict_to_dicts, default_factory=dict
    )


@dataclass(frozen=True, kw_only=True)
class ZoneCounts(_Wire):
    """A zone: the tracks inside now (``occupancy``) and loitering now (``loitering``), and
    how many entered and left over the run (cumulative)."""

    _WHAT = "zone"
    occupancy: int = 0  # live
    entered: int = 0
    left: int = 0
    loitering: int = 0  # live
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class Analytics(_Wire):
    """A source's scene analytics (tracking, line crossings, zone occupancy); the status has
    None for a source without lines or zones. Counts are cumulative over the run (the source
    actor restores them after a restart), except the live ``tracks``,
    ``ZoneCounts.occupancy`` and ``ZoneCounts.loitering``."""

    _WHAT = "analytics"
    tracks: int = 0  # live (confirmed) tracks now
    track_ids: int = 0  # track ids handed out so far in this run (ids are 1..track_ids)
    lines: dict[str, LineCounts] = _wire(
        parse=_dict_of(LineCounts), dump=_dict_to_dicts, default_factory=dict
    )  # line id -> its counts
    zones: dict[str, ZoneCounts] = _wire(
        parse=_dict_of(ZoneCounts), dump=_dict_to_dicts, default_factory=dict
    )  # zone id -> its counts
    # event kind (line_cross, zone_enter, zone_leave, loiter) -> how many so far
    events: dict[str, int] = _wire(parse=_mapping(), default_factory=dict)
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class SinkCounts(_Wire):
    """One of a source's sinks (by its type): its failure ``policy`` (``required`` or
    ``best_effort``), the frames it ``written`` and, best effort, the frames ``lost`` to it
    by cause (``sink_error``, ``output_lost``, ``overflow``, ``unsent``). Once the source has ended,
    ``written + sum(lost) == frames_emitted`` (docs/failure-policy.md)."""

    _WHAT = "sink"
    policy: str = "required"
    written: int = 0
    lost: dict[str, int] = _wire(parse=_mapping(), default_factory=dict)
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()

    @property
    def frames_lost(self) -> int:
        return sum(self.lost.values())


@dataclass(frozen=True, kw_only=True)
class SourceTransition(_Wire):
    """A source entered ``state`` at ``t`` (wall time, s); ``code`` says why, for a failure."""

    _WHAT = "transition"
    t: float
    state: SourceState = _wire(parse=_enum(SourceState, "source state"), dump=_enum_value)
    code: str | None = None
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class RunTransition(_Wire):
    """A run entered ``state`` at ``t`` (wall time, s), for ``reason`` when not simply UP."""

    _WHAT = "transition"
    t: float
    state: RunState = _wire(parse=_enum(RunState, "run state"), dump=_enum_value)
    reason: str | None = None
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened to a run at ``t`` (wall time, s): ``event`` is its kind
    (``source_restarted``, ``inference_restarted``, ``degraded``, ``warning``, ``fatal``, ...)
    and ``details`` the rest of its keys (``source``, ``reason``, ...)."""

    t: float
    event: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "event") -> Event:
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
        for key in ("t", "event"):
            if key not in d:
                raise ValueError(f"{where}: missing required key {key!r}")
        details = {k: copy.deepcopy(v) for k, v in d.items() if k not in ("t", "event")}
        return cls(t=d["t"], event=d["event"], details=details)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "event": self.event}
        for key, value in self.details.items():
            out.setdefault(key, copy.deepcopy(value))
        return out


@dataclass(frozen=True, kw_only=True)
class SourceStatus(_Wire):
    """One source of a run, as the controller last polled it (the counters include those of
    the source actor's earlier incarnations). Keys: docs/failure-policy.md."""

    _WHAT = "source status"
    id: str
    uri: str = ""  # credentials masked
    state: SourceState = _wire(parse=_enum(SourceState, "source state"), dump=_enum_value)
    code: str | None = None  # why it is down or failed (vsa.sources.errors)
    error: str | None = None
    attempt: int = 0  # the reconnect attempt under way or next
    next_retry_at: float | None = None  # wall time of the next attempt while RECONNECTING
    reconnects: int = 0
    last_frame_age_s: float | None = None
    frames_decoded: int = 0
    frames_inferred: int = 0
    frames_emitted: int = 0
    frames_dropped: int = 0
    drops: dict[str, int] = _wire(parse=_mapping(), default_factory=dict)  # DropCause value -> n
    in_flight: int = 0
    fps: float = 0.0  # frames emitted per second, over the last few seconds
    mode: str | None = None  # "realtime" or "lossless"; "auto" until an http(s) source first opens
    latency_ms: LatencyMs = _wire(
        parse=_nested(LatencyMs), dump=_to_dict, default_factory=LatencyMs
    )
    arrival: Arrival = _wire(parse=_nested(Arrival), dump=_to_dict, default_factory=Arrival)
    transitions: list[SourceTransition] = _wire(
        parse=_list_of(SourceTransition), dump=_list_to_dicts, default_factory=list
    )
    latency_hist: dict[Any, int] = _wire(parse=_mapping(), default_factory=dict)  # bucket -> n
    latency_max_ms: float | None = None
    incarnation: str | None = None  # the source actor's process; changes when Ray restarts it
    resumed: dict[str, int] | None = _wire(parse=_mapping(optional=True), default=None)
    restarts: int = 0  # how often Ray restarted the source actor
    inference: str | None = None  # the inference actor serving it (vsa.supervision.pool)
    transport: str | None = None  # how its frames reach inference: "channel" or "ray"
    # its sinks by type: frames written and (best effort) lost to each (SinkCounts)
    sinks: dict[str, SinkCounts] = _wire(
        parse=_dict_of(SinkCounts), dump=_dict_to_dicts, default_factory=dict
    )
    # its scene analytics; None (or absent) when it has no lines or zones
    analytics: Analytics | None = _wire(
        parse=_nested(Analytics, optional=True), dump=_optional_to_dict, default=None
    )
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()

    @property
    def terminal(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True, kw_only=True)
class RunStatus(_Wire):
    """A run as the controller reports it (``RunRecord.summary()``), typed.

    ``RunStatus.from_dict(d).to_dict()`` gives ``d`` back, with ``"v"``.
    """

    _WHAT = "run status"
    _RESERVED = frozenset({"v"})
    id: str
    name: str
    state: RunState = _wire(parse=_enum(RunState, "run state"), dump=_enum_value)
    reason: str | None = None  # why it is not simply UP
    error: str | None = None
    created_at: float
    finished_at: float | None = None
    output_dir: str = ""
    model: dict[str, Any] | None = _wire(parse=_mapping(optional=True), default=None)
    sources: list[SourceStatus] = _wire(parse=_list_of(SourceStatus), dump=_list_to_dicts)
    # sources a change removed from the run, with their final counters
    removed: list[SourceStatus] = _wire(
        parse=_list_of(SourceStatus), dump=_list_to_dicts, default_factory=list
    )
    transitions: list[RunTransition] = _wire(
        parse=_list_of(RunTransition), dump=_list_to_dicts, default_factory=list
    )
    events: list[Event] = _wire(parse=_list_of(Event), dump=_list_to_dicts, default_factory=list)
    warnings: list[str] = _wire(parse=_strings, default_factory=list)
    report: list[str] = _wire(parse=_strings, default_factory=list)  # the report files
    extra: dict[str, Any] = _extra()
    omitted: frozenset[str] = _omitted()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str | None = None) -> RunStatus:
        """Read a run's status dict (``"v"`` absent: version 1). ``ValueError`` naming the
        run and the key when it is not one, or when it is a newer version."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where or cls._WHAT}: expected a dict, got {type(d).__name__}")
        if where is None:
            where = f"run {d['id']!r}" if isinstance(d.get("id"), str) else cls._WHAT
        _check_version(d.get("v", 1), where)
        return cls(**cls._read(d, where))

    def to_dict(self) -> dict[str, Any]:
        return {"v": STATUS_VERSION, **super().to_dict()}

    @property
    def terminal(self) -> bool:
        """Whether the run has ended (FINISHED, FAILED or STOPPED)."""
        return self.state.terminal

    def source(self, source_id: str) -> SourceStatus:
        """The source ``source_id``; ``KeyError`` naming the run's sources when it has none."""
        for s in self.sources:
            if s.id == source_id:
                return s
        ids = ", ".join(s.id for s in self.sources) or "none"
        raise KeyError(f"run {self.id} has no source {source_id!r} (its sources: {ids})")

    @property
    def frames_decoded(self) -> int:
        return sum(s.frames_decoded for s in self.sources)

    @property
    def frames_emitted(self) -> int:
        return sum(s.frames_emitted for s in self.sources)

    @property
    def frames_dropped(self) -> int:
        return sum(s.frames_dropped for s in self.sources)

    @property
    def drops(self) -> dict[str, int]:
        """Dropped frames by cause, over every source."""
        total: dict[str, int] = {}
        for s in self.sources:
            for cause, n in s.drops.items():
                total[cause] = total.get(cause, 0) + n
        return total


def runs_from_dict(doc: Mapping[str, Any]) -> list[RunStatus]:
    """The runs of the controller's ``status()`` answer, ``{"runs": [run, ...]}``."""
    if not isinstance(doc, Mapping) or "runs" not in doc:
        raise ValueError("status: expected a dict with 'runs'")
    runs = doc["runs"]
    if not isinstance(runs, (list, tuple)):
        raise ValueError(f"status: runs: expected a list, got {type(runs).__name__}")
    return [
        # "run 'ID'" in a message when the run has an id, else its place
        RunStatus.from_dict(r, where=None if _has_id(r) else f"runs[{i}]")
        for i, r in enumerate(runs)
    ]


def _has_id(d: Any) -> bool:
    return isinstance(d, Mapping) and isinstance(d.get("id"), str)


__all__ = [
    "SOURCE_TRANSITIONS",
    "STATUS_VERSION",
    "TERMINAL_RUN_STATES",
    "TERMINAL_SOURCE_STATES",
    "Analytics",
    "SinkCounts",
    "Arrival",
    "Crossings",
    "DropCause",
    "Event",
    "LatencyMs",
    "LineCounts",
    "RunState",
    "RunStatus",
    "RunTransition",
    "SourceState",
    "SourceStatus",
    "SourceTransition",
    "ZoneCounts",
    "check_source_transition",
    "runs_from_dict",
]


_T = TypeVar("_T")


def typed(read: Callable[[Any], _T], answer: Any) -> _T:
    """``read(answer)``, a ``ValueError`` from it raised as ``StatusFormatError``."""
    from vsa.errors import StatusFormatError

    try:
        return read(answer)
    except ValueError as exc:
        raise StatusFormatError(f"cannot read the engine's status: {exc}") from None
