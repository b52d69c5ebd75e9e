"""The run book over a store: what one controller saves, the next one reads back (a controller
restart), and how unreadable records and a failing store are taken. A fake store, no Ray."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fakes import FakeClock
from vsa.config import parse_run
from vsa.errors import RunNotFound
from vsa.runstate import RunState
from vsa.secrets import unseal
from vsa.supervision.runbook import RunBook, RunRecord, seal_sources
from vsa.supervision.store import MemoryRunStore, RunStore


def new_record(
    run_id: str, clock: FakeClock, name: str = "r", uris: dict[str, str] | None = None
) -> RunRecord:
    uris = uris or {"cam1": "synthetic://shapes", "cam2": "synthetic://shapes"}
    spec = parse_run(
        {
            "name": name,
            "output_dir": "/tmp/vsa-unit-out",
            "sources": [{"id": sid, "uri": uri} for sid, uri in uris.items()],
        },
        env={},
    )
    spec, sealed = seal_sources(spec)
    return RunRecord.submitted(run_id, spec, sealed, clock=clock, monotonic=clock)


def polled(
    sid: str, inc: str, state: str, decoded: int, emitted: int, **drops: int
) -> dict[str, Any]:
    return {
        "id": sid,
        "state": state,
        "incarnation": inc,
        "frames_decoded": decoded,
        "frames_inferred": emitted,
        "frames_emitted": emitted,
        "frames_dropped": sum(drops.values()),
        "drops": drops,
        "fps": 10.0,
    }


def test_memory_store_is_a_run_store():
    store = MemoryRunStore()
    assert isinstance(store, RunStore)
    store.put("a", "1")
    store.put("b", "2")
    store.put("a", "3")
    assert store.list() == ["a", "b"] and store.get("a") == "3" and store.get("c") is None
    store.delete("a")
    store.delete("zzz")
    assert store.list() == ["b"]
    store.error = OSError("down")
    with pytest.raises(OSError):
        store.list()


def test_runs_saved_by_one_controller_are_read_back_by_the_next(key_file: Path):
    clock = FakeClock(1_700_000_000.0)
    store = MemoryRunStore()
    first = RunBook(store, clock=clock, monotonic=clock)

    up = new_record(
        "up-1",
        clock,
        "up",
        {"cam1": "rtsp://admin:hunter2@cam.local/live", "cam2": "synthetic://shapes"},
    )
    up.model, up.engine_key = {"model": "shapenet", "device": "cpu"}, "k1"
    first.add(up)
    first.save(up)
    up.absorb("cam1", polled("cam1", "a", "STREAMING", 100, 90, queue_full=5))
    up.absorb("cam2", polled("cam2", "a", "STREAMING", 40, 40))
    clock.advance(2.0)
    assert up.absorb("cam1", polled("cam1", "b", "STREAMING", 10, 8)) is not None
    first.save(up)  # what the controller does after a source restart
    up.enter(up.assess())
    up.event("inference_restarted", reason="r", took_s=1.5)
    first.save(up)

    done = new_record("done-1", clock, "done")
    first.add(done)
    done.absorb("cam1", polled("cam1", "a", "FINISHED", 3, 3))
    done.absorb("cam2", polled("cam2", "a", "FINISHED", 3, 3))
    done.report = ["/tmp/vsa-unit-out/report.json"]  # not part of the record
    done.enter(done.assess())
    done.finished_at = clock()
    first.save(done)

    stopping = new_record("stopping-1", clock, "stopping")
    stopping.stop_requested = True
    first.add(stopping)
    first.save(stopping)

    second = RunBook(store, clock=clock, monotonic=clock)
    loaded = second.load()
    assert [r.id for r in loaded] == ["up-1", "done-1", "stopping-1"]
    assert list(second.runs) == ["up-1", "done-1", "stopping-1"]
    for before in (up, done, stopping):
        after = second.runs[before.id]
        assert after.to_json() == before.to_json()
        assert after.state is before.state
        assert after.sources == before.sources  # counters, with the carried-over ones
        assert after.base == before.base
        assert after.events == before.events
        assert after.transitions == before.transitions
        assert after.sealed == before.sealed
        assert after.spec == before.spec
        assert after.stop_requested is before.stop_requested
        assert after.model == before.model and after.engine_key == before.engine_key
    back = second.runs["up-1"]
    assert back.state is RunState.UP
    assert back.sources["cam1"]["frames_decoded"] == 110
    assert back.sources["cam1"]["drops"] == {"queue_full": 5, "source_lost": 5}
    assert back.sources["cam1"]["restarts"] == 1
    assert [e["event"] for e in back.events] == ["source_restarted", "inference_restarted"]
    assert unseal(back.sealed["cam1"]) == "rtsp://admin:hunter2@cam.local/live"
    assert "hunter2" not in store.texts["up-1"]
    assert second.runs["done-1"].state is RunState.FINISHED
    assert second.runs["done-1"].report == []
    assert [r.id for r in second.active()] == ["up-1", "stopping-1"]
    assert [r.id for r in second.supervised()] == ["up-1"]

    # the restarted run goes on in the second controller as it did in the first
    assert back.absorb("cam1", polled("cam1", "b", "STREAMING", 20, 18)) is None
    assert back.sources["cam1"]["frames_decoded"] == 120
    assert back.sources["cam1"]["restarts"] == 1


def test_unreadable_records_are_skipped(caplog: pytest.LogCaptureFixture):
    clock = FakeClock(1_700_000_000.0)
    store = MemoryRunStore()
    book = RunBook(store, clock=clock)
    good = new_record("good-1", clock)
    book.save(good)
    store.put("garbage-1", "{not json")
    other = json.loads(good.to_json())
    other.update(v=99, id="future-1")
    store.put("future-1", json.dumps(other))

    class Vanishing(MemoryRunStore):
        def list(self) -> list[str]:
            return [*super().list(), "gone-1"]

    vanishing = Vanishing()
    vanishing.texts = store.texts
    with caplog.at_level(logging.WARNING, logger="vsa.controller"):
        loaded = RunBook(vanishing, clock=clock).load()
    assert [r.id for r in loaded] == ["good-1"]
    skipped = [m for m in caplog.messages if m.startswith("skipping saved run")]
    assert len(skipped) == 3
    assert any("future-1" in m and "saved run format 99" in m for m in skipped)


def test_an_unreadable_store_reads_as_empty(caplog: pytest.LogCaptureFixture):
    store = MemoryRunStore()
    store.error = ConnectionError("GCS unreachable")
    book = RunBook(store)
    with caplog.at_level(logging.WARNING, logger="vsa.controller"):
        assert book.load() == []
    assert len(book) == 0
    assert "cannot read saved runs: GCS unreachable" in caplog.messages


def test_a_failed_save_is_logged_and_the_run_goes_on(caplog: pytest.LogCaptureFixture):
    clock = FakeClock(50.0)
    store = MemoryRunStore()
    book = RunBook(store)
    r = new_record("r-1", clock)
    book.add(r)
    assert book.save(r) is True and r.saved_at == 50.0
    store.error = OSError("full")
    clock.advance(5.0)
    with caplog.at_level(logging.WARNING, logger="vsa.controller"):
        assert book.save(r) is False
    assert r.saved_at == 55.0
    assert "run=r-1 could not be saved: full" in caplog.messages


def test_find_by_id_or_by_the_latest_name():
    clock = FakeClock(1_700_000_000.0)
    book = RunBook(MemoryRunStore())
    old = new_record("cams-1", clock, "cams")
    clock.advance(10)
    newer = new_record("cams-2", clock, "cams")
    for r in (newer, old):
        book.add(r)
    assert book.find("cams-1") is old
    assert book.find("cams") is newer
    assert book.ordered() == [old, newer]
    with pytest.raises(RunNotFound, match="no run with id or name 'x'"):
        book.find("x")


def test_forget_old_keeps_the_newest_ended_runs():
    clock = FakeClock(1_700_000_000.0)
    store = MemoryRunStore()
    book = RunBook(store)
    for i in range(6):
        r = new_record(f"r-{i}", clock)
        clock.advance(1)
        if i != 0:  # r-0, the oldest, is still active
            r.enter(RunState.FINISHED)
        book.add(r)
        book.save(r)
    store.error = None
    assert book.forget_old(keep=2) == ["r-1", "r-2", "r-3"]
    assert list(book.runs) == ["r-0", "r-4", "r-5"]
    assert store.list() == ["r-0", "r-4", "r-5"]
    assert book.forget_old(keep=2) == []
    store.error = OSError("down")  # a record left in the store is not worth failing over
    assert book.forget_old(keep=0) == ["r-4", "r-5"]
    assert list(book.runs) == ["r-0"]


def test_engine_in_use_and_recently_finished():
    clock = FakeClock(10_000.0)
    book = RunBook(MemoryRunStore(), clock=clock)
    a, b, c = (new_record(f"r-{i}", clock) for i in range(3))
    a.engine_key, b.engine_key, c.engine_key = "k1", "k2", "k1"
    for r in (a, b, c):
        book.add(r)
    b.enter(RunState.STOPPED)
    b.finished_at = 9_500.0
    c.enter(RunState.FAILED)
    c.finished_at = 9_000.0
    assert book.engine_in_use("k1") and not book.engine_in_use("k2")
    assert book.recently_finished(600.0) == [b]
    assert book.recently_finished(1_001.0) == [b, c]
    a.stop_requested = True
    assert book.active() == [a] and book.supervised() == []
