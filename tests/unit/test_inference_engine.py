"""The batching engine without Ray: a fake runner in a real model thread, fake clocks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.unit.fakes import FakeClock
from vsa.batching import BatchFormer
from vsa.errors import ModelError
from vsa.inference import InferenceEngine
from vsa.sinks import FrameResult

WAIT_S = 2.0  # upper bound on any real wait; a passing test waits milliseconds


class Ticker:
    """A timer that moves 0.5 s every time it is read: each batch takes 0.5 s of model time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


class FakeRunner:
    """Each frame is a 1x1 array holding its value; each result is ``[("det", value)]``."""

    def __init__(self, max_batch_size: int = 4) -> None:
        self.max_batch_size = max_batch_size
        self.oom_events = 0
        self.fatal: str | None = None
        self.calls: list[list[int]] = []
        self.started = threading.Event()  # a call began
        self.gate: threading.Event | None = None  # when set up, calls wait for it
        self.on_call: Callable[[FakeRunner], None] | None = None  # once, inside the next call

    def run(self, frames: Sequence[np.ndarray]) -> list[list[Any]]:
        values = [int(f[0, 0]) for f in frames]
        self.calls.append(values)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT_S)
        on_call, self.on_call = self.on_call, None
        if on_call is not None:
            on_call(self)
        return [[("det", v)] for v in values]


def frames(*values: int) -> list[np.ndarray]:
    return [np.full((1, 1), v, np.int64) for v in values]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="model")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


Batch = tuple[str, float, int, int]


def make(
    executor: ThreadPoolExecutor,
    clock: FakeClock,
    wall: FakeClock | None = None,
    runner: FakeRunner | None = None,
    max_batch_size: int = 4,
    max_wait_s: float = 60.0,
    on_batch: Callable[[str, float, int, int], None] | None = None,
) -> tuple[InferenceEngine, FakeRunner]:
    runner = runner or FakeRunner(max_batch_size)
    engine = InferenceEngine(
        "key",
        SimpleNamespace(name="fake"),  # type: ignore[arg-type]
        BatchFormer(max_batch_size, max_wait_s, clock),
        runner,
        executor,
        clock=clock,
        wall_clock=wall or FakeClock(0.0),
        on_batch=on_batch,
        timer=Ticker(),
    )
    return engine, runner


async def settle(turns: int = 50) -> None:
    """Let every task that can run without waiting for time or a thread run."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), WAIT_S)


def submit(engine: InferenceEngine, stream: str, values: Sequence[int], **kw: Any) -> asyncio.Task:
    """A caller's submit as a task; indices are the frame values plus 1000."""
    coro = engine.submit(
        stream,
        frames(*values),
        [1000 + v for v in values],
        kw.get("deadlines"),
        kw.get("priority", 0),
        kw.get("group", stream.split("/", 1)[0]),
        kw.get("credit"),
    )
    return asyncio.get_running_loop().create_task(coro)


async def results(*tasks: asyncio.Task) -> list[Any]:
    return list(await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S))


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def check(result: FrameResult | None, value: int, batch_size: int, batch: int) -> None:
    assert isinstance(result, FrameResult)
    assert result.index == 1000 + value
    assert result.detections == [("det", value)]
    assert result.infer_ms == 500.0  # the Ticker: 0.5 s per batch
    assert (result.batch_size, result.batch) == (batch_size, batch)


def test_a_batch_forms_when_max_size_frames_wait(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=4)
        engine.start()
        first = submit(engine, "r/a", [0, 1, 2])
        await settle()
        await asyncio.sleep(0.02)
        assert runner.calls == []  # 3 of 4, and the clock does not move: nothing runs
        second = submit(engine, "r/b", [3])
        a, b = await results(first, second)
        assert [sorted(c) for c in runner.calls] == [[0, 1, 2, 3]]
        for value, result in zip([0, 1, 2], a, strict=True):
            check(result, value, batch_size=4, batch=1)
        check(b[0], 3, batch_size=4, batch=1)
        await engine.close()

    run(main())


def test_a_batch_forms_when_the_oldest_frame_waited_max_wait(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=4, max_wait_s=0.005)
        engine.start()
        task = submit(engine, "r/a", [7])
        await asyncio.sleep(0.03)  # real time passes; the former's clock does not
        assert runner.calls == []
        clock.advance(0.006)
        (out,) = await results(task)
        assert runner.calls == [[7]]
        check(out[0], 7, batch_size=1, batch=1)
        await engine.close()

    run(main())


def test_results_come_back_in_order_per_caller(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=3)
        a = submit(engine, "r/a", [0, 1, 2, 3])
        b = submit(engine, "r/b", [10, 11])
        await settle()  # both callers wait before the loop starts: 6 frames, 2 batches of 3
        engine.start()
        out_a, out_b = await results(a, b)
        assert len(runner.calls) == 2 and sorted(sum(runner.calls, [])) == [0, 1, 2, 3, 10, 11]
        for caller, values in ((out_a, [0, 1, 2, 3]), (out_b, [10, 11])):
            assert [r.index for r in caller] == [1000 + v for v in values]
            for value, result in zip(values, caller, strict=True):
                number = 1 if value in runner.calls[0] else 2
                check(result, value, batch_size=3, batch=number)
        totals = engine.totals()
        assert totals.pop("model_cpu_s") >= 0.0
        assert totals == {
            "batches": 2,
            "frames": 6,
            "model_s": 1.0,
            "stale": 0,
            "max_batch_size": 3,
            "oom_events": 0,
        }
        await engine.close()

    run(main())


def test_frames_past_their_deadline_resolve_to_none_without_taking_a_place(executor, clock, wall):
    async def main() -> None:
        seen: list[Batch] = []
        engine, runner = make(
            executor, clock, wall, max_batch_size=2, on_batch=lambda *a: seen.append(a)
        )
        now = wall.now
        task = submit(engine, "r/a", [0, 1, 2], deadlines=[now - 1, now + 1, now + 1])
        await settle()
        engine.start()
        (out,) = await results(task)
        assert out[0] is None  # stale: not computed
        check(out[1], 1, batch_size=2, batch=1)  # the stale frame left its place to frame 2
        check(out[2], 2, batch_size=2, batch=1)
        assert runner.calls == [[1, 2]]
        assert seen == [("fake", 0.5, 2, 1)]
        assert engine.totals()["stale"] == 1
        assert (engine.totals()["frames"], engine.totals()["batches"]) == (2, 1)
        await engine.close()

    run(main())


def test_a_caller_that_gave_up_is_skipped_and_not_counted_stale(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=1)
        gone = submit(engine, "r/a", [0])
        kept = submit(engine, "r/b", [1])
        await settle()
        gone.cancel()
        await settle()
        engine.start()
        (out,) = await results(kept)
        check(out[0], 1, batch_size=1, batch=1)
        assert runner.calls == [[1]]
        assert engine.totals()["stale"] == 0
        await engine.close()

    run(main())


def test_a_failing_model_call_fails_its_batch_and_the_loop_keeps_serving(executor, clock):
    async def main() -> None:
        seen: list[Batch] = []
        engine, runner = make(executor, clock, max_batch_size=2, on_batch=lambda *a: seen.append(a))

        def boom(r: FakeRunner) -> None:
            raise ValueError("boom")

        runner.on_call = boom
        engine.start()
        with pytest.raises(RuntimeError, match="inference failed: boom"):
            await results(submit(engine, "r/a", [0, 1]))
        (out,) = await results(submit(engine, "r/a", [2, 3]))
        check(out[0], 2, batch_size=2, batch=1)  # failed batches are not counted
        check(out[1], 3, batch_size=2, batch=1)
        assert seen == [("fake", 0.5, 2, 0)]
        assert engine.health()["fatal"] is None
        await engine.close()

    run(main())


def test_a_result_count_mismatch_fails_the_batch(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=2)
        runner.run = lambda frames: [[]]  # type: ignore[method-assign]
        engine.start()
        with pytest.raises(RuntimeError, match="model returned 1 results for 2 frames"):
            await results(submit(engine, "r/a", [0, 1]))
        await engine.close()

    run(main())


def test_a_failing_metrics_callback_never_breaks_inference(executor, clock):
    async def main() -> None:
        def broken(*args: Any) -> None:
            raise OSError("metrics agent gone")

        engine, _ = make(executor, clock, max_batch_size=1, on_batch=broken)
        engine.start()
        (out,) = await results(submit(engine, "r/a", [5]))
        check(out[0], 5, batch_size=1, batch=1)
        await engine.close()

    run(main())


def test_a_fatal_runner_error_fails_everything_waiting(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=1)
        runner.gate = threading.Event()

        def fatal(r: FakeRunner) -> None:
            r.fatal = "the model does not fit on this device"
            raise MemoryError("out of memory for a single frame")

        runner.on_call = fatal
        engine.start()
        first = submit(engine, "r/a", [0])
        await until(runner.started.is_set)
        waiting = [submit(engine, "r/b", [1]), submit(engine, "s/a", [2, 3])]
        await settle()
        assert engine.health()["waiting"] == 3
        runner.gate.set()
        with pytest.raises(RuntimeError, match="inference failed: out of memory"):
            await results(first)
        for task in waiting:
            with pytest.raises(ModelError, match="does not fit"):
                await results(task)
        assert runner.calls == [[0]]  # nothing else ran
        assert engine.fatal == "the model does not fit on this device"
        health = engine.health()
        assert (health["waiting"], health["running"], health["fatal"]) == (0, 0, engine.fatal)
        await engine.close()

    run(main())


def test_a_lower_runner_max_batch_size_lowers_the_formers(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=4)

        def oom_split(r: FakeRunner) -> None:
            r.max_batch_size, r.oom_events = 2, 1  # what BatchRunner does after a split

        runner.on_call = oom_split
        engine.start()
        (out,) = await results(submit(engine, "r/a", [0, 1, 2, 3]))
        assert [r.batch_size for r in out] == [4, 4, 4, 4]  # the split batch still ran whole
        assert engine.former.max_batch_size == 2
        assert engine.health()["max_batch_size"] == 2
        assert engine.totals()["oom_events"] == 1
        task = submit(engine, "r/a", [4, 5, 6, 7])
        (out,) = await results(task)
        assert runner.calls == [[0, 1, 2, 3], [4, 5], [6, 7]]
        assert [(r.batch_size, r.batch) for r in out] == [(2, 2), (2, 2), (2, 3), (2, 3)]
        await engine.close()

    run(main())


def test_two_groups_share_batches_in_turn(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=4)
        busy = submit(engine, "run1/cam", [0, 1, 2, 3, 4, 5], priority=5)
        light = submit(engine, "run2/cam", [100, 101])
        await settle()
        engine.start()
        out_busy, out_light = await results(busy, light)
        # one frame per run per turn, whatever run1's priority; run1 gets what run2 leaves
        assert runner.calls == [[0, 100, 1, 101], [2, 3, 4, 5]]
        assert [r.batch for r in out_busy] == [1, 1, 2, 2, 2, 2]
        assert [r.batch for r in out_light] == [1, 1]
        await engine.close()

    run(main())


def test_close_fails_waiting_futures(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=4)
        engine.start()
        task = submit(engine, "r/a", [0, 1])
        await settle()
        await engine.close()
        with pytest.raises(RuntimeError, match="model unloaded"):
            await results(task)
        assert runner.calls == []
        assert engine.health()["waiting"] == 0

    run(main())


def test_health_waiting_running_and_seconds_since_progress(executor, clock):
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=2)
        runner.gate = threading.Event()
        engine.start()
        clock.advance(5)
        assert engine.health() == {
            "model": "fake",
            "waiting": 0,
            "running": 0,
            "since_progress_s": 5.0,  # idle since the engine started
            "fatal": None,
            "max_batch_size": 2,
        }
        first = submit(engine, "r/a", [0, 1, 2])
        await until(runner.started.is_set)  # a batch of 2 is running, 1 frame waits
        clock.advance(2)
        assert engine.health() == {
            "model": "fake",
            "waiting": 1,
            "running": 2,
            "since_progress_s": 2.0,  # work arrived while idle: the stall clock started then
            "fatal": None,
            "max_batch_size": 2,
        }
        second = submit(engine, "r/b", [3])
        await settle()
        health = engine.health()
        assert (health["waiting"], health["since_progress_s"]) == (2, 2.0)  # busy: not reset
        clock.advance(0.25)
        runner.gate.set()
        await results(first, second)
        assert runner.calls == [[0, 1], [2, 3]]
        clock.advance(1.5)
        health = engine.health()
        assert (health["waiting"], health["running"], health["since_progress_s"]) == (0, 0, 1.5)
        await engine.close()

    run(main())


def test_results_say_when_frames_arrived_and_how_long_they_waited_for_their_batch(
    executor, clock, wall
):
    async def main() -> None:
        engine, runner = make(executor, clock, wall, max_batch_size=2)
        engine.start()
        first = submit(engine, "r/a", [0])
        await settle()
        wall.advance(0.25)  # the second frame comes 250 ms later and completes the batch
        second = submit(engine, "r/b", [1])
        (a,), (b,) = await results(first, second)
        assert a.arrived == 1_700_000_000.0 and b.arrived == 1_700_000_000.25
        assert a.queue_ms == pytest.approx(250.0) and b.queue_ms == pytest.approx(0.0)

    run(main())


def test_the_model_threads_cpu_in_their_batches_is_counted(executor, clock):
    # the benchmark subtracts it to show the engine's own overhead per frame
    async def main() -> None:
        engine, runner = make(executor, clock, max_batch_size=2)

        def burn(_: FakeRunner) -> None:  # 50 ms of this thread's CPU, whatever the host does
            started = time.thread_time()
            while time.thread_time() - started < 0.05:
                pass

        runner.on_call = burn
        engine.start()
        await results(submit(engine, "run/a", [1, 2]))
        assert 0.05 <= engine.totals()["model_cpu_s"] < 5.0
        await engine.close()

    run(main())


def test_with_two_batches_at_once_a_short_batch_waits_for_a_camera_on_its_way(clock):
    """Four cameras, one frame in flight each, two model threads: once every result went back,
    the first camera's next frame does not run alone (its batch would end sooner and bring it
    round more often); it waits for its fair share, and runs as soon as a second one is in.
    With one model thread, the same frame runs at once (max_wait 0)."""
    from vsa.inference.threads import Split, ThreadTuner

    async def scenario(workers: int) -> list[list[int]]:
        pool = ThreadPoolExecutor(2, thread_name_prefix="model")
        try:
            engine = InferenceEngine(
                "key",
                SimpleNamespace(name="fake"),  # type: ignore[arg-type]
                BatchFormer(8, 0.0, clock),
                FakeRunner(8),
                pool,
                clock=clock,
                wall_clock=FakeClock(0.0),
                timer=Ticker(),
                threads=ThreadTuner([Split(workers, 1)], clock),
            )
            engine.start()
            first = [submit(engine, cam, [k], credit=1) for k, cam in enumerate("abcd")]
            await results(*first)
            alone = submit(engine, "a", [10], credit=1)
            await settle()
            await asyncio.sleep(0.05)  # real time: the engine would have run a ready batch
            if workers > 1:
                assert not alone.done()
                await results(alone, submit(engine, "b", [11], credit=1))
            else:
                await results(alone)
            await engine.close()
            return engine.runner.calls
        finally:
            pool.shutdown(wait=True)

    assert asyncio.run(scenario(2))[-1] == [10, 11]
    assert asyncio.run(scenario(1))[-1] == [10]


class GatedRunner(FakeRunner):
    """A call whose first frame value has a gate waits for it (one per batch)."""

    def __init__(self, max_batch_size: int = 8) -> None:
        super().__init__(max_batch_size)
        self.gates: dict[int, threading.Event] = {}

    def run(self, frames: Sequence[np.ndarray]) -> list[list[Any]]:
        gate = self.gates.get(int(frames[0][0, 0]))
        if gate is not None:
            assert gate.wait(WAIT_S)
        return super().run(frames)


@pytest.mark.parametrize(
    ("ran_s", "other_ends", "waits"),
    [
        (0.9, True, True),  # the other batch is about to end: wait for it, then run
        (0.9, False, True),  # ... but not longer than ALIGN_WAIT batch times
        (0.3, False, False),  # the other batch has far to go: run at once
    ],
)
def test_a_ready_cohort_waits_for_a_batch_about_to_end_so_cohorts_stay_in_step(
    clock, ran_s: float, other_ends: bool, waits: bool
):
    """Four cameras, one frame in flight each, two model threads (a batch takes 1 s): the
    cohort whose batch ended first is ready again while the other batch still runs. On a shared
    CPU the threads do not run equally fast, and each cohort stays on its own thread, so the
    cohort on the faster one would get more fps run after run; it waits for a batch that is
    about to end (the cohorts stay in step), up to ALIGN_WAIT batch times, and not for one
    that has far to go."""
    from vsa.constants import ALIGN_WAIT
    from vsa.inference.threads import Split, ThreadTuner

    async def scenario() -> None:
        pool = ThreadPoolExecutor(2, thread_name_prefix="model")
        runner = GatedRunner()
        try:
            engine = InferenceEngine(
                "key",
                SimpleNamespace(name="fake"),  # type: ignore[arg-type]
                BatchFormer(8, 0.0, clock),
                runner,
                pool,
                clock=clock,
                wall_clock=FakeClock(0.0),
                timer=clock,
                threads=ThreadTuner([Split(2, 1)], clock),
            )
            engine.start()

            # warm-up: two batches of 1 s (the first batch is not counted in the batch time)
            for first in (0, 10):
                runner.gates = {first: threading.Event(), first + 2: threading.Event()}
                tasks = [submit(engine, cam, [first + k], credit=1) for k, cam in enumerate("abcd")]
                await until(lambda: engine.running == 4)
                clock.advance(1.0)
                for gate in runner.gates.values():
                    gate.set()
                await results(*tasks)
            assert engine.batch_s == pytest.approx(1.0)

            runner.gates = {20: threading.Event(), 22: threading.Event()}
            tasks = [submit(engine, cam, [20 + k], credit=1) for k, cam in enumerate("abcd")]
            await until(lambda: engine.running == 4)
            clock.advance(ran_s)
            runner.gates[20].set()  # cohort a+b ends first, and sends again at once
            await results(*tasks[:2])
            nxt = [submit(engine, cam, [30 + k], credit=1) for k, cam in enumerate("ab")]
            await settle()
            await asyncio.sleep(0.05)  # real time: the engine would have run a ready batch
            assert ([30, 31] in runner.calls) is not waits
            if waits and other_ends:
                runner.gates[22].set()
                await results(*tasks[2:], *nxt)
                assert runner.calls.index([22, 23]) < runner.calls.index([30, 31])
            elif waits:
                clock.advance(ALIGN_WAIT * 1.0 + 0.01)  # past the longest wait
                await results(*nxt)
                assert [22, 23] not in runner.calls
                runner.gates[22].set()
            else:
                await results(*nxt)
                runner.gates[22].set()
            await results(*tasks)
            await engine.close()
        finally:
            for gate in runner.gates.values():
                gate.set()
            pool.shutdown(wait=True)

    asyncio.run(scenario())
