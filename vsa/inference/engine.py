"""The batching engine of one model config: plain asyncio, nothing of Ray.

Callers ``submit`` frames; they join the engine's :class:`~vsa.batching.BatchFormer`. One
loop per engine forms batches across all streams (max size, max wait, round-robin across
groups, by priority within a group), runs the model in the single model thread given as
``executor`` (the event loop never blocks) and resolves every call with its results. Frames
past their deadline when their batch forms resolve to ``None`` (stale) without taking a place
in the batch. Clocks are injected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vsa.batching import BatchFormer
from vsa.constants import ALIGN_WAIT, FAIR_WAIT, FAIR_WAIT_MAX_S
from vsa.core.frames import FrameResult
from vsa.errors import ModelError

if TYPE_CHECKING:
    from vsa.config import BatchingSpec, ModelSpec
    from vsa.core.detections import Detection
    from vsa.inference.threads import ThreadTuner
    from vsa.models.base import Model

log = logging.getLogger("vsa.inference")

OnBatch = Callable[[str, float, int, int], None]  # model name, model seconds, size, stale


class Runner(Protocol):
    """What the engine needs of :class:`vsa.models.BatchRunner`."""

    max_batch_size: int  # lowered by the runner after a device out-of-memory split
    oom_events: int
    fatal: str | None  # set when the model can never run again (every waiting call fails)

    def run(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]: ...


@dataclass
class _Item:
    frame: np.ndarray
    index: int
    future: asyncio.Future
    deadline: float | None = None  # wall time after which the frame is stale (realtime)
    arrived: float = 0.0  # wall time it reached this engine


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the CPU seconds the calling thread spent in it."""
    started = time.thread_time()
    value = fn(*args)
    return value, time.thread_time() - started


def engine_key(model: ModelSpec, batching: BatchingSpec) -> str:
    """One engine per model+batching config (the stall timeout is not the engine's)."""
    return json.dumps(
        {
            "model": model.model_dump(),
            "batching": batching.model_dump(exclude={"stall_timeout_s"}),  # not the engine's
        },
        sort_keys=True,
    )


class InferenceEngine:
    """Batches the frames of every caller of one model; ``start`` it on the running loop.

    ``clock`` (monotonic) times progress for ``health``; ``wall_clock`` is what deadlines are
    compared with; ``timer`` measures model time. ``on_batch(model name, seconds, batch size,
    stale count)`` is called after every batch that ran (its errors are logged, never raised).
    """

    def __init__(
        self,
        key: str,
        model: Model,
        former: BatchFormer[_Item],
        runner: Runner,
        executor: concurrent.futures.Executor,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_batch: OnBatch | None = None,
        timer: Callable[[], float] = time.perf_counter,
        threads: ThreadTuner | None = None,
    ) -> None:
        self.key = key
        self.model = model
        self.former = former
        self.runner = runner
        self._executor = executor
        self._clock = clock
        self._wall_clock = wall_clock
        self._timer = timer
        self._on_batch = on_batch
        self.threads = threads  # batches at once x torch threads each, measured (CPU only)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.batches = 0
        self.frames = 0
        self.model_s = 0.0
        self.model_cpu_s = 0.0  # CPU of the model threads in their batches (torch helpers not)
        self.batch_s = 0.0  # a recent batch's wall time (moving average; 0 before the first)
        self.stale = 0
        self.running = 0  # frames in the batches the model is working on
        self._inflight = 0  # batches running
        self._batches: set[asyncio.Task] = set()
        self._busy_mark = 0.0  # timer: last batch end, or the start of a busy period
        self._running_since: dict[int, float] = {}  # id(batch) -> clock at its start
        self._aligning_since: float | None = None  # a ready batch waits for one about to end
        self.last_progress = clock()  # batch done, or work arrived

    @property
    def fatal(self) -> str | None:
        """Why the model can never run again, or None."""
        return self.runner.fatal

    def start(self) -> None:
        """Start the batch loop on the running event loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._batch_loop())

    async def submit(
        self,
        stream: str,
        frames: Sequence[np.ndarray],
        indices: Sequence[int],
        deadlines: Sequence[float] | None = None,
        priority: int = 0,
        group: str | None = None,
        credit: int | None = None,
        behind: bool | None = None,
    ) -> list[FrameResult | None]:
        """Results in order; ``None`` for a frame past its deadline (wall time) when its batch
        formed (dropped as stale instead of inferred late).

        ``priority`` orders the streams of a ``group`` (a run); groups share the engine in turn.
        ``credit``: the most frames the stream has in flight (a batch closes early once every
        such stream's frames are all in, ``BatchFormer.all_in``); ``behind``: it lost frames
        for want of a free slot since its last submit (``BatchFormer.add``).
        A failed model call raises ``RuntimeError``; a fatal runner error ``ModelError``.
        """
        if not len(self.former) and not self.running:
            self.last_progress = self._clock()  # idle until now: the stall clock starts here
        loop = asyncio.get_running_loop()
        arrived = self._wall_clock()
        items = [
            _Item(
                frame,
                index,
                loop.create_future(),
                None if deadlines is None else deadlines[i],
                arrived,
            )
            for i, (frame, index) in enumerate(zip(frames, indices, strict=True))
        ]
        for item in items:
            self.former.add(stream, item, priority, group=group, credit=credit, behind=behind)
        self._wake.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    def health(self) -> dict[str, Any]:
        """Frames waiting and running, seconds since progress, a fatal reason, max batch size.

        Progress is a batch finishing or work arriving at an idle engine; a batch still
        running counts from its start, so one hung batch is seen while others finish beside it.
        """
        since = min(self._running_since.values(), default=self.last_progress)
        return {
            "model": self.model.name,
            "waiting": len(self.former),
            "running": self.running,
            "since_progress_s": round(self._clock() - min(since, self.last_progress), 3),
            "fatal": self.runner.fatal,
            "max_batch_size": self.runner.max_batch_size,
        }

    def totals(self) -> dict[str, Any]:
        """Counts since this engine started (``model_s`` unrounded)."""
        return {
            "batches": self.batches,
            "frames": self.frames,
            "model_s": self.model_s,
            "model_cpu_s": self.model_cpu_s,
            "stale": self.stale,
            "max_batch_size": self.runner.max_batch_size,
            "oom_events": self.runner.oom_events,
        }

    async def close(self) -> None:
        """Stop the batch loop; frames still waiting fail with ``RuntimeError("model unloaded")``."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for task in list(self._batches):
            task.cancel()
        for item in self.former.drain():
            if not item.future.done():
                item.future.set_exception(RuntimeError("model unloaded"))

    async def _batch_loop(self) -> None:
        while not self._closed:
            try:
                await self._next_batch()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let one bad batch end the loop
                log.exception("batch loop error (continuing)")

    @property
    def workers(self) -> int:
        """Batches the model may run at once (``ThreadTuner``'s split; 1 without one)."""
        return 1 if self.threads is None else self.threads.split.workers

    async def _next_batch(self) -> None:
        former = self.former
        if self.threads is not None:
            # realtime cameras (one frame in flight each) fill at most that many batches
            self.threads.load(former.senders(), former.fair_share(1))
        full = self._inflight >= self.workers
        # batches at once: realtime cameras split evenly, and a batch short of its share waits
        # (up to FAIR_WAIT batch times, FAIR_WAIT_MAX_S at most) for the cameras whose result
        # just came back: their next frame is on its way
        share = None if self.workers == 1 else former.fair_share(self.workers)
        if share is None and self.threads is not None:  # a CPU: see BatchFormer.round_size
            share = former.round_size()
        patience = min(FAIR_WAIT * self.batch_s, FAIR_WAIT_MAX_S)
        # a credit-bound stream (a camera the model is too slow for) caps its peers' share
        # while its next frame is on its way: up to this long after its result
        former.patience_s = patience
        delay = None if full else former.time_until_ready(share, patience)
        if delay == 0 and share is not None:
            delay = self._align_delay()
        if full or delay is None or delay > 0:
            self._wake.clear()  # set by a new frame or a finished batch
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            return
        # callers that gave up (cancelled) and frames past their deadline are skipped without
        # taking a place in the batch (nor their run's turn), not computed
        now = self._wall_clock()
        batch, skipped = former.take_fresh(
            lambda i: i.future.done() or (i.deadline is not None and i.deadline < now),
            share,  # or cameras in small batches get more fps
        )
        self._aligning_since = None
        stale = [i for i in skipped if not i.future.done()]
        for item in stale:
            item.future.set_result(None)
        self.stale += len(stale)
        if not batch:
            return
        idle = not self._inflight  # the time until this batch starts is not busy time
        self._inflight += 1
        self.running += len(batch)
        task = asyncio.get_running_loop().create_task(
            self._run_batch(batch, len(stale), former.last_taken, idle)
        )
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    def _align_delay(self) -> float:
        """Seconds a ready fair share waits for a batch about to end, 0 to run it now.

        With realtime cameras and several batches at once, each camera comes round once per
        batch of its own cohort, and the cohorts settle on the model threads: the cameras whose
        batch just ended find the thread that ran it free, and the other cohort's still busy.
        Threads do not run equally fast on a shared CPU (one shares its core with a camera
        server, decoding or drawing more than the other: 5-6 % measured), so a cohort on the
        faster thread gets that much more fps, run after run. A ready batch therefore waits for
        a batch due to end within ``ALIGN_WAIT`` batch times (``FAIR_WAIT_MAX_S`` at most), and
        no longer than that from when it began waiting: the cohorts stay in step and every camera
        gets the same rate, for the faster thread's idle time. Where the threads differ by more
        than that, the cohorts drift apart again and the throughput is kept."""
        if not self._running_since or self.batch_s <= 0:
            self._aligning_since = None
            return 0.0
        now = self._clock()
        limit = min(ALIGN_WAIT * self.batch_s, FAIR_WAIT_MAX_S)
        if self._aligning_since is None:
            if not any(
                now - since >= self.batch_s - limit for since in self._running_since.values()
            ):
                return 0.0
            self._aligning_since = now
        return max(0.0, self._aligning_since + limit - now)

    async def _run_batch(
        self, batch: list[_Item], stale: int, taken: dict[Any, int], idle: bool
    ) -> None:
        """One batch in a model thread; the loop may start others meanwhile (``workers``)."""
        former = self.former
        started, started_wall = self._timer(), self._wall_clock()
        self._running_since[id(batch)] = self._clock()
        if idle:
            self._busy_mark = started
        try:
            frames = [item.frame for item in batch]
            run = self.runner.run
            detections, cpu_s = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                _timed,
                *((run, frames) if self.threads is None else (self.threads.run, run, frames)),
            )
            self.model_cpu_s += cpu_s
            if len(detections) != len(batch):
                raise RuntimeError(
                    f"model returned {len(detections)} results for {len(batch)} frames"
                )
        except asyncio.CancelledError:  # closed while running
            self._running_since.pop(id(batch), None)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RuntimeError("model unloaded"))
            raise
        except Exception as exc:  # noqa: BLE001 - fail these frames, keep serving
            self._batch_ended(batch, taken, self._timer())
            log.error("batch of %d failed: %s", len(batch), exc)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(RuntimeError(f"inference failed: {exc}"))
            if self.runner.fatal:
                log.error("%s: %s", self.model.name, self.runner.fatal)
                for item in former.drain():
                    if not item.future.done():
                        item.future.set_exception(ModelError(self.runner.fatal))
            return
        ended = self._timer()
        busy_s, elapsed = self._batch_ended(batch, taken, ended), ended - started
        if self.runner.max_batch_size < former.max_batch_size:
            log.warning(
                "%s: device out of memory, max batch size lowered %d -> %d",
                self.model.name,
                former.max_batch_size,
                self.runner.max_batch_size,
            )
            former.max_batch_size = self.runner.max_batch_size
        self.batches += 1
        batch_no = self.batches
        self.frames += len(batch)
        self.model_s += elapsed
        if self.batches > 1:  # the first batch (warm-up, a cold model) is not typical
            self.batch_s = elapsed if not self.batch_s else 0.8 * self.batch_s + 0.2 * elapsed
        if self.threads is not None:
            self.threads.record(len(batch), busy_s)
        if self._on_batch is not None:
            try:
                self._on_batch(self.model.name, elapsed, len(batch), stale)
            except Exception:  # noqa: BLE001 - metrics never break inference
                log.exception("metrics failed")
        for item, dets in zip(batch, detections, strict=True):
            if not item.future.done():
                queue_ms = max(0.0, (started_wall - item.arrived) * 1000)
                item.future.set_result(
                    FrameResult(
                        item.index,
                        dets,
                        elapsed * 1000,
                        len(batch),
                        batch_no,
                        item.arrived,
                        queue_ms,
                    )
                )

    def _batch_ended(self, batch: list[_Item], taken: dict[Any, int], now: float) -> float:
        """Book a batch's end (``now``: the timer); returns the busy time (any batch running)
        since the last batch ended."""
        self._running_since.pop(id(batch), None)
        self._inflight -= 1
        self.running -= len(batch)
        self.former.batch_done(taken)
        self.last_progress = self._clock()
        busy_s, self._busy_mark = now - self._busy_mark, now
        self._wake.set()  # a worker is free
        return busy_s
