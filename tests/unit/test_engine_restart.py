"""Runs outlive the whole engine: ``vsa drain``, then ``ray stop`` / ``ray start`` (or an
upgrade, or a reboot), or Ray killed outright. What is left is the run store on disk; a new
controller on a new, empty cluster resumes every active run with its id, its counters and its
files. The fake cluster of ``test_supervision_core`` stands for Ray."""

from __future__ import annotations

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
