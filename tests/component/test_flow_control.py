"""Realtime vs lossless delivery, decimation and stale frames in the stream worker (no Ray).

A scripted camera delivers frames at a set rate; a slow stand-in for inference (a thread
pool that sleeps per frame) makes the engine slower than the camera.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from vsa.config import JsonlSinkSpec
from vsa.sinks import FrameResult, open_sinks
from vsa.sources import Frame
from vsa.stream import StreamSettings, StreamWorker

pytestmark = pytest.mark.usefixtures("strict_transitions")  # tests/fixtures.py

TIMEOUT = 60.0


class Camera:
    """``n`` frames at ``fps`` (wall-clock paced), then the stream finishes."""

    live = True
    endless = False
    decimates = False  # the stream decimates it

    def __init__(self, n: int, fps: float) -> None:
        self.n, self.fps = n, fps

    def frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        for k in range(self.n):
            delay = start + k / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            img = np.zeros((8, 8, 3), np.uint8)
            yield Frame(index=k, pts=k / self.fps, wall_time=time.time(), image=img)

    def close(self) -> None:
        pass


class SlowInference:
    """Takes ``per_frame_s`` per frame, one chunk at a time, like a saturated model.

    ``stale_after_s``: frames older than this when their turn comes get ``None`` (what the
    inference actor returns for frames past their deadline).
    """

    def __init__(self, per_frame_s: float, stale_after_s: float | None = None) -> None:
        self.per_frame_s, self.stale_after_s = per_frame_s, stale_after_s
        self.pool = ThreadPoolExecutor(1)

    def __call__(self, chunk: list[Frame], *terms: object) -> Future:  # terms: ignored
        def work() -> list[FrameResult | None]:
            out: list[FrameResult | None] = []
            for f in chunk:
                if (
                    self.stale_after_s is not None
                    and time.time() - f.wall_time > self.stale_after_s
                ):
                    out.append(None)
                    continue
                time.sleep(self.per_frame_s)
                out.append(FrameResult(f.index, [], self.per_frame_s * 1000, 1))
            return out

        return self.pool.submit(work)


def run(tmp_path: Path, camera: Camera, submit, **kw) -> tuple[dict, list[dict]]:
    worker = StreamWorker(
        "run-1",
        "cam1",
        "rtsp://127.0.0.1/cam1",
        lambda fps: open_sinks([JsonlSinkSpec(type="jsonl")], tmp_path, "run-1", "cam1", fps),
        submit,
        StreamSettings(**kw),
        opener=lambda uri, options: camera,
    )
    worker.start()
    assert worker.join(TIMEOUT)
    status = worker.status()
    records = [json.loads(x) for x in (tmp_path / "cam1.jsonl").read_text().splitlines()]
    return status, records


def accounted(status: dict) -> bool:
    return status["frames_decoded"] == status["frames_emitted"] + sum(status["drops"].values())


def test_realtime_keeps_the_newest_frame_and_latency_stays_bounded(tmp_path: Path):
    # camera 100 fps, engine 20 fps: 4 of 5 frames cannot be processed
    status, records = run(
        tmp_path, Camera(200, 100), SlowInference(0.05), realtime=True, max_in_flight=2
    )
    assert status["state"] == "FINISHED" and status["mode"] == "realtime"
    assert accounted(status)
    assert status["frames_decoded"] == 200
    assert status["drops"].get("queue_full", 0) > 100
    assert 20 <= status["frames_emitted"] <= 80
    latencies = [r["latency_ms"] for r in records]
    # bounded: a frame waits at most for the frames in flight ahead of it, not for a backlog
    assert max(latencies) < 1000, max(latencies)
    late = latencies[len(latencies) // 2 :]
    early = latencies[: len(latencies) // 2]
    assert np.median(late) < 2 * np.median(early) + 50  # does not grow over the run


def test_lossless_processes_every_frame_and_falls_behind(tmp_path: Path):
    status, records = run(tmp_path, Camera(60, 100), SlowInference(0.02), max_in_flight=2)
    assert status["mode"] == "lossless"
    assert status["frames_emitted"] == 60 and status["drops"] == {}
    assert [r["frame"] for r in records] == list(range(60))
    assert records[-1]["latency_ms"] > records[0]["latency_ms"]  # the cost: it falls behind


def test_stale_frames_are_dropped_not_inferred_late(tmp_path: Path):
    # the engine hands back None for frames older than 30 ms at their turn
    status, _ = run(
        tmp_path,
        Camera(100, 100),
        SlowInference(0.03, stale_after_s=0.03),
        realtime=True,
        max_in_flight=4,
        max_age_s=10.0,
    )
    assert accounted(status)
    assert status["drops"].get("stale", 0) > 0


def test_frames_past_max_age_never_leave_the_source(tmp_path: Path):
    status, _ = run(
        tmp_path,
        Camera(60, 100),
        SlowInference(0.05),
        realtime=True,
        max_in_flight=1,
        max_age_s=0.001,
    )
    assert accounted(status)
    assert status["drops"].get("stale", 0) > 0


@pytest.mark.parametrize("realtime", [False, True])
def test_fps_cap_decimates_at_the_source(tmp_path: Path, realtime: bool):
    status, records = run(
        tmp_path, Camera(90, 30), SlowInference(0.0), realtime=realtime, max_fps=10
    )
    assert accounted(status)
    assert status["drops"]["decimated"] == 60
    assert status["frames_emitted"] == 30
    assert [r["frame"] for r in records] == list(range(0, 90, 3))  # indices keep their gaps


def test_latency_percentiles_in_the_status(tmp_path: Path):
    status, _ = run(tmp_path, Camera(20, 50), SlowInference(0.01))
    lat = status["latency_ms"]
    assert lat["p50"] is not None and 5 <= lat["p50"] <= lat["p99"] < 5000
