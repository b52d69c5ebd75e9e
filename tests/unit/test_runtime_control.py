"""Runtime control on the controller's core (fakes, no Ray): a run's target changed while it
runs (re-submit, add, remove), pause and resume, engines shared and PENDING runs.

The fakes are those of ``test_supervision_core``: a source actor that is never stopped nor
replaced is the same object, with ``stopped_with`` None, from start to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_supervision_core import World, core, play, saved, spec, status, until
from vsa.config import parse_run
from vsa.errors import ConfigError, VsaError
from vsa.runstate import RunState
from vsa.supervision.reconcile import plan_change


def run_spec(out: Path, **extra: Any):
    return parse_run(
        {
            "name": "r",
            "output_dir": str(out),
            "sources": [
                {"id": "cam1", "uri": "synthetic://shapes?seed=1"},
                {"id": "cam2", "uri": "synthetic://shapes?seed=2"},
            ],
            **extra,
        },
        env={},
    )


# --- the plan (pure) -------------------------------------------------------------------------
def test_the_plan_says_what_happens_to_each_source_and_the_engine(tmp_path: Path) -> None:
    old = run_spec(tmp_path)
    same = plan_change(old, run_spec(tmp_path), "r-1")
    assert same.noop and [s.action for s in same.sources] == ["keep", "keep"]

    new = old.model_dump()
    new["sources"][1]["fps"] = 5
    new["sources"].append({"id": "cam3", "uri": "synthetic://shapes?seed=3"})
    del new["sources"][0]
    plan = plan_change(old, type(old).model_validate(new), "r-1")
    assert {s.id: (s.action, s.changed) for s in plan.sources} == {
        "cam2": ("restart", ("fps",)),
        "cam3": ("add", ()),
        "cam1": ("remove", ()),
    }
    assert not plan.engine_swap and not plan.noop
    assert plan.summary() == "add cam3; remove cam1; restart cam2"

    sinks = plan_change(old, run_spec(tmp_path, sinks=[{"type": "jsonl"}]), "r-1")
    assert [(s.action, s.changed) for s in sinks.sources] == [("restart", ("sinks",))] * 2

    swap = plan_change(old, run_spec(tmp_path, batching={"max_batch_size": 2}), "r-1")
    assert swap.engine_swap and [s.action for s in swap.sources] == ["keep", "keep"]
    stall = plan_change(old, run_spec(tmp_path, batching={"stall_timeout_s": 99}), "r-1")
    assert not stall.engine_swap and stall.run_changes == ("batching.stall_timeout_s",)
    degradation = plan_change(old, run_spec(tmp_path, degradation={"max_drop_ratio": 0.9}))
    assert degradation.run_changes == ("degradation",) and not degradation.engine_swap

    with pytest.raises(VsaError, match="output_dir cannot change on a running run"):
        plan_change(old, run_spec(tmp_path / "elsewhere"), "r-1")
    assert [s.action for s in plan_change(None, old).sources] == ["add", "add"]


def test_an_unchanged_uri_with_a_password_reads_as_kept(tmp_path: Path) -> None:
    secret = "rtsp://u:hunter2@cam/x"
    old = run_spec(tmp_path).model_dump()
    old["sources"][0]["uri"] = "rtsp://u:***@cam/x"  # as stored: masked, sealed aside
    new = run_spec(tmp_path).model_dump()
    new["sources"][0]["uri"] = secret
    old_spec, new_spec = (run_spec(tmp_path).model_validate(d) for d in (old, new))
    kept = plan_change(old_spec, new_spec, "r-1", {"cam1": secret})
    assert kept.noop
    changed = plan_change(old_spec, new_spec, "r-1", {"cam1": "rtsp://u:other@cam/x"})
    assert changed.sources[0].action == "restart" and changed.sources[0].changed == ("uri",)
    assert "hunter2" not in str(changed.to_dict())


# --- changes on the core ---------------------------------------------------------------------
def test_add_and_remove_leave_the_untouched_source_alone(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, (cam1, cam2) = await w.submit(ids=("cam1", "cam2"))
        w.stream([cam1, cam2], decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)

        out = await w.core.add_source(record.id, {"id": "cam3", "uri": "synthetic://shapes"})
        assert out["applied"] and [s["action"] for s in out["plan"]["sources"]] == [
            "keep",
            "keep",
            "add",
        ]
        cam3 = w.cluster.sources[(record.id, "cam3")]
        assert not cam3.resume and cam3.engine_key == record.engine_key
        assert w.cluster.sources[(record.id, "cam1")] is cam1 and cam1.stopped_with is None

        w.stream([cam2], decoded=25, emitted=24, drops={"stale": 1})
        await until(lambda: record.sources["cam2"]["frames_decoded"] == 25)
        await w.core.remove_source(record.id, "cam2")
        assert cam2.stopped_with is not None and cam2.killed
        assert "cam2" not in record.sources and "cam2" not in record.actors
        assert record.removed["cam2"]["state"] == "STOPPED"
        assert record.removed["cam2"]["frames_emitted"] == 24
        assert [s.id for s in record.spec.sources] == ["cam1", "cam3"]
        summary = (await w.core.status(record.id))["runs"][0]
        assert [s["id"] for s in summary["sources"]] == ["cam1", "cam3"]
        assert [s["id"] for s in summary["removed"]] == ["cam2"]
        events = [e["event"] for e in record.events]
        assert events.count("changed") == 2 and "source_added" in events
        assert "source_removed" in events
        # the target is durable: a restarted controller resumes the run as it is now
        assert [s["id"] for s in saved(w.store, record.id)["spec"]["sources"]] == ["cam1", "cam3"]
        assert cam1.stopped_with is None and w.cluster.sources[(record.id, "cam1")] is cam1

        # added again: it continues its files and its counters
        await w.core.add_source(record.id, {"id": "cam2", "uri": "synthetic://shapes?seed=1"})
        again = w.cluster.sources[(record.id, "cam2")]
        assert again is not cam2 and again.resume and again.carried["frames_emitted"] == 24
        again.answer = status("cam2", inc="new", decoded=5, emitted=5)
        await until(lambda: record.sources["cam2"]["frames_emitted"] == 29)
        assert record.sources["cam2"]["frames_decoded"] == 30
        assert record.state is not RunState.STOPPED and record.state is not RunState.FINISHED
        await w.core.close()

    play(test)


def test_a_changed_source_alone_restarts_and_continues(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, (cam1, cam2) = await w.submit(ids=("cam1", "cam2"))
        w.stream([cam1, cam2], decoded=10, emitted=10)
        await until(lambda: record.sources["cam2"]["frames_emitted"] == 10)
        new = spec(tmp_path / "r", "r", ids=("cam1", "cam2"))
        new["sources"][1]["fps"] = 5
        dry = await w.core.submit(new, dry_run=True)
        assert not dry["applied"] and cam2.stopped_with is None
        assert [s["action"] for s in dry["plan"]["sources"]] == ["keep", "restart"]
        out = await w.core.submit(new)
        assert out["applied"] and out["run_id"] == record.id
        assert cam1.stopped_with is None and cam2.stopped_with is not None
        restarted = w.cluster.sources[(record.id, "cam2")]
        assert restarted is not cam2 and restarted.resume
        assert restarted.spec["sources"][1]["fps"] == 5
        restarted.answer = status("cam2", inc="b", decoded=3, emitted=3)
        await until(lambda: record.sources["cam2"]["frames_emitted"] == 13)
        assert record.sources["cam2"]["drops"] == {}
        assert record.state in (RunState.UP, RunState.WAITING, RunState.DEGRADED)
        await w.core.close()

    play(test)


def test_a_model_change_swaps_the_engine_under_the_untouched_sources(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit(ids=("cam1", "cam2"))
        old_key = record.engine_key
        out = await w.core.submit(
            spec(tmp_path / "r", "r", ids=("cam1", "cam2"), batching={"max_batch_size": 2})
        )
        assert out["plan"]["engine_swap"] and record.engine_key != old_key
        inference = w.cluster.inference
        assert all(s.stopped_with is None for s in sources)  # nothing restarted
        assert all(s.handed[-1] == (inference, record.engine_key) for s in sources)
        await until(lambda: old_key in inference.released)  # no frame waited on it
        assert record.engine_key not in inference.released
        assert "engine_swapped" in [e["event"] for e in record.events]
        await w.core.close()

    play(test)


def test_an_invalid_change_changes_nothing(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit(ids=("cam1", "cam2"))
        before = saved(w.store, record.id)["spec"]
        with pytest.raises(VsaError, match="output_dir cannot change"):
            await w.core.submit(spec(tmp_path / "other", "r", ids=("cam1", "cam3")))
        with pytest.raises(VsaError, match="no source 'nope'"):
            await w.core.remove_source(record.id, "nope")
        with pytest.raises(VsaError, match="already has a source 'cam1'"):
            await w.core.add_source(record.id, {"id": "cam1", "uri": "synthetic://shapes"})
        with pytest.raises(ConfigError):
            await w.core.add_source(record.id, {"id": "bad id!", "uri": "synthetic://shapes"})
        w2 = spec(tmp_path / "r", "r", ids=("cam1",))
        w2["sources"] = [
            {
                "id": "cam1",
                "uri": "synthetic://shapes",
                "lines": [{"id": "door", "points": [[0.1, 0.5], [0.9, 0.5]], "classes": ["zebra"]}],
            }
        ]
        with pytest.raises(ConfigError, match="zebra"):
            await w.core.submit(w2)
        assert saved(w.store, record.id)["spec"] == before
        assert all(s.stopped_with is None for s in sources)
        assert [s.id for s in record.spec.sources] == ["cam1", "cam2"]
        await w.core.close()

    play(test)


# --- pause and resume ------------------------------------------------------------------------
def test_pause_releases_everything_and_resume_continues(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit(ids=("cam1", "cam2"))
        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)
        inference = w.cluster.inference
        paused = await w.core.pause(record.id)
        assert paused["state"] == "PAUSED" and "vsa resume" in paused["reason"]
        assert all(s.stopped_with and s.killed for s in sources)
        assert record.actors == {} and inference.released == [record.engine_key]
        assert saved(w.store, record.id)["paused"] is True
        assert record.sources["cam1"]["frames_emitted"] == 10
        resumed = await w.core.resume(record.id)
        assert resumed["state"] == "WAITING" and record.state is RunState.WAITING
        with pytest.raises(VsaError, match="is not paused"):
            await w.core.resume(record.id)
        again = [w.cluster.sources[(record.id, s)] for s in ("cam1", "cam2")]
        assert all(s.resume and s.carried["frames_emitted"] == 10 for s in again)
        for s in again:
            s.answer = status(s.id, inc="r", decoded=4, emitted=4)
        await until(lambda: record.state is RunState.UP)
        assert record.sources["cam1"]["frames_emitted"] == 14
        events = [e["event"] for e in record.events]
        assert "paused" in events and "resumed" in events
        await w.core.close()

    play(test)


def test_a_drain_during_a_pause_resumes_paused(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit(ids=("cam1",))
        other, _ = await w.submit("o", ids=("c",))
        await w.core.pause(record.id)
        drained = await w.core.drain()
        assert drained["drained"] == [other.id]
        await w.core.close()
        again = core(w.cluster, w.store, w.t)  # the engine started again
        await again.recover()
        run = again.book.runs[record.id]
        assert run.state is RunState.PAUSED and run.actors == {}
        assert (record.id, "cam1") not in w.cluster.sources
        assert again.book.runs[other.id].actors  # the drained one resumed
        await again.resume(record.id)
        assert w.cluster.sources[(record.id, "cam1")].resume
        await again.close()

    play(test)


# --- shared engines and PENDING --------------------------------------------------------------
def test_runs_share_an_engine_and_one_that_does_not_fit_waits_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSA_MAX_ENGINES", "1")

    async def test() -> None:
        w = World(tmp_path)
        a, _ = await w.submit("a")
        b, _ = await w.submit("b")
        inference = w.cluster.inference
        assert a.engine_key == b.engine_key and set(inference.engines) == {a.engine_key}
        out = await w.core.submit(spec(tmp_path / "c", "c", batching={"max_batch_size": 2}))
        c = w.core.book.runs[out["run_id"]]
        assert out["state"] == "PENDING" and "VSA_MAX_ENGINES=1" in out["reason"]
        assert c.actors == {} and set(inference.engines) == {a.engine_key}
        assert saved(w.store, c.id)["state"] == "PENDING"
        await w.core.stop(a.id)
        assert c.state is RunState.PENDING  # b still uses the engine
        await w.core.stop(b.id)
        await until(lambda: c.state is RunState.WAITING)
        assert c.actors and set(inference.engines) == {c.engine_key}
        assert "started" in [e["event"] for e in c.events]
        await w.core.close()

    play(test)


def test_a_model_too_large_for_the_device_waits_pending(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        await w.core.ready()
        inference = w.cluster.start_inference(w.cluster.inference_slots()[0])
        real = inference.ensure_engine
        full = {"yes": True}

        async def ensure(model: dict, batching: dict, timeout_s: float) -> dict:
            if full["yes"]:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return await real(model, batching, timeout_s)

        inference.ensure_engine = ensure
        w.core.pool["inference"] = inference
        out = await w.core.submit(spec(tmp_path / "a", "a"))
        record = w.core.book.runs[out["run_id"]]
        assert out["state"] == "PENDING" and "device's memory" in out["reason"]
        full["yes"] = False
        await until(lambda: record.state is RunState.WAITING, steps=4000)
        await w.core.close()

    play(test)


# --- two clients at once ---------------------------------------------------------------------
def test_concurrent_adds_and_removes_end_consistent(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, (ref,) = await w.submit(ids=("ref",))

        async def client(sid: str) -> list[str]:
            done = []
            for i in range(10):
                if i % 2 == 0:
                    await w.core.add_source(record.id, {"id": sid, "uri": "synthetic://shapes"})
                    done.append("add")
                else:
                    await w.core.remove_source(record.id, sid)
                    done.append("remove")
            return done

        a, b = await asyncio.gather(client("a"), client("b"))
        assert a == b == ["add", "remove"] * 5
        assert [s.id for s in record.spec.sources] == ["ref"]
        assert set(record.actors) == {"ref"} and set(record.removed) == {"a", "b"}
        assert [s for (run, s) in w.cluster.sources if run == record.id] == ["ref"]
        assert ref.stopped_with is None
        assert [s["id"] for s in saved(w.store, record.id)["spec"]["sources"]] == ["ref"]
        await w.core.close()

    play(test)


def test_a_restarted_engine_resumes_the_latest_target(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, (cam1, cam2) = await w.submit(ids=("cam1", "cam2"))
        await w.core.add_source(record.id, {"id": "cam3", "uri": "synthetic://shapes"})
        await w.core.remove_source(record.id, "cam1")
        # the controller goes while a removed source's actor lingers (killed too late)
        lingering = w.cluster.start_source(record.id, {}, "cam1", None, None, None, False)
        await w.core.close()
        again = core(w.cluster, w.store, w.t, restarted=True)
        await again.recover()
        run = again.book.runs[record.id]
        assert [s.id for s in run.spec.sources] == ["cam2", "cam3"]
        assert set(run.actors) == {"cam2", "cam3"} and set(run.removed) == {"cam1"}
        assert lingering.killed and (record.id, "cam1") not in w.cluster.sources
        assert run.actors["cam2"] is cam2  # outlived the controller: taken up again
        events = [e["event"] for e in run.events]
        assert events[-1] == "recovered" and events.count("changed") == 2
        await again.close()

    play(test)
