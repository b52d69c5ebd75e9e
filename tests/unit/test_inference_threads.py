"""How the model uses the CPU (batches at once x threads each), measured on the work: a fake
model whose speed depends on the split, a fake clock; plus the engine running the split."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.unit.fakes import FakeClock
from tests.unit.test_inference_engine import WAIT_S, FakeRunner, frames, make, until
from vsa.errors import VsaError
from vsa.inference import InferenceEngine
from vsa.inference.threads import Split, ThreadTuner, splits
from vsa.settings import model_splits

S = Split


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [(1, [S(1, 1)]), (2, [S(2, 1), S(1, 2)]), (3, [S(2, 1), S(1, 3)]),
     (4, [S(2, 2), S(1, 4), S(4, 1)]), (16, [S(2, 8), S(1, 16), S(4, 4)])],
)  # fmt: skip
def test_splits_fill_the_cpus_two_one_or_four_batches_at_once(cpus, expected):
    assert splits(cpus) == expected


def test_the_settings_pin_either_side():
    assert model_splits({}, cpus=2) == [S(2, 1), S(1, 2)]
    assert model_splits({"VSA_TORCH_THREADS": "3"}, cpus=8) == [S(1, 3)]  # as before workers
    assert model_splits({"VSA_MODEL_WORKERS": "2"}, cpus=8) == [S(2, 4)]
    assert model_splits({"VSA_MODEL_WORKERS": "3", "VSA_TORCH_THREADS": "1"}, cpus=2) == [S(3, 1)]
    assert model_splits({"VSA_TORCH_THREADS": "auto"}, cpus=1) == [S(1, 1)]
    with pytest.raises(VsaError, match="VSA_MODEL_WORKERS must be auto or a positive integer"):
        model_splits({"VSA_MODEL_WORKERS": "0"}, cpus=2)


ONE, TWO = S(1, 2), S(2, 1)  # one batch on 2 threads; two batches at once on 1 thread each


def drive(tuner: ThreadTuner, clock: FakeClock, ms_per_frame: dict[Split, float], batches: int):
    """Run ``batches`` batches of 2 frames; each takes the busy time its split gives."""
    used = []
    for _ in range(batches):
        split = tuner.split
        used.append(split)
        seconds = 2 * ms_per_frame[split] / 1000
        clock.advance(seconds)
        tuner.record(2, seconds)
    return used


def test_it_keeps_the_split_that_gives_the_most_frames_per_busy_second():
    clock = FakeClock(0.0)
    tuner = ThreadTuner([ONE, TWO], clock, block_s=1.0, block_batches=3, rounds=2, hold_s=60)
    assert tuner.split == ONE and tuner.exploring
    # 2 threads on one batch beside busy decoders: the straggler of each parallel region
    used = drive(tuner, clock, {ONE: 280.0, TWO: 110.0}, 40)
    assert set(used[:20]) == {ONE, TWO}  # both were tried
    assert tuner.split == TWO and not tuner.exploring
    assert tuner.rates == {
        ONE: pytest.approx(1000 / 280, rel=1e-3),
        TWO: pytest.approx(1000 / 110, rel=1e-3),
    }
    assert tuner.snapshot() == {
        "workers": 2,
        "threads": 1,
        "candidates": ["1x2", "2x1"],
        "exploring": False,
        "rates": {"1x2": 3.571, "2x1": 9.091},
    }
    assert tuner.max_workers == 2


def test_the_first_batch_after_a_change_is_not_counted():
    clock = FakeClock(0.0)
    tuner = ThreadTuner([ONE, TWO], clock, block_s=0.1, block_batches=1, rounds=1)
    tuner.record(2, 50.0)  # ONE's warm-up batch: very slow, ignored
    tuner.record(2, 0.2)  # counted: 10 frames/s
    assert tuner.split == TWO
    tuner.record(2, 50.0)  # TWO's warm-up, ignored
    tuner.record(2, 0.4)  # 5 frames/s
    assert tuner.split == ONE and tuner.rates == {ONE: 10.0, TWO: 5.0}


def test_it_measures_again_after_the_hold_and_follows_a_change_of_load():
    clock = FakeClock(0.0)
    tuner = ThreadTuner([ONE, TWO], clock, block_s=1.0, block_batches=3, rounds=2, hold_s=60)
    drive(tuner, clock, {ONE: 100.0, TWO: 180.0}, 40)
    assert tuner.split == ONE and tuner.choices == 1
    drive(tuner, clock, {ONE: 300.0, TWO: 90.0}, 20)  # the load changes; the choice holds
    assert tuner.split == ONE and not tuner.exploring
    clock.advance(61)  # the hold is over: measured again
    drive(tuner, clock, {ONE: 300.0, TWO: 90.0}, 40)
    assert tuner.split == TWO and tuner.choices == 2


def test_a_tie_goes_to_fewer_workers_and_one_candidate_never_changes():
    clock = FakeClock(0.0)
    tuner = ThreadTuner([TWO, ONE], clock, block_s=0.1, block_batches=1, rounds=1)
    drive(tuner, clock, {ONE: 100.0, TWO: 100.0}, 6)
    assert tuner.split == ONE
    pinned = ThreadTuner([S(1, 3)], clock)
    assert not pinned.tuning and not pinned.exploring
    drive(pinned, clock, {S(1, 3): 100.0}, 10)
    assert pinned.split == S(1, 3) and pinned.rates == {}


def test_each_model_thread_applies_the_count_itself_and_every_batch_is_recorded():
    applied: list[tuple[int, str]] = []

    def apply(n: int) -> None:
        applied.append((n, threading.current_thread().name))

    tuner = ThreadTuner([ONE, S(1, 1)], FakeClock(0.0), apply, 0.1, 1, rounds=1)
    pool = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def main() -> None:
        engine, _ = make(pool, FakeClock(1000.0), max_batch_size=1)
        engine.threads = tuner
        engine.start()
        for v in range(6):
            await asyncio.wait_for(engine.submit("r/a", frames(v), [v]), 2.0)
        await engine.close()

    try:
        asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    # the engine's Ticker: 0.5 s per batch, the same for both: a tie, fewer threads kept
    assert [n for n, _ in applied] == [2, 1]
    assert all(name.startswith("model") for _, name in applied)
    assert tuner.rates == {ONE: 2.0, S(1, 1): 2.0} and tuner.split == S(1, 1)


def serve(
    split: Split,
    runner: FakeRunner,
    release: threading.Event,
    body: Callable[[InferenceEngine], Awaitable[None]],
    clock: FakeClock | None = None,
) -> None:
    """Run ``body`` against an engine with a fixed ``split`` and two model threads; ``release``
    is set at the end, whatever happened, so that no held model call outlives the test."""
    pool = ThreadPoolExecutor(2, thread_name_prefix="model")

    async def main() -> None:
        engine, _ = make(
            pool, clock or FakeClock(1000.0), runner=runner, max_batch_size=runner.max_batch_size
        )
        engine.threads = ThreadTuner([split], FakeClock(0.0))
        engine.start()
        await body(engine)
        await engine.close()

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_with_two_workers_a_second_batch_runs_while_the_first_one_does():
    """Four realtime cameras, one frame in flight each, batches of 2: the second pair does
    not wait for the first pair's batch; it runs beside it in the second model thread."""
    runner = FakeRunner(2)
    runner.gate = threading.Event()  # every call waits until the test opens it

    async def body(engine: InferenceEngine) -> None:
        tasks = [
            asyncio.get_running_loop().create_task(
                engine.submit(f"r/{cam}", frames(v), [v], credit=1)
            )
            for v, cam in enumerate("abcd")
        ]
        await until(lambda: len(runner.calls) == 2)  # both batches started, both held
        assert sorted(map(sorted, runner.calls)) == [[0, 1], [2, 3]]
        assert engine.running == 4 and engine.health()["running"] == 4
        runner.gate.set()
        done = await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
        assert [r[0].index for r in done] == [0, 1, 2, 3]
        assert engine.running == 0 and engine.batches == 2

    serve(TWO, runner, runner.gate, body)


def test_with_one_worker_the_second_batch_waits_for_the_first():
    runner = FakeRunner(2)
    runner.gate = threading.Event()

    async def body(engine: InferenceEngine) -> None:
        tasks = [
            asyncio.get_running_loop().create_task(engine.submit("r/a", frames(v), [v]))
            for v in range(4)
        ]
        await until(lambda: len(runner.calls) == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(runner.calls) == 1 and engine.running == 2
        runner.gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
        assert runner.calls == [[0, 1], [2, 3]]

    serve(ONE, runner, runner.gate, body)


def test_a_hung_batch_is_seen_while_the_other_worker_keeps_serving():
    """The watchdog reads ``since_progress_s``: batches finishing beside a hung one must not
    hide it, or its cameras would wait for ever."""
    clock = FakeClock(1000.0)
    runner = FakeRunner(1)
    hold = threading.Event()
    runner.on_call = lambda _: hold.wait(WAIT_S)  # the first call hangs until released

    async def body(engine: InferenceEngine) -> None:
        hung = asyncio.get_running_loop().create_task(engine.submit("r/a", frames(0), [0]))
        await until(lambda: len(runner.calls) == 1)
        for v in (1, 2, 3):
            clock.advance(5)
            await asyncio.wait_for(engine.submit("r/b", frames(v), [v]), WAIT_S)
        health = engine.health()
        assert health["running"] == 1 and health["since_progress_s"] == 15.0
        hold.set()
        await asyncio.wait_for(hung, WAIT_S)
        assert engine.health()["since_progress_s"] == 0.0

    serve(TWO, runner, hold, body, clock)


def test_a_change_in_the_number_of_streams_measures_again_once_the_choice_settled():
    clock = FakeClock(0.0)
    tuner = ThreadTuner([ONE, TWO], clock, block_s=1.0, block_batches=3, hold_s=600, min_hold_s=10)
    tuner.load(4)
    while tuner.exploring:  # four cameras: two batches at once win
        drive(tuner, clock, {ONE: 300.0, TWO: 100.0}, 1)
    assert tuner.split == TWO
    tuner.load(1)  # one camera left, right after the choice: not yet
    assert not tuner.exploring
    clock.advance(10)
    tuner.load(4)  # back to the load it was chosen for: nothing to do
    assert not tuner.exploring
    tuner.load(1)
    assert tuner.exploring
    drive(tuner, clock, {ONE: 100.0, TWO: 200.0}, 40)  # one camera: one batch on 2 threads
    assert tuner.split == ONE and tuner.choices == 2


def test_one_realtime_camera_gets_one_batch_on_every_thread_without_measuring():
    """One frame in flight never fills two batches at once: 1 x 2 at once, no exploration;
    a second camera brings the two-batch split back into the measurement."""
    clock = FakeClock(0.0)
    tuner = ThreadTuner([TWO, ONE], clock, block_s=0.1, block_batches=1, rounds=1)
    assert tuner.split == TWO and tuner.exploring
    tuner.load(1, max_workers=1)
    assert tuner.split == ONE and not tuner.exploring and not tuner.tuning
    drive(tuner, clock, {ONE: 50.0}, 5)
    assert tuner.split == ONE
    tuner.load(2, max_workers=2)
    assert tuner.exploring
    used = drive(tuner, clock, {ONE: 100.0, TWO: 50.0}, 10)
    assert TWO in used and tuner.split == TWO and not tuner.exploring
    clock.advance(10)
    tuner.load(3, max_workers=None)  # a lossless stream joins: a new load, measured again
    assert tuner.exploring
