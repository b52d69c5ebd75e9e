"""Runs outlive the whole engine: ``vsa drain``, then ``ray stop`` / ``ray start`` (or an
upgrade, or a reboot), or Ray killed outright. What is left is the run store on disk; a new
controller on a new, empty cluster resumes every active run with its id, its counters and its
files. The fake cluster of ``test_supervision_core`` stands for Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.test_supervision_core import FakeCluster, World, core, play, saved, until
from vsa.errors import VsaError
from vsa.runstate import RunState


def new_engine(w: World, last_alive: float | None = None):
    """A new cluster (nothing of the old one survives) and a new controller over the store."""
    w.cluster = FakeCluster()
    again = core(w.cluster, w.store, w.t)
    again.last_alive = last_alive
    return again


def test_a_drained_run_resumes_on_a_new_engine_with_its_counts(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)

        out = await w.core.drain(timeout_s=5)
        assert out["drained"] == [record.id]
        # the sources stopped like a stop (files closed) and were released
        assert all(s.stopped_with is not None and s.killed for s in sources)
        assert not w.cluster.sources
        # the run did not end: it is saved as active, its sources to start again
        assert not record.state.terminal and record.drained
        kept = saved(w.store, record.id)
        assert kept["state"] == "UP" and not kept["stop_requested"]
        assert {s["state"] for s in kept["sources"].values()} == {"CONNECTING"}
        assert [e["event"] for e in record.events][-1] == "drained"
        with pytest.raises(VsaError, match="draining"):
            await w.core.submit({})  # refused before it is even read
        assert (await w.core.drain())["drained"] == []  # twice: nothing more to do
        await w.core.close()

        w.t.now += 12.0  # ray stop, ray start
        again = new_engine(w, last_alive=w.t.now - 12.0)
        assert await again.recover() == {"runs": 1}
        run = again.book.runs[record.id]
        resumed = [w.cluster.sources[(record.id, sid)] for sid in ("cam1", "cam2")]
        assert all(s.resume for s in resumed)  # files continued, not truncated
        assert resumed[0].inference is w.cluster.inference is not None
        events = [e for e in run.events if e["event"] == "recovered"]
        assert events[-1]["after"] == "engine restart" and events[-1]["down_s"] == 12.0
        # the new incarnations count on from the drained counts
        w.stream(resumed, inc="b", decoded=4, emitted=4)
        await until(lambda: run.sources["cam1"]["frames_emitted"] == 14)
        assert run.state is RunState.UP
        await again.submit({"name": "another", **_source_spec(tmp_path)})  # not draining
        await again.close()

    play(test)


def _source_spec(tmp_path: Path) -> dict:
    return {
        "output_dir": str(tmp_path / "another"),
        "sources": [{"id": "a", "uri": "synthetic://shapes?frames=3"}],
    }


def test_a_run_resumes_after_ray_was_killed_without_a_drain(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, decoded=30, emitted=30)
        await until(lambda: record.state is RunState.UP)
        await until(lambda: saved(w.store, record.id)["sources"]["cam1"]["frames_emitted"] == 30)
        await w.core.close()  # SIGKILL: no drain, no stop; the cluster is gone with its actors

        again = new_engine(w)
        await again.recover()
        run = again.book.runs[record.id]
        resumed = [w.cluster.sources[(record.id, sid)] for sid in ("cam1", "cam2")]
        assert all(s.resume for s in resumed)
        assert {e["event"] for e in run.events} >= {"source_recreated", "recovered"}
        assert "down_s" not in run.events[-1]  # no heartbeat known: not guessed
        w.stream(resumed, inc="b", decoded=5, emitted=5)
        await until(lambda: run.sources["cam1"]["frames_emitted"] == 35)
        await again.close()

    play(test)


def test_stopped_and_finished_runs_stay_ended_on_a_new_engine(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        stopped, _ = await w.submit("stopped")
        await w.core.stop(stopped.id)
        drained, _ = await w.submit("drained")
        await w.core.drain()
        await w.core.close()

        again = new_engine(w)
        await again.recover()
        assert again.book.runs[stopped.id].state is RunState.STOPPED
        assert not any(rid == stopped.id for rid, _ in w.cluster.sources)
        assert {rid for rid, _ in w.cluster.sources} == {drained.id}
        await again.close()

    play(test)


def test_a_drained_run_stopped_before_the_restart_does_not_resume(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        await w.core.drain()
        summary = await w.core.stop(record.id)
        assert summary["state"] == "STOPPED"
        await w.core.close()
        again = new_engine(w)
        await again.recover()
        assert again.book.runs[record.id].state is RunState.STOPPED and not w.cluster.sources
        await again.close()

    play(test)


def test_a_drained_run_resumes_on_the_same_engine_when_the_service_starts_again(
    tmp_path: Path,
) -> None:
    """``vsa serve`` drained on SIGTERM and started again on a Ray head it did not start: the
    controller (detached) outlived it, drained; ``resume_drained`` ends the drain."""

    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources, decoded=10, emitted=10)  # at 25 fps
        await until(lambda: record.sources["cam1"]["fps"] == 25.0)
        await w.core.drain(timeout_s=5)
        # what status says of a drained run: its sources not running, no stale rate
        summary = (await w.core.status(record.id))["runs"][0]
        assert {(s["state"], s["fps"]) for s in summary["sources"]} == {("CONNECTING", 0.0)}
        assert summary["events"][-1]["event"] == "drained"
        drained_at = summary["events"][-1]["t"]

        w.t.now += 7.0  # the service's restart
        out = await w.core.resume_drained()
        assert out == {"draining": True, "resumed": [record.id]}
        run = w.core.book.runs[record.id]  # the record recovery read back from the store
        resumed = [w.cluster.sources[(record.id, sid)] for sid in ("cam1", "cam2")]
        assert all(s.resume for s in resumed)  # files continued, not truncated
        assert not set(map(id, resumed)) & set(map(id, sources))  # new actors
        assert all(s.inference is w.cluster.inference is not None for s in resumed)
        assert not run.drained and run.monitor is not None
        event = run.events[-1]
        # down since the drain (the fake clock also moves while other tasks sleep)
        assert (
            event["event"] == "recovered"
            and event["after"] == "service restart"
            and 7.0 <= event["down_s"] <= w.t.now - drained_at
        )
        assert w.core.last_alive is None  # recovery's clock is put back
        # the new incarnations count on from the drained counts
        w.stream(resumed, inc="b", decoded=4, emitted=4)
        await until(lambda: run.sources["cam1"]["frames_emitted"] == 14)
        assert run.state is RunState.UP
        await w.core.submit({"name": "another", **_source_spec(tmp_path)})  # accepted again
        assert await w.core.resume_drained() == {"draining": False, "resumed": []}
        assert w.cluster.sources[(record.id, "cam1")] is resumed[0]  # left alone
        await w.core.close()

    play(test)


def test_resume_drained_without_drained_runs_only_ends_the_refusal(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        await w.core.drain()  # nothing to drain: new runs are refused all the same
        with pytest.raises(VsaError, match="draining"):
            await w.core.submit({})
        assert await w.core.resume_drained() == {"draining": True, "resumed": []}
        record, sources = await w.submit()
        assert await w.core.resume_drained() == {"draining": False, "resumed": []}
        assert [w.cluster.sources[(record.id, s.id)] for s in sources] == sources
        assert "recovered" not in {e["event"] for e in record.events}
        await w.core.close()

    play(test)


def test_two_services_resuming_at_once_start_each_source_once(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        stopped, _ = await w.submit("stopped")
        record, _ = await w.submit()
        await w.core.drain()
        await w.core.stop(stopped.id)  # stopped while drained: stays stopped
        started = len(w.cluster.started)
        first, second = await asyncio.gather(w.core.resume_drained(), w.core.resume_drained())
        assert first["resumed"] == [record.id] and second["resumed"] == []
        assert len(w.cluster.started) == started + 2  # FakeCluster refuses a name taken
        assert w.core.book.runs[stopped.id].state is RunState.STOPPED
        await w.core.close()

    play(test)


def test_a_submit_that_waited_behind_a_drain_is_refused_not_left_running(tmp_path: Path) -> None:
    """A submit that passed the draining check while another held the submit lock, and got
    the lock after a drain did, is refused: its run would be neither drained nor resumable."""

    async def test() -> None:
        w = World(tmp_path)
        await w.core.ready()
        lock = w.core._submit_lock
        assert lock is not None
        await lock.acquire()  # a submit loading its model
        drain = asyncio.ensure_future(w.core.drain(timeout_s=5))
        await until(lambda: lock._waiters)  # the drain waits for the lock
        late = asyncio.ensure_future(w.core.submit({"name": "late", **_source_spec(tmp_path)}))
        await until(lambda: len(lock._waiters) == 2)  # and so does this submit, behind it
        lock.release()
        assert (await drain)["drained"] == []
        with pytest.raises(VsaError, match="draining"):
            await late
        assert not w.cluster.sources and not w.core.book.active()
        await w.core.close()

    play(test)
