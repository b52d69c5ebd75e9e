"""The real batching engine (``InferenceEngine``: its loop, its model thread, real clocks) fed
by a realtime camera and a lossless file the way the stream workers feed it: the camera sends
its next frame as soon as its result is back (one frame in flight, saying it lost frames
meanwhile, as a model-bound camera does), the file keeps eight frames in flight. The model
takes 10 ms a frame. Shares are counted in frames inferred over ~2 s and asserted as ratios of
the max-min fair share (here half each), with floors that hold on a busy 2-core host: before
the fair share the camera got one place per batch of eight (about 1/8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vsa.batching import BatchFormer
from vsa.inference import InferenceEngine

PER_FRAME_S = 0.010
RUN_S = 2.0


class SleepyRunner:
    """A model that takes ``PER_FRAME_S`` per frame of the batch (a CPU: no batching gain)."""

    max_batch_size = 8
    oom_events = 0
    fatal: str | None = None

    def run(self, frames: Sequence[np.ndarray]) -> list[list[Any]]:
        time.sleep(PER_FRAME_S * len(frames))
        return [[] for _ in frames]


async def camera(engine: InferenceEngine, group: str, served: dict[str, int], until: float) -> None:
    frame = [np.zeros((1, 1), np.uint8)]
    while time.monotonic() < until:
        got = await engine.submit(
            "cam", frame, [0], [time.time() + 5.0], 0, group=group, credit=1, behind=True
        )
        served["cam"] += sum(1 for r in got if r is not None)


async def lossless(
    engine: InferenceEngine, group: str, served: dict[str, int], until: float
) -> None:
    async def one() -> None:
        while time.monotonic() < until:
            await engine.submit("file", [np.zeros((1, 1), np.uint8)], [0], None, 0, group=group)
            served["file"] += 1

    await asyncio.gather(*(one() for _ in range(8)))  # eight frames in flight


def share_run(camera_group: str, file_group: str) -> dict[str, int]:
    async def main() -> dict[str, int]:
        with ThreadPoolExecutor(1, thread_name_prefix="model") as pool:
            engine = InferenceEngine(
                "key",
                SimpleNamespace(name="sleepy"),  # type: ignore[arg-type]
                BatchFormer(8, 0.020),
                SleepyRunner(),  # type: ignore[arg-type]
                pool,
            )
            engine.start()
            served = {"cam": 0, "file": 0}
            until = time.monotonic() + RUN_S
            await asyncio.gather(
                camera(engine, camera_group, served, until),
                lossless(engine, file_group, served, until),
            )
            await engine.close()
            return served

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("camera_group", "file_group"), [("run", "run"), ("live", "batch")], ids=["one-run", "two-runs"]
)
def test_a_realtime_camera_beside_a_lossless_file_gets_its_fair_share(camera_group, file_group):
    served = share_run(camera_group, file_group)
    total = served["cam"] + served["file"]
    assert total > 50, served  # the engine ran
    assert served["cam"] >= 0.8 * total / 2, served
    assert served["file"] >= 0.8 * total / 2, served
