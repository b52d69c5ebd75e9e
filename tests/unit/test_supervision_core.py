"""The controller's brain (``vsa.supervision.core``) on fake actors: no Ray, a fake clock.

The fakes stand for the engine's actors as ``actors/handles.py`` presents them: a
:class:`FakeCluster` (the named actors) with :class:`FakeSource` and :class:`FakeInference`
handles scripted to answer, die, be restarted or hang. Time is a :class:`FakeTime` whose
``sleep`` moves the clock and yields to the event loop, so the monitor and supervisor loops run
as fast as the test steps them (:func:`until`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from vsa.config import parse_run
from vsa.constants import ENGINE_TIMEOUT_S, METRICS_FLUSH_S, STATUS_TIMEOUT_S
from vsa.errors import ConfigError, VsaError
from vsa.runstate import RunState
from vsa.supervision.core import (
    ControllerCore,
    available_memory,
    check_stop_timeout,
    new_run_id,
)
from vsa.supervision.handles import DEFAULT_SLOT, ActorGone, Slot, error_name
from vsa.supervision.pool import plan_slots
from vsa.supervision.runbook import RunRecord
from vsa.supervision.store import MemoryRunStore

OOM = "the device cannot fit one frame (out of memory at batch size 1)"


# --- fakes -----------------------------------------------------------------------------------
class FakeTime:
    """Wall and monotonic clock in one; ``sleep`` advances it and yields to the loop."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``to_thread`` without a thread: the test's loop alone decides the order."""
    return fn(*args, **kwargs)


def status(
    sid: str,
    state: str = "STREAMING",
    inc: str = "a",
    decoded: int = 0,
    emitted: int = 0,
    drops: dict[str, int] | None = None,
    resumed: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A status as ``SourceActor.status`` returns it (the fields the controller reads)."""
    drops = dict(drops or {})
    return {
        "id": sid,
        "uri": f"synthetic://{sid}",
        "state": state,
        "code": None,
        "error": None,
        "incarnation": inc,
        "frames_decoded": decoded,
        "frames_inferred": emitted,
        "frames_emitted": emitted,
        "frames_dropped": sum(drops.values()),
        "drops": drops,
        "fps": 25.0,
        "latency_ms": {"p50": None, "p99": None},
        "resumed": resumed,
    }


class FakeInference:
    """The inference actor: loads engines, reports health as scripted, can die or hang."""

    def __init__(self, cluster: FakeCluster, slot: Slot) -> None:
        self.cluster, self.slot = cluster, slot
        self.num_gpus = slot.num_gpus
        self.alive = True
        self.hang = False  # health and ensure_engine get no answer in time
        self.engines: dict[str, dict[str, Any]] = {}
        self.loaded: list[str] = []
        self.released: list[str] = []

    def _check(self) -> None:
        if not self.alive:
            raise ActorGone("ActorDiedError")
        if self.hang:
            raise asyncio.TimeoutError

    async def ensure_engine(
        self, model: dict[str, Any], batching: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        assert timeout_s == ENGINE_TIMEOUT_S
        self._check()
        key = f"{model['name']}/{batching['max_batch_size']}"
        self.engines.setdefault(
            key, {"waiting": 0, "running": 0, "since_progress_s": 0.0, "fatal": None}
        )
        self.loaded.append(key)
        return {"key": key, "model": model["name"], "device": "cpu", "classes": ["x"]}

    async def release_engine(self, key: str, timeout_s: float) -> bool:
        self._check()
        self.released.append(key)
        return self.engines.pop(key, None) is not None

    async def health(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        assert timeout_s == STATUS_TIMEOUT_S
        self._check()
        return {k: dict(v) for k, v in self.engines.items()}

    def kill(self) -> None:
        self.alive = False


class FakeSource:
    """A source actor: answers ``answer`` (set by the test), or dies, restarts, hangs."""

    def __init__(
        self,
        cluster: FakeCluster,
        run_id: str,
        spec: dict[str, Any],
        source_id: str,
        inference: FakeInference | None,
        engine_key: str | None,
        sealed_uri: str | None,
        resume: bool,
        node: str | None = None,
        carried: dict[str, Any] | None = None,
    ) -> None:
        self.cluster, self.run_id, self.spec, self.id = cluster, run_id, spec, source_id
        self.node, self.carried = node, carried  # carried: the saved status it resumes from
        self.inference, self.engine_key = inference, engine_key
        self.sealed_uri, self.resume = sealed_uri, resume
        self.answer: dict[str, Any] = status(source_id, "CONNECTING")
        self.mode = "ok"  # ok | died | restarting | hang
        self.handed: list[tuple[FakeInference | None, str | None]] = []
        self.stopped_with: tuple[float, float] | None = None
        self.killed = False

    def _check(self) -> None:
        if self.mode == "died":
            raise ActorGone("ActorDiedError")
        if self.mode == "restarting":
            raise ActorGone("ActorUnavailableError", died=False)
        if self.mode == "hang":
            raise asyncio.TimeoutError

    async def status(self, timeout_s: float) -> dict[str, Any]:
        assert timeout_s == STATUS_TIMEOUT_S
        self._check()
        return dict(self.answer)

    def stop(self, timeout_s: float, wait_s: float) -> Awaitable[dict[str, Any]]:
        self.stopped_with = (timeout_s, wait_s)  # sent at once, before anything is awaited
        if self.answer["state"] not in ("FINISHED", "FAILED", "STOPPED"):
            self.answer = {**self.answer, "state": "STOPPED"}
        return self.status(STATUS_TIMEOUT_S)

    def set_inference(self, inference: Any, engine_key: str | None) -> None:
        self.inference, self.engine_key = inference, engine_key
        self.handed.append((inference, engine_key))

    def kill(self) -> None:
        self.killed = True
        if self.cluster.sources.get((self.run_id, self.id)) is self:
            del self.cluster.sources[(self.run_id, self.id)]


class FakeCluster:
    """The engine's named actors (a :class:`vsa.supervision.handles.Handles`)."""

    def __init__(self, gpus: float = 0, nodes: int = 1) -> None:
        # (node id, GPUs) of the live nodes; the first is the controller's
        self.nodes = [(f"node{chr(ord('a') + i)}" * 3, gpus) for i in range(nodes)]
        self.sources: dict[tuple[str, str], FakeSource] = {}
        self.started: list[FakeSource] = []
        self.inferences: list[FakeInference] = []
        self.named: dict[str, FakeInference] = {}  # live names
        self.name_lingers = 0  # checks a killed inference actor's name still answers
        self.hangs: set[str] = set()  # slots whose new actors never answer (cannot load)
        self.stats: tuple[int, int] | None = None

    def get_source(self, run_id: str, source_id: str) -> FakeSource | None:
        return self.sources.get((run_id, source_id))

    def start_source(self, run_id: str, spec: dict[str, Any], source_id: str, *rest: Any) -> Any:
        assert (run_id, source_id) not in self.sources, "the name is taken"
        source = FakeSource(self, run_id, spec, source_id, *rest)
        self.sources[(run_id, source_id)] = source
        self.started.append(source)
        return source

    @property
    def inference(self) -> FakeInference | None:
        """The first slot's actor (the only one on one node)."""
        return self.named.get(DEFAULT_SLOT)

    def get_inference(self, name: str = DEFAULT_SLOT) -> FakeInference | None:
        actor = self.named.get(name)
        if actor is not None and not actor.alive:
            if self.name_lingers <= 0:
                del self.named[name]
            self.name_lingers -= 1
        return self.named.get(name)

    def start_inference(self, slot: Slot) -> FakeInference:
        assert slot.name not in self.named, "the name is taken"
        actor = self.named[slot.name] = FakeInference(self, slot)
        actor.hang = slot.name in self.hangs
        self.inferences.append(actor)
        return actor

    def inference_slots(self) -> list[Slot]:
        return plan_slots(self.nodes, self.nodes[0][0] if self.nodes else None, env={})

    def store_stats(self) -> tuple[int, int] | None:
        return self.stats


# --- helpers ---------------------------------------------------------------------------------
def spec(out: Path, name: str = "r", ids: tuple[str, ...] = ("cam1", "cam2"), **extra: Any) -> dict:
    run = parse_run(
        {
            "name": name,
            "output_dir": str(out),
            "sources": [
                {"id": i, "uri": f"synthetic://shapes?frames=3&seed={n}"} for n, i in enumerate(ids)
            ],
            **extra,
        },
        env={},
    )
    return run.model_dump()


def core(
    cluster: FakeCluster, store: MemoryRunStore, t: FakeTime, restarted: bool = False
) -> ControllerCore:
    return ControllerCore(
        cluster,
        store,
        restarted=restarted,
        clock=t,
        monotonic=t,
        sleep=t.sleep,
        to_thread=inline,
        memory=lambda: 64 << 30,
    )


async def until(check: Callable[[], Any], steps: int = 400) -> None:
    """Let the loop run until ``check()`` holds (at most ``steps`` turns)."""
    for _ in range(steps):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def play(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def saved(store: MemoryRunStore, run_id: str) -> dict[str, Any]:
    return json.loads(store.texts[run_id])


class World:
    """One controller core over a fake cluster, a memory store and a fake clock."""

    def __init__(self, tmp_path: Path, gpus: float = 0) -> None:
        self.tmp = tmp_path
        self.cluster = FakeCluster(gpus)
        self.store = MemoryRunStore()
        self.t = FakeTime()
        self.core = core(self.cluster, self.store, self.t)

    async def submit(self, name: str = "r", **extra: Any) -> tuple[RunRecord, list[FakeSource]]:
        out = await self.core.submit(spec(self.tmp / name, name, **extra))
        record = self.core.book.runs[out["run_id"]]
        return record, [self.cluster.sources[(record.id, sid)] for sid in record.actors]

    def stream(self, sources: list[FakeSource], **kw: Any) -> None:
        for s in sources:
            s.answer = status(s.id, **kw)


# --- submit, monitor, finish -----------------------------------------------------------------
def test_a_run_is_submitted_monitored_and_finished_with_its_report(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        out = await w.core.submit(spec(tmp_path / "out"))
        run_id = out["run_id"]
        assert run_id.startswith("r-") and out["model"]["device"] == "cpu"
        assert "key" not in out["model"]
        record = w.core.book.runs[run_id]
        inference = w.cluster.inference
        assert inference is not None and inference.loaded == [record.engine_key]
        sources = [w.cluster.sources[(run_id, sid)] for sid in ("cam1", "cam2")]
        assert [(s.inference, s.engine_key, s.resume) for s in sources] == [
            (inference, record.engine_key, False)
        ] * 2
        assert sources[0].spec["output_dir"] == str((tmp_path / "out").resolve())
        assert saved(w.store, run_id)["state"] == "WAITING"

        w.stream(sources, decoded=10, emitted=10)
        await until(lambda: record.state is RunState.UP)
        assert record.sources["cam1"]["frames_emitted"] == 10
        assert saved(w.store, run_id)["state"] == "UP"

        w.stream(sources, state="FINISHED", decoded=30, emitted=30)
        await until(lambda: record.state is RunState.FINISHED)
        assert record.finished_at == pytest.approx(w.t.now, abs=5)
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["state"] == "FINISHED"
        assert record.report and record.report[0].endswith("report.json")
        assert inference.released == [record.engine_key]
        assert record.actors == {}
        assert saved(w.store, run_id)["state"] == "FINISHED"
        # the source actors live METRICS_FLUSH_S longer (their last metrics), then are removed
        await until(lambda: all(s.killed for s in sources))
        assert METRICS_FLUSH_S in w.t.slept
        status_out = await w.core.status()
        assert [r["state"] for r in status_out["runs"]] == ["FINISHED"]
        await w.core.close()

    play(test)


def test_an_engine_another_run_uses_is_not_released(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        first, one = await w.submit("a")
        second, two = await w.submit("b")
        assert first.engine_key == second.engine_key
        w.stream(one, state="FINISHED")
        await until(lambda: first.state is RunState.FINISHED)
        assert w.cluster.inference is not None and w.cluster.inference.released == []
        await w.core.stop(second.id)
        assert w.cluster.inference.released == [second.engine_key]
        await w.core.close()

    play(test)


def test_submit_of_an_active_name_changes_it_and_cuda_without_a_gpu_is_refused(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit("a")
        again = await w.core.submit(spec(tmp_path / "a", "a"))  # the same file: nothing to do
        assert again["run_id"] == record.id and again["plan"]["noop"] and not again["applied"]
        with pytest.raises(VsaError, match="has no GPU"):
            await w.core.submit(spec(tmp_path / "c", "c", model={"device": "cuda"}))
        assert len(w.core.book) == 1
        await w.core.close()

    play(test)


def test_analytics_refused_for_an_unknown_class_or_without_the_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = {"id": "door", "points": [[0.5, 0], [0.5, 1]], "classes": ["x", "dog"]}

    def counting(name: str, out: str) -> dict:
        run = spec(tmp_path / out, name)
        run["sources"][0]["lines"] = [line]
        return parse_run(run, env={}).model_dump()

    async def test() -> None:
        w = World(tmp_path)
        with pytest.raises(ConfigError) as info:  # the fake model's classes are ["x"]
            await w.core.submit(counting("a", "a"))
        assert info.value.problems == [
            "sources[0].lines[0].classes: unknown class 'dog'; the model's classes are 'x'"
        ]
        monkeypatch.setattr("vsa.supervision.changes.tracker_installed", lambda: False)
        with pytest.raises(VsaError, match="needs the trackers package"):
            await w.core.submit(counting("b", "b"))
        assert len(w.core.book) == 0
        await w.core.close()

    play(test)


def test_each_gpu_gets_an_inference_actor_and_the_streams_are_spread(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path, gpus=2)
        record, sources = await w.submit("c", model={"device": "cuda"})
        assert [(i.slot.name, i.num_gpus) for i in w.cluster.inferences] == [
            ("inference", 1),
            ("inference-nodeanod-1", 1),
        ]
        assert record.placement == {"cam1": "inference", "cam2": "inference-nodeanod-1"}
        assert [s.inference for s in sources] == w.cluster.inferences
        await w.core.close()

    play(test)


def test_a_dead_inference_actor_at_submit_is_replaced_once(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit("a")
        w.cluster.inference.kill()  # type: ignore[union-attr]
        await w.core.stop(record.id)
        record, _ = await w.submit("b")  # the core still holds the dead one: it tries, then anew
        assert len(w.cluster.inferences) == 2 and w.core.inference is w.cluster.inferences[1]
        w.cluster.inferences[1].hang = True
        with pytest.raises(VsaError, match=f"did not load the model within {ENGINE_TIMEOUT_S:.0f}"):
            await w.submit("c")
        await w.core.close()

    play(test)


# --- stop ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answers", "state"),
    [
        (("CONNECTING", "CONNECTING"), RunState.WAITING),
        (("STREAMING", "STREAMING"), RunState.UP),
        (("STREAMING", "RECONNECTING"), RunState.DEGRADED),
    ],
)
def test_stop_from_each_state_ends_every_source(
    tmp_path: Path, answers: tuple[str, str], state: RunState
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        for s, answer in zip(sources, answers, strict=True):
            s.answer = status(s.id, answer, decoded=4, emitted=3, drops={"stale": 1})
        await until(lambda: record.state is state and record.sources["cam1"]["state"] == answers[0])
        summary = await w.core.stop(record.id, timeout_s=5)
        assert summary["state"] == "STOPPED"
        assert [s["state"] for s in summary["sources"]] == ["STOPPED", "STOPPED"]
        assert summary["sources"][0]["frames_emitted"] == 3
        assert all(s.stopped_with and s.stopped_with[0] == 5 for s in sources)
        assert saved(w.store, record.id)["state"] == "STOPPED"
        assert (tmp_path / "r" / "report.json").exists()
        # stopping again answers the same summary
        assert (await w.core.stop(record.id))["state"] == "STOPPED"
        await w.core.close()

    play(test)


def test_a_source_whose_stop_fails_is_stopped_with_why(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        sources[1].mode = "died"
        summary = await w.core.stop(record.id)
        assert summary["state"] == "STOPPED"
        assert summary["sources"][1]["error"] == "stop failed: ActorDiedError"
        await w.core.close()

    play(test)


@pytest.mark.parametrize("timeout_s", [0, -1, 3601, float("nan"), True, "5"])
def test_a_stop_timeout_out_of_range_is_refused(timeout_s: Any) -> None:
    with pytest.raises(VsaError, match="stop timeout"):
        check_stop_timeout(timeout_s)


def test_run_ids_carry_the_name_and_local_time() -> None:
    run_id = new_run_id("cam", 1_700_000_000.0)
    assert run_id.startswith("cam-2023111") and len(run_id.rsplit("-", 1)[1]) == 4


# --- sources: died, restarted by Ray ---------------------------------------------------------
def test_a_source_actor_that_died_is_failed_and_the_others_go_on(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.stream(sources)
        await until(lambda: record.state is RunState.UP)
        sources[1].mode = "restarting"  # Ray is restarting it: nothing changes yet
        await until(lambda: w.t.now > 1_700_000_010)
        assert record.sources["cam2"]["state"] == "STREAMING"
        sources[1].mode = "died"
        await until(lambda: record.sources["cam2"]["state"] == "FAILED")
        assert record.sources["cam2"]["error"] == "source actor died: ActorDiedError"
        await until(lambda: record.state is RunState.DEGRADED)
        sources[0].mode = "hang"  # no answer in time: the last status stands
        await until(lambda: w.t.now > 1_700_000_020)
        assert record.sources["cam1"]["state"] == "STREAMING"
        sources[0].mode = "died"
        await until(lambda: record.state is RunState.FAILED)
        assert record.error and "cam1: source actor died: ActorDiedError" in record.error
        await w.core.close()

    play(test)


def test_a_new_incarnation_carries_the_counters_over_and_is_saved(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit(ids=("cam1",))
        sources[0].answer = status("cam1", decoded=10, emitted=8, drops={"stale": 1})
        await until(lambda: record.sources["cam1"]["frames_decoded"] == 10)
        sources[0].answer = status("cam1", inc="b", decoded=2, emitted=2, resumed=None)
        await until(lambda: record.sources["cam1"]["restarts"] == 1)
        s = record.sources["cam1"]
        assert (s["frames_decoded"], s["frames_emitted"]) == (12, 10)
        assert s["drops"] == {"stale": 1, "source_lost": 1}
        kept = saved(w.store, record.id)
        assert kept["base"]["cam1"]["restarts"] == 1
        assert [e["event"] for e in kept["events"]] == ["source_restarted"]
        await w.core.close()

    play(test)


# --- the inference actor ---------------------------------------------------------------------
def test_a_dead_inference_actor_is_restarted_and_the_sources_get_the_new_one(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = World(tmp_path)
        first, one = await w.submit("a")
        second, two = await w.submit("b", batching={"max_batch_size": 4})
        w.stream(one + two)
        old = w.cluster.inference
        assert old is not None
        old.kill()
        w.cluster.name_lingers = 2  # the name is free a little after the actor died
        await until(lambda: len(w.cluster.inferences) == 2 and first.events and second.events)
        new = w.cluster.inferences[1]
        assert w.core.inference is new and new.alive
        assert sorted(new.loaded) == sorted({first.engine_key, second.engine_key})
        for record, sources in ((first, one), (second, two)):
            assert all(s.handed == [(new, record.engine_key)] for s in sources)
            event = record.events[-1]
            assert event["event"] == "inference_restarted"
            assert event["reason"] == "inference actor died (ActorDiedError)"
            assert saved(w.store, record.id)["events"][-1]["event"] == "inference_restarted"
        assert 0.1 in w.t.slept  # waited for the name
        assert first.state is RunState.UP
        await w.core.close()

    play(test)


def test_an_inference_actor_without_an_answer_is_restarted(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        w.cluster.inference.hang = True  # type: ignore[union-attr]
        await until(lambda: record.events)
        # the hung actor is killed (its name must be free for the new one)
        assert not w.cluster.inferences[0].alive and len(w.cluster.inferences) == 2
        assert record.events[-1]["reason"] == "inference actor did not answer within 10 s"
        await w.core.close()

    play(test)


def test_a_stalled_inference_actor_is_killed_and_restarted(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit(batching={"stall_timeout_s": 30})
        old = w.cluster.inference
        assert old is not None and record.engine_key
        old.engines[record.engine_key].update(waiting=5, since_progress_s=20.0)
        await until(lambda: w.t.now > 1_700_000_010)
        assert old.alive and not record.events  # busy, progressing recently enough
        old.engines[record.engine_key].update(since_progress_s=31.0)
        await until(lambda: record.events)
        assert not old.alive and len(w.cluster.inferences) == 2
        assert record.events[-1]["event"] == "inference_restarted"
        assert record.events[-1]["reason"].startswith(
            "pipeline blocked: no batch finished for 31 s"
        )
        assert all(s.handed == [(w.cluster.inferences[1], record.engine_key)] for s in sources)
        await w.core.close()

    play(test)


def test_repeated_out_of_memory_fails_the_runs_on_that_engine(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        doomed, doomed_sources = await w.submit("a")
        other, _ = await w.submit("b", batching={"max_batch_size": 2})
        w.stream(doomed_sources, decoded=3, emitted=3)
        inference = w.cluster.inference
        assert inference is not None and doomed.engine_key
        inference.engines[doomed.engine_key]["fatal"] = OOM
        await until(lambda: doomed.state is RunState.FAILED)
        assert doomed.error == f"inference: {OOM}"
        assert [e["event"] for e in doomed.events] == ["fatal"]
        assert all(s.stopped_with for s in doomed_sources)
        assert [s["state"] for s in doomed.summary()["sources"]] == ["STOPPED", "STOPPED"]
        assert inference.released == [doomed.engine_key]
        assert other.state is RunState.WAITING and len(w.cluster.inferences) == 1
        await w.core.close()

    play(test)


def test_a_run_whose_model_cannot_be_reloaded_after_a_restart_fails(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, sources = await w.submit()
        w.cluster.inference.kill()  # type: ignore[union-attr]
        w.cluster.hangs.add("inference")  # its replacement cannot load the model
        await until(lambda: record.state is RunState.FAILED)
        assert record.error and record.error.startswith(
            "the inference actor could not be restarted: the inference actor did not load"
        )
        assert all(s.stopped_with for s in sources)
        await w.core.close()

    play(test)


def test_spilling_warns_every_active_run(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        w.cluster.stats = (100 << 20, 0)
        await w.core.check_store([record])  # the first check only notes what spilled so far
        w.cluster.stats = (100 << 20, 64 << 20)
        await w.core.check_store([record])
        assert record.summary()["warnings"][0].startswith("object store spilling to disk: 64 MiB")
        assert record.events[-1]["event"] == "warning"
        w.cluster.stats = None  # not known: nothing changes
        await w.core.check_store([record])
        await w.core.close()

    play(test)


# --- recovery --------------------------------------------------------------------------------
def test_a_new_controller_kills_an_inference_actor_left_by_its_predecessor(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        cluster, t = FakeCluster(), FakeTime()
        left = cluster.start_inference(Slot())
        cluster.name_lingers = 3
        fresh = core(cluster, MemoryRunStore(), t)
        assert await fresh.recover() == {"runs": 0}
        assert not left.alive and cluster.inference is None
        assert t.slept == [0.1] * 4

    play(test)


def test_a_restarted_controller_recovers_its_runs(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        live, live_sources = await w.submit("live")
        lost, lost_sources = await w.submit("lost")
        stopping, stopping_sources = await w.submit("stopping")
        ended, ended_sources = await w.submit("ended")
        w.stream(live_sources + lost_sources + stopping_sources, decoded=5, emitted=5)
        w.stream(ended_sources, state="FINISHED")
        await until(lambda: live.state is RunState.UP and ended.state is RunState.FINISHED)
        stopping.stop_requested = True  # the controller died in the middle of this stop
        w.core.book.save(stopping)
        await w.core.close()  # the controller's process dies; actors and the store live on
        # Ray restarted some actors meanwhile; one source actor is gone for good
        del w.cluster.sources[(lost.id, "cam2")]
        inference = w.cluster.inference
        assert inference is not None
        # the ended run's actors were not reaped before the controller died
        for s in ended_sources:
            w.cluster.sources[(ended.id, s.id)] = s
            s.killed = False

        again = core(w.cluster, w.store, w.t, restarted=True)
        assert await again.recover() == {"runs": 4}
        assert again.inference is inference and inference.alive  # kept: same code
        assert all(s.killed for s in ended_sources)
        runs = again.book.runs
        assert runs[ended.id].state is RunState.FINISHED
        # re-attached: the live sources get the inference handle, nothing is recreated
        assert all(s.handed == [(inference, live.engine_key)] for s in live_sources)
        assert [e["event"] for e in runs[live.id].events] == ["recovered"]
        # the lost source is recreated, continuing its files
        recreated = w.cluster.sources[(lost.id, "cam2")]
        assert recreated is not lost_sources[1] and recreated.resume
        assert recreated.inference is inference
        assert [e["event"] for e in runs[lost.id].events] == ["source_recreated", "recovered"]
        # the monitors go on from the saved counts
        await until(lambda: runs[live.id].state is RunState.UP)
        assert runs[live.id].sources["cam1"]["frames_emitted"] == 5
        # the stop cut short is finished
        await until(lambda: runs[stopping.id].state is RunState.STOPPED)
        assert all(s.stopped_with for s in stopping_sources)
        assert saved(w.store, stopping.id)["state"] == "STOPPED"
        await again.close()

    play(test)


def test_a_run_whose_model_cannot_be_reloaded_on_recovery_fails(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        await w.core.close()
        w.cluster.inference.hang = True  # type: ignore[union-attr]
        again = core(w.cluster, w.store, w.t, restarted=True)
        await again.recover()
        run = again.book.runs[record.id]
        assert run.state is RunState.FAILED
        assert run.error and run.error.startswith("could not reload the model after a controller")
        await again.close()

    play(test)


def test_a_stop_waits_for_recovery(tmp_path: Path) -> None:
    async def test() -> None:
        w = World(tmp_path)
        record, _ = await w.submit()
        await w.core.close()
        again = core(w.cluster, w.store, w.t, restarted=True)
        summary = await again.stop(record.id)  # the first call recovers first
        assert summary["state"] == "STOPPED"
        await again.close()

    play(test)


def test_errors_read_as_the_ray_exception_did() -> None:
    assert error_name(ActorGone("ActorDiedError")) == "ActorDiedError"
    assert error_name(asyncio.TimeoutError()) == "TimeoutError"
    gone = ActorGone("ActorUnavailableError", died=False, message="restarting")
    assert (str(gone), gone.died) == ("restarting", False)


# --- several inference actors (one per node here) ----------------------------------------------
class TwoNodes(World):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.cluster = FakeCluster(nodes=2)
        self.core = core(self.cluster, self.store, self.t)

    def actor(self, name: str) -> FakeInference:
        return self.cluster.named[name]


B = "inference-nodebnod-0"


def test_streams_are_spread_over_the_nodes_next_to_their_inference_actor(tmp_path: Path) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2", "c3", "c4"))
        a, b = w.actor("inference"), w.actor(B)
        assert a.loaded == b.loaded == [record.engine_key]  # every actor can take any stream
        assert record.placement == {"c1": "inference", "c2": B, "c3": "inference", "c4": B}
        for s in sources:  # each source runs on the node of the actor that serves it
            assert s.inference is w.cluster.named[record.placement[s.id]]
            assert s.node == s.inference.slot.node
        assert saved(w.store, record.id)["placement"] == record.placement
        # a second run fills the less busy actor first
        other, _ = await w.submit("o", ids=("d1",))
        assert other.placement == {"d1": "inference"}
        await w.core.close()

    play(test)


def test_one_nodes_inference_actor_dying_leaves_the_other_nodes_streams_alone(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2"))
        w.stream(sources)
        on_a, on_b = sources
        old_b = w.actor(B)
        old_b.kill()
        await until(lambda: record.events and len(w.cluster.inferences) == 3)
        new_b = w.cluster.inferences[2]
        assert new_b.slot.name == B and w.core.pool[B] is new_b
        assert on_b.handed == [(new_b, record.engine_key)]
        assert on_a.handed == []  # untouched: same actor, nothing handed over
        assert w.actor("inference").alive and len(w.actor("inference").loaded) == 1
        assert record.events[-1] == {
            **record.events[-1],
            "event": "inference_restarted",
            "inference": B,
            "reason": "inference actor died (ActorDiedError)",
        }
        assert record.state is RunState.UP
        await w.core.close()

    play(test)


@pytest.mark.parametrize("seen_by", ["supervisor", "monitor"])
def test_the_streams_of_a_node_that_left_move_to_the_others(tmp_path: Path, seen_by: str) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2", "c3"))
        w.stream(sources)
        await until(lambda: record.state is RunState.UP)
        w.cluster.nodes.pop()  # node b is gone, with its actors: c2's source and b's inference
        w.actor(B).kill()
        if seen_by == "monitor":  # the source's death is seen before the supervisor looks
            sources[1].mode = "died"
        await until(lambda: any(e["event"] == "source_recreated" for e in record.events))
        a = w.actor("inference")
        assert record.placement == {"c1": "inference", "c2": "inference", "c3": "inference"}
        # c2's source actor is created again beside a, continuing its files
        again = w.cluster.sources[(record.id, "c2")]
        assert again is not sources[1] and sources[1].killed
        assert again.resume and again.inference is a and again.node == a.slot.node
        # its earlier files are on the node that left: nothing carried to check them against
        assert again.carried is None
        assert record.actors["c2"] is again
        assert sources[0].handed == sources[2].handed == []  # the others: untouched
        assert [e["event"] for e in record.events][-2:] == ["streams_moved", "source_recreated"]
        assert record.events[-2]["sources"] == ["c2"]
        assert saved(w.store, record.id)["placement"]["c2"] == "inference"
        again.answer = status("c2", "STREAMING", inc="b", decoded=3, emitted=3)
        await until(lambda: record.sources["c2"]["state"] == "STREAMING")
        assert record.state is RunState.UP  # never failed
        await w.core.close()

    play(test)


def test_streams_move_when_their_actor_cannot_be_restarted_and_a_run_fails_only_without_any(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2"))
        w.stream(sources)
        w.cluster.hangs.add(B)  # node b cannot load the model any more
        w.actor(B).kill()
        await until(lambda: any(e["event"] == "streams_moved" for e in record.events))
        assert record.placement == {"c1": "inference", "c2": "inference"}
        assert sources[1].handed == [(w.actor("inference"), record.engine_key)]
        assert record.state is RunState.UP and record.error is None
        await w.core.close()

    play(test)


def test_a_recovered_controller_keeps_each_stream_on_its_actor(tmp_path: Path) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2"))
        await w.core.close()
        again = core(w.cluster, w.store, w.t, restarted=True)
        await again.recover()
        run = again.book.runs[record.id]
        assert run.placement == {"c1": "inference", "c2": B}
        assert sources[0].handed == [(w.actor("inference"), record.engine_key)]
        assert sources[1].handed == [(w.actor(B), record.engine_key)]
        await again.close()

    play(test)


def test_a_controller_restarted_after_a_node_left_recreates_that_nodes_sources(
    tmp_path: Path,
) -> None:
    async def test() -> None:
        w = TwoNodes(tmp_path)
        record, sources = await w.submit(ids=("c1", "c2"))
        await w.core.close()
        w.cluster.nodes.pop()  # node b left while no controller watched (it ran there)
        w.actor(B).kill()
        again = core(w.cluster, w.store, w.t, restarted=True)
        await again.recover()
        run = again.book.runs[record.id]
        a = w.actor("inference")
        assert run.placement == {"c1": "inference", "c2": "inference"}
        assert sources[0].handed == [(a, record.engine_key)]
        recreated = w.cluster.sources[(record.id, "c2")]
        assert sources[1].killed and recreated is not sources[1]
        assert recreated.resume and recreated.inference is a and recreated.node == a.slot.node
        assert [e["event"] for e in run.events] == [
            "streams_moved",
            "source_recreated",
            "recovered",
        ]
        await again.close()

    play(test)


def test_the_host_memory_admission_reads_is_known_on_this_host() -> None:
    # admission refuses a run that would not fit in memory only when it can read the host's
    # available memory: a missing dependency silently turned that check off once
    free = available_memory()
    assert isinstance(free, int) and free > 0
