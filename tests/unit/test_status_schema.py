"""vsa.schema's status contracts: the dicts the real producers give (a run record's summary, a
stream worker's status) read as RunStatus/SourceStatus and write back unchanged; versions,
missing keys and bad states are refused with a message naming them; unknown keys are kept."""

from __future__ import annotations

import ast
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakes import FakeClock
from vsa import schema
from vsa.config import parse_run
from vsa.report import build_report
from vsa.schema import (
    STATUS_VERSION,
    Event,
    LatencyMs,
    RunState,
    RunStatus,
    RunTransition,
    SourceState,
    SourceStatus,
    SourceTransition,
    runs_from_dict,
)
from vsa.supervision.runbook import RunRecord

T0 = 1_700_000_000.0


def record(clock: FakeClock) -> RunRecord:
    spec = parse_run(
        {
            "name": "r",
            "output_dir": "/tmp/vsa-unit-out",
            "sources": [
                {"id": "cam1", "uri": "rtsp://admin:hunter2@cam.local/live"},
                {"id": "cam2", "uri": "synthetic://shapes?frames=3"},
            ],
        },
        env={},
    )
    return RunRecord.submitted("r-1", spec, {}, clock=clock, monotonic=lambda: clock.now)


def polled(
    sid: str = "cam1",
    inc: str = "100-1.0",
    state: str = "STREAMING",
    decoded: int = 40,
    emitted: int = 30,
    drops: dict[str, int] | None = None,
    resumed: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A status with every key ``StreamWorker.status()`` gives, plus the source actor's."""
    drops = {"queue_full": 6, "stale": 2} if drops is None else drops
    dropped = sum(drops.values())
    return {
        "id": sid,
        "uri": "rtsp://admin:***@cam.local/live",
        "state": state,
        "code": None,
        "error": None,
        "attempt": 0,
        "next_retry_at": None,
        "reconnects": 1,
        "last_frame_age_s": 0.04,
        "frames_decoded": decoded,
        "frames_inferred": emitted,
        "frames_emitted": emitted,
        "frames_dropped": dropped,
        "drops": dict(drops),
        "in_flight": decoded - emitted - dropped,
        "fps": 14.93,
        "mode": "realtime",
        "latency_ms": {"p50": 41.2, "p99": 180.0},
        "transitions": [
            {"t": T0, "state": "CONNECTING"},
            {"t": T0 + 1, "state": "STREAMING"},
            {"t": T0 + 5, "state": "RECONNECTING", "code": "TIMEOUT"},
            {"t": T0 + 6, "state": "CONNECTING"},
            {"t": T0 + 7, "state": "STREAMING"},
        ],
        "latency_hist": {12: 20, 15: 10},  # int buckets, as Ray pickles them
        "latency_max_ms": 212.5,
        "incarnation": inc,
        "resumed": resumed,
    }


def round_trips(summary: dict[str, Any]) -> RunStatus:
    run = RunStatus.from_dict(summary)
    assert run.to_dict() == {**summary, "v": STATUS_VERSION}
    # and through JSON, as `vsa status --json` and the durable store carry it
    wire = json.loads(json.dumps(summary))
    assert RunStatus.from_dict(wire).to_dict() == {**wire, "v": STATUS_VERSION}
    return run


# --- the real producers' dicts round-trip ----------------------------------------------------


def test_a_live_runs_summary_round_trips():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", polled())  # cam2 keeps its initial status: fewer keys
    r.enter(RunState.UP)
    r.warn("slow", "the inference actor is saturated", hold_s=30)
    run = round_trips(r.summary())

    assert run.state is RunState.UP and not run.terminal
    cam1, cam2 = run.sources
    assert run.source("cam1") is cam1
    assert cam1.state is SourceState.STREAMING and cam2.state is SourceState.CONNECTING
    assert cam1.latency_ms == LatencyMs(p50=41.2, p99=180.0)
    assert cam1.drops == {"queue_full": 6, "stale": 2}
    assert cam1.transitions[2] == SourceTransition(
        t=T0 + 5, state=SourceState.RECONNECTING, code="TIMEOUT"
    )
    assert (cam1.incarnation, cam1.resumed, cam1.restarts) == ("100-1.0", None, 0)
    assert cam2.mode is None and "mode" in cam2.omitted  # the initial status has no mode
    assert run.transitions == [
        RunTransition(t=T0, state=RunState.WAITING),
        RunTransition(t=T0, state=RunState.UP, reason="cam2 CONNECTING"),
    ]
    assert run.warnings == ["the inference actor is saturated"]
    assert [e.event for e in run.events] == ["warning"]
    assert (run.frames_decoded, run.frames_emitted, run.frames_dropped) == (40, 30, 8)
    assert run.drops == {"queue_full": 6, "stale": 2}


def test_a_restarted_sources_carried_over_counters_round_trip():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", polled(decoded=100, emitted=90, drops={"queue_full": 5}))
    r.absorb("cam1", polled(inc="200-9.0", decoded=10, emitted=8, drops={}))
    run = round_trips(r.summary())
    cam1 = run.source("cam1")
    assert cam1.restarts == 1
    assert cam1.drops == {"queue_full": 5, "source_lost": 5}
    assert run.events == [
        Event(t=T0, event="source_restarted", details={"source": "cam1", "lost": 5})
    ]


def test_an_ended_runs_final_summary_round_trips():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", polled(state="FINISHED"))
    r.source_ended("cam2", "FAILED", "source actor died: ActorDiedError")
    r.error = "cam2: source actor died"
    clock.advance(12.5)
    r.report = ["/tmp/vsa-unit-out/report.json"]
    run = round_trips(r.final_summary(RunState.FINISHED, clock.now))
    assert run.terminal and run.finished_at == T0 + 12.5
    assert run.transitions[-1] == RunTransition(t=T0 + 12.5, state=RunState.FINISHED)
    assert run.source("cam2").state is SourceState.FAILED
    assert run.source("cam2").error == "source actor died: ActorDiedError"


def test_a_run_read_back_from_the_durable_store_round_trips():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", polled())
    again = RunRecord.from_json(r.to_json(), clock=clock, monotonic=lambda: clock.now)
    run = round_trips(again.summary())
    assert run.source("cam1").latency_hist == {"12": 20, "15": 10}  # JSON made the keys strings


def test_the_stream_workers_own_status_is_fully_known():
    """Every key a real ``StreamWorker.status()`` gives is a SourceStatus field (none lands in
    ``extra``): a key added there without a field here fails this test."""
    from vsa import stream

    worker = stream.StreamWorker("r", "cam1", "synthetic://x", lambda fps: [], lambda chunk: None)
    # the source actor adds its incarnation, what it resumed from and its frames' transport
    status = {**worker.status(), "incarnation": "1-1.0", "resumed": None, "transport": "channel"}
    source = SourceStatus.from_dict(status)
    # the controller adds `restarts` (its count) and `inference` (the actor serving it); a
    # source with lines or zones has `analytics` (None or absent without them)
    assert source.extra == {}
    assert source.omitted - {"analytics"} == frozenset({"restarts", "inference"})
    assert source.to_dict() == status
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", status)
    round_trips(r.summary())


# --- versions, required keys and states: refused with a message that names them --------------


def summary() -> dict[str, Any]:
    r = record(FakeClock(T0))
    r.absorb("cam1", polled())
    return r.summary()


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def _source(i: int, **change: Any) -> Any:
    def edit(d: dict[str, Any]) -> dict[str, Any]:
        sources = [dict(s) for s in d["sources"]]
        sources[i].update(change)
        for key, value in change.items():
            if value is _DELETE:
                del sources[i][key]
        return {**d, "sources": sources}

    return edit


_DELETE = object()

REFUSED = [
    ("newer version", lambda d: {**d, "v": 2}, "run 'r-1': status version 2 is newer than this vsa reads (up to 1): upgrade vsa"),
    ("version not a number", lambda d: {**d, "v": "1"}, "run 'r-1': status version '1' is not a whole number"),
    ("version true", lambda d: {**d, "v": True}, "status version True is not a whole number"),
    ("version 0", lambda d: {**d, "v": 0}, "run 'r-1': status version 0 does not exist"),
    ("no id", lambda d: _without(d, "id"), "run status: missing required key 'id'"),
    ("no state", lambda d: _without(d, "state"), "run 'r-1': missing required key 'state'"),
    ("no sources", lambda d: _without(d, "sources"), "run 'r-1': missing required key 'sources'"),
    ("no created_at", lambda d: _without(d, "created_at"), "missing required key 'created_at'"),
    ("a source without a state", _source(1, state=_DELETE), "run 'r-1': sources[1] ('cam2'): missing required key 'state'"),
    ("a source without an id", _source(0, id=_DELETE), "run 'r-1': sources[0]: missing required key 'id'"),
    ("unknown run state", lambda d: {**d, "state": "RUNNING"}, "run 'r-1': state: 'RUNNING' is not a run state (one of WAITING, UP, DEGRADED, FINISHED, FAILED, STOPPED, PAUSED, PENDING)"),
    ("unknown source state", _source(0, state="streaming"), "sources[0] ('cam1'): state: 'streaming' is not a source state (one of CONNECTING,"),
    ("unknown transition state", lambda d: {**d, "transitions": [{"t": 1.0, "state": "GONE"}]}, "run 'r-1': transitions[0]: state: 'GONE' is not a run state"),
    ("a transition without t", lambda d: {**d, "transitions": [{"state": "UP"}]}, "transitions[0]: missing required key 't'"),
    ("an event without its kind", lambda d: {**d, "events": [{"t": 1.0}]}, "run 'r-1': events[0]: missing required key 'event'"),
    ("sources not a list", lambda d: {**d, "sources": {"cam1": {}}}, "run 'r-1': sources: expected a list, got dict"),
    ("latency not a dict", _source(0, latency_ms=[1, 2]), "sources[0] ('cam1'): latency_ms: expected a dict, got list"),
    ("drops not a dict", _source(0, drops=3), "sources[0] ('cam1'): drops: expected a dict, got int"),
    ("a source not a dict", lambda d: {**d, "sources": ["cam1"]}, "run 'r-1': sources[0]: expected a dict, got str"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_from_dict_refuses_with_a_clear_message(edit: Any, message: str):
    with pytest.raises(ValueError) as exc:
        RunStatus.from_dict(edit(summary()))
    assert message in str(exc.value)


def test_from_dict_refuses_what_is_not_a_dict():
    with pytest.raises(ValueError, match="run status: expected a dict, got list"):
        RunStatus.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status: expected a dict with 'runs'"):
        runs_from_dict({"run": []})


@pytest.mark.parametrize("v", [None, 1])
def test_a_dict_without_v_or_with_v1_is_version_1(v: int | None):
    d = summary()
    if v is not None:
        d["v"] = v
    run = RunStatus.from_dict(d)
    assert "v" not in run.extra
    assert run.to_dict()["v"] == 1 == STATUS_VERSION


# --- enums ------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(SourceState))
def test_source_states_parse_to_the_enum_and_write_plain_strings(state: SourceState):
    source = SourceStatus.from_dict({"id": "a", "state": state.value})
    assert source.state is state
    assert source.terminal == state.terminal
    written = source.to_dict()
    assert written == {"id": "a", "state": state.value}
    assert type(written["state"]) is str


@pytest.mark.parametrize("state", list(RunState))
def test_run_states_parse_to_the_enum_and_write_plain_strings(state: RunState):
    d = {**summary(), "state": state.value}
    run = RunStatus.from_dict(d)
    assert run.state is state and run.terminal == state.terminal
    assert type(run.to_dict()["state"]) is str
    assert json.loads(json.dumps(run.to_dict()))["state"] == state.value


# --- forward compatible: unknown keys are kept -----------------------------------------------


def test_unknown_keys_are_kept_at_every_level_and_written_back():
    d = summary()
    d["priority_class"] = "gold"
    cam1 = dict(d["sources"][0])
    cam1["gpu_ms"] = 3.5
    cam1["latency_ms"] = {**cam1["latency_ms"], "p999": 250.0}
    cam1["transitions"] = [{"t": T0, "state": "CONNECTING", "host": "node-2"}]
    d["sources"] = [cam1, *d["sources"][1:]]
    d["transitions"] = [{"t": T0, "state": "WAITING", "by": "admin"}]
    d["events"] = [{"t": T0, "event": "resized", "source": "cam1", "size": [320, 240]}]
    run = round_trips(d)
    assert run.extra == {"priority_class": "gold"}
    source = run.source("cam1")
    assert source.extra == {"gpu_ms": 3.5}
    assert source.latency_ms.extra == {"p999": 250.0}
    assert source.transitions[0].extra == {"host": "node-2"}
    assert run.transitions[0].extra == {"by": "admin"}
    assert run.events[0].details == {"source": "cam1", "size": [320, 240]}


def test_known_fields_win_over_extra_and_omitted_fields_appear_once_set():
    source = SourceStatus(id="a", state=SourceState.STREAMING, extra={"state": "X", "k": 1})
    written = source.to_dict()
    assert written["state"] == "STREAMING" and written["k"] == 1
    # constructed, not read: every key is written
    assert set(written) == {f.name for f in dataclasses.fields(SourceStatus)} - {
        "extra",
        "omitted",
    } | {"k"}

    read = SourceStatus.from_dict({"id": "a", "state": "STREAMING"})
    assert read.to_dict() == {"id": "a", "state": "STREAMING"}
    changed = dataclasses.replace(read, mode="lossless", fps=2.5)
    assert changed.to_dict() == {"id": "a", "state": "STREAMING", "fps": 2.5, "mode": "lossless"}


def test_to_dict_shares_nothing_with_the_object_or_its_input():
    d = summary()
    run = RunStatus.from_dict(d)
    d["sources"][0]["drops"]["stale"] = 999
    assert run.source("cam1").drops["stale"] == 2
    out = run.to_dict()
    out["sources"][0]["drops"]["stale"] = 777
    out["sources"][0]["latency_ms"]["p99"] = 0
    assert run.source("cam1").drops["stale"] == 2
    assert run.source("cam1").latency_ms.p99 == 180.0


def test_status_objects_are_frozen():
    run = RunStatus.from_dict(summary())
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.state = RunState.FAILED  # type: ignore[misc]


# --- conveniences -----------------------------------------------------------------------------


def test_source_names_the_run_and_its_sources_when_missing():
    run = RunStatus.from_dict(summary())
    with pytest.raises(KeyError, match=r"run r-1 has no source 'cam9' \(its sources: cam1, cam2\)"):
        run.source("cam9")


def test_runs_from_dict_reads_the_controllers_answer():
    runs = runs_from_dict({"runs": [summary(), {**summary(), "id": "r-2"}]})
    assert [r.id for r in runs] == ["r-1", "r-2"]
    assert runs_from_dict({"runs": []}) == []
    with pytest.raises(ValueError, match=r"runs\[0\]: missing required key 'id'"):
        runs_from_dict({"runs": [_without(summary(), "id")]})
    with pytest.raises(ValueError, match=r"run 'r-2': missing required key 'state'"):
        runs_from_dict({"runs": [summary(), _without({**summary(), "id": "r-2"}, "state")]})


# --- consumers --------------------------------------------------------------------------------


def test_the_report_builds_the_same_from_to_dict_output():
    clock = FakeClock(T0)
    r = record(clock)
    r.absorb("cam1", polled(state="FINISHED"))
    r.absorb("cam2", polled("cam2", state="FINISHED", drops={}, decoded=30))
    clock.advance(10)
    final = r.final_summary(RunState.FINISHED, clock.now)
    series = {"cam1": [[T0 + 1, 15.0, 40.0, 180.0]]}
    typed = RunStatus.from_dict(final).to_dict()
    assert build_report(typed, series) == build_report(final, series)
    report = build_report(typed, series)
    assert report["totals"]["frames_emitted"] == 60
    assert report["streams"][0]["latency_ms"]["max"] == 212.5


def imported_roots(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return imported


def test_the_schema_module_is_stdlib_only():
    """The schema (and the one vsa module it reads, its error) import only the standard
    library: a status reader needs neither pydantic, Ray nor torch."""
    import vsa.errors

    imported = imported_roots(schema) - {"vsa.errors"}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names), imported
    errors = imported_roots(vsa.errors)
    assert {name.split(".")[0] for name in errors} <= set(sys.stdlib_module_names), errors


def test_the_package_exports_the_api_lazily():
    import vsa
    from vsa.client import Client

    assert vsa.RunStatus is RunStatus and vsa.SourceStatus is SourceStatus
    assert vsa.Client is Client
    assert vsa.STATUS_VERSION == STATUS_VERSION
    with pytest.raises(AttributeError):
        vsa.no_such_name  # noqa: B018
